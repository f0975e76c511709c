//! Validation of a filter spec against a table: every column known and
//! selectable, every operator applicable to its column's type, every value
//! parsed as that type. Produces the tree to evaluate and the canonical spec
//! for `herald.filter_predicate` (values rewritten to text Postgres reads
//! back to the same value).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::FilterError;
use super::eval::{Check, Cmp, Domain, Node, Test};
use super::like::Pattern;
use super::number::Num;
use super::time::{TimeKind, parse_time, time_text, year_of};
use super::value::{Scalar, float_text, parse_float, parse_uuid, uuid_text};
use crate::db::catalog::{Column, Table, TypeKind};

/// Deepest nesting of `_and`/`_or`/`_not` accepted.
pub(super) const MAX_DEPTH: usize = 32;
/// Largest exponent and number of digits accepted in a number.
const MAX_DIGITS: i64 = 1000;
/// Largest UTC offset Postgres accepts, in seconds (15:59:59).
const MAX_OFFSET: i64 = 16 * 3600 - 1;

/// Validates `spec`; returns the tree and the canonical spec.
pub(super) fn parse(
    spec: &Value,
    table: &Table,
    selectable: &dyn Fn(&str) -> bool,
) -> Result<(Node, Value), FilterError> {
    Parser { table, selectable }.object(spec, 1)
}

/// The domain of a catalog column type.
pub(super) fn domain_of(kind: &TypeKind, sql_type: &str) -> Domain {
    match kind {
        TypeKind::Int | TypeKind::BigInt | TypeKind::Numeric => Domain::Number,
        TypeKind::Float => Domain::Float {
            single: sql_type == "real",
        },
        TypeKind::Bool => Domain::Bool,
        TypeKind::Text => Domain::Text {
            bpchar: sql_type == "bpchar"
                || sql_type == "character"
                || sql_type.starts_with("character("),
        },
        TypeKind::Uuid => Domain::Uuid,
        TypeKind::Timestamptz => Domain::Time(TimeKind::Timestamptz),
        TypeKind::Timestamp => Domain::Time(TimeKind::Timestamp),
        TypeKind::Date => Domain::Time(TimeKind::Date),
        TypeKind::Json => Domain::Json,
        TypeKind::Enum { labels, .. } => Domain::Enum(Arc::from(labels.as_slice())),
        TypeKind::Array(element) => Domain::Array(Box::new(domain_of(
            element,
            sql_type.strip_suffix("[]").unwrap_or(sql_type),
        ))),
        TypeKind::Other(_) => Domain::Other,
    }
}

/// The operators a domain takes, for error messages; `None` when it takes them all.
fn operators_of(domain: &Domain) -> Option<&'static str> {
    match domain {
        Domain::Text { .. } => None,
        Domain::Json | Domain::Other => Some("eq, neq, in and isNull"),
        Domain::Array(_) => Some("eq, neq and isNull"),
        _ => Some("eq, neq, lt, lte, gt, gte, in and isNull"),
    }
}

struct Parser<'a> {
    table: &'a Table,
    selectable: &'a dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    /// An object of ANDed keys.
    fn object(&self, spec: &Value, depth: usize) -> Result<(Node, Value), FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::TooDeep(MAX_DEPTH));
        }
        let Value::Object(keys) = spec else {
            return Err(FilterError::NotAnObject);
        };
        let mut nodes = Vec::with_capacity(keys.len());
        let mut canonical = Map::new();
        for (key, value) in keys {
            let (node, canon) = match key.as_str() {
                "_and" | "_or" => {
                    let Value::Array(items) = value else {
                        return Err(FilterError::NeedsList(key.clone()));
                    };
                    let mut children = Vec::with_capacity(items.len());
                    let mut canons = Vec::with_capacity(items.len());
                    for item in items {
                        let (n, c) = self.object(item, depth + 1)?;
                        children.push(n);
                        canons.push(c);
                    }
                    let node = if key == "_and" {
                        Node::All(children)
                    } else {
                        Node::Any(children)
                    };
                    (node, Value::Array(canons))
                }
                "_not" => {
                    let (n, c) = self.object(value, depth + 1)?;
                    (Node::Not(Box::new(n)), c)
                }
                column => self.column(column, value)?,
            };
            nodes.push(node);
            canonical.insert(key.clone(), canon);
        }
        Ok((all(nodes), Value::Object(canonical)))
    }

    /// `column: {op: value, ...}`, the operators ANDed.
    fn column(&self, name: &str, ops: &Value) -> Result<(Node, Value), FilterError> {
        // A column the caller may not select is reported exactly like one
        // that does not exist.
        let column = self
            .table
            .column(name)
            .filter(|_| (self.selectable)(name))
            .ok_or_else(|| FilterError::UnknownColumn {
                column: name.to_owned(),
                table: self.table.qualified.clone(),
            })?;
        let Value::Object(ops) = ops else {
            return Err(FilterError::NeedsOperators {
                column: name.to_owned(),
            });
        };
        let domain = domain_of(&column.kind, &column.sql_type);
        let mut tests = Vec::with_capacity(ops.len());
        let mut canonical = Map::new();
        for (op, value) in ops {
            let (check, canon) = self.operator(column, &domain, op, value)?;
            tests.push(Node::Test(Test {
                column: column.name.clone(),
                domain: domain.clone(),
                check,
            }));
            canonical.insert(op.clone(), canon);
        }
        Ok((all(tests), Value::Object(canonical)))
    }

    fn operator(
        &self,
        column: &Column,
        domain: &Domain,
        op: &str,
        value: &Value,
    ) -> Result<(Check, Value), FilterError> {
        let unsupported = || FilterError::Unsupported {
            op: op.to_owned(),
            column: column.name.clone(),
            sql_type: column.sql_type.clone(),
            takes: operators_of(domain).unwrap_or_default(),
        };
        let null = || FilterError::NullValue {
            op: op.to_owned(),
            column: column.name.clone(),
        };
        let cmp = match op {
            "eq" => Cmp::Eq,
            "neq" => Cmp::Neq,
            "lt" => Cmp::Lt,
            "lte" => Cmp::Lte,
            "gt" => Cmp::Gt,
            "gte" => Cmp::Gte,
            "isNull" => {
                let want = value
                    .as_bool()
                    .ok_or_else(|| FilterError::IsNullNeedsBool {
                        column: column.name.clone(),
                    })?;
                return Ok((Check::IsNull(want), Value::Bool(want)));
            }
            "in" => {
                if matches!(domain, Domain::Array(_)) {
                    return Err(unsupported());
                }
                let Value::Array(items) = value else {
                    return Err(FilterError::InNeedsList {
                        column: column.name.clone(),
                    });
                };
                let mut list = Vec::with_capacity(items.len());
                let mut canons = Vec::with_capacity(items.len());
                for item in items {
                    if item.is_null() {
                        return Err(null());
                    }
                    let (s, c) = scalar(column, domain, item)?;
                    list.push(s);
                    canons.push(c);
                }
                return Ok((Check::In(list), Value::Array(canons)));
            }
            "like" | "ilike" => {
                if !matches!(domain, Domain::Text { .. }) {
                    return Err(unsupported());
                }
                let Value::String(pattern) = value else {
                    return Err(if value.is_null() {
                        null()
                    } else {
                        bad_value(column, format!("expected a pattern string, got {value}"))
                    });
                };
                let compiled = Pattern::new(pattern, op == "ilike").map_err(|_| {
                    bad_value(
                        column,
                        format!(
                            "pattern {pattern:?} ends with an escape character \
                             (write \\\\ for a literal backslash)"
                        ),
                    )
                })?;
                return Ok((Check::Like(compiled), value.clone()));
            }
            _ => {
                return Err(FilterError::UnknownOperator {
                    op: op.to_owned(),
                    column: column.name.clone(),
                });
            }
        };
        let ordered = !matches!(domain, Domain::Json | Domain::Array(_) | Domain::Other);
        if !ordered && !matches!(cmp, Cmp::Eq | Cmp::Neq) {
            return Err(unsupported());
        }
        if value.is_null() {
            return Err(null());
        }
        let (s, c) = scalar(column, domain, value)?;
        Ok((Check::Cmp(cmp, s), c))
    }
}

/// AND of `nodes`, without a wrapper for a single one.
fn all(mut nodes: Vec<Node>) -> Node {
    if nodes.len() == 1 {
        nodes.pop().expect("one node")
    } else {
        Node::All(nodes)
    }
}

fn bad_value(column: &Column, problem: String) -> FilterError {
    FilterError::BadValue {
        column: column.name.clone(),
        sql_type: column.sql_type.clone(),
        problem,
    }
}

/// A non-null filter value as `domain`, and its canonical JSON.
fn scalar(column: &Column, domain: &Domain, v: &Value) -> Result<(Scalar, Value), FilterError> {
    let bad = |what: &str| bad_value(column, format!("expected {what}, got {v}"));
    let text = |what: &str| v.as_str().ok_or_else(|| bad(what));
    Ok(match domain {
        Domain::Number => {
            let what = "a number (or a string holding one)";
            let n = match v {
                Value::Number(_) | Value::String(_) => Num::read(v).ok_or_else(|| bad(what))?,
                _ => return Err(bad(what)),
            };
            if let Num::Finite(d) = &n {
                if d.precision() as i64 > MAX_DIGITS || d.exponent().abs() > MAX_DIGITS {
                    return Err(bad_value(column, format!("number {v} is out of range")));
                }
            }
            let canon = Value::String(n.to_string());
            (Scalar::Num(n), canon)
        }
        Domain::Float { single } => {
            let what = "a number (or a string holding one)";
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(bad(what)),
            };
            let x = parse_float(&text, *single).ok_or_else(|| bad(what))?;
            if x.is_infinite() && matches!(Num::parse(&text), Some(Num::Finite(_))) {
                return Err(bad_value(column, format!("number {v} is out of range")));
            }
            (Scalar::Float(x), Value::String(float_text(x, *single)))
        }
        Domain::Bool => {
            let b = v.as_bool().ok_or_else(|| bad("true or false"))?;
            (Scalar::Bool(b), Value::Bool(b))
        }
        Domain::Text { bpchar } => {
            let s = text("a string")?;
            // character(n) compares without trailing spaces, on both sides.
            let s = if *bpchar { s.trim_end_matches(' ') } else { s };
            (Scalar::Text(s.to_owned()), Value::String(s.to_owned()))
        }
        Domain::Uuid => {
            let what = "a uuid like \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"";
            let u = parse_uuid(text(what)?).ok_or_else(|| bad(what))?;
            (Scalar::Uuid(u), Value::String(uuid_text(u)))
        }
        Domain::Time(kind) => {
            let what = match kind {
                TimeKind::Timestamptz => {
                    "a timestamp with a UTC offset like \"2026-12-01T20:23:47.123456+00:00\" \
                     (years 1 to 9999, at most microseconds), infinity or -infinity"
                }
                TimeKind::Timestamp => {
                    "a timestamp without offset like \"2026-12-01T20:23:47.123456\" \
                     (years 1 to 9999, at most microseconds), infinity or -infinity"
                }
                TimeKind::Date => {
                    "a date like \"2026-12-01\" (years 1 to 9999), infinity or -infinity"
                }
            };
            let parsed = parse_time(text(what)?, *kind).ok_or_else(|| bad(what))?;
            let finite = parsed.value != i64::MIN && parsed.value != i64::MAX;
            let in_range = |year: i64| (1..=9999).contains(&year);
            if finite
                && (!in_range(parsed.year)
                    || !in_range(year_of(parsed.value, *kind))
                    || parsed.offset.abs() > MAX_OFFSET)
            {
                return Err(bad(what));
            }
            (
                Scalar::Time(parsed.value),
                Value::String(time_text(parsed.value, *kind)),
            )
        }
        Domain::Enum(labels) => {
            let s = text("an enum label")?;
            let at = labels.iter().position(|l| l == s).ok_or_else(|| {
                bad_value(
                    column,
                    format!(
                        "{v} is not a label of {} (expected one of {})",
                        column.sql_type,
                        labels.join(", ")
                    ),
                )
            })?;
            (Scalar::Enum(at), v.clone())
        }
        Domain::Json => (Scalar::Json(v.clone()), v.clone()),
        Domain::Array(element) => {
            let items = v.as_array().ok_or_else(|| bad("a list"))?;
            let mut values = Vec::with_capacity(items.len());
            let mut canons = Vec::with_capacity(items.len());
            for item in items {
                if item.is_null() {
                    values.push(None);
                    canons.push(Value::Null);
                } else {
                    let (s, c) = scalar(column, element, item)?;
                    values.push(Some(s));
                    canons.push(c);
                }
            }
            (Scalar::Array(values), Value::Array(canons))
        }
        Domain::Other => {
            let s = text("the value's text form as a string")?;
            (Scalar::Text(s.to_owned()), v.clone())
        }
    })
}
