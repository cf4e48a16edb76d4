//! Lists over sharded partitions: every shard is read in key order (newest first, or oldest
//! first towards a `before` cursor), the reads are merged, and the page carries one cursor,
//! a sort key: ids are ULIDs, so one key orders every shard alike.
//!
//! Each shard is read until it has a page's worth, runs out, or has examined its share of
//! the request's budget. The page holds only what is settled in every shard: the items at
//! or beyond the furthest point some unfinished shard reached. A page that stops there
//! without being full continues from that point, so nothing is skipped or repeated.
//!
//! The reads go through [`RangeReader`] (DynamoDB's Query here, a model in the tests), so
//! the merge is tested with budgets small enough to stop shards early.

use async_trait::async_trait;
use futures::future::join_all;

use super::layout::{Item, SK, s};
use super::{DynamoStore, store_error};
use crate::page::{Budget, Page, PageRequest, Position, Weigh};
use crate::storage::StoreResult;

/// The partitions of a list and the range of sort keys it covers (inclusive).
pub struct Shards {
    pub partitions: Vec<String>,
    pub lower: String,
    pub upper: String,
}

/// How much one list request reads.
#[derive(Clone, Copy, Debug)]
pub struct ReadBudget {
    /// Items examined in all shards together before the request answers with what it has.
    pub examined: usize,
    /// The fewest items one query asks for.
    pub min_query: usize,
}

impl Default for ReadBudget {
    fn default() -> Self {
        ReadBudget {
            examined: 2000,
            min_query: 25,
        }
    }
}

/// One query's answer: items in key order, and the key to continue from if there is more.
pub struct QueryPage {
    pub items: Vec<Item>,
    pub next: Option<Item>,
}

/// A key-range query on one partition.
#[async_trait]
pub trait RangeReader: Sync {
    /// Up to `limit` items of partition `pk` with sort keys in `lower..=upper`, ascending
    /// when `forward`, starting after `start`.
    async fn query_range(
        &self,
        pk: &str,
        lower: &str,
        upper: &str,
        forward: bool,
        limit: usize,
        start: Option<Item>,
    ) -> StoreResult<QueryPage>;
}

#[async_trait]
impl RangeReader for DynamoStore {
    async fn query_range(
        &self,
        pk: &str,
        lower: &str,
        upper: &str,
        forward: bool,
        limit: usize,
        start: Option<Item>,
    ) -> StoreResult<QueryPage> {
        let out = self
            .query()
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":lo", s(lower))
            .expression_attribute_values(":hi", s(upper))
            .scan_index_forward(forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(store_error)?;
        Ok(QueryPage {
            items: out.items.unwrap_or_default(),
            next: out.last_evaluated_key.filter(|k| !k.is_empty()),
        })
    }
}

/// What one shard gave: entries in the order read, and how far it was read if it was not
/// read to the end of the range.
struct ShardRead<T> {
    kept: Vec<(String, T)>,
    frontier: Option<String>,
}

/// What a request reads in every shard.
struct ShardQuery<'a> {
    lower: &'a str,
    upper: &'a str,
    forward: bool,
    exclude: Option<&'a str>,
    want: usize,
    max_examined: usize,
    min_query: usize,
}

async fn read_shard<T>(
    reader: &dyn RangeReader,
    pk: &str,
    q: &ShardQuery<'_>,
    read: &(impl Fn(&Item) -> StoreResult<Option<T>> + Sync),
) -> StoreResult<ShardRead<T>> {
    let mut kept = Vec::new();
    let mut examined = 0usize;
    let mut last: Option<String> = None;
    let mut start = None;
    if q.lower > q.upper {
        return Ok(ShardRead {
            kept,
            frontier: None,
        });
    }
    loop {
        let limit = q.want.saturating_sub(kept.len()).clamp(q.min_query, 500);
        let page = reader
            .query_range(pk, q.lower, q.upper, q.forward, limit, start.take())
            .await?;
        for item in page.items {
            let key = item
                .get(SK)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if q.exclude == Some(key.as_str()) {
                continue;
            }
            examined += 1;
            if let Some(entry) = read(&item)? {
                kept.push((key.clone(), entry));
            }
            last = Some(key);
        }
        match page.next {
            Some(next) => {
                if kept.len() >= q.want || examined >= q.max_examined {
                    return Ok(ShardRead {
                        kept,
                        frontier: last,
                    });
                }
                start = Some(next);
            }
            None => {
                return Ok(ShardRead {
                    kept,
                    frontier: None,
                });
            }
        }
    }
}

/// One page of a sharded list, newest first; `read` keeps or drops each item.
pub async fn list_sharded<T: Weigh>(
    reader: &dyn RangeReader,
    shards: &Shards,
    request: &PageRequest,
    budget: ReadBudget,
    read: impl Fn(&Item) -> StoreResult<Option<T>> + Sync,
) -> StoreResult<Page<T>> {
    let (mut lower, mut upper) = (shards.lower.clone(), shards.upper.clone());
    let (forward, exclude) = match &request.position {
        Position::First => (false, None),
        Position::After(k) => {
            upper = upper.min(k.clone());
            (false, Some(k.clone()))
        }
        Position::Before(k) => {
            lower = lower.max(k.clone());
            (true, Some(k.clone()))
        }
    };
    let query = ShardQuery {
        lower: &lower,
        upper: &upper,
        forward,
        exclude: exclude.as_deref(),
        want: request.limit + 1,
        max_examined: (budget.examined / shards.partitions.len().max(1)).max(budget.min_query),
        min_query: budget.min_query,
    };
    let reads = join_all(
        shards
            .partitions
            .iter()
            .map(|pk| read_shard(reader, pk, &query, &read)),
    )
    .await;
    let mut frontier: Option<String> = None;
    let mut merged: Vec<(String, T)> = Vec::new();
    for shard in reads {
        let shard = shard?;
        if let Some(f) = shard.frontier {
            // The nearest point some unfinished shard stopped at: beyond it, that shard
            // may hold items not read yet.
            frontier = Some(match frontier {
                None => f,
                Some(g) if forward => g.min(f),
                Some(g) => g.max(f),
            });
        }
        merged.extend(shard.kept);
    }
    if let Some(f) = &frontier {
        merged.retain(|(k, _)| if forward { k <= f } else { k >= f });
    }
    if forward {
        merged.sort_by(|a, b| a.0.cmp(&b.0));
    } else {
        merged.sort_by(|a, b| b.0.cmp(&a.0));
    }
    let mut bytes = Budget::default();
    let taken = merged
        .iter()
        .take_while(|(_, entry)| bytes.take(entry, request.limit))
        .count();
    let full = taken < merged.len();
    merged.truncate(taken);
    let more = full || frontier.is_some();
    // A page that stops short of full at the frontier continues from there.
    let resume = if !full && more && merged.len() < request.limit {
        frontier
    } else {
        None
    };
    if forward {
        merged.reverse();
    }
    let cursor_of = |entry: Option<&(String, T)>| entry.map(|(k, _)| k.clone());
    let (start_key, end_key) = if forward {
        (
            resume.or_else(|| cursor_of(merged.first())),
            cursor_of(merged.last()),
        )
    } else {
        (
            cursor_of(merged.first()),
            resume.or_else(|| cursor_of(merged.last())),
        )
    };
    let (has_previous_page, has_next_page) = match request.position {
        Position::First => (false, more),
        Position::After(_) => (true, more),
        Position::Before(_) => (more, true),
    };
    Ok(Page {
        data: merged.into_iter().map(|(_, t)| t).collect(),
        limit: request.limit,
        has_next_page,
        has_previous_page,
        start_key,
        end_key,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Partitions in memory, answering queries as DynamoDB does: at most `limit` items in
    /// key order, and the last key when the range goes on.
    struct Model(BTreeMap<String, Vec<String>>);

    #[async_trait]
    impl RangeReader for Model {
        async fn query_range(
            &self,
            pk: &str,
            lower: &str,
            upper: &str,
            forward: bool,
            limit: usize,
            start: Option<Item>,
        ) -> StoreResult<QueryPage> {
            let after = start.and_then(|k| k.get(SK).and_then(|v| v.as_s().ok()).cloned());
            let mut keys: Vec<&String> = self.0[pk]
                .iter()
                .filter(|k| k.as_str() >= lower && k.as_str() <= upper)
                .collect();
            if !forward {
                keys.reverse();
            }
            let keys: Vec<&String> = keys
                .into_iter()
                .filter(|k| match &after {
                    None => true,
                    Some(a) if forward => k.as_str() > a.as_str(),
                    Some(a) => k.as_str() < a.as_str(),
                })
                .collect();
            let more = keys.len() > limit;
            let items: Vec<Item> = keys
                .into_iter()
                .take(limit)
                .map(|k| Item::from([(SK.to_string(), s(k))]))
                .collect();
            let next = if more { items.last().cloned() } else { None };
            Ok(QueryPage { items, next })
        }
    }

    /// `n` keys spread over `shards` partitions unevenly (a shard may hold most of them).
    fn model(n: usize, shards: usize, seed: u64) -> (Model, Vec<String>) {
        let mut partitions: BTreeMap<String, Vec<String>> =
            (0..shards).map(|i| (format!("p{i}"), Vec::new())).collect();
        let mut all = Vec::new();
        let mut x = seed;
        for i in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let shard = if (x >> 33).is_multiple_of(3) {
                0
            } else {
                (x >> 40) as usize % shards
            };
            let key = format!("K{i:05}");
            partitions
                .get_mut(&format!("p{shard}"))
                .unwrap()
                .push(key.clone());
            all.push(key);
        }
        all.reverse(); // newest first
        (Model(partitions), all)
    }

    async fn page(
        model: &Model,
        shards: &Shards,
        limit: usize,
        position: Position,
        budget: ReadBudget,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Page<String> {
        let request = PageRequest { limit, position };
        list_sharded(model, shards, &request, budget, |item| {
            let key = item[SK].as_s().unwrap().clone();
            Ok(keep(&key).then_some(key))
        })
        .await
        .unwrap()
    }

    /// Walks every page forward, then back from the last one, with shards stopped early by
    /// a tiny budget: every kept key once, newest first, both ways.
    #[tokio::test]
    async fn pages_give_every_item_once_whatever_stops_the_shards() {
        for (n, shards, limit, examined, seed) in [
            (0, 4, 3, 8, 1),
            (1, 4, 3, 8, 2),
            (40, 1, 7, 4, 3),
            (97, 4, 5, 8, 4),
            (120, 16, 9, 16, 5),
            (200, 8, 2, 64, 6),
        ] {
            let (model, all) = model(n, shards, seed);
            let shards = Shards {
                partitions: model.0.keys().cloned().collect(),
                lower: "K".into(),
                upper: "K~".into(),
            };
            let budget = ReadBudget {
                examined,
                min_query: 2,
            };
            for keep in [
                &(|_: &str| true) as &(dyn Fn(&str) -> bool + Sync),
                &|k: &str| k.ends_with('3') || k.ends_with('7'),
                // So sparse that many a page examines its budget and keeps nothing.
                &|k: &str| k.ends_with("31"),
            ] {
                let expected: Vec<String> = all.iter().filter(|k| keep(k)).cloned().collect();
                let mut forward = Vec::new();
                let mut p = page(&model, &shards, limit, Position::First, budget, keep).await;
                // The walk back starts at the last page that holds something (an empty
                // last page has no cursor to walk back from: its client came from the one
                // before).
                let mut last_with_items = None;
                let mut guard = 0;
                loop {
                    assert!(p.data.len() <= limit);
                    forward.extend(p.data.clone());
                    let next = p.has_next_page.then(|| p.end_key.clone());
                    if !p.data.is_empty() {
                        last_with_items = Some(p);
                    }
                    let Some(end) = next else { break };
                    let after = Position::After(end.expect("a page with more has an end cursor"));
                    p = page(&model, &shards, limit, after, budget, keep).await;
                    guard += 1;
                    assert!(guard < 10 * n + 10, "the walk ends");
                }
                assert_eq!(
                    forward,
                    expected,
                    "forward: n={n} shards={}",
                    shards.partitions.len()
                );
                let Some(mut p) = last_with_items else {
                    assert!(expected.is_empty());
                    continue;
                };
                let mut backward = p.data.clone();
                while p.has_previous_page {
                    let start = p
                        .start_key
                        .clone()
                        .expect("a page with items before has a start cursor");
                    p = page(
                        &model,
                        &shards,
                        limit,
                        Position::Before(start),
                        budget,
                        keep,
                    )
                    .await;
                    let mut earlier = p.data.clone();
                    earlier.append(&mut backward);
                    backward = earlier;
                    guard += 1;
                    assert!(guard < 20 * n + 20, "the walk back ends");
                }
                assert_eq!(
                    backward,
                    expected,
                    "backward: n={n} shards={}",
                    shards.partitions.len()
                );
            }
        }
    }
}
