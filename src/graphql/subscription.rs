//! The subscription root: the generic `changes(table:, ...)` stream, and per
//! tracked table a typed stream with `where`, `ops`, `after` and `initial`.
//! Streams come from [`crate::events::feed`]; this module only checks the
//! arguments and maps deliveries to GraphQL values ([`super::rendering`]
//! renders them).

use crate::graphql::scalar::Scalar;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use juniper::meta::MetaType;
use juniper::{
    ArcStr, Arguments, BoxFuture, Executor, FieldError, GraphQLSubscriptionValue, GraphQLType,
    GraphQLValue, GraphQLValueAsync, IntoFieldError, Registry, Value, ValuesStream,
};

use super::access::{Selectable, selected_fields};
use super::arguments::{optional, required};
use super::context::Context;
use super::generated::input::{Input, InputShape};
use super::generated::named_by_type_info;
use super::generated::object::{ChangeCursor, RowChange};
use super::json::Json;
use super::model::{SchemaInfo, TableInfo};
use super::rendering::{Item, Renderer};
use super::types::{Change, ChangeOp};
use crate::db::rows::{self, RowQuery};
use crate::error::{ApiError, ApiResult};
use crate::events::OpSet;
use crate::events::delivery::Interest;
use crate::events::feed::DeliveryStream;

type S = Scalar;

/// Rows an `initial` read may return before the subscription is refused.
const MAX_INITIAL_ROWS: i32 = 10_000;

/// Root subscription type.
pub struct Subscription;

impl GraphQLType<S> for Subscription {
    fn name(_: &Arc<SchemaInfo>) -> Option<ArcStr> {
        Some(juniper::arcstr::literal!("Subscription"))
    }

    fn meta(info: &Arc<SchemaInfo>, registry: &mut Registry<S>) -> MetaType<S> {
        let mut fields = vec![
            registry
                .field::<Change>("changes", &())
                .argument(registry.arg::<String>("table", &()).description(
                    "A tracked table: `schema.table`, or the bare name when unambiguous.",
                ))
                .argument(registry.arg::<Option<Vec<ChangeOp>>>("ops", &()).description("Operations wanted (default: all)."))
                .argument(registry.arg::<Option<Json>>("filter", &()).description(
                    "`{column: {eq|neq|lt|lte|gt|gte|in|isNull|like|ilike: value}}`, ANDed; `_and`, `_or`, `_not` combine.",
                ))
                .argument(registry.arg::<Option<String>>("after", &()).description("Resume after this cursor."))
                .description("Every committed change of a tracked table that the caller may see, in order."),
        ];
        for table in &info.tables {
            fields.push(
                registry
                    .field::<RowChange>(table.names.field.clone(), table)
                    .argument(
                        registry
                            .arg::<Option<Input>>("where", &InputShape::Where(table.clone()))
                            .description("Only changes whose row version matches this filter."),
                    )
                    .argument(registry.arg::<Option<Vec<ChangeOp>>>("ops", &()).description("Operations wanted (default: all)."))
                    .argument(registry.arg::<Option<String>>("after", &()).description("Resume after this cursor."))
                    .argument(
                        registry
                            .arg_with_default::<bool>("initial", &false, &())
                            .description("First stream the matching rows as they are now (`initial: true`), then every change after exactly that snapshot."),
                    )
                    .description(format!(
                        "Changes of {} the caller may see, in commit order.",
                        table.table.qualified
                    )),
            );
        }
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl GraphQLValue<S> for Subscription {
    type Context = Context;
    type TypeInfo = Arc<SchemaInfo>;

    named_by_type_info!();
}

impl GraphQLValueAsync<S> for Subscription {}

impl GraphQLSubscriptionValue<S> for Subscription {
    fn resolve_field_into_stream<'s, 'i, 'ft, 'args, 'e, 'ref_e, 'res, 'f>(
        &'s self,
        info: &'i Arc<SchemaInfo>,
        field: &'ft str,
        args: Arguments<'args, S>,
        executor: &'ref_e Executor<'ref_e, 'e, Context, S>,
    ) -> BoxFuture<'f, Result<Value<ValuesStream<'res, S>>, FieldError<S>>>
    where
        's: 'f,
        'i: 'res,
        'ft: 'f,
        'args: 'f,
        'ref_e: 'f,
        'res: 'f,
        'e: 'res,
    {
        Box::pin(async move {
            if field == "changes" {
                let stream = generic_changes(info, &args, executor)
                    .await
                    .map_err(IntoFieldError::into_field_error)?;
                return Ok(into_values(stream, executor, &(), info));
            }
            let Some(table) = info.table_by_field(field) else {
                return Err(ApiError::BadInput(format!("unknown field {field}")).into_field_error());
            };
            let stream = typed_changes(table, &args, executor)
                .await
                .map_err(IntoFieldError::into_field_error)?;
            Ok(into_values(stream, executor, table, info))
        })
    }
}

/// `ops` as a set; absent means all, empty is an error.
fn op_set(args: &Arguments<S>) -> ApiResult<OpSet> {
    match optional::<Vec<ChangeOp>>(args, "ops")? {
        Some(ops) if ops.is_empty() => Err(ApiError::BadInput("ops must not be empty".into())),
        Some(ops) => Ok(OpSet::of(ops.into_iter().map(Into::into))),
        None => Ok(OpSet::ALL),
    }
}

async fn generic_changes(
    info: &SchemaInfo,
    args: &Arguments<'_, S>,
    executor: &Executor<'_, '_, Context, S>,
) -> ApiResult<impl Stream<Item = ApiResult<Change>> + Send + use<>> {
    let ctx = executor.context();
    let name = required::<String>(args, "table")?;
    let table = info
        .catalog
        .resolve(&name)
        .map_err(|e| ApiError::BadInput(e.to_string()))?;
    let selectable = Selectable::load(&ctx.pool, table, &ctx.caller.role).await?;
    let filter = optional::<Json>(args, "filter")?;
    let interest = Interest {
        relid: table.relid,
        ops: op_set(args)?,
        filter: selectable.filter(filter.as_ref().map(|j| j.0.as_ref()), table)?,
        caller: ctx.caller.clone(),
    };
    let after = parse_after(ctx, args)?;
    let cursors = ctx.feed.cursors().clone();
    let deliveries = ctx.feed.subscribe(interest, after).await?;
    Ok(deliveries.map(move |d| {
        d.map(|delivery| Change {
            delivery,
            cursors: cursors.clone(),
        })
        .map_err(ApiError::from)
    }))
}

fn parse_after(
    ctx: &Context,
    args: &Arguments<S>,
) -> ApiResult<Option<crate::events::cursor::Cursor>> {
    optional::<String>(args, "after")?
        .map(|text| ctx.feed.parse_cursor(&text))
        .transpose()
        .map_err(ApiError::from)
}

async fn typed_changes(
    table: &Arc<TableInfo>,
    args: &Arguments<'_, S>,
    executor: &Executor<'_, '_, Context, S>,
) -> ApiResult<impl Stream<Item = ApiResult<RowChange>> + Send + use<>> {
    let ctx = executor.context();
    let selectable = Selectable::load(&ctx.pool, &table.table, &ctx.caller.role).await?;
    let spec = optional::<Input>(args, "where")?;
    let filter = selectable.filter(spec.as_ref().map(|i| &i.0), &table.table)?;
    selectable.check_columns(&table.table, selected_fields(executor, &["row", "old"]))?;
    let ops = op_set(args)?;
    let initial = optional::<bool>(args, "initial")?.unwrap_or(false);
    let mut after = parse_after(ctx, args)?;
    if initial && after.is_some() {
        return Err(ApiError::BadInput(
            "initial and after exclude each other: resume with after alone".into(),
        ));
    }
    let mut first: Vec<ApiResult<RowChange>> = Vec::new();
    if initial {
        let read = rows::read_as(
            &ctx.pool,
            &ctx.caller,
            RowQuery {
                relid: table.table.relid,
                filter: filter.spec(),
                order_by: &serde_json::Value::Array(Vec::new()),
                limit: MAX_INITIAL_ROWS + 1,
                after: None,
                timeout: ctx.query_timeout,
            },
        )
        .await?;
        if read.rows.len() > MAX_INITIAL_ROWS as usize {
            return Err(ApiError::BadInput(format!(
                "initial: more than {MAX_INITIAL_ROWS} rows match; narrow the filter, or page with the query field and subscribe after its cursor"
            )));
        }
        let cursor = Arc::new(ctx.feed.cursor_at(read.snapshot));
        let now = chrono::Utc::now();
        first = read
            .rows
            .into_iter()
            .map(|(row, _)| {
                Ok(RowChange {
                    op: ChangeOp::Insert,
                    initial: true,
                    cursor: ChangeCursor::At(cursor.clone(), ctx.feed.cursors().clone()),
                    committed_at: now,
                    row: Some(row),
                    old: None,
                })
            })
            .collect();
        after = Some((*cursor).clone());
    }
    let interest = Interest {
        relid: table.table.relid,
        ops,
        filter,
        caller: ctx.caller.clone(),
    };
    let cursors = ctx.feed.cursors().clone();
    let deliveries: DeliveryStream = ctx.feed.subscribe(interest, after).await?;
    let changes = deliveries.map(move |d| {
        d.map(|delivery| RowChange::from_delivery(delivery, cursors.clone()))
            .map_err(ApiError::from)
    });
    Ok(futures::stream::iter(first).chain(changes))
}

/// Resolves each item of `stream` against the subscription's selection set,
/// sharing renderings of the same event between subscribers that want the
/// same of it (see [`super::rendering`]).
fn into_values<'res, T>(
    stream: impl Stream<Item = ApiResult<T>> + Send + 'res,
    executor: &Executor<'_, 'res, Context, S>,
    info: &'res T::TypeInfo,
    schema: &SchemaInfo,
) -> Value<ValuesStream<'res, S>>
where
    T: GraphQLType<S, Context = ()> + GraphQLValueAsync<S> + Item + Send + Sync + 'res,
    T::TypeInfo: Sync,
{
    let item_type = T::name(info).unwrap_or_default();
    let renderer = Arc::new(Renderer::new(executor, &item_type, schema.generation));
    let executor = executor.as_owned_executor();
    let values = stream.then(move |item| {
        let executor = executor.clone();
        let renderer = renderer.clone();
        async move {
            let ex = executor.as_executor();
            match item {
                Ok(value) => renderer.render(&ex, info, &value).await,
                Err(e) => Err(vec![ex.new_error(e.into_field_error())]),
            }
        }
    });
    Value::Scalar(Box::pin(values))
}
