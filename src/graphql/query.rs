//! The query root: `cursor`, and per tracked table a field reading its rows
//! under the caller's RLS, with the cursor of the snapshot read.

use crate::graphql::scalar::Scalar;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use juniper::meta::MetaType;
use juniper::{
    ArcStr, Arguments, BoxFuture, ExecutionResult, Executor, GraphQLType, GraphQLValue,
    GraphQLValueAsync, IntoFieldError, Registry,
};
use serde_json::{Value, json};

use super::access::{Selectable, selected_fields, unknown_column};
use super::arguments::optional;
use super::context::Context;
use super::generated::input::{Input, InputShape};
use super::generated::named_by_type_info;
use super::generated::object::Page;
use super::model::{SchemaInfo, TableInfo};
use crate::db::rows::{self, RowQuery};
use crate::error::{ApiError, ApiResult};

type S = Scalar;

/// Rows per page unless `first` says otherwise.
const DEFAULT_PAGE: i32 = 100;
/// The most rows one page may ask for.
const MAX_PAGE: i32 = 1000;

/// Root query type.
pub struct Query;

impl GraphQLType<S> for Query {
    fn name(_: &Arc<SchemaInfo>) -> Option<ArcStr> {
        Some(juniper::arcstr::literal!("Query"))
    }

    fn meta(info: &Arc<SchemaInfo>, registry: &mut Registry<S>) -> MetaType<S> {
        let mut fields = vec![registry.field::<String>("cursor", &()).description(
            "A cursor meaning \"now\": read state, then subscribe with `after` set to it and miss nothing.",
        )];
        for table in &info.tables {
            let filter = registry.arg::<Option<Input>>("where", &InputShape::Where(table.clone()));
            let order = registry
                .arg::<Option<Vec<Input>>>("orderBy", &InputShape::OrderBy(table.clone()))
                .description("Sort keys, most significant first; the primary key breaks ties.");
            fields.push(
                registry
                    .field::<Page>(table.names.field.clone(), table)
                    .argument(filter.description("Only rows matching this filter."))
                    .argument(order)
                    .argument(
                        registry
                            .arg_with_default::<i32>("first", &DEFAULT_PAGE, &())
                            .description("Rows per page (at most 1000)."),
                    )
                    .argument(
                        registry
                            .arg::<Option<String>>("after", &())
                            .description("`endCursor` of the previous page."),
                    )
                    .description(format!(
                        "Rows of {} the caller may see (row-level security applies).",
                        table.table.qualified
                    )),
            );
        }
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl GraphQLValue<S> for Query {
    type Context = Context;
    type TypeInfo = Arc<SchemaInfo>;

    named_by_type_info!();
}

impl GraphQLValueAsync<S> for Query {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a Arc<SchemaInfo>,
        field: &'a str,
        args: &'a Arguments<S>,
        executor: &'a Executor<Context, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        Box::pin(async move {
            let ctx = executor.context();
            if field == "cursor" {
                let cursor = ctx
                    .feed
                    .current_cursor()
                    .await
                    .map_err(|e| ApiError::from(e).into_field_error())?;
                return executor.resolve_with_ctx(&(), &ctx.feed.cursors().encode(&cursor));
            }
            let Some(table) = info.table_by_field(field) else {
                return Err(ApiError::BadInput(format!("unknown field {field}")).into_field_error());
            };
            let page = read_page(table, args, executor)
                .await
                .map_err(IntoFieldError::into_field_error)?;
            executor.resolve_with_ctx_async(table, &page).await
        })
    }
}

async fn read_page(
    table: &Arc<TableInfo>,
    args: &Arguments<'_, S>,
    executor: &Executor<'_, '_, Context, S>,
) -> ApiResult<Page> {
    let ctx = executor.context();
    let filter = optional::<Input>(args, "where")?;
    let order = optional::<Vec<Input>>(args, "orderBy")?;
    let first = optional::<i32>(args, "first")?.unwrap_or(DEFAULT_PAGE);
    let after = optional::<String>(args, "after")?;
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(ApiError::BadInput(format!(
            "first must be between 0 and {MAX_PAGE}"
        )));
    }
    let selectable = Selectable::load(&ctx.pool, &table.table, &ctx.caller.role).await?;
    let filter = selectable.filter(filter.as_ref().map(|i| &i.0), &table.table)?;
    let order_by = order_keys(order.unwrap_or_default(), table, &selectable)?;
    selectable.check_columns(&table.table, selected_fields(executor, &["rows"]))?;
    let after = after
        .map(|text: String| decode_page_cursor(&text, &order_by))
        .transpose()?;
    let read = rows::read_as(
        &ctx.pool,
        &ctx.caller,
        RowQuery {
            relid: table.table.relid,
            filter: filter.spec(),
            order_by: &order_by,
            limit: first + 1,
            after: after.as_ref(),
            timeout: ctx.query_timeout,
        },
    )
    .await?;
    let mut rows = read.rows;
    let more = rows.len() > first as usize;
    rows.truncate(first as usize);
    let end_cursor = if more {
        rows.last()
            .map(|(_, key)| encode_page_cursor(key, &order_by))
    } else {
        None
    };
    Ok(Page {
        rows: rows.into_iter().map(|(row, _)| row).collect(),
        cursor: ctx
            .feed
            .cursors()
            .encode(&ctx.feed.cursor_at(read.snapshot)),
        end_cursor,
        has_next_page: more,
    })
}

/// `orderBy` entries (one column each) as `[{"column", "direction"}]`.
pub(crate) fn order_keys(
    entries: Vec<Input>,
    table: &TableInfo,
    selectable: &Selectable,
) -> ApiResult<Value> {
    let mut keys = Vec::new();
    for Input(entry) in entries {
        let object = entry.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
            ApiError::BadInput("each orderBy entry names exactly one column".into())
        })?;
        let (column, direction) = object.iter().next().expect("one entry");
        if table.column(column).is_none() || !selectable.allows(column) {
            return Err(unknown_column(column, &table.table));
        }
        keys.push(json!({"column": column, "direction": direction}));
    }
    Ok(Value::Array(keys))
}

/// A page cursor: the last row's sort key and the order it belongs to.
fn encode_page_cursor(key: &Value, order_by: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json!({"key": key, "orderBy": order_by}).to_string())
}

/// The sort key of a page cursor made for `order_by`.
fn decode_page_cursor(text: &str, order_by: &Value) -> ApiResult<Value> {
    let mut cursor = URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(|c| c["key"].is_array())
        .ok_or_else(|| ApiError::BadInput("after: invalid page cursor".into()))?;
    if &cursor["orderBy"] != order_by {
        return Err(ApiError::BadInput(
            "after: this cursor was made for another orderBy".into(),
        ));
    }
    Ok(cursor["key"].take())
}
