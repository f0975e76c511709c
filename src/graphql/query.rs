//! Queries, each run under the caller's role and claims (RLS applies).

use juniper::graphql_object;

use super::context::Context;
use super::types::{Document, Notification, Tenant, User};
use crate::db::session::query_as;
use crate::error::{ApiError, ApiResult};
use crate::events::cursor::Cursor;
use crate::events::outbox;

/// Root query type.
pub struct Query;

#[graphql_object(context = Context)]
impl Query {
    /// The caller, or null when the token's `sub` is not a visible user.
    async fn me(ctx: &Context) -> ApiResult<Option<User>> {
        let rows = query_as(
            &ctx.app.pool,
            &ctx.caller,
            "select id::text, email, display_name from public.users where id = public.current_user_id()",
            &[],
        )
        .await?;
        Ok(rows.first().map(|r| User {
            id: r.get(0),
            email: r.get(1),
            display_name: r.get(2),
        }))
    }

    /// The caller's notifications, newest first; `after` is the id of the
    /// last notification of the previous page.
    async fn notifications(
        ctx: &Context,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> ApiResult<Vec<Notification>> {
        if !(0..=500).contains(&first) {
            return Err(ApiError::BadInput("first must be between 0 and 500".into()));
        }
        let sql = format!(
            "select {} from public.notifications n
              where n.user_id = public.current_user_id()
                and ($2::text is null or (n.created_at, n.id) <
                     (select a.created_at, a.id from public.notifications a where a.id = $2::text::uuid))
              order by n.created_at desc, n.id desc limit $1",
            Notification::COLUMNS
        );
        let rows = query_as(
            &ctx.app.pool,
            &ctx.caller,
            &sql,
            &[&i64::from(first), &after],
        )
        .await?;
        Ok(rows.iter().map(Notification::from_row).collect())
    }

    /// Documents of the caller's tenants.
    async fn documents(ctx: &Context) -> ApiResult<Vec<Document>> {
        let sql = format!(
            "select {} from public.documents order by updated_at desc, id",
            Document::COLUMNS
        );
        let rows = query_as(&ctx.app.pool, &ctx.caller, &sql, &[]).await?;
        Ok(rows.iter().map(Document::from_row).collect())
    }

    /// Tenants the caller belongs to.
    async fn tenants(ctx: &Context) -> ApiResult<Vec<Tenant>> {
        let rows = query_as(
            &ctx.app.pool,
            &ctx.caller,
            "select id::text, name from public.tenants order by name",
            &[],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| Tenant {
                id: r.get(0),
                name: r.get(1),
            })
            .collect())
    }

    /// A cursor meaning "now": read state, then subscribe with `after` set to
    /// this and miss nothing in between.
    async fn cursor(ctx: &Context) -> ApiResult<String> {
        let client = ctx.app.pool.get().await?;
        let snapshot = outbox::current_snapshot(&client).await.map_err(|e| {
            tracing::error!(error = %e, "cursor snapshot");
            ApiError::Internal
        })?;
        Ok(Cursor::at(ctx.app.identity.to_string(), snapshot).encode())
    }
}
