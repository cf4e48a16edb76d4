//! DynamoDB's bill, computed the way DynamoDB computes it, for the stub's writes and reads:
//! a write costs one unit per KB of the larger of the item before and after it (twice that
//! in a transaction), and every index that projects the item is written too, for the size
//! of what it projects: an entry that appears is a put, one that goes is a delete, one
//! whose keys change is a delete and a put, one whose projected attributes change is an
//! update, and one that does not change costs nothing. Reads cost a unit per 4 KB read (half
//! when eventually consistent). Every unit is also counted against the partition key value
//! it lands on, table or index, for the capacity model.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

pub type Item = Map<String, Value>;

/// How an index projects an item.
#[derive(Clone, Debug)]
pub enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

/// A global secondary index of the table.
#[derive(Clone, Debug)]
pub struct Index {
    pub name: String,
    pub hash: String,
    pub range: Option<String>,
    pub projection: Projection,
}

/// The table's key attributes and indexes, as template.yaml declares them.
#[derive(Clone, Debug)]
pub struct Schema {
    pub hash: String,
    pub range: String,
    pub indexes: Vec<Index>,
}

impl Schema {
    /// Reads the table of template.yaml.
    pub fn from_template() -> Result<Schema, String> {
        let template = tools::local::template::Template::built_in()?;
        let tables = template.resources_of_type("AWS::DynamoDB::Table");
        let table = tables.first().ok_or("template.yaml declares no table")?;
        let keys = |schema: &Value| -> (String, Option<String>) {
            let mut hash = String::new();
            let mut range = None;
            for k in schema.as_array().into_iter().flatten() {
                let name = k["AttributeName"].as_str().unwrap_or_default().to_string();
                match k["KeyType"].as_str() {
                    Some("HASH") => hash = name,
                    _ => range = Some(name),
                }
            }
            (hash, range)
        };
        let (hash, range) = keys(&table.properties["KeySchema"]);
        let indexes = table.properties["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                let (hash, range) = keys(&g["KeySchema"]);
                let projection = match g["Projection"]["ProjectionType"].as_str() {
                    Some("KEYS_ONLY") => Projection::KeysOnly,
                    Some("INCLUDE") => Projection::Include(
                        g["Projection"]["NonKeyAttributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect(),
                    ),
                    _ => Projection::All,
                };
                Index {
                    name: g["IndexName"].as_str().unwrap_or_default().to_string(),
                    hash,
                    range,
                    projection,
                }
            })
            .collect();
        Ok(Schema {
            hash,
            range: range.unwrap_or_default(),
            indexes,
        })
    }

    /// The entry an index holds for `item`, if the item has the index's keys.
    fn entry(&self, index: &Index, item: &Item) -> Option<Item> {
        if !item.contains_key(&index.hash)
            || index.range.as_ref().is_some_and(|r| !item.contains_key(r))
        {
            return None;
        }
        let mut keep: Vec<&str> = vec![&self.hash, &self.range, &index.hash];
        keep.extend(index.range.as_deref());
        let entry: Item = match &index.projection {
            Projection::All => item.clone(),
            Projection::KeysOnly => keep_only(item, &keep),
            Projection::Include(names) => {
                keep.extend(names.iter().map(String::as_str));
                keep_only(item, &keep)
            }
        };
        Some(entry)
    }
}

fn keep_only(item: &Item, names: &[&str]) -> Item {
    item.iter()
        .filter(|(k, _)| names.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The size of an attribute value as DynamoDB counts it.
fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 1;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        ("B", Value::String(b)) => b.len() * 3 / 4,
        ("L", Value::Array(items)) => 3 + items.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        ("M", Value::Object(map)) => {
            3 + map
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        ("SS" | "NS" | "BS", Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map_or(0, str::len)).sum()
        }
        _ => 1,
    }
}

/// The size of an item: every attribute's name and value.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn write_units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

fn read_units(size: usize, consistent: bool) -> f64 {
    let units = size.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.get("S"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// What DynamoDB would have billed, in all and per partition key value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Bill {
    pub write_units: f64,
    /// Of which, writes to indexes.
    pub index_write_units: f64,
    pub read_units: f64,
    pub write_requests: u64,
    pub read_requests: u64,
    /// Write units per partition key value: `table <PK>` or `<index> <index PK>`.
    pub partition_writes: BTreeMap<String, f64>,
    pub partition_reads: BTreeMap<String, f64>,
}

impl Bill {
    fn charge_write(&mut self, partition: String, units: f64, index: bool) {
        self.write_units += units;
        if index {
            self.index_write_units += units;
        }
        *self.partition_writes.entry(partition).or_default() += units;
    }

    /// A write of `old` (absent if new) to `new` (absent if deleted).
    pub fn write(
        &mut self,
        schema: &Schema,
        old: Option<&Item>,
        new: Option<&Item>,
        transactional: bool,
    ) {
        let size = old.map_or(0, item_size).max(new.map_or(0, item_size));
        let item = new.or(old).cloned().unwrap_or_default();
        let factor = if transactional { 2.0 } else { 1.0 };
        self.charge_write(
            format!("table {}", text(&item, &schema.hash)),
            factor * write_units(size),
            false,
        );
        for index in &schema.indexes {
            let before = old.and_then(|o| schema.entry(index, o));
            let after = new.and_then(|n| schema.entry(index, n));
            let partition = |entry: &Item| format!("{} {}", index.name, text(entry, &index.hash));
            let keys = |entry: &Item| {
                (
                    text(entry, &index.hash),
                    index.range.as_deref().map(|r| text(entry, r)),
                )
            };
            match (before, after) {
                (None, None) => {}
                (None, Some(n)) => {
                    self.charge_write(partition(&n), write_units(item_size(&n)), true)
                }
                (Some(o), None) => {
                    self.charge_write(partition(&o), write_units(item_size(&o)), true)
                }
                (Some(o), Some(n)) if keys(&o) != keys(&n) => {
                    self.charge_write(partition(&o), write_units(item_size(&o)), true);
                    self.charge_write(partition(&n), write_units(item_size(&n)), true);
                }
                (Some(o), Some(n)) if o != n => {
                    let size = item_size(&o).max(item_size(&n));
                    self.charge_write(partition(&n), write_units(size), true);
                }
                (Some(_), Some(_)) => {}
            }
        }
    }

    /// A read of `items` from `partition` in one request.
    pub fn read(&mut self, partition: String, items: &[&Item], consistent: bool) {
        let size: usize = items.iter().map(|i| item_size(i)).sum();
        let units = read_units(size, consistent);
        self.read_units += units;
        self.read_requests += 1;
        *self.partition_reads.entry(partition).or_default() += units;
    }

    pub fn count_write_request(&mut self) {
        self.write_requests += 1;
    }
}

/// Storage the items hold, table and indexes, with DynamoDB's 100 bytes of overhead for
/// every item and index entry.
pub fn stored_bytes<'a>(schema: &Schema, items: impl Iterator<Item = &'a Item>) -> u64 {
    let mut bytes = 0u64;
    for item in items {
        bytes += (item_size(item) + 100) as u64;
        for index in &schema.indexes {
            if let Some(entry) = schema.entry(index, item) {
                bytes += (item_size(&entry) + 100) as u64;
            }
        }
    }
    bytes
}

/// Applies an UpdateItem's expression (the SET, REMOVE and ADD the service writes) to an
/// item.
/// The comma-separated parts of a clause, commas inside parentheses left alone.
fn top_level_parts(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(body[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

pub fn apply_update(item: &mut Item, expression: &str, names: &Value, values: &Value) {
    let resolve = |token: &str| -> String {
        let token = token.trim();
        if token.starts_with('#') {
            names[token].as_str().unwrap_or(token).to_string()
        } else {
            token.to_string()
        }
    };
    let mut clauses: Vec<(String, String)> = Vec::new();
    for word in expression.split_whitespace() {
        if ["SET", "REMOVE", "ADD", "DELETE"].contains(&word) {
            clauses.push((word.to_string(), String::new()));
        } else if let Some((_, body)) = clauses.last_mut() {
            body.push(' ');
            body.push_str(word);
        }
    }
    for (clause, body) in clauses {
        for part in top_level_parts(&body) {
            match clause.as_str() {
                "SET" => {
                    let Some((name, value)) = part.split_once('=') else {
                        continue;
                    };
                    let name = resolve(name);
                    let value = value.trim();
                    // `if_not_exists(path, :value)`: the value only where there is none.
                    if let Some(args) = value
                        .strip_prefix("if_not_exists(")
                        .and_then(|a| a.strip_suffix(')'))
                    {
                        let operand = args.rsplit(',').next().unwrap_or("").trim();
                        if !item.contains_key(&name) {
                            item.insert(name, values[operand].clone());
                        }
                    } else {
                        item.insert(name, values[value].clone());
                    }
                }
                "REMOVE" => {
                    item.remove(&resolve(part));
                }
                "ADD" => {
                    let mut words = part.split_whitespace();
                    let (Some(name), Some(value)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let name = resolve(name);
                    let add = values[value]["N"]
                        .as_str()
                        .and_then(|n| n.parse::<f64>().ok())
                        .unwrap_or(0.0);
                    let current = item
                        .get(&name)
                        .and_then(|v| v["N"].as_str())
                        .and_then(|n| n.parse::<f64>().ok())
                        .unwrap_or(0.0);
                    item.insert(name, serde_json::json!({"N": format!("{}", current + add)}));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().cloned().unwrap_or_default()
    }

    fn schema() -> Schema {
        Schema {
            hash: "PK".into(),
            range: "SK".into(),
            indexes: vec![Index {
                name: "GSI1".into(),
                hash: "GSI1PK".into(),
                range: Some("id".into()),
                projection: Projection::All,
            }],
        }
    }

    #[test]
    fn an_item_an_index_projects_is_written_twice_and_a_key_move_is_a_delete_and_a_put() {
        let s = schema();
        let mut bill = Bill::default();
        let a = item(
            json!({"PK": {"S": "T#a"}, "SK": {"S": "x"}, "id": {"S": "1"}, "GSI1PK": {"S": "p"}}),
        );
        bill.write(&s, None, Some(&a), false);
        assert_eq!((bill.write_units, bill.index_write_units), (2.0, 1.0));
        let mut moved = a.clone();
        moved.insert("GSI1PK".into(), json!({"S": "q"}));
        bill.write(&s, Some(&a), Some(&moved), false);
        assert_eq!((bill.write_units, bill.index_write_units), (5.0, 3.0));
        assert_eq!(bill.partition_writes["GSI1 p"], 2.0);
        // A transaction doubles the table's write, not the index's.
        let mut plain = Bill::default();
        let b = item(json!({"PK": {"S": "T#a"}, "SK": {"S": "y"}}));
        plain.write(&s, None, Some(&b), true);
        assert_eq!(plain.write_units, 2.0);
    }

    #[test]
    fn sizes_round_up_per_kilobyte() {
        let big = item(json!({"PK": {"S": "x".repeat(1100)}}));
        let mut bill = Bill::default();
        bill.write(&schema(), None, Some(&big), false);
        assert_eq!(bill.write_units, 2.0);
    }

    #[test]
    fn updates_apply_set_remove_and_add() {
        let mut i = item(json!({"a": {"S": "1"}, "n": {"N": "2"}, "gone": {"S": "x"}}));
        apply_update(
            &mut i,
            "SET a = :v REMOVE #g ADD #n :one",
            &json!({"#g": "gone", "#n": "n"}),
            &json!({":v": {"S": "2"}, ":one": {"N": "3"}}),
        );
        assert_eq!(i["a"], json!({"S": "2"}));
        assert!(!i.contains_key("gone"));
        assert_eq!(i["n"], json!({"N": "5"}));
        // A webhook's health: if_not_exists keeps the clock that runs.
        let mut h = item(json!({"since": {"S": "t0"}}));
        let values = json!({":at": {"S": "t1"}});
        let expression =
            "SET last = :at, since = if_not_exists(since, :at), other = if_not_exists(other, :at)";
        apply_update(&mut h, expression, &json!({}), &values);
        assert_eq!(h["since"], json!({"S": "t0"}));
        assert_eq!(h["last"], json!({"S": "t1"}));
        assert_eq!(h["other"], json!({"S": "t1"}));
    }
}
