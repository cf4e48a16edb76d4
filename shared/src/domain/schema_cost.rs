//! A schema's worst-case validation cost, bounded before the schema is accepted (SPEC §6).
//!
//! A validator that tries every branch (boon does, with no memo) pays for each subschema
//! it reaches on a value as many times as paths lead there: 40 levels of `anyOf` over
//! distinct `$defs`, each naming the next twice, is 2^40 evaluations of one value. This
//! counts them without validating anything: on one value, how many subschema evaluations
//! the root leads to (through `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`,
//! `dependentSchemas`, `$ref` and `$dynamicRef`, each branch counted as taken); then, level
//! by level down the data, which subschemas a child value gets from its parent's (for each
//! property name, array position and key alike) and how many evaluations those lead to. A
//! schema is refused when one value may cost more than [`MAX_PER_VALUE`] evaluations, or
//! one path from the root down [`DEPTH`] levels more than [`MAX_PER_PATH`].
//!
//! The count is an upper bound (every branch taken, every pattern matching every name), so
//! a check of real data costs at most that much per value; each check also has a step
//! budget (the data's values times this bound) and a time budget (see `schema`), for what
//! this cannot see (a long array of costly items).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

/// The most subschema evaluations one value of an event may cost.
pub const MAX_PER_VALUE: u64 = 2_000;
/// The most along one path from the root value down.
pub const MAX_PER_PATH: u64 = 20_000;
/// How many levels of data are followed (deeper data repeats a recursive schema's cost).
pub const DEPTH: usize = 32;
/// The most distinct sets of subschemas explored before the schema is called too
/// intricate to bound.
const MAX_STATES: usize = 20_000;

/// Keywords whose subschemas apply to the same value.
const SAME_VALUE_ONE: &[&str] = &["not", "if", "then", "else"];
const SAME_VALUE_MANY: &[&str] = &["allOf", "anyOf", "oneOf"];

/// A subschema, by its JSON pointer in the document.
type Node = String;
/// How many times each subschema is evaluated on one value.
type Counts = BTreeMap<Node, u64>;

/// What the bound found: the worst value's evaluations, and the worst path's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub per_value: u64,
    pub per_path: u64,
}

struct Analysis<'a> {
    root: &'a Value,
    anchors: HashMap<String, Node>,
    /// Each subschema's evaluations on one value (itself and what it leads to there).
    expanded: HashMap<Node, Counts>,
    states: usize,
}

/// Bounds the cost of `schema`; an error says why it is refused.
pub fn bound(schema: &Value) -> Result<Cost, String> {
    let mut anchors = HashMap::new();
    collect_anchors(schema, String::new(), &mut anchors);
    let mut analysis = Analysis {
        root: schema,
        anchors,
        expanded: HashMap::new(),
        states: 0,
    };
    let start = analysis.expand(&String::new(), &mut Vec::new())?;
    let mut worst = Cost {
        per_value: 0,
        per_path: 0,
    };
    let mut memo = HashMap::new();
    let per_path = analysis.walk(start, 0, &mut worst, &mut memo)?;
    worst.per_path = per_path;
    Ok(worst)
}

fn total(counts: &Counts) -> u64 {
    counts.values().fold(0u64, |a, b| a.saturating_add(*b))
}

fn add_scaled(into: &mut Counts, from: &Counts, times: u64) {
    for (node, n) in from {
        let entry = into.entry(node.clone()).or_insert(0);
        *entry = entry.saturating_add(n.saturating_mul(times));
    }
}

fn collect_anchors(value: &Value, at: Node, anchors: &mut HashMap<String, Node>) {
    match value {
        Value::Object(map) => {
            for key in ["$anchor", "$dynamicAnchor"] {
                if let Some(Value::String(name)) = map.get(key) {
                    anchors.entry(name.clone()).or_insert_with(|| at.clone());
                }
            }
            for (k, v) in map {
                collect_anchors(v, format!("{at}/{}", escape(k)), anchors);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_anchors(v, format!("{at}/{i}"), anchors);
            }
        }
        _ => {}
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A URI fragment's `%XX` escapes decoded (anything malformed is kept as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Analysis<'_> {
    fn at(&self, node: &Node) -> Option<&Value> {
        self.root.pointer(node)
    }

    /// The node a `$ref` (or `$dynamicRef`) names: `#`, `#/json/pointer` or `#anchor`.
    fn resolve(&self, reference: &str) -> Result<Node, String> {
        let Some(fragment) = reference.strip_prefix('#') else {
            return Err(format!(
                "the reference {reference:?} cannot be followed to bound the schema's cost \
                 (use #, #/a/json/pointer or #anchor)"
            ));
        };
        if fragment.is_empty() || fragment.starts_with('/') {
            let pointer = percent_decode(fragment);
            return match self.root.pointer(&pointer) {
                Some(_) => Ok(pointer),
                None => Err(format!("the reference {reference:?} names nothing")),
            };
        }
        self.anchors
            .get(fragment)
            .cloned()
            .ok_or_else(|| format!("the reference {reference:?} names no anchor"))
    }

    /// The subschemas that apply to the same value as `node`.
    fn same_value(&self, node: &Node) -> Result<Vec<Node>, String> {
        let Some(Value::Object(map)) = self.at(node) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for key in SAME_VALUE_ONE {
            if map.contains_key(*key) {
                out.push(format!("{node}/{key}"));
            }
        }
        for key in SAME_VALUE_MANY {
            if let Some(Value::Array(items)) = map.get(*key) {
                out.extend((0..items.len()).map(|i| format!("{node}/{key}/{i}")));
            }
        }
        if let Some(Value::Object(deps)) = map.get("dependentSchemas") {
            out.extend(
                deps.keys()
                    .map(|k| format!("{node}/dependentSchemas/{}", escape(k))),
            );
        }
        for key in ["$ref", "$dynamicRef"] {
            if let Some(Value::String(reference)) = map.get(key) {
                out.push(self.resolve(reference)?);
            }
        }
        Ok(out)
    }

    /// Every evaluation on one value that `node` leads to, itself included.
    fn expand(&mut self, node: &Node, path: &mut Vec<Node>) -> Result<Counts, String> {
        if let Some(done) = self.expanded.get(node) {
            return Ok(done.clone());
        }
        if path.contains(node) {
            return Err(format!(
                "the schema at {} refers back to itself on the same value: its check would \
                 never end",
                if node.is_empty() { "#" } else { node }
            ));
        }
        path.push(node.clone());
        let mut counts = Counts::from([(node.clone(), 1)]);
        for child in self.same_value(node)? {
            let theirs = self.expand(&child, path)?;
            add_scaled(&mut counts, &theirs, 1);
            if total(&counts) > MAX_PER_VALUE {
                path.pop();
                return Err(too_costly(total(&counts)));
            }
        }
        path.pop();
        self.expanded.insert(node.clone(), counts.clone());
        Ok(counts)
    }

    /// The subschemas each kind of child value gets from the subschemas `level` holds:
    /// one set per property name any of them names, one for any other name, one per
    /// array position before the last `prefixItems`, one for the rest of an array, and one
    /// for a property name itself (`propertyNames`).
    fn children(&self, level: &Counts) -> Vec<Counts> {
        let objects: Vec<(&serde_json::Map<String, Value>, &Node, u64)> = level
            .iter()
            .filter_map(|(node, n)| match self.at(node) {
                Some(Value::Object(map)) => Some((map, node, *n)),
                _ => None,
            })
            .collect();
        let mut names: HashSet<&String> = HashSet::new();
        let mut prefix = 0;
        for (map, _, _) in &objects {
            if let Some(Value::Object(props)) = map.get("properties") {
                names.extend(props.keys());
            }
            if let Some(Value::Array(items)) = map.get("prefixItems") {
                prefix = prefix.max(items.len());
            }
        }
        let mut kinds: Vec<Counts> = Vec::new();
        let named = |name: Option<&String>| {
            let mut counts = Counts::new();
            for (map, node, n) in &objects {
                let mut add = |key: String| {
                    let entry = counts.entry(format!("{node}/{key}")).or_insert(0);
                    *entry = entry.saturating_add(*n);
                };
                let listed = name.is_some_and(|name| {
                    matches!(map.get("properties"), Some(Value::Object(p)) if p.contains_key(name))
                });
                if let Some(name) = name.filter(|_| listed) {
                    add(format!("properties/{}", escape(name)));
                }
                if let Some(Value::Object(patterns)) = map.get("patternProperties") {
                    // Any pattern may match any name.
                    for pattern in patterns.keys() {
                        add(format!("patternProperties/{}", escape(pattern)));
                    }
                }
                if !listed && map.contains_key("additionalProperties") {
                    add("additionalProperties".into());
                }
                if map.contains_key("unevaluatedProperties") {
                    add("unevaluatedProperties".into());
                }
            }
            counts
        };
        for name in &names {
            kinds.push(named(Some(name)));
        }
        kinds.push(named(None));
        let item = |index: Option<usize>| {
            let mut counts = Counts::new();
            for (map, node, n) in &objects {
                let mut add = |key: String| {
                    let entry = counts.entry(format!("{node}/{key}")).or_insert(0);
                    *entry = entry.saturating_add(*n);
                };
                let in_prefix = match (index, map.get("prefixItems")) {
                    (Some(i), Some(Value::Array(items))) if i < items.len() => {
                        add(format!("prefixItems/{i}"));
                        true
                    }
                    _ => false,
                };
                if !in_prefix && map.contains_key("items") {
                    add("items".into());
                }
                for key in ["contains", "unevaluatedItems"] {
                    if map.contains_key(key) {
                        add(key.into());
                    }
                }
            }
            counts
        };
        for i in 0..prefix {
            kinds.push(item(Some(i)));
        }
        kinds.push(item(None));
        let mut key_names = Counts::new();
        for (map, node, n) in &objects {
            if map.contains_key("propertyNames") {
                *key_names
                    .entry(format!("{node}/propertyNames"))
                    .or_insert(0) += n;
            }
        }
        kinds.push(key_names);
        kinds.retain(|k| !k.is_empty());
        kinds
    }

    /// The evaluations of the costliest path down from a value that `start` applies to,
    /// `depth` levels below the root; records the costliest single value in `worst`.
    fn walk(
        &mut self,
        start: Counts,
        depth: usize,
        worst: &mut Cost,
        memo: &mut HashMap<(Counts, usize), u64>,
    ) -> Result<u64, String> {
        let here = total(&start);
        if here > MAX_PER_VALUE {
            return Err(too_costly(here));
        }
        worst.per_value = worst.per_value.max(here);
        if depth + 1 >= DEPTH {
            return Ok(here);
        }
        let key = (start, depth);
        if let Some(known) = memo.get(&key) {
            return Ok(*known);
        }
        self.states += 1;
        if self.states > MAX_STATES {
            return Err(
                "the schema is too intricate to bound its validation cost (too many ways \
                 down the data)"
                    .into(),
            );
        }
        let mut deepest = 0u64;
        for kind in self.children(&key.0) {
            let mut level = Counts::new();
            for (node, n) in &kind {
                let theirs = self.expand(node, &mut Vec::new())?;
                add_scaled(&mut level, &theirs, *n);
            }
            let below = self.walk(level, depth + 1, worst, memo)?;
            deepest = deepest.max(below);
        }
        let path = here.saturating_add(deepest);
        if path > MAX_PER_PATH {
            return Err(format!(
                "checking one path of data against the schema could take {path} subschema \
                 evaluations (at most {MAX_PER_PATH})"
            ));
        }
        memo.insert(key, path);
        Ok(path)
    }
}

fn too_costly(n: u64) -> String {
    let n = if n == u64::MAX {
        "more than 18 quintillion".to_string()
    } else {
        n.to_string()
    };
    format!(
        "checking one value against the schema could take {n} subschema evaluations (at most \
         {MAX_PER_VALUE}): its branches (anyOf, oneOf, allOf, $ref...) multiply"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `levels` of anyOf over distinct $defs, each naming the next twice.
    fn exponential(levels: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..levels {
            let next = if i + 1 == levels {
                json!({"type": "object"})
            } else {
                json!({"anyOf": [{"$ref": format!("#/$defs/d{}", i + 1)}, {"$ref": format!("#/$defs/d{}", i + 1)}]})
            };
            defs.insert(format!("d{i}"), next);
        }
        json!({"$ref": "#/$defs/d0", "$defs": defs})
    }

    #[test]
    fn branches_that_multiply_are_refused() {
        let error = bound(&exponential(40)).unwrap_err();
        assert!(error.contains("multiply"), "{error}");
        // A few levels are fine.
        assert!(bound(&exponential(5)).is_ok());
    }

    #[test]
    fn ordinary_schemas_cost_little() {
        let order = json!({
            "type": "object",
            "required": ["amount", "items"],
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
                "customer": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"id": {"type": "string"}}}]}
            },
            "$defs": {"item": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}}
        });
        let cost = bound(&order).unwrap();
        assert!(cost.per_value < 10, "{cost:?}");
        assert!(bound(&json!({})).is_ok());
        assert!(bound(&json!(true)).is_ok());
    }

    #[test]
    fn recursive_schemas_are_bounded_by_the_depth_they_are_followed() {
        let tree = json!({
            "$defs": {"node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
            }}},
            "$ref": "#/$defs/node"
        });
        let cost = bound(&tree).unwrap();
        assert!(cost.per_path < 200, "{cost:?}");
    }

    #[test]
    fn a_reference_to_itself_on_the_same_value_is_refused() {
        let error = bound(&json!({"$ref": "#"})).unwrap_err();
        assert!(error.contains("never end"), "{error}");
        let error = bound(&json!({"anyOf": [{"$ref": "#/anyOf/0"}]})).unwrap_err();
        assert!(error.contains("never end"), "{error}");
    }

    #[test]
    fn branches_that_multiply_down_the_data_are_refused_too() {
        // Each level's two branches name the same child schema: 2^depth at depth.
        let schema = json!({
            "$defs": {"level": {"anyOf": [
                {"properties": {"next": {"$ref": "#/$defs/level"}}},
                {"properties": {"next": {"$ref": "#/$defs/level"}}}
            ]}},
            "$ref": "#/$defs/level"
        });
        assert!(bound(&schema).is_err());
    }

    #[test]
    fn anchors_and_escaped_pointers_are_followed() {
        let schema = json!({
            "$defs": {"a/b": {"$anchor": "thing", "type": "string"}},
            "properties": {"x": {"$ref": "#thing"}, "y": {"$ref": "#/$defs/a~1b"}}
        });
        assert!(bound(&schema).is_ok());
        assert!(bound(&json!({"$ref": "#/nowhere"})).is_err());
        assert!(bound(&json!({"$ref": "other.json"})).is_err());
    }
}
