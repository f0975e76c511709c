//! Resuming from a cursor: what a subscriber missed, converged to the
//! present. Replaying the missed row versions would hand out versions the
//! subscriber could never read (judged by today's policies, a version written
//! before it joined a tenant looks readable), so catch-up delivers instead,
//! for each row changed since the cursor:
//!
//! - its current version, read as the subscriber (row-level security, column
//!   privileges, its filter), when it may see it now: an `INSERT` if the row
//!   did not exist at the cursor, else an `UPDATE` (with no old version);
//! - a key-only removal when it may not, and the row as it was at the cursor
//!   passes its policies and filter today (so the subscriber may have it):
//!   a `DELETE` if the row is gone, else an `UPDATE` with no new version.
//!
//! Everything is read in one repeatable-read transaction at a snapshot `S`
//! taken after the subscription joined the live stream; live deliveries of
//! transactions visible in `S` are then dropped (see [`CatchUp::upto`]), so
//! nothing is missed or delivered twice. Converged changes carry the
//! client's own cursor, the last one a cursor at `S`: a client that drops
//! out half-way converges again from where it started.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;

use super::cursor::Cursor;
use super::delivery::{Bounds, Delivery, Interest};
use super::outbox::{self, OutboxError};
use super::snapshot::Snapshot;
use super::{Event, Op};
use crate::db::as_of::{AsOf, Moment};
use crate::db::authorizer::{Authorize, AuthorizerStats, Check, ContextFailure, Isolation};
use crate::db::jsonb::Jsonb;
use crate::db::{DbError, session};

/// At most this many rows may have changed since a cursor; beyond it the
/// client reads the table again (bounds the work and memory of one resume).
pub const MAX_CHANGED_ROWS: i64 = 10_000;

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
    /// Too many rows changed since the cursor.
    #[error(
        "more than {MAX_CHANGED_ROWS} rows of the table changed since this cursor; resync required"
    )]
    TooManyChanges,
    /// Reading failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The subscriber's security context could not be evaluated.
    #[error("security context failed ({0:?})")]
    ContextFailed(ContextFailure),
}

impl From<OutboxError> for CatchupError {
    fn from(e: OutboxError) -> Self {
        CatchupError::Db(e.into())
    }
}

impl From<tokio_postgres::Error> for CatchupError {
    fn from(e: tokio_postgres::Error) -> Self {
        CatchupError::Db(e.into())
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

/// A converged catch-up: its deliveries, and the snapshot they bring the
/// subscriber to.
pub struct CatchUp {
    /// In the order of each row's last change.
    pub deliveries: Vec<Delivery>,
    /// Every transaction visible here is accounted for: live deliveries of
    /// these are dropped.
    pub upto: Snapshot,
}

/// One row changed since the cursor, as `herald.changed_rows` lists it.
struct Changed {
    key: String,
    before: Option<Arc<Value>>,
    gone: bool,
    xid: u64,
    at: chrono::DateTime<chrono::Utc>,
}

/// Converges the subscriber of `interest` from `cursor` to now. Reads with
/// `pool` (a client's read, so statements run at most `timeout`) and asks
/// `authorizer` about rows that may have left the subscriber's view.
pub async fn converge(
    pool: &Pool,
    authorizer: &dyn Authorize,
    stats: &AuthorizerStats,
    interest: &Interest,
    cursor: &Cursor,
    timeout: Duration,
) -> Result<CatchUp, CatchupError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let client: &mut tokio_postgres::Client = &mut client;
    // The outbox's partitions are locked against pruning for the whole
    // transaction; a prune that emptied one while its snapshot was being
    // taken makes it start again (rarely twice: a prune empties a partition
    // at most once per run).
    let mut attempt = 0;
    let (tx, upto) = loop {
        attempt += 1;
        let tx = crate::db::session::read_only(client).await?;
        match outbox::locked_snapshot(&tx).await? {
            Some(upto) => break (tx, upto),
            None if attempt < 3 => continue,
            None => return Err(CatchupError::Expired),
        }
    };
    // In the same snapshot as the events: a prune cannot slip in between.
    let pruned: Option<i64> = tx
        .query_one("select pruned_xid::text::bigint from herald.retention", &[])
        .await?
        .get(0);
    if pruned.is_some_and(|xid| !cursor.low.sees(xid as u64)) {
        // The newest pruned transaction is not consumed by the cursor (`high`
        // covers `low`, checked when it was decoded). Visibility, not `xmin`:
        // a snapshot's `xmin` is held back by any transaction in the cluster.
        return Err(CatchupError::Expired);
    }
    // Named as the capture trigger names it (`regclass` under a search path
    // of `pg_catalog` only): always schema-qualified.
    let table: String = tx
        .query_one(
            "select pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
               from pg_catalog.pg_class c
               join pg_catalog.pg_namespace n on n.oid = c.relnamespace
              where c.oid = $1",
            &[&interest.relid],
        )
        .await?
        .get(0);
    let rows = tx
        .query(
            "select key, before, gone, last_xid, last_at
               from herald.changed_rows($1, $2, $3, $4, $5, $6)",
            &[
                &interest.relid,
                &cursor.low.to_string(),
                &cursor.high.to_string(),
                &cursor.id,
                &upto.to_string(),
                &(MAX_CHANGED_ROWS + 1),
            ],
        )
        .await?;
    if rows.len() as i64 > MAX_CHANGED_ROWS {
        return Err(CatchupError::TooManyChanges);
    }
    let mut changed = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(key) = row.get::<_, Option<String>>("key") else {
            if interest.ops.contains(Op::Truncate) {
                // Which of its rows are gone cannot be told row by row.
                return Err(CatchupError::Truncated);
            }
            continue;
        };
        changed.push(Changed {
            key,
            before: row
                .try_get::<_, Option<Jsonb>>("before")?
                .map(|j| Arc::new(j.0)),
            gone: row.get("gone"),
            xid: row.get::<_, i64>("last_xid") as u64,
            at: row.get("last_at"),
        });
    }
    if changed.is_empty() {
        tx.commit().await?;
        return Ok(CatchUp {
            deliveries: Vec::new(),
            upto,
        });
    }
    session::assume(&tx, &interest.caller, timeout).await?;
    let keys: Vec<&str> = changed.iter().map(|c| c.key.as_str()).collect();
    let mut current: HashMap<String, Arc<Value>> = HashMap::new();
    for row in tx
        .query(
            "select key, image from herald.read_keys($1::oid::regclass, $2)",
            &[&interest.relid, &keys],
        )
        .await?
    {
        current.insert(row.get(0), Arc::new(row.try_get::<_, Jsonb>(1)?.0));
    }
    tx.commit().await?;

    let current: Vec<Option<Arc<Value>>> = changed
        .iter()
        .map(|c| current.remove(&c.key))
        .map(|row| row.filter(|r| interest.filter.matches(r)))
        .collect();
    let had = had_before(authorizer, stats, interest, &changed, &current).await?;
    let mut decided = Vec::new();
    for ((change, row), had) in changed.iter().zip(current).zip(had) {
        let (op, row, old) = match (row, had) {
            (Some(row), _) if change.before.is_some() => (Op::Update, Some(row), None),
            (Some(row), _) => (Op::Insert, Some(row), None),
            (None, Some(key)) if change.gone => (Op::Delete, None, Some(key)),
            (None, Some(key)) => (Op::Update, None, Some(key)),
            (None, None) => continue,
        };
        if interest.ops.contains(op) {
            decided.push((change, op, row, old));
        }
    }
    // Converged changes resume from the client's own cursor; the last one
    // brings the client to `upto`.
    let table: Arc<str> = table.into();
    let from_cursor = Arc::new(Bounds {
        low: cursor.low.clone(),
        high: cursor.high.clone(),
    });
    let at_upto = Arc::new(Bounds {
        low: upto.clone(),
        high: upto.clone(),
    });
    let last = decided.len().saturating_sub(1);
    let deliveries = decided
        .into_iter()
        .enumerate()
        .map(|(i, (change, op, row, old))| {
            let (id, bounds) = match i == last {
                true => (0, at_upto.clone()),
                false => (cursor.id, from_cursor.clone()),
            };
            Delivery {
                event: Arc::new(Event {
                    id,
                    xid: change.xid,
                    relid: interest.relid,
                    table: table.clone(),
                    op,
                    new_row: row.clone(),
                    old_row: old.clone(),
                    committed_at: change.at,
                }),
                row,
                old,
                bounds,
                // Each converged change is its own event, for this subscriber only.
                renderings: Arc::default(),
            }
        })
        .collect();
    Ok(CatchUp { deliveries, upto })
}

/// For each changed row the subscriber may not see now: the key-only image
/// to remove it by, when the row as it was at the cursor passes the
/// subscriber's policies and filter today (it may hold that row).
async fn had_before(
    authorizer: &dyn Authorize,
    stats: &AuthorizerStats,
    interest: &Interest,
    changed: &[Changed],
    current: &[Option<Arc<Value>>],
) -> Result<Vec<Option<Arc<Value>>>, CatchupError> {
    let asked: Vec<usize> = (0..changed.len())
        .filter(|&i| current[i].is_none() && changed[i].before.is_some())
        .collect();
    let mut had = vec![None; changed.len()];
    if asked.is_empty() {
        return Ok(had);
    }
    let checks: Vec<Check> = asked
        .iter()
        .map(|&i| Check {
            context: 0,
            relid: interest.relid,
            image: changed[i].before.clone().expect("asked rows existed"),
            moment: Moment::Now,
        })
        .collect();
    let verdicts = authorizer
        .authorize(
            &[interest.caller.as_ref()],
            &checks,
            &AsOf::default(),
            Isolation::OnError,
        )
        .await?;
    stats.record(&verdicts);
    if let Some(failure) = verdicts.failure(0) {
        stats
            .subscriptions_ended
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(CatchupError::ContextFailed(failure));
    }
    for (k, &i) in asked.iter().enumerate() {
        if !verdicts.visible(k) {
            continue;
        }
        let seen = verdicts.restrict(0, interest.relid, &checks[k].image);
        if interest.filter.matches(&seen) {
            let key = crate::db::jsonb::parse(&changed[i].key)
                .map_err(|e| DbError::Data(format!("row key: {e}")))?;
            had[i] = Some(Arc::new(key));
        }
    }
    Ok(had)
}
