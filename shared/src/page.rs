//! Pages of a list, newest first: what a list request asks for and what it gets. Storage
//! fills pages; the API layer turns their sort keys into cursors.

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// The most bytes of items one page carries, so that a list answer, envelope and cursors
/// included, stays under Lambda's 6 MB response limit: a page of large items holds fewer
/// than `limit`, and its cursor continues after the last one it holds. Items weigh what
/// they take in Lambda's serialized response, where the body is an escaped JSON string.
pub const MAX_PAGE_BYTES: usize = 5 * 1024 * 1024;

/// About how many bytes an item takes in a list answer (an upper estimate).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for String {
    fn weight(&self) -> usize {
        self.len() + 2
    }
}

/// Counts items into a page until the page is full by count or by bytes (it always takes
/// one item, whatever its size).
#[derive(Debug, Default)]
pub struct Budget {
    taken: usize,
    bytes: usize,
}

impl Budget {
    /// Whether `item` still fits a page of at most `limit` items; counts it if it does.
    pub fn take(&mut self, item: &impl Weigh, limit: usize) -> bool {
        let weight = item.weight();
        let fits = self.taken == 0 || (self.taken < limit && self.bytes + weight <= MAX_PAGE_BYTES);
        if fits {
            self.taken += 1;
            self.bytes += weight;
        }
        fits
    }
}

/// Cuts a page whose items grew heavier once filled in (an event type's schema read for
/// the page alone) back to the page budget, continuing from the cut: after the last item
/// kept (walking forward), or before the first (walking back).
pub fn fit_budget<T: Weigh>(
    page: &mut Page<T>,
    request: &PageRequest,
    sort_key: impl Fn(&T) -> &str,
) {
    let mut budget = Budget::default();
    let backward = matches!(request.position, Position::Before(_));
    let keep = if backward {
        page.data
            .iter()
            .rev()
            .take_while(|i| budget.take(*i, request.limit))
            .count()
    } else {
        page.data
            .iter()
            .take_while(|i| budget.take(*i, request.limit))
            .count()
    };
    if keep == page.data.len() {
        return;
    }
    if backward {
        page.data.drain(..page.data.len() - keep);
        page.has_previous_page = true;
    } else {
        page.data.truncate(keep);
        page.has_next_page = true;
    }
    page.start_key = page.data.first().map(|i| sort_key(i).to_string());
    page.end_key = page.data.last().map(|i| sort_key(i).to_string());
}

/// Where a page starts, relative to a cursor. Lists run newest first, so `After` pages
/// towards older items and `Before` towards newer ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    First,
    After(String),
    Before(String),
}

/// A list request's paging: how many, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub position: Position,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub limit: usize,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_key: Option<String>,
    pub end_key: Option<String>,
}

/// Pages through a whole list held in memory. `items` may come in any order; each item's
/// `sort_key` orders it (greater is newer) and is what its cursor names.
pub fn paginate<T: Weigh>(
    mut items: Vec<T>,
    sort_key: impl Fn(&T) -> &str,
    request: &PageRequest,
) -> Page<T> {
    items.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
    let total = items.len();
    let mut budget = Budget::default();
    // The window [start, end) of the newest-first list, grown away from the cursor.
    let (start, end) = match &request.position {
        Position::First | Position::After(_) => {
            let start = match &request.position {
                Position::After(cursor) => {
                    items.partition_point(|i| sort_key(i) >= cursor.as_str())
                }
                _ => 0,
            };
            let taken = items[start..]
                .iter()
                .take_while(|i| budget.take(*i, request.limit))
                .count();
            (start, start + taken)
        }
        Position::Before(cursor) => {
            let end = items.partition_point(|i| sort_key(i) > cursor.as_str());
            let taken = items[..end]
                .iter()
                .rev()
                .take_while(|i| budget.take(*i, request.limit))
                .count();
            (end - taken, end)
        }
    };
    let data: Vec<T> = items.drain(start..end).collect();
    Page {
        start_key: data.first().map(|i| sort_key(i).to_string()),
        end_key: data.last().map(|i| sort_key(i).to_string()),
        has_previous_page: start > 0,
        has_next_page: end < total,
        data,
        limit: request.limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i:03}")).collect()
    }

    fn page(items: Vec<String>, limit: usize, position: Position) -> Page<String> {
        paginate(items, |s| s.as_str(), &PageRequest { limit, position })
    }

    /// An item of a given size.
    struct Heavy(usize, String);

    impl Weigh for Heavy {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn large_items_make_shorter_pages_that_continue_after_the_last_one() {
        let mb = 1024 * 1024;
        let items: Vec<Heavy> = (0..10).map(|i| Heavy(2 * mb, format!("k{i}"))).collect();
        let request = PageRequest {
            limit: 100,
            position: Position::First,
        };
        let first = paginate(items, |s| s.1.as_str(), &request);
        assert_eq!(first.data.len(), 2, "5 MB hold two 2 MB items");
        assert!(first.has_next_page);
        assert_eq!(first.end_key.as_deref(), Some("k8"));
        let huge = vec![Heavy(9 * mb, "k0".into())];
        assert_eq!(paginate(huge, |s| s.1.as_str(), &request).data.len(), 1);
    }

    #[test]
    fn pages_run_newest_first_and_walk_both_ways() {
        let first = page(keys(5), 2, Position::First);
        assert_eq!(first.data, vec!["k004", "k003"]);
        assert!(first.has_next_page && !first.has_previous_page);

        let second = page(keys(5), 2, Position::After(first.end_key.clone().unwrap()));
        assert_eq!(second.data, vec!["k002", "k001"]);
        assert!(second.has_next_page && second.has_previous_page);

        let last = page(keys(5), 2, Position::After(second.end_key.clone().unwrap()));
        assert_eq!(last.data, vec!["k000"]);
        assert!(!last.has_next_page && last.has_previous_page);

        let back = page(
            keys(5),
            2,
            Position::Before(last.start_key.clone().unwrap()),
        );
        assert_eq!(back.data, second.data);
        let front = page(
            keys(5),
            2,
            Position::Before(back.start_key.clone().unwrap()),
        );
        assert_eq!(front.data, first.data);
        assert!(!front.has_previous_page);
    }

    proptest! {
        /// Walking forward page by page visits every item once, newest first.
        #[test]
        fn paging_forward_visits_everything_once(n in 0usize..60, limit in 1usize..10) {
            let items: Vec<String> = (0..n).map(|i| format!("k{i:03}")).collect();
            let mut seen = Vec::new();
            let mut position = Position::First;
            loop {
                let page = paginate(items.clone(), |s| s.as_str(), &PageRequest { limit, position });
                seen.extend(page.data.iter().cloned());
                if !page.has_next_page { break; }
                position = Position::After(page.end_key.clone().unwrap());
            }
            let mut expected = items.clone();
            expected.reverse();
            prop_assert_eq!(seen, expected);
        }
    }
}
