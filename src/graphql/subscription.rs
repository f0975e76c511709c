//! Subscriptions: streams fed by the hub (live) and, with `after`, by the
//! outbox (catch-up from a cursor).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{Stream, StreamExt};
use juniper::graphql_subscription;

use super::context::Context;
use super::json::Json;
use super::types::{Change, ChangeOp, Notification};
use crate::db::catalog::{self, Table};
use crate::error::ApiError;
use crate::events::OpSet;
use crate::events::catchup::{self, CatchupError};
use crate::events::cursor::Cursor;
use crate::events::delivery::{Delivery, Interest};
use crate::events::filter::Filter;

/// How long a resuming subscription waits for the listener to reach its cursor.
const CURSOR_WAIT: Duration = Duration::from_secs(10);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, ApiError>> + Send>>;

/// Root subscription type.
pub struct Subscription;

#[graphql_subscription(context = Context)]
impl Subscription {
    /// Every committed change of a tracked table that the caller may see, in order.
    async fn changes(
        ctx: &Context,
        table: String,
        ops: Option<Vec<ChangeOp>>,
        filter: Option<Json>,
        after: Option<String>,
    ) -> Result<BoxStream<Change>, ApiError> {
        let tracked = tracked_table(ctx, &table).await?;
        let filter = match filter {
            // Every column is selectable for now; the caller's column
            // privileges are applied to delivered images, not yet here.
            Some(Json(spec)) => Filter::parse(&spec, &tracked, &|_| true)
                .map_err(|e| ApiError::BadInput(e.to_string()))?,
            None => Filter::default(),
        };
        let ops = match ops {
            Some(ops) if !ops.is_empty() => OpSet::of(ops.into_iter().map(Into::into)),
            Some(_) => return Err(ApiError::BadInput("ops must not be empty".into())),
            None => OpSet::ALL,
        };
        let interest = Interest {
            relid: tracked.relid,
            ops,
            filter,
            caller: ctx.caller.clone(),
        };
        let identity = ctx.app.identity.clone();
        let deliveries = open(ctx, interest, after).await?;
        Ok(Box::pin(deliveries.map(move |d| {
            d.map(|delivery| Change {
                delivery,
                identity: identity.clone(),
            })
        })))
    }

    /// The caller's new notifications.
    async fn notification_created(
        ctx: &Context,
        after: Option<String>,
    ) -> Result<BoxStream<Notification>, ApiError> {
        let tracked = tracked_table(ctx, "public.notifications").await?;
        let Some(sub) = ctx.caller.sub() else {
            return Err(ApiError::BadInput(
                "notificationCreated needs a token with a sub claim".into(),
            ));
        };
        let interest = Interest {
            relid: tracked.relid,
            ops: OpSet::of([crate::events::Op::Insert]),
            filter: Filter::column_eq("user_id", serde_json::Value::String(sub.to_owned())),
            caller: ctx.caller.clone(),
        };
        let deliveries = open(ctx, interest, after).await?;
        Ok(Box::pin(deliveries.filter_map(|d| async move {
            match d {
                Ok(d) => d.row.as_deref().and_then(Notification::from_image).map(Ok),
                Err(e) => Some(Err(e)),
            }
        })))
    }
}

/// Joins the live stream (and, with a cursor, replays what was missed first).
/// The stream ends after its first error.
async fn open(
    ctx: &Context,
    interest: Interest,
    after: Option<String>,
) -> Result<BoxStream<Delivery>, ApiError> {
    let app = &ctx.app;
    let cursor = match after {
        Some(text) => {
            let cursor = Cursor::decode(&text)
                .map_err(|_| ApiError::BadInput("after: invalid cursor".into()))?;
            catchup::check_resumable(&app.pool, &app.identity, &cursor)
                .await
                .map_err(catchup_error)?;
            tokio::time::timeout(CURSOR_WAIT, app.hub.wait_for(&cursor.high))
                .await
                .map_err(|_| ApiError::Unavailable("event listener is behind"))?;
            Some(cursor)
        }
        None => None,
    };
    let registration = app
        .hub
        .register(interest.clone())
        .ok_or(ApiError::Unavailable("event listener not connected yet"))?;
    let catch_up: BoxStream<Delivery> = match cursor {
        Some(cursor) => Box::pin(
            catchup::replay(
                app.pool.clone(),
                interest,
                cursor,
                registration.position.clone(),
            )
            .map(|r| r.map_err(catchup_error)),
        ),
        None => Box::pin(futures::stream::empty()),
    };
    let overflowed = registration.overflowed.clone();
    let capacity = app.hub.queue_capacity();
    let live = registration
        .map(Ok)
        .chain(futures::stream::once(async move {
            if overflowed.load(Ordering::Relaxed) {
                Err(ApiError::SlowConsumer(capacity))
            } else {
                Err(ApiError::Unavailable("subscription closed"))
            }
        }));
    let stream = catch_up.chain(live).scan(false, |failed, item| {
        let out = if *failed {
            None
        } else {
            *failed = item.is_err();
            Some(item)
        };
        std::future::ready(out)
    });
    Ok(Box::pin(stream))
}

/// The tracked table `name`; unknown or ambiguous names are input errors.
async fn tracked_table(ctx: &Context, name: &str) -> Result<Table, ApiError> {
    let catalog = catalog::load(&ctx.app.pool).await?;
    catalog
        .resolve(name)
        .cloned()
        .map_err(|e| ApiError::BadInput(e.to_string()))
}

fn catchup_error(e: CatchupError) -> ApiError {
    match e {
        CatchupError::ForeignCursor | CatchupError::Expired => {
            ApiError::ResyncRequired(e.to_string())
        }
        CatchupError::Db(e) => ApiError::from(e),
        CatchupError::Outbox(e) => {
            tracing::error!(error = %e, "catch-up read failed");
            ApiError::Internal
        }
    }
}
