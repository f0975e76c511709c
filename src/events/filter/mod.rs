//! Row filters: one language, evaluated here on live row images and by
//! `herald.filter_predicate` (migrations/V3) in SQL, with the same decisions.
//!
//! # Spec
//!
//! A JSON object whose keys are ANDed. A key is `_and: [spec, ...]`,
//! `_or: [spec, ...]`, `_not: spec`, or a column name mapped to an object of
//! operators (ANDed): `eq`, `neq`, `lt`, `lte`, `gt`, `gte` (a value), `in` (a
//! list), `isNull` (a boolean), `like`/`ilike` (a pattern; text columns
//! only). `{}` matches every row; `_and: []` is true, `_or: []` false. The
//! names `_and`, `_or` and `_not` always mean the combinators.
//!
//! [`Filter::parse`] validates the spec against the table: unknown columns
//! and columns the caller may not select are refused with the same message;
//! unknown operators, operators that do not apply to the column's type,
//! values that are not of the column's type (including enum labels that do
//! not exist, patterns ending with an escape) and `null` values (use
//! `isNull`) are refused too. [`Filter::spec`] gives the canonical spec (values
//! rewritten to text Postgres reads back to the same value) for
//! `herald.filter_predicate`, which is built to decide exactly as
//! [`Filter::matches`] does.
//!
//! # Semantics
//!
//! Postgres's, with SQL's three-valued logic: a comparison with a NULL
//! column value is unknown, `_not` of unknown is unknown, and a row matches
//! only when the whole filter is true. `isNull` is never unknown. `in` with
//! an empty list is false (even for NULL, as `= any('{}')`). A column
//! missing from an image reads as NULL.
//!
//! - Numbers (int2, int4, int8, numeric) compare as exact decimals, beyond
//!   f64 (`9007199254740993 > 9007199254740992`); values may be JSON numbers
//!   or strings holding the decimal text, in filters and images alike.
//!   `NaN` equals itself and sorts above `Infinity`, as in numeric.
//! - float4/float8 compare in the column's type: the filter value is rounded
//!   to it, as Postgres's cast of the literal does (so on a float8 column
//!   `9007199254740993` equals `9007199254740992`). NaN as above; -0 = 0.
//! - timestamptz compares instants (filter values need an offset, any
//!   offset); timestamp and date by value; `infinity`/`-infinity` allowed.
//!   Filter values: years 1 to 9999, at most microseconds.
//! - uuid by value (any case, with or without hyphens or braces); bool with
//!   false < true; enums in declaration (sort) order.
//! - Text (text, varchar, char(n), name, citext) by code point, as
//!   `COLLATE "C"`, on its text form: char(n) without trailing spaces (on
//!   both sides, as char(n) compares), citext case-sensitively.
//!   `like`/`ilike`: `%` any run, `_` one character, backslash escapes the
//!   next character; `ilike` folds ASCII letters only (`COLLATE "C"`), so
//!   `É` does not match `é`.
//! - json/jsonb: `eq`, `neq`, `in`, `isNull` with jsonb equality (numbers by
//!   value, objects regardless of key order). A JSON `null` value is
//!   treated as NULL: images cannot tell them apart.
//! - Arrays: `eq`, `neq`, `isNull`; element-wise in the element's
//!   semantics, NULL elements equal to each other (`array_eq`).
//! - Other types: `eq`, `neq`, `in`, `isNull` on their text form.
//!
//! An image value that cannot be read as its column's type (not produced
//! by `to_jsonb`) makes the comparison unknown.

mod eval;
mod like;
mod number;
mod parse;
mod probe;
mod time;
mod value;

use serde_json::{Value, json};

use crate::db::catalog::Table;

use eval::{Check, Cmp, Domain, Node, Test};
pub use probe::{Key, Probe};
use value::Scalar;

/// A validated filter.
#[derive(Clone, Debug)]
pub struct Filter {
    root: Node,
    spec: Value,
}

impl Default for Filter {
    /// The filter `{}`: matches every row.
    fn default() -> Filter {
        Filter {
            root: Node::All(Vec::new()),
            spec: json!({}),
        }
    }
}

/// Why a filter was refused; the message is shown to the client.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// The spec (or a part of it) is not an object.
    #[error(
        "filter must be an object like {{\"column\": {{\"eq\": value}}}}, \
         optionally with _and, _or and _not"
    )]
    NotAnObject,
    /// `_and`/`_or` without a list.
    #[error("{0} needs a list of filter objects")]
    NeedsList(String),
    /// No such column, or one the caller may not select.
    #[error("unknown column {column:?} in filter for table {table}")]
    UnknownColumn {
        /// The column named.
        column: String,
        /// The table.
        table: String,
    },
    /// A column mapped to something else than an object of operators.
    #[error("column {column:?} in filter needs an object of operators, like {{\"eq\": value}}")]
    NeedsOperators {
        /// The column.
        column: String,
    },
    /// Not an operator of the language.
    #[error(
        "unknown filter operator {op:?} on column {column:?} \
         (expected eq, neq, lt, lte, gt, gte, in, isNull, like or ilike)"
    )]
    UnknownOperator {
        /// The operator.
        op: String,
        /// The column.
        column: String,
    },
    /// An operator that does not apply to the column's type.
    #[error(
        "filter operator {op:?} does not apply to column {column:?} of type {sql_type} \
         (it takes {takes}; like and ilike are for text columns)"
    )]
    Unsupported {
        /// The operator.
        op: String,
        /// The column.
        column: String,
        /// The column's type.
        sql_type: String,
        /// The operators it takes.
        takes: &'static str,
    },
    /// `in` without a list.
    #[error("filter operator \"in\" on column {column:?} needs a list")]
    InNeedsList {
        /// The column.
        column: String,
    },
    /// `null` as an operand.
    #[error(
        "null is not a value for {op:?} on column {column:?}; \
         use {{\"isNull\": true}} to match NULLs"
    )]
    NullValue {
        /// The operator.
        op: String,
        /// The column.
        column: String,
    },
    /// `isNull` without a boolean.
    #[error("isNull on column {column:?} needs true or false")]
    IsNullNeedsBool {
        /// The column.
        column: String,
    },
    /// A value that is not of the column's type.
    #[error("invalid filter value for column {column:?} ({sql_type}): {problem}")]
    BadValue {
        /// The column.
        column: String,
        /// The column's type.
        sql_type: String,
        /// What is wrong.
        problem: String,
    },
    /// Nested beyond the limit.
    #[error("filter is nested too deeply (at most {0} levels)")]
    TooDeep(usize),
}

impl Filter {
    /// Validates `spec` against `table`. Columns for which `selectable`
    /// returns false are refused exactly like unknown ones, so the error says
    /// nothing about hidden columns.
    pub fn parse(
        spec: &Value,
        table: &Table,
        selectable: &dyn Fn(&str) -> bool,
    ) -> Result<Filter, FilterError> {
        let (root, spec) = parse::parse(spec, table, selectable)?;
        Ok(Filter { root, spec })
    }

    /// Equality of one column with a JSON value (jsonb equality, no type
    /// checks), used by `notificationCreated` with a value in its image form.
    pub fn column_eq(column: &str, value: Value) -> Filter {
        Filter {
            spec: json!({ column: { "eq": value.clone() } }),
            root: Node::Test(Test {
                column: column.to_owned(),
                domain: Domain::Json,
                check: Check::Cmp(Cmp::Eq, Scalar::Json(value)),
            }),
        }
    }

    /// Whether the row image (`to_jsonb(row)`) satisfies the filter: true,
    /// not false or unknown.
    pub fn matches(&self, image: &Value) -> bool {
        self.root.eval(image) == Some(true)
    }

    /// The columns the filter refers to, each once.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.root.columns(&mut out);
        out
    }

    /// The validated spec in canonical form, for `herald.filter_predicate`.
    pub fn spec(&self) -> &Value {
        &self.spec
    }
}

#[cfg(test)]
mod tests;
