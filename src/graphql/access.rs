//! What a caller may touch of a table: the columns its role may SELECT.
//! Filters, sort keys and selected fields are checked against them before a
//! query or subscription starts; anything else is an error naming the column
//! (the same message as for a column that does not exist, so nothing leaks).

use crate::graphql::scalar::Scalar;
use std::collections::HashSet;

use deadpool_postgres::Pool;
use juniper::{Executor, LookAheadSelection};
use serde_json::Value;

use super::context::Context;
use crate::db::DbError;
use crate::db::catalog::Table;
use crate::error::ApiError;
use crate::events::filter::Filter;

/// Columns of `table` the caller's role may select.
pub struct Selectable {
    columns: HashSet<String>,
}

impl Selectable {
    /// Looks them up for `role`. A role that may select no column of the
    /// table may not subscribe to it or read it at all (it would otherwise
    /// still learn when rows change and when the table is truncated).
    pub async fn load(pool: &Pool, table: &Table, role: &str) -> Result<Selectable, ApiError> {
        let client = pool.get().await?;
        let row = client
            .query_one(
                "select herald.selectable_columns($1::oid, $2::text::name)",
                &[&table.relid, &role],
            )
            .await
            .map_err(DbError::from)?;
        let columns: HashSet<String> = row.get::<_, Vec<String>>(0).into_iter().collect();
        if columns.is_empty() {
            return Err(ApiError::Forbidden);
        }
        Ok(Selectable { columns })
    }

    /// Whether `column` may be selected.
    pub fn allows(&self, column: &str) -> bool {
        self.columns.contains(column)
    }

    /// The filter `spec` on `table`, refusing columns the caller may not select.
    pub fn filter(&self, spec: Option<&Value>, table: &Table) -> Result<Filter, ApiError> {
        match spec {
            None => Ok(Filter::default()),
            Some(spec) => Filter::parse(spec, table, &|c| self.allows(c))
                .map_err(|e| ApiError::BadInput(e.to_string())),
        }
    }

    /// Refuses a selection of columns the caller may not select.
    pub fn check_columns<'a>(
        &self,
        table: &Table,
        columns: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ApiError> {
        for column in columns {
            if !self.allows(column) {
                return Err(unknown_column(column, table));
            }
        }
        Ok(())
    }
}

/// The error for a column that does not exist or may not be selected.
pub fn unknown_column(column: &str, table: &Table) -> ApiError {
    ApiError::BadInput(format!(
        "unknown column {column:?} of table {} (or not selectable by your role)",
        table.qualified
    ))
}

/// Row fields selected under the children `parents` of the current field
/// (e.g. `row` and `old` of a change, `rows` of a page), fragments included.
pub fn selected_fields<'a>(
    executor: &'a Executor<'_, '_, Context, Scalar>,
    parents: &[&str],
) -> Vec<&'a str> {
    let here: LookAheadSelection<'a, Scalar> = executor.look_ahead();
    let mut out = Vec::new();
    for child in here.children().iter() {
        if parents.contains(&child.field_original_name()) {
            for field in child.children().iter() {
                let name = field.field_original_name();
                if name != "__typename" {
                    out.push(name);
                }
            }
        }
    }
    out
}
