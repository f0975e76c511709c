//! Resuming from a cursor: the events a subscriber missed between its cursor
//! and the position at which it joined the live stream, read from the outbox
//! and authorized for that one subscriber.
//!
//! With cursor `(low, high, id)` and join position `P` (which covers `high`),
//! the missed events are, in order: the rest of the cursor's batch (visible in
//! `high`, not in `low`, id above `id`), then everything visible in `P` but
//! not in `high`. Live batches start after `P`, so nothing is missed twice.

use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::Stream;

use super::Op;
use super::cursor::Cursor;
use super::delivery::{self, Bounds, DecideError, Delivery, Interest};
use super::outbox::{self, PAGE_SIZE};
use super::snapshot::Snapshot;
use crate::db::DbError;
use crate::db::authorizer::{AuthorizerStats, ContextFailure, PgAuthorizer};

/// Why a cursor cannot be resumed from.
#[derive(Debug, thiserror::Error)]
pub enum CatchupError {
    /// The cursor belongs to another database (restored, failed over).
    #[error("cursor is from another database; resync required")]
    ForeignCursor,
    /// Events after the cursor were pruned.
    #[error("cursor is older than the event retention; resync required")]
    Expired,
    /// The table was truncated after the cursor.
    #[error("the table was truncated after this cursor; resync required")]
    Truncated,
    /// Reading failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// Reading failed.
    #[error("outbox: {0}")]
    Outbox(#[from] outbox::OutboxError),
    /// The subscriber's security context could not be evaluated.
    #[error("security context failed ({0:?})")]
    ContextFailed(ContextFailure),
}

impl From<DecideError> for CatchupError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::Db(e) => CatchupError::Db(e),
            DecideError::ContextFailed(failure) => CatchupError::ContextFailed(failure),
        }
    }
}

/// The key this database's cursors are signed with.
pub async fn cursor_key(pool: &Pool) -> Result<String, DbError> {
    let client = pool.get().await?;
    let row = client.query_one("select herald.cursor_key()", &[]).await?;
    Ok(row.get(0))
}

/// This database's identity, for cursors.
pub async fn server_identity(pool: &Pool) -> Result<String, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one("select herald.server_identity()", &[])
        .await?;
    Ok(row.get(0))
}

/// Refuses cursors that would miss events.
pub async fn check_resumable(
    pool: &Pool,
    identity: &str,
    cursor: &Cursor,
) -> Result<(), CatchupError> {
    if cursor.identity != identity {
        return Err(CatchupError::ForeignCursor);
    }
    let client = pool.get().await.map_err(DbError::from)?;
    let row = client
        .query_one("select pruned_xid::text::bigint from herald.retention", &[])
        .await
        .map_err(DbError::from)?;
    let pruned: Option<i64> = row.get(0);
    // Expired when the newest pruned transaction is not consumed by the
    // cursor (`high` covers `low`, checked when it was decoded). Visibility,
    // not `xmin`: a snapshot's `xmin` is held back by any transaction running
    // anywhere in the cluster, which would refuse cursors younger than the prune.
    match pruned {
        Some(xid) if !cursor.low.sees(xid as u64) => Err(CatchupError::Expired),
        _ => Ok(()),
    }
}

struct Phase {
    bounds: Arc<Bounds>,
    after_id: i64,
    done: bool,
}

/// The deliveries between `cursor` and `position`, in order, page by page;
/// what the authorizer had to deal with is counted in `stats`.
pub fn replay(
    pool: Pool,
    interest: Interest,
    cursor: Cursor,
    position: Snapshot,
    stats: Arc<AuthorizerStats>,
) -> impl Stream<Item = Result<Delivery, CatchupError>> + Send {
    let phases = vec![
        Phase {
            bounds: Arc::new(Bounds {
                low: cursor.high.clone(),
                high: position,
            }),
            after_id: 0,
            done: false,
        },
        Phase {
            bounds: Arc::new(Bounds {
                low: cursor.low.clone(),
                high: cursor.high.clone(),
            }),
            after_id: cursor.id,
            done: false,
        },
    ];
    // `phases` is a stack: the cursor's own batch first.
    let state = (
        (pool, stats),
        interest,
        phases,
        Vec::<Delivery>::new().into_iter(),
    );
    futures::stream::unfold(
        state,
        |((pool, stats), interest, mut phases, mut ready)| async move {
            loop {
                if let Some(d) = ready.next() {
                    return Some((Ok(d), ((pool, stats), interest, phases, ready)));
                }
                let phase = phases.last_mut()?;
                let bounds = phase.bounds.clone();
                let result = next_page(&pool, &stats, &interest, phase).await;
                if phase.done {
                    phases.pop();
                }
                match result {
                    Ok(ds) => ready = ds.into_iter(),
                    Err(e) => {
                        tracing::warn!(error = %e, low = %bounds.low, "cursor catch-up failed");
                        phases.clear();
                        return Some((Err(e), ((pool, stats), interest, phases, ready)));
                    }
                }
            }
        },
    )
}

/// Reads the next page of `phase` and decides its deliveries.
async fn next_page(
    pool: &Pool,
    stats: &AuthorizerStats,
    interest: &Interest,
    phase: &mut Phase,
) -> Result<Vec<Delivery>, CatchupError> {
    let page = {
        let client = pool.get().await.map_err(DbError::from)?;
        outbox::read_page(
            &client,
            &phase.bounds.low,
            &phase.bounds.high,
            phase.after_id,
        )
        .await?
    };
    if interest.ops.contains(Op::Truncate)
        && page
            .iter()
            .any(|e| e.relid == interest.relid && e.op == Op::Truncate)
    {
        // Replaying the changes around a truncate would not tell the client
        // which of its rows are gone: it must read the table again.
        return Err(CatchupError::Truncated);
    }
    match page.last() {
        Some(last) if page.len() as i64 == PAGE_SIZE => phase.after_id = last.id,
        _ => phase.done = true,
    }
    let authorizer = PgAuthorizer::new(pool.clone());
    Ok(delivery::deliveries_for(&authorizer, stats, interest, &page, &phase.bounds).await?)
}
