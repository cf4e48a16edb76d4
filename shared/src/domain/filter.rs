//! Content filters (SPEC §3, a webhook's `filter`): a JSON object the delivery payload
//! `{"id", "type", "created", "data"}` must match for the webhook to get the event.
//!
//! A filter object matches when every one of its keys matches. A key naming a field
//! descends into it: a scalar there matches an equal value, an object is a filter object
//! for the field's value. A key starting with `$` is an operator on the value where it
//! stands: `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte` (numbers and strings), `$in`, `$nin`
//! (arrays of scalars), `$exists` (bool), `$startsWith` (string), and the combinators
//! `$and`, `$or` (non-empty arrays of filter objects) and `$not` (a filter object). As in
//! MongoDB, a missing field matches `$ne`, `$nin` and `$exists: false`, and nothing else.
//!
//! A filter is parsed once, when it is written and when the webhook is read, into
//! conditions that evaluate without allocating. Its size (4 KiB) and depth (16 levels)
//! are bounded, and each condition is evaluated at most once per event, so a filter costs
//! the fan-out at most a few microseconds whatever it holds or the event carries.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::invalid::{Checked, Invalid, Rule};

/// The largest filter, as compact JSON.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The deepest nesting of filter objects and operators.
pub const MAX_FILTER_DEPTH: usize = 16;

/// A parsed filter, with the JSON it was parsed from (what the API shows and the table
/// keeps).
#[derive(Clone, Debug)]
pub struct Filter {
    source: Value,
    conditions: Vec<Condition>,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// One condition on the value where it stands.
#[derive(Clone, Debug)]
enum Condition {
    /// The field of that name matches every condition.
    Field(String, Vec<Condition>),
    Eq(Value),
    Ne(Value),
    Compare(Comparison, Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Exists(bool),
    StartsWith(String),
    And(Vec<Vec<Condition>>),
    Or(Vec<Vec<Condition>>),
    Not(Vec<Condition>),
}

#[derive(Clone, Copy, Debug)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }
}

impl Filter {
    /// Parses and checks a filter: 422 `INVALID_FILTER` naming the path at fault
    /// (`filter.data.amount.$gte`).
    pub fn parse(value: Value) -> Checked<Filter> {
        let Value::Object(object) = &value else {
            return Err(invalid("filter", "filter must be a JSON object"));
        };
        if compact_size(&value) > MAX_FILTER_BYTES {
            return Err(invalid(
                "filter",
                "filter may be at most 4 KiB (4,096 bytes as JSON)",
            ));
        }
        let conditions = parse_object(object, "filter", 1)?;
        Ok(Filter {
            source: value,
            conditions,
        })
    }

    /// The filter as the client wrote it.
    pub fn as_json(&self) -> &Value {
        &self.source
    }

    /// Whether an event's delivery payload matches: `id`, `type` and `created` as they are
    /// sent, and its `data`.
    pub fn matches(
        &self,
        id: &str,
        event_type: &str,
        created: &str,
        data: &Map<String, Value>,
    ) -> bool {
        let root = Payload {
            id,
            event_type,
            created,
            data,
        };
        all(&self.conditions, At::Payload(&root))
    }
}

fn invalid(path: &str, message: impl Into<String>) -> Invalid {
    Invalid::new(Rule::Filter, path, message)
}

fn compact_size(value: &Value) -> usize {
    serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn parse_object(object: &Map<String, Value>, path: &str, depth: usize) -> Checked<Vec<Condition>> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(
            path,
            format!("a filter may nest at most {MAX_FILTER_DEPTH} levels deep"),
        ));
    }
    object
        .iter()
        .map(|(key, value)| {
            let path = format!("{path}.{key}");
            if key.starts_with('$') {
                parse_operator(key, value, &path, depth)
            } else {
                parse_field(key, value, &path, depth)
            }
        })
        .collect()
}

fn parse_field(key: &str, value: &Value, path: &str, depth: usize) -> Checked<Condition> {
    let conditions = match value {
        Value::Object(object) => parse_object(object, path, depth + 1)?,
        Value::Array(_) => {
            return Err(invalid(
                path,
                "a field matches a scalar, a filter object, or an array only through $in or $nin",
            ));
        }
        scalar => vec![Condition::Eq(scalar.clone())],
    };
    Ok(Condition::Field(key.to_string(), conditions))
}

fn parse_operator(operator: &str, value: &Value, path: &str, depth: usize) -> Checked<Condition> {
    let scalar = || -> Checked<Value> {
        if is_scalar(value) {
            Ok(value.clone())
        } else {
            Err(invalid(
                path,
                format!("{operator} takes a string, number, boolean or null"),
            ))
        }
    };
    let ordered = || -> Checked<Value> {
        if value.is_number() || value.is_string() {
            Ok(value.clone())
        } else {
            Err(invalid(
                path,
                format!("{operator} takes a number or a string"),
            ))
        }
    };
    let scalars = || -> Checked<Vec<Value>> {
        match value {
            Value::Array(items) if items.iter().all(is_scalar) => Ok(items.clone()),
            _ => Err(invalid(
                path,
                format!("{operator} takes an array of strings, numbers, booleans or nulls"),
            )),
        }
    };
    let filters = || -> Checked<Vec<Vec<Condition>>> {
        let Value::Array(items) = value else {
            return Err(invalid(
                path,
                format!("{operator} takes a non-empty array of filter objects"),
            ));
        };
        if items.is_empty() {
            return Err(invalid(
                path,
                format!("{operator} takes a non-empty array of filter objects"),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{path}[{i}]");
                match item {
                    Value::Object(object) => parse_object(object, &path, depth + 1),
                    _ => Err(invalid(&path, format!("{operator} takes filter objects"))),
                }
            })
            .collect()
    };
    Ok(match operator {
        "$eq" => Condition::Eq(scalar()?),
        "$ne" => Condition::Ne(scalar()?),
        "$gt" => Condition::Compare(Comparison::Gt, ordered()?),
        "$gte" => Condition::Compare(Comparison::Gte, ordered()?),
        "$lt" => Condition::Compare(Comparison::Lt, ordered()?),
        "$lte" => Condition::Compare(Comparison::Lte, ordered()?),
        "$in" => Condition::In(scalars()?),
        "$nin" => Condition::NotIn(scalars()?),
        "$exists" => match value {
            Value::Bool(b) => Condition::Exists(*b),
            _ => return Err(invalid(path, "$exists takes true or false")),
        },
        "$startsWith" => match value {
            Value::String(prefix) => Condition::StartsWith(prefix.clone()),
            _ => return Err(invalid(path, "$startsWith takes a string")),
        },
        "$and" => Condition::And(filters()?),
        "$or" => Condition::Or(filters()?),
        "$not" => match value {
            Value::Object(object) => Condition::Not(parse_object(object, path, depth + 1)?),
            _ => return Err(invalid(path, "$not takes a filter object")),
        },
        _ => {
            return Err(invalid(
                path,
                format!(
                    "unknown operator {operator}: use $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, \
                     $exists, $startsWith, $and, $or or $not"
                ),
            ));
        }
    })
}

/// The delivery payload, read in place: no copy of the event's data.
struct Payload<'a> {
    id: &'a str,
    event_type: &'a str,
    created: &'a str,
    data: &'a Map<String, Value>,
}

/// Where a condition stands.
#[derive(Clone, Copy)]
enum At<'a> {
    Missing,
    Value(&'a Value),
    Text(&'a str),
    Object(&'a Map<String, Value>),
    Payload(&'a Payload<'a>),
}

impl<'a> At<'a> {
    fn field(self, name: &str) -> At<'a> {
        let found = match self {
            At::Value(Value::Object(object)) | At::Object(object) => {
                object.get(name).map(At::Value)
            }
            At::Payload(p) => match name {
                "id" => Some(At::Text(p.id)),
                "type" => Some(At::Text(p.event_type)),
                "created" => Some(At::Text(p.created)),
                "data" => Some(At::Object(p.data)),
                _ => None,
            },
            _ => None,
        };
        found.unwrap_or(At::Missing)
    }

    fn exists(self) -> bool {
        !matches!(self, At::Missing)
    }

    fn text(self) -> Option<&'a str> {
        match self {
            At::Text(text) => Some(text),
            At::Value(Value::String(text)) => Some(text.as_str()),
            _ => None,
        }
    }

    fn number(self) -> Option<f64> {
        match self {
            At::Value(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }

    fn equals(self, operand: &Value) -> bool {
        match operand {
            Value::String(s) => self.text() == Some(s.as_str()),
            Value::Number(n) => self.number().is_some() && self.number() == n.as_f64(),
            Value::Bool(b) => matches!(self, At::Value(Value::Bool(v)) if v == b),
            Value::Null => matches!(self, At::Value(Value::Null)),
            Value::Array(_) | Value::Object(_) => false,
        }
    }

    fn compare(self, operand: &Value) -> Option<Ordering> {
        match operand {
            Value::Number(n) => self.number()?.partial_cmp(&n.as_f64()?),
            Value::String(s) => Some(self.text()?.cmp(s.as_str())),
            _ => None,
        }
    }
}

fn all(conditions: &[Condition], at: At<'_>) -> bool {
    conditions.iter().all(|c| holds(c, at))
}

fn holds(condition: &Condition, at: At<'_>) -> bool {
    match condition {
        Condition::Field(name, conditions) => all(conditions, at.field(name)),
        Condition::Eq(operand) => at.equals(operand),
        Condition::Ne(operand) => !at.equals(operand),
        Condition::Compare(comparison, operand) => {
            at.compare(operand).is_some_and(|o| comparison.holds(o))
        }
        Condition::In(operands) => operands.iter().any(|o| at.equals(o)),
        Condition::NotIn(operands) => !operands.iter().any(|o| at.equals(o)),
        Condition::Exists(wanted) => at.exists() == *wanted,
        Condition::StartsWith(prefix) => at.text().is_some_and(|t| t.starts_with(prefix.as_str())),
        Condition::And(filters) => filters.iter().all(|f| all(f, at)),
        Condition::Or(filters) => filters.iter().any(|f| all(f, at)),
        Condition::Not(conditions) => !all(conditions, at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        Filter::parse(value).unwrap()
    }

    fn check(f: &Filter, data: Value) -> bool {
        let data = data.as_object().cloned().unwrap();
        f.matches(
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "order.paid",
            "2026-01-02T03:04:05.678Z",
            &data,
        )
    }

    fn refused(value: Value) -> Invalid {
        Filter::parse(value).unwrap_err()
    }

    #[test]
    fn scalars_match_equal_values_and_objects_descend() {
        let f = filter(
            json!({"type": "order.paid", "data": {"currency": "EUR", "lines": {"count": 2}}}),
        );
        assert!(check(
            &f,
            json!({"currency": "EUR", "lines": {"count": 2.0}})
        ));
        assert!(!check(
            &f,
            json!({"currency": "USD", "lines": {"count": 2}})
        ));
        assert!(
            !check(&f, json!({"currency": "EUR"})),
            "a missing field is no match"
        );
        assert!(!check(&f, json!({"currency": "EUR", "lines": 2})));
        let other_type = filter(json!({"type": "order.refunded"}));
        assert!(!check(&other_type, json!({})));
        let by_id =
            filter(json!({"id": {"$startsWith": "evt_"}, "created": {"$gte": "2026-01-01"}}));
        assert!(check(&by_id, json!({})));
        assert!(
            check(&filter(json!({})), json!({})),
            "an empty filter matches everything"
        );
    }

    #[test]
    fn comparisons_take_numbers_and_strings_of_the_same_kind() {
        let f = filter(json!({"data": {"amount": {"$gte": 100, "$lt": 1000}}}));
        assert!(check(&f, json!({"amount": 100})));
        assert!(check(&f, json!({"amount": 999.5})));
        assert!(!check(&f, json!({"amount": 1000})));
        assert!(!check(&f, json!({"amount": 99})));
        assert!(
            !check(&f, json!({"amount": "500"})),
            "a string is not a number"
        );
        assert!(!check(&f, json!({})));
        let s = filter(json!({"data": {"name": {"$gt": "m", "$lte": "z"}}}));
        assert!(check(&s, json!({"name": "paul"})));
        assert!(!check(&s, json!({"name": "anna"})));
        assert!(!check(&s, json!({"name": 5})));
    }

    #[test]
    fn eq_ne_in_nin_and_exists_treat_a_missing_field_as_mongodb_does() {
        let ne = filter(json!({"data": {"status": {"$ne": "test"}}}));
        assert!(check(&ne, json!({"status": "live"})));
        assert!(check(&ne, json!({})), "missing is not equal");
        assert!(!check(&ne, json!({"status": "test"})));
        let within = filter(json!({"data": {"region": {"$in": ["eu", "us", null]}}}));
        assert!(check(&within, json!({"region": "eu"})));
        assert!(check(&within, json!({"region": null})));
        assert!(!check(&within, json!({"region": "ap"})));
        assert!(!check(&within, json!({})));
        let nin = filter(json!({"data": {"region": {"$nin": ["eu"]}}}));
        assert!(check(&nin, json!({"region": "us"})));
        assert!(check(&nin, json!({})));
        assert!(!check(&nin, json!({"region": "eu"})));
        let exists = filter(json!({"data": {"coupon": {"$exists": true}}}));
        assert!(check(&exists, json!({"coupon": null})));
        assert!(!check(&exists, json!({})));
        let absent = filter(json!({"data": {"coupon": {"$exists": false}}}));
        assert!(check(&absent, json!({})));
        let flag = filter(json!({"data": {"live": true, "note": null}}));
        assert!(check(&flag, json!({"live": true, "note": null})));
        assert!(!check(&flag, json!({"live": "true", "note": null})));
    }

    #[test]
    fn combinators_combine() {
        let f = filter(json!({"$or": [
            {"data": {"amount": {"$gte": 1000}}},
            {"$and": [{"data": {"vip": true}}, {"$not": {"data": {"country": "FR"}}}]}
        ]}));
        assert!(check(&f, json!({"amount": 5000})));
        assert!(check(
            &f,
            json!({"amount": 5, "vip": true, "country": "DE"})
        ));
        assert!(!check(
            &f,
            json!({"amount": 5, "vip": true, "country": "FR"})
        ));
        assert!(!check(&f, json!({"amount": 5})));
        let inner = filter(json!({"data": {"amount": {"$not": {"$lt": 10}}}}));
        assert!(check(&inner, json!({"amount": 10})));
        assert!(check(&inner, json!({})));
    }

    #[test]
    fn anything_else_is_refused_naming_its_path() {
        for (value, path) in [
            (json!(["a"]), "filter"),
            (json!("x"), "filter"),
            (
                json!({"data": {"amount": {"$gte": true}}}),
                "filter.data.amount.$gte",
            ),
            (
                json!({"data": {"amount": {"$regex": "a"}}}),
                "filter.data.amount.$regex",
            ),
            (json!({"data": {"tags": ["a"]}}), "filter.data.tags"),
            (json!({"data": {"x": {"$in": "a"}}}), "filter.data.x.$in"),
            (
                json!({"data": {"x": {"$in": [{"a": 1}]}}}),
                "filter.data.x.$in",
            ),
            (
                json!({"data": {"x": {"$eq": {"a": 1}}}}),
                "filter.data.x.$eq",
            ),
            (
                json!({"data": {"x": {"$exists": 1}}}),
                "filter.data.x.$exists",
            ),
            (
                json!({"data": {"x": {"$startsWith": 1}}}),
                "filter.data.x.$startsWith",
            ),
            (json!({"$or": []}), "filter.$or"),
            (json!({"$and": [{"data": {}}, 3]}), "filter.$and[1]"),
            (
                json!({"$and": [{"data": {"$foo": 1}}]}),
                "filter.$and[0].data.$foo",
            ),
            (json!({"$not": [1]}), "filter.$not"),
        ] {
            let e = refused(value.clone());
            assert_eq!(
                (e.rule, e.field.as_deref()),
                (Rule::Filter, Some(path)),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let big = json!({"data": {"x": {"$in": vec!["a".repeat(100); 41]}}});
        let e = refused(big);
        assert_eq!(e.field.as_deref(), Some("filter"));
        assert!(e.message.contains("4 KiB"));
        let mut deep = json!({"$exists": true});
        for _ in 0..MAX_FILTER_DEPTH {
            deep = json!({"a": deep});
        }
        assert!(refused(json!({"data": deep})).message.contains("16 levels"));
        let mut ok = json!(1);
        for _ in 0..MAX_FILTER_DEPTH - 1 {
            ok = json!({"a": ok});
        }
        Filter::parse(ok).unwrap();
    }

    /// Any JSON value, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-c$]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[$a-c]{0,2}[a-z]{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever a client sends parses or is refused with a path under `filter`; what
        /// parses evaluates against any data without panicking, and `$not` inverts it.
        #[test]
        fn any_input_parses_or_is_refused_and_evaluation_is_total(
            f in json_value(),
            data in prop::collection::btree_map("[a-c]{1,2}", json_value(), 0..4),
        ) {
            let data: Map<String, Value> = data.into_iter().collect();
            match Filter::parse(f.clone()) {
                Ok(parsed) => {
                    let matched = parsed.matches("evt_x", "a.b", "2026-01-01T00:00:00.000Z", &data);
                    let negated = Filter::parse(json!({"$not": f})).unwrap();
                    prop_assert_eq!(
                        negated.matches("evt_x", "a.b", "2026-01-01T00:00:00.000Z", &data),
                        !matched
                    );
                }
                Err(e) => {
                    prop_assert_eq!(e.rule, Rule::Filter);
                    prop_assert!(e.field.unwrap().starts_with("filter"));
                }
            }
        }
    }
}
