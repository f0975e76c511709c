//! Row filters of `changes(filter: ...)`: `{column: {op: value}}`, ANDed,
//! validated against the table's columns before anything reaches SQL.

use std::cmp::Ordering;

use serde_json::Value;

/// A validated filter.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    terms: Vec<Term>,
    spec: Value,
}

#[derive(Clone, Debug)]
struct Term {
    column: String,
    cmp: Cmp,
    value: Value,
}

#[derive(Clone, Copy, Debug)]
enum Cmp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

/// Why a filter was refused; the message is shown to the client.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// The filter is not `{column: {op: value}}`.
    #[error("filter must be an object of the form {{column: {{op: value}}}}")]
    Shape,
    /// No such column in the table.
    #[error("unknown column {column:?} in filter for table {table}")]
    UnknownColumn {
        /// The column named.
        column: String,
        /// The table.
        table: String,
    },
    /// Not one of eq, neq, lt, lte, gt, gte, in.
    #[error("unknown filter operator {0:?} (expected eq, neq, lt, lte, gt, gte or in)")]
    UnknownOperator(String),
    /// `in` needs a list.
    #[error("filter operator \"in\" needs a list")]
    InNeedsList,
}

impl Filter {
    /// Parses and validates `spec` against the columns of `table` the caller may select.
    pub fn parse(
        spec: &Value,
        table: &crate::db::catalog::Table,
        selectable: &dyn Fn(&str) -> bool,
    ) -> Result<Filter, FilterError> {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| selectable(c))
            .collect();
        let mut filter = Self::parse_old(spec, &table.qualified, &columns)?;
        filter.spec = spec.clone();
        Ok(filter)
    }

    /// The validated spec.
    pub fn spec(&self) -> &Value {
        &self.spec
    }

    fn parse_old(spec: &Value, table: &str, columns: &[String]) -> Result<Filter, FilterError> {
        let Value::Object(by_column) = spec else {
            return Err(FilterError::Shape);
        };
        let mut terms = Vec::new();
        for (column, ops) in by_column {
            if !columns.iter().any(|c| c == column) {
                return Err(FilterError::UnknownColumn {
                    column: column.clone(),
                    table: table.to_owned(),
                });
            }
            let Value::Object(ops) = ops else {
                return Err(FilterError::Shape);
            };
            for (op, value) in ops {
                let cmp = match op.as_str() {
                    "eq" => Cmp::Eq,
                    "neq" => Cmp::Neq,
                    "lt" => Cmp::Lt,
                    "lte" => Cmp::Lte,
                    "gt" => Cmp::Gt,
                    "gte" => Cmp::Gte,
                    "in" => Cmp::In,
                    other => return Err(FilterError::UnknownOperator(other.to_owned())),
                };
                if matches!(cmp, Cmp::In) && !value.is_array() {
                    return Err(FilterError::InNeedsList);
                }
                terms.push(Term {
                    column: column.clone(),
                    cmp,
                    value: value.clone(),
                });
            }
        }
        Ok(Filter {
            terms,
            spec: Value::Object(Default::default()),
        })
    }

    /// A filter on one column's equality, used by `notificationCreated`.
    pub fn column_eq(column: &str, value: Value) -> Filter {
        Filter {
            terms: vec![Term {
                column: column.to_owned(),
                cmp: Cmp::Eq,
                value,
            }],
            spec: Value::Null,
        }
    }

    /// Whether the row image matches every term.
    pub fn matches(&self, row: &Value) -> bool {
        self.terms.iter().all(|t| {
            let actual = row.get(&t.column).unwrap_or(&Value::Null);
            match t.cmp {
                Cmp::Eq => json_eq(actual, &t.value),
                Cmp::Neq => !json_eq(actual, &t.value),
                Cmp::In => t
                    .value
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| json_eq(actual, v))),
                Cmp::Lt => compare(actual, &t.value) == Some(Ordering::Less),
                Cmp::Lte => matches!(
                    compare(actual, &t.value),
                    Some(Ordering::Less | Ordering::Equal)
                ),
                Cmp::Gt => compare(actual, &t.value) == Some(Ordering::Greater),
                Cmp::Gte => matches!(
                    compare(actual, &t.value),
                    Some(Ordering::Greater | Ordering::Equal)
                ),
            }
        })
    }
}

/// Equality that treats numbers by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Order of numbers by value, strings lexically (ISO timestamps, uuids);
/// anything else (null included) is unordered and never matches.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cols() -> Vec<String> {
        ["id", "kind", "n"].map(String::from).to_vec()
    }

    #[test]
    fn terms_are_anded_and_compare_by_type() {
        let f = Filter::parse_old(
            &json!({"kind": {"in": ["a", "b"]}, "n": {"gte": 2, "lt": 5}}),
            "t",
            &cols(),
        )
        .unwrap();
        assert!(f.matches(&json!({"kind": "a", "n": 2})));
        assert!(f.matches(&json!({"kind": "b", "n": 4.5})));
        assert!(!f.matches(&json!({"kind": "c", "n": 3})));
        assert!(!f.matches(&json!({"kind": "a", "n": 5})));
        assert!(!f.matches(&json!({"kind": "a", "n": null})));
    }

    #[test]
    fn unknown_columns_and_operators_are_errors() {
        assert_eq!(
            Filter::parse_old(&json!({"nope": {"eq": 1}}), "t", &cols()).unwrap_err(),
            FilterError::UnknownColumn {
                column: "nope".into(),
                table: "t".into()
            }
        );
        assert_eq!(
            Filter::parse_old(&json!({"id": {"like": 1}}), "t", &cols()).unwrap_err(),
            FilterError::UnknownOperator("like".into())
        );
        assert_eq!(
            Filter::parse_old(&json!({"id": 1}), "t", &cols()).unwrap_err(),
            FilterError::Shape
        );
        assert_eq!(
            Filter::parse_old(&json!({"id": {"in": 1}}), "t", &cols()).unwrap_err(),
            FilterError::InNeedsList
        );
    }
}
