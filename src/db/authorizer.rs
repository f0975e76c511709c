//! Row-level security for events: for a batch of row images and the distinct
//! security contexts that want them, one database round trip says which
//! context may see which image, and which columns it may select.
//!
//! The work happens in `herald.authorize` (migrations/V1), which switches
//! role and claims transaction-locally per context and evaluates the table's
//! SELECT policies on each image, as Postgres would for a stored row.
//!
//! One bad security context must not stall the instance. Inside the call, a
//! context whose role cannot be assumed, whose claims jsonb cannot hold, or
//! whose policies cannot be computed fails alone (a [`ContextFailure`]), and
//! a policy that raises on one row hides that row only. What escapes the
//! call (a cancelled or timed-out policy query) makes [`PgAuthorizer`] ask
//! again, one context per call, so that only the guilty context fails. Errors
//! that are nobody's fault (the connection was lost) are returned for the
//! caller to retry; the listener retries a page a few times, then asks with
//! [`Isolation::Always`], under which every error of a context's own call
//! fails that context: a page always makes progress.
//!
//! Each check says at which [`Moment`] it is judged; [`super::as_of`] runs
//! one transaction per moment, in the snapshot the moment stands for.
//! [`super::call`] turns checks into the call's arrays and its rows into
//! [`Verdicts`]; [`super::flight`] sends a call's transaction (begin, import,
//! timeout, call, commit), or those of several moments, in one round trip.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::auth::Caller;

use super::DbError;
use super::as_of::{self, AsOf, ExportedSnapshot};
use super::call::{self, Call};
use super::flight::{self, ImportFailed, Transaction};
pub use super::verdicts::Verdicts;

pub use super::as_of::Moment;

/// The statement timeout of an authorizer call when the login role's session
/// sets none: a policy that hangs must not hold the instance's events.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One question: may `contexts[context]` see `image`, a row of table `relid`,
/// judged as of `moment`?
#[derive(Clone, Debug)]
pub struct Check {
    /// Index into the contexts slice.
    pub context: usize,
    /// The table.
    pub relid: u32,
    /// The row image.
    pub image: Arc<Value>,
    /// Which database state its policies read.
    pub moment: Moment,
}

/// Why a security context could not be evaluated at all. Its checks are
/// denied and the subscriptions that needed them are ended with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextFailure {
    /// Its role cannot be assumed: dropped, renamed, or no longer granted to
    /// the login role.
    Role,
    /// Its claims cannot be handed to Postgres: jsonb cannot hold them (a NUL
    /// character).
    Claims,
    /// Its policies or privileges could not be evaluated: an error outside
    /// any one row, a statement timeout or a cancelled query.
    Policy,
}

impl ContextFailure {
    /// Every kind, in the order of [`AuthorizerStats::failed_by_kind`].
    pub const ALL: [ContextFailure; 3] = [
        ContextFailure::Role,
        ContextFailure::Claims,
        ContextFailure::Policy,
    ];

    /// Its place in [`ContextFailure::ALL`].
    pub fn index(self) -> usize {
        match self {
            ContextFailure::Role => 0,
            ContextFailure::Claims => 1,
            ContextFailure::Policy => 2,
        }
    }

    /// Its `kind` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            ContextFailure::Role => "role",
            ContextFailure::Claims => "claims",
            ContextFailure::Policy => "policy",
        }
    }

    pub(super) fn from_stage(stage: &str) -> ContextFailure {
        match stage {
            "role" => ContextFailure::Role,
            "claims" => ContextFailure::Claims,
            _ => ContextFailure::Policy,
        }
    }
}

/// How a failing authorizer call is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// One call for every context. If a context's policy query is cancelled
    /// (timeout, `pg_cancel_backend`), each context is asked alone and the
    /// cancelled one fails. Any other error is returned, for the caller to
    /// retry the page.
    OnError,
    /// One call per context, and any error of a context's own call fails
    /// that context: for a page whose authorization failed several times.
    /// Only a lost connection is returned (it is nobody's fault).
    Always,
}

/// Who an error of an authorizer call is attributed to.
#[derive(Debug, PartialEq, Eq)]
enum Blame {
    /// A context's policy query was cancelled: that context's.
    Context,
    /// The connection (lost, refused, shut down): retry, never a context's.
    Connection,
    /// Anything else the server reported: retry, and after a few attempts
    /// blame the context whose call it is.
    Other,
}

fn blame(e: &DbError) -> Blame {
    blame_sqlstate(e.sqlstate())
}

fn blame_sqlstate(code: Option<&str>) -> Blame {
    match code {
        // Statement timeout or pg_cancel_backend; an ASSERT in a policy
        // function (plpgsql's `others` catches neither).
        Some("57014") | Some("P0004") => Blame::Context,
        None => Blame::Connection,
        Some(s) if s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03") => {
            Blame::Connection
        }
        Some(_) => Blame::Other,
    }
}

/// What the authorizer has had to deal with, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuthorizerStats {
    /// Security contexts that could not be evaluated (counted per page).
    pub contexts_failed: AtomicU64,
    /// Row images hidden because a policy raised an error on them.
    pub rows_hidden_by_errors: AtomicU64,
    /// Pages whose contexts had to be authorized one per call.
    pub isolated_pages: AtomicU64,
    /// Subscriptions ended because their security context failed.
    pub subscriptions_ended: AtomicU64,
    /// Batches (or pages) whose old or new images were judged at dispatch
    /// time because a held snapshot was lost.
    pub snapshot_fallbacks: AtomicU64,
    /// Security contexts that could not be evaluated, per
    /// [`ContextFailure`] (in [`ContextFailure::ALL`]'s order).
    pub failed_by_kind: [AtomicU64; 3],
    /// Live pages whose authorizer call failed as a whole (retried).
    pub failed_calls: AtomicU64,
}

impl AuthorizerStats {
    /// Counts what `verdicts` report.
    pub fn record(&self, verdicts: &Verdicts) {
        self.contexts_failed
            .fetch_add(verdicts.failed_contexts() as u64, Ordering::Relaxed);
        self.rows_hidden_by_errors
            .fetch_add(verdicts.hidden_by_errors as u64, Ordering::Relaxed);
        if verdicts.isolated {
            self.isolated_pages.fetch_add(1, Ordering::Relaxed);
        }
        self.snapshot_fallbacks
            .fetch_add(verdicts.fell_back as u64, Ordering::Relaxed);
        for failure in verdicts.failed.values() {
            self.failed_by_kind[failure.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Answers a batch of checks. The database in the service; the hub takes it
/// as a parameter so that unit tests can drive it without Postgres.
pub trait Authorize: Send + Sync {
    /// The verdicts for `checks` under `contexts`, each judged as of its
    /// moment (`as_of` holds the snapshots the moments stand for). An error
    /// means nothing was decided and the page must be retried.
    fn authorize<'a>(
        &'a self,
        contexts: &'a [&'a Caller],
        checks: &'a [Check],
        as_of: &'a AsOf,
        isolation: Isolation,
    ) -> BoxFuture<'a, Result<Verdicts, DbError>>;
}

/// The authorizer of the service: `herald.authorize` over a pooled connection.
#[derive(Clone)]
pub struct PgAuthorizer {
    pool: Pool,
}

impl PgAuthorizer {
    /// Authorizes with connections from `pool`.
    pub fn new(pool: Pool) -> PgAuthorizer {
        PgAuthorizer { pool }
    }
}

impl Authorize for PgAuthorizer {
    fn authorize<'a>(
        &'a self,
        contexts: &'a [&'a Caller],
        checks: &'a [Check],
        as_of: &'a AsOf,
        isolation: Isolation,
    ) -> BoxFuture<'a, Result<Verdicts, DbError>> {
        Box::pin(async move {
            if checks.is_empty() {
                return Ok(Verdicts::default());
            }
            let mut client = self.pool.get().await?;
            as_of::authorize_at(&mut client, contexts, checks, as_of, isolation).await
        })
    }
}

/// Evaluates `checks` under `contexts` in snapshot `at` (`None`: now), as
/// [`Isolation`] says: one call, or one call per context when that fails (or
/// always). `first`: the one call's attempt, when made already (in a flight
/// with other moments). The inner error: `at` could not be imported.
pub(super) async fn authorize_isolating(
    client: &mut tokio_postgres::Client,
    contexts: &[&Caller],
    checks: &[Check],
    isolation: Isolation,
    at: Option<&ExportedSnapshot>,
    first: Option<Attempt>,
) -> Attempt {
    if isolation == Isolation::OnError {
        let attempt = match first {
            Some(attempt) => attempt,
            None => authorize_in(client, contexts, checks, at).await,
        };
        match attempt {
            Ok(verdicts) => return Ok(verdicts),
            Err(e) if blame(&e) == Blame::Context => {
                tracing::warn!(error = %e, contexts = contexts.len(),
                    "authorizer call failed; authorizing one context at a time");
            }
            Err(e) => return Err(e),
        }
    }
    let mut verdicts = Verdicts {
        visible: vec![false; checks.len()],
        isolated: true,
        ..Verdicts::default()
    };
    let mut by_context: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, check) in checks.iter().enumerate() {
        by_context.entry(check.context).or_default().push(i);
    }
    let mut order: Vec<usize> = by_context.keys().copied().collect();
    order.sort_unstable();
    for context in order {
        let indexes = &by_context[&context];
        let alone: Vec<Check> = indexes
            .iter()
            .map(|&i| Check {
                context: 0,
                ..checks[i].clone()
            })
            .collect();
        match authorize_in(client, &[contexts[context]], &alone, at).await {
            Ok(Err(failed)) => return Ok(Err(failed)),
            Ok(Ok(one)) => {
                if let Some(failure) = one.failure(0) {
                    verdicts.failed.insert(context, failure);
                    continue;
                }
                for (k, &i) in indexes.iter().enumerate() {
                    verdicts.visible[i] = one.visible(k);
                }
                verdicts.hidden_by_errors += one.hidden_by_errors;
                for ((_, relid), columns) in one.columns {
                    verdicts.columns.insert((context, relid), columns);
                }
            }
            Err(e) => match (blame(&e), isolation) {
                (Blame::Connection, _) | (Blame::Other, Isolation::OnError) => return Err(e),
                (Blame::Context, _) | (Blame::Other, Isolation::Always) => {
                    tracing::warn!(error = %e, role = %contexts[context].role,
                        "security context failed: its policies could not be evaluated");
                    verdicts.failed.insert(context, ContextFailure::Policy);
                }
            },
        }
    }
    Ok(Ok(verdicts))
}

/// Evaluates `checks` under `contexts` in one call, in one transaction,
/// against the database as it is now. Contexts that fail inside the call are
/// reported in the verdicts; an error means the call as a whole failed.
pub async fn authorize(
    client: &mut tokio_postgres::Client,
    contexts: &[&Caller],
    checks: &[Check],
) -> Result<Verdicts, DbError> {
    authorize_in(client, contexts, checks, None)
        .await?
        .map_err(|ImportFailed(e)| e.into())
}

/// [`authorize`] in snapshot `at` (`None`: now). The inner error: `at`
/// could not be imported.
async fn authorize_in(
    client: &mut tokio_postgres::Client,
    contexts: &[&Caller],
    checks: &[Check],
    at: Option<&ExportedSnapshot>,
) -> Attempt {
    let mut attempts = authorize_many(client, contexts, &[(checks, at)]).await;
    attempts.pop().expect("one attempt per part")
}

/// What one call answered: the verdicts, or (inner error) that its snapshot
/// could not be imported.
pub(super) type Attempt = Result<Result<Verdicts, ImportFailed>, DbError>;

/// [`authorize_in`] for several parts of a page at once, each its own call
/// in its own transaction (in its own snapshot), all in one flight: one
/// attempt per part, in order.
pub(super) async fn authorize_many(
    client: &mut tokio_postgres::Client,
    contexts: &[&Caller],
    parts: &[(&[Check], Option<&ExportedSnapshot>)],
) -> Vec<Attempt> {
    let calls: Vec<Call> = parts
        .iter()
        .map(|(checks, _)| Call::new(contexts, checks))
        .collect();
    let params: Vec<_> = calls.iter().map(Call::params).collect();
    // A part with nothing to ask needs no transaction (nor its snapshot).
    let transactions: Vec<Transaction> = parts
        .iter()
        .zip(&calls)
        .zip(&params)
        .filter(|((_, call), _)| !call.is_empty())
        .map(|(((_, at), _), params)| Transaction {
            at: *at,
            sql: call::AUTHORIZE,
            params,
        })
        .collect();
    let mut answers = flight::fly(client, &transactions).await.into_iter();
    calls
        .into_iter()
        .zip(parts)
        .map(|(call, (checks, _))| {
            if call.is_empty() {
                return Ok(Ok(call.unsent()));
            }
            match answers.next().expect("one answer per transaction")? {
                Ok(rows) => Ok(Ok(call.read(contexts, checks, rows)?)),
                Err(failed) => Ok(Err(failed)),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;
