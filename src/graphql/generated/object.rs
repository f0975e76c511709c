//! Output types of the generated API, per tracked table `T`: the row type
//! `T` (a field per column), `TChange` (what its subscription streams) and
//! `TPage` (what its query returns). All resolve from JSON row images.

use crate::graphql::scalar::Scalar;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use juniper::meta::{Field, MetaType};
use juniper::{
    ArcStr, Arguments, BoxFuture, ExecutionResult, Executor, FieldError, GraphQLType, GraphQLValue,
    GraphQLValueAsync, Registry, Value,
};
use serde_json::Value as Json;

use super::leaf::value_type;
use crate::db::jsonb::exact_number;
use crate::events::cursor::{Cursor, CursorCodec};
use crate::events::delivery::Delivery;
use crate::graphql::json::to_graphql;
use crate::graphql::model::{Base, ColumnInfo, ScalarKind, TableInfo};
use crate::graphql::types::ChangeOp;

type S = Scalar;

/// These objects resolve every field from memory: their async resolution is
/// the synchronous one.
macro_rules! resolve_fields_synchronously {
    ($ty:ty) => {
        impl GraphQLValueAsync<S> for $ty {
            fn resolve_field_async<'a>(
                &'a self,
                info: &'a Arc<TableInfo>,
                field: &'a str,
                args: &'a Arguments<S>,
                executor: &'a Executor<(), S>,
            ) -> BoxFuture<'a, ExecutionResult<S>> {
                Box::pin(std::future::ready(
                    self.resolve_field(info, field, args, executor),
                ))
            }
        }
    };
}

/// One row of a tracked table, as the caller may see it.
pub struct Row(pub Arc<Json>);

impl GraphQLType<S> for Row {
    fn name(table: &Arc<TableInfo>) -> Option<ArcStr> {
        Some(table.names.object.as_str().into())
    }

    fn meta(table: &Arc<TableInfo>, registry: &mut Registry<S>) -> MetaType<S> {
        let fields: Vec<Field<S>> = table
            .columns
            .iter()
            .map(|c| {
                let mut field = registry.field::<bool>(c.field().to_owned(), &());
                field.field_type = value_type(registry, &c.base, c.list, c.column.not_null);
                field.description(format!("Column {} ({}).", c.column.name, c.column.sql_type))
            })
            .collect();
        registry
            .build_object_type::<Self>(table, &fields)
            .description(format!("A row of {}.", table.table.qualified))
            .into_meta()
    }
}

impl GraphQLValue<S> for Row {
    type Context = ();
    type TypeInfo = Arc<TableInfo>;

    named_by_type_info!();

    fn resolve_field(
        &self,
        table: &Arc<TableInfo>,
        field: &str,
        _: &Arguments<S>,
        _: &Executor<(), S>,
    ) -> ExecutionResult<S> {
        let column = table
            .column(field)
            .ok_or_else(|| FieldError::from(format!("unknown field {field}")))?;
        match self.0.get(&column.column.name) {
            Some(value) => Ok(column_value(column, value)),
            // Columns the caller may not select are refused before a
            // subscription or query starts; a missing key here is a column
            // added after the event was captured.
            None if !column.column.not_null => Ok(Value::null()),
            None => Err(FieldError::from(format!(
                "column {} is not in this row version",
                column.column.name
            ))),
        }
    }
}

resolve_fields_synchronously!(Row);

/// A column's value from a row image, as its GraphQL type.
fn column_value(column: &ColumnInfo, value: &Json) -> Value<S> {
    match (column.list, value) {
        (true, Json::Array(items)) => {
            Value::list(items.iter().map(|i| leaf(&column.base, i)).collect())
        }
        _ => leaf(&column.base, value),
    }
}

fn leaf(base: &Base, value: &Json) -> Value<S> {
    match (base, value) {
        (_, Json::Null) => Value::null(),
        (Base::Json, v) => to_graphql(v),
        (Base::Int, Json::Number(n)) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map_or_else(Value::null, Value::scalar),
        // NaN and infinities (JSON strings) have no GraphQL Float.
        (Base::Float, Json::Number(n)) => n.as_f64().map_or_else(Value::null, Value::scalar),
        (Base::Boolean, Json::Bool(b)) => Value::scalar(*b),
        (Base::Scalar(ScalarKind::BigInt | ScalarKind::BigFloat), Json::Number(n)) => {
            Value::scalar(n.to_string())
        }
        (Base::Float, Json::String(s)) => exact_number(s)
            .and_then(|n| n.parse::<f64>().ok())
            .map_or_else(Value::null, Value::scalar),
        (_, Json::String(s)) => Value::scalar(exact_number(s).unwrap_or(s).to_owned()),
        (_, other) => Value::scalar(other.to_string()),
    }
}

/// Where a change's cursor comes from.
pub enum ChangeCursor {
    /// Just after this delivery.
    After(Box<Delivery>, Arc<CursorCodec>),
    /// A fixed cursor (the snapshot an initial read was taken in).
    At(Arc<Cursor>, Arc<CursorCodec>),
}

/// One change of a tracked table, or one row of an `initial` read.
pub struct RowChange {
    /// Operation (`INSERT` for initial rows).
    pub op: ChangeOp,
    /// Part of the initial read, not a change.
    pub initial: bool,
    /// Resume point.
    pub cursor: ChangeCursor,
    /// Capture time (the read time for initial rows).
    pub committed_at: DateTime<Utc>,
    /// New version.
    pub row: Option<Arc<Json>>,
    /// Old version.
    pub old: Option<Arc<Json>>,
}

impl RowChange {
    /// A live or caught-up delivery.
    pub fn from_delivery(delivery: Delivery, cursors: Arc<CursorCodec>) -> RowChange {
        RowChange {
            op: delivery.event.op.into(),
            initial: false,
            committed_at: delivery.event.committed_at,
            row: delivery.row.clone(),
            old: delivery.old.clone(),
            cursor: ChangeCursor::After(Box::new(delivery), cursors),
        }
    }
}

impl GraphQLType<S> for RowChange {
    fn name(table: &Arc<TableInfo>) -> Option<ArcStr> {
        Some(table.names.change.as_str().into())
    }

    fn meta(table: &Arc<TableInfo>, registry: &mut Registry<S>) -> MetaType<S> {
        let fields = vec![
            registry
                .field::<ChangeOp>("op", &())
                .description("The database operation (INSERT for rows of the initial read)."),
            registry
                .field::<bool>("initial", &())
                .description("True for rows of the `initial: true` read, false for changes."),
            registry
                .field::<String>("cursor", &())
                .description("Resume point just after this change (pass as `after`)."),
            registry
                .field::<DateTime<Utc>>("committedAt", &())
                .description(
                    "When the change was captured (for initial rows: when they were read).",
                ),
            registry.field::<Option<Row>>("row", table).description(
                "The new version; null for deletes and when the caller may not see it.",
            ),
            registry.field::<Option<Row>>("old", table).description(
                "The old version; null for inserts and when the caller could not see it.",
            ),
        ];
        registry
            .build_object_type::<Self>(table, &fields)
            .description(format!("A change of {}.", table.table.qualified))
            .into_meta()
    }
}

impl GraphQLValue<S> for RowChange {
    type Context = ();
    type TypeInfo = Arc<TableInfo>;

    named_by_type_info!();

    fn resolve_field(
        &self,
        table: &Arc<TableInfo>,
        field: &str,
        _: &Arguments<S>,
        executor: &Executor<(), S>,
    ) -> ExecutionResult<S> {
        match field {
            "op" => executor.resolve_with_ctx(&(), &self.op),
            "initial" => Ok(Value::scalar(self.initial)),
            "cursor" => Ok(Value::scalar(match &self.cursor {
                ChangeCursor::After(d, cursors) => cursors.encode(&d.cursor(cursors.identity())),
                ChangeCursor::At(c, cursors) => cursors.encode(c),
            })),
            "committedAt" => executor.resolve_with_ctx(&(), &self.committed_at),
            "row" => resolve_row(table, self.row.as_ref(), executor),
            "old" => resolve_row(table, self.old.as_ref(), executor),
            other => Err(FieldError::from(format!("unknown field {other}"))),
        }
    }
}

resolve_fields_synchronously!(RowChange);

fn resolve_row(
    table: &Arc<TableInfo>,
    image: Option<&Arc<Json>>,
    executor: &Executor<(), S>,
) -> ExecutionResult<S> {
    match image {
        Some(image) => executor.resolve_with_ctx(table, &Row(image.clone())),
        None => Ok(Value::null()),
    }
}

/// One page of a table query.
pub struct Page {
    /// Rows, in the requested order.
    pub rows: Vec<Arc<Json>>,
    /// Cursor of the snapshot the rows were read in.
    pub cursor: String,
    /// Pass as `after` for the next page; null when there is none.
    pub end_cursor: Option<String>,
    /// Whether rows follow this page.
    pub has_next_page: bool,
}

impl GraphQLType<S> for Page {
    fn name(table: &Arc<TableInfo>) -> Option<ArcStr> {
        Some(table.names.page.as_str().into())
    }

    fn meta(table: &Arc<TableInfo>, registry: &mut Registry<S>) -> MetaType<S> {
        let fields = vec![
            registry
                .field::<Vec<Row>>("rows", table)
                .description("Rows the caller may see, in the requested order."),
            registry.field::<String>("cursor", &()).description(
                "Cursor of the snapshot these rows were read in: subscribe with `after` set to it to miss nothing.",
            ),
            registry
                .field::<Option<String>>("endCursor", &())
                .description("Pass as `after` for the next page; null on the last page."),
            registry
                .field::<bool>("hasNextPage", &())
                .description("Whether another page follows."),
        ];
        registry
            .build_object_type::<Self>(table, &fields)
            .description(format!("A page of rows of {}.", table.table.qualified))
            .into_meta()
    }
}

impl GraphQLValue<S> for Page {
    type Context = ();
    type TypeInfo = Arc<TableInfo>;

    named_by_type_info!();

    fn resolve_field(
        &self,
        table: &Arc<TableInfo>,
        field: &str,
        _: &Arguments<S>,
        executor: &Executor<(), S>,
    ) -> ExecutionResult<S> {
        match field {
            "rows" => {
                let rows: Vec<Row> = self.rows.iter().map(|r| Row(r.clone())).collect();
                executor.resolve_with_ctx(table, &rows)
            }
            "cursor" => Ok(Value::scalar(self.cursor.clone())),
            "endCursor" => Ok(self
                .end_cursor
                .clone()
                .map_or_else(Value::null, Value::scalar)),
            "hasNextPage" => Ok(Value::scalar(self.has_next_page)),
            other => Err(FieldError::from(format!("unknown field {other}"))),
        }
    }
}

resolve_fields_synchronously!(Page);
