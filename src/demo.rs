//! `POST /demo`: the writes of the demo page (examples/saas), run as the
//! caller under row-level security.
//!
//! pgherald has no GraphQL mutations: an application writes with its own
//! code. The demo page still needs to write, so this route runs a fixed set
//! of parameterised statements, each in a transaction that has taken on the
//! caller's role and claims through [`crate::db::session::assume`] (the one
//! place that switches identity), so the demo schema's policies and grants
//! decide, exactly as they decide what each subscriber sees.
//!
//! The route answers only on a database where `pgherald migrate --demo`
//! installed the demo schema (`herald.demo_schema_history` exists); elsewhere
//! it is a 404, so an application's own `documents` table is never written.
//! It takes the token from the `Authorization` header only, never from the
//! cookie: no other site's page can make a browser send it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::auth::{self, Caller};
use crate::db::{DbError, session};
use crate::state::{AppState, LoginError};

/// Largest request body: a title and a body of text.
const MAX_BODY: u64 = 64 * 1024;
/// Longest title, in characters.
const MAX_TITLE: usize = 200;
/// Longest document or notification body, in characters.
const MAX_TEXT: usize = 10_000;

/// One write of the demo page, as JSON: `{"action": "create_document", ...}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A new document in `tenant_id` (the caller must be a member).
    CreateDocument {
        /// The tenant.
        tenant_id: String,
        /// Its title.
        title: String,
        /// Its text.
        #[serde(default)]
        body: String,
    },
    /// A new title and/or text for a document the caller may change.
    UpdateDocument {
        /// The document.
        id: String,
        /// The new title, if any.
        title: Option<String>,
        /// The new text, if any.
        body: Option<String>,
    },
    /// Deletes a document the caller may change.
    DeleteDocument {
        /// The document.
        id: String,
    },
    /// A notification to `user_id`, a member of `tenant_id` as the caller is
    /// (policy `notifications_colleague_insert` of the demo's V2).
    Notify {
        /// The tenant both share.
        tenant_id: String,
        /// The recipient.
        user_id: String,
        /// Its title.
        title: String,
        /// Its text.
        #[serde(default)]
        body: String,
    },
    /// Marks one of the caller's notifications read.
    MarkRead {
        /// The notification.
        id: String,
    },
}

/// What a refused or failed write tells the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DemoError {
    /// The request itself is wrong.
    #[error("{0}")]
    BadInput(String),
    /// No token, or a token refused.
    #[error("{0}")]
    Unauthenticated(String),
    /// Row-level security or a privilege refused the write.
    #[error("refused by the database's row-level security or privileges: {0}")]
    Forbidden(String),
    /// No row the caller may change has this id.
    #[error(
        "no {0} with this id that you may change: it does not exist, or row-level security hides it from you"
    )]
    NotFound(&'static str),
    /// The demo schema is not installed on this database.
    #[error("the demo schema is not installed on this database (pgherald migrate --demo)")]
    NoDemo,
    /// The database did not answer, or took too long.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// Anything else; details are logged, not shown.
    #[error("internal error")]
    Internal,
}

impl DemoError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            DemoError::BadInput(_) => (StatusCode::BAD_REQUEST, "BAD_USER_INPUT"),
            DemoError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            DemoError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            DemoError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            DemoError::NoDemo => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            DemoError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            DemoError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }

    /// The client's view of a database failure: the SQLSTATEs a caller's
    /// input or the policies cause, with Postgres's own message where it
    /// names only what the caller asked for; anything else is logged.
    fn of(e: DbError) -> DemoError {
        let message = match &e {
            DbError::Postgres(pg) => pg.as_db_error().map(|d| d.message().to_owned()),
            _ => None,
        };
        match (e.sqlstate(), message) {
            // insufficient_privilege: a policy's WITH CHECK, or a grant.
            (Some("42501"), Some(m)) => DemoError::Forbidden(m),
            (Some("22P02"), _) => DemoError::BadInput("an id is not a valid UUID".into()),
            (Some("23503"), _) => DemoError::BadInput("the tenant or user does not exist".into()),
            (Some("23502" | "23514" | "22001"), Some(m)) => DemoError::BadInput(m),
            (Some("57014"), _) => DemoError::Unavailable("the write took too long"),
            _ if matches!(e, DbError::Pool(_)) => {
                tracing::warn!(error = %e, "demo write: no database connection");
                DemoError::Unavailable("the database could not be reached")
            }
            _ => {
                tracing::error!(error = %e, "demo write failed");
                DemoError::Internal
            }
        }
    }

    fn reply(&self) -> Response {
        let (status, code) = self.status();
        let body = json!({"errors": [{"message": self.to_string(), "extensions": {"code": code}}]});
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    }
}

/// The route `POST /demo`.
pub fn route(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    // Per instance, not global: instances in one process may serve
    // different databases. Only "installed" is remembered, so a demo
    // installed after start-up is found.
    let installed = Arc::new(AtomicBool::new(false));
    warp::path("demo")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::bytes())
        .then(move |authorization: Option<String>, body: Bytes| {
            let state = state.clone();
            let installed = installed.clone();
            async move {
                match handle(&state, &installed, authorization.as_deref(), &body).await {
                    Ok(result) => warp::reply::json(&result).into_response(),
                    Err(e) => e.reply(),
                }
            }
        })
}

async fn handle(
    state: &AppState,
    installed: &AtomicBool,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Value, DemoError> {
    let Some(token) = authorization.and_then(auth::bearer) else {
        return Err(DemoError::Unauthenticated(
            "send the token in an Authorization header (the cookie is not accepted here)".into(),
        ));
    };
    let caller = state
        .authenticate(Some(&token))
        .await
        .map_err(|e| match e {
            LoginError::Refused(e) => DemoError::Unauthenticated(e.to_string()),
            LoginError::Unavailable => DemoError::Unavailable("the database could not be reached"),
        })?;
    // After authentication: a caller without a token never costs a query.
    if !installed.load(Ordering::Relaxed) {
        if !demo_installed(state).await? {
            return Err(DemoError::NoDemo);
        }
        installed.store(true, Ordering::Relaxed);
    }
    let action: Action = serde_json::from_slice(body)
        .map_err(|e| DemoError::BadInput(format!("not a demo action: {e}")))?;
    check_lengths(&action)?;
    run_as(state, &caller, &action).await
}

/// Whether `pgherald migrate --demo` ran on this database. The history
/// table's name is in the catalog every role may read.
async fn demo_installed(state: &AppState) -> Result<bool, DemoError> {
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| DemoError::of(e.into()))?;
    let row = client
        .query_one(
            "select exists (select 1 from pg_catalog.pg_class c
                              join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                             where n.nspname = 'herald' and c.relname = 'demo_schema_history')",
            &[],
        )
        .await
        .map_err(|e| DemoError::of(e.into()))?;
    Ok(row.get(0))
}

fn check_lengths(action: &Action) -> Result<(), DemoError> {
    let (title, text) = match action {
        Action::CreateDocument { title, body, .. } | Action::Notify { title, body, .. } => {
            (Some(title), Some(body))
        }
        Action::UpdateDocument { title, body, .. } => (title.as_ref(), body.as_ref()),
        Action::DeleteDocument { .. } | Action::MarkRead { .. } => (None, None),
    };
    if let Some(title) = title {
        if title.trim().is_empty() {
            return Err(DemoError::BadInput("the title is empty".into()));
        }
        if title.chars().count() > MAX_TITLE {
            return Err(DemoError::BadInput(format!(
                "the title is longer than {MAX_TITLE} characters"
            )));
        }
    }
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT) {
        return Err(DemoError::BadInput(format!(
            "the text is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(())
}

/// Runs `action` in one transaction as `caller`: its role and claims, so
/// the demo's policies and grants decide.
async fn run_as(state: &AppState, caller: &Caller, action: &Action) -> Result<Value, DemoError> {
    let mut client = state
        .pool
        .get()
        .await
        .map_err(|e| DemoError::of(e.into()))?;
    let client: &mut tokio_postgres::Client = &mut client;
    let tx = client
        .transaction()
        .await
        .map_err(|e| DemoError::of(e.into()))?;
    session::assume(&tx, caller, state.limits.query_timeout)
        .await
        .map_err(DemoError::of)?;
    let result = match action {
        Action::CreateDocument {
            tenant_id,
            title,
            body,
        } => {
            let row = tx
                .query_one(
                    "insert into public.documents (tenant_id, title, body)
                     values ($1::text::uuid, $2, $3) returning id::text",
                    &[tenant_id, title, body],
                )
                .await
                .map_err(|e| DemoError::of(e.into()))?;
            json!({"id": row.get::<_, String>(0)})
        }
        Action::UpdateDocument { id, title, body } => {
            let n = tx
                .execute(
                    "update public.documents
                        set title = coalesce($2, title), body = coalesce($3, body), updated_at = now()
                      where id = $1::text::uuid",
                    &[id, title, body],
                )
                .await
                .map_err(|e| DemoError::of(e.into()))?;
            touched(n, "document", id)?
        }
        Action::DeleteDocument { id } => {
            let n = tx
                .execute(
                    "delete from public.documents where id = $1::text::uuid",
                    &[id],
                )
                .await
                .map_err(|e| DemoError::of(e.into()))?;
            touched(n, "document", id)?
        }
        // No RETURNING: it would need the sender to be able to read the new
        // row, and only its recipient may. The sender is recorded by the
        // statement, and the V2 policy checks it.
        Action::Notify {
            tenant_id,
            user_id,
            title,
            body,
        } => {
            tx.execute(
                "insert into public.notifications (tenant_id, user_id, kind, title, body, data)
                 values ($1::text::uuid, $2::text::uuid, 'message', $3, nullif($4, ''),
                         jsonb_build_object('from', public.current_user_id()))",
                &[tenant_id, user_id, title, body],
            )
            .await
            .map_err(|e| DemoError::of(e.into()))?;
            json!({})
        }
        Action::MarkRead { id } => {
            let n = tx
                .execute(
                    "update public.notifications set read_at = coalesce(read_at, now())
                      where id = $1::text::uuid",
                    &[id],
                )
                .await
                .map_err(|e| DemoError::of(e.into()))?;
            touched(n, "notification", id)?
        }
    };
    tx.commit().await.map_err(|e| DemoError::of(e.into()))?;
    Ok(result)
}

/// An update or delete that touched no row: under RLS, a row the caller
/// may not change is indistinguishable from one that does not exist.
fn touched(n: u64, what: &'static str, id: &str) -> Result<Value, DemoError> {
    if n == 0 {
        Err(DemoError::NotFound(what))
    } else {
        Ok(json!({"id": id}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Action, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn actions_parse_and_unknown_ones_or_fields_are_named_in_the_error() {
        assert!(matches!(
            parse(r#"{"action": "delete_document", "id": "x"}"#),
            Ok(Action::DeleteDocument { .. })
        ));
        let e = parse(r#"{"action": "drop_table"}"#).unwrap_err();
        assert!(e.contains("unknown variant `drop_table`"), "{e}");
        let e = parse(r#"{"action": "create_document", "title": "t"}"#).unwrap_err();
        assert!(e.contains("missing field `tenant_id`"), "{e}");
        let e = parse(r#"{"action": "mark_read", "id": "x", "sql": "1"}"#).unwrap_err();
        assert!(e.contains("unknown field `sql`"), "{e}");
    }

    #[test]
    fn empty_and_overlong_titles_and_texts_are_refused() {
        let create = |title: &str, body: &str| Action::CreateDocument {
            tenant_id: String::new(),
            title: title.into(),
            body: body.into(),
        };
        assert!(check_lengths(&create("plan", "")).is_ok());
        assert!(check_lengths(&create("  ", "")).is_err());
        assert!(check_lengths(&create(&"x".repeat(MAX_TITLE + 1), "")).is_err());
        assert!(check_lengths(&create("plan", &"x".repeat(MAX_TEXT + 1))).is_err());
        let update = Action::UpdateDocument {
            id: String::new(),
            title: None,
            body: Some("v2".into()),
        };
        assert!(check_lengths(&update).is_ok());
    }
}
