//! Mutations, each run under the caller's role and claims (RLS applies).

use juniper::graphql_object;

use super::context::Context;
use super::types::{Document, Notification};
use crate::db::session::query_as;
use crate::error::{ApiError, ApiResult};

/// Root mutation type.
pub struct Mutation;

#[graphql_object(context = Context)]
impl Mutation {
    /// Marks one of the caller's notifications read.
    async fn mark_notification_read(ctx: &Context, id: String) -> ApiResult<Notification> {
        let sql = format!(
            "update public.notifications set read_at = coalesce(read_at, now())
              where id = $1::text::uuid returning {}",
            Notification::COLUMNS
        );
        let row = one_row(ctx, &sql, &[&id]).await?;
        Ok(Notification::from_row(&row))
    }

    /// Creates a document in one of the caller's tenants.
    async fn create_document(
        ctx: &Context,
        tenant_id: String,
        title: String,
        body: Option<String>,
    ) -> ApiResult<Document> {
        let sql = format!(
            "insert into public.documents (tenant_id, title, body)
             values ($1::text::uuid, $2, coalesce($3, '')) returning {}",
            Document::COLUMNS
        );
        let row = one_row(ctx, &sql, &[&tenant_id, &title, &body]).await?;
        Ok(Document::from_row(&row))
    }

    /// Changes a document's title and/or body.
    async fn update_document(
        ctx: &Context,
        id: String,
        title: Option<String>,
        body: Option<String>,
    ) -> ApiResult<Document> {
        let sql = format!(
            "update public.documents
                set title = coalesce($2, title), body = coalesce($3, body), updated_at = now()
              where id = $1::text::uuid returning {}",
            Document::COLUMNS
        );
        let row = one_row(ctx, &sql, &[&id, &title, &body]).await?;
        Ok(Document::from_row(&row))
    }

    /// Deletes a document; returns its id.
    async fn delete_document(ctx: &Context, id: String) -> ApiResult<String> {
        let row = one_row(
            ctx,
            "delete from public.documents where id = $1::text::uuid returning id::text",
            &[&id],
        )
        .await?;
        Ok(row.get(0))
    }
}

/// Runs a statement that must affect exactly one visible row.
async fn one_row(
    ctx: &Context,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> ApiResult<tokio_postgres::Row> {
    let rows = query_as(&ctx.app.pool, &ctx.caller, sql, params).await?;
    rows.into_iter().next().ok_or(ApiError::NotFound("row"))
}
