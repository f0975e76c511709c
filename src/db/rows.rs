//! Reading a tracked table's rows as a caller (RLS and column privileges
//! apply), together with the snapshot the rows were read in, in one
//! repeatable-read transaction: a cursor at that snapshot continues exactly
//! where the read ends.

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::Value;

use std::time::Duration;

use super::DbError;
use super::jsonb::{ExactJson, Jsonb};
use super::session;
use crate::auth::Caller;
use crate::events::outbox;
use crate::events::snapshot::Snapshot;

/// What to read.
pub struct RowQuery<'a> {
    /// Table oid.
    pub relid: u32,
    /// Validated filter (`{}` for all rows).
    pub filter: &'a Value,
    /// `[{"column": .., "direction": "ASC"|"DESC"}]`.
    pub order_by: &'a Value,
    /// At most this many rows.
    pub limit: i32,
    /// Sort key of the last row already read.
    pub after: Option<&'a Value>,
    /// Longest any statement may run.
    pub timeout: Duration,
}

/// Rows read, each with its sort key, and the snapshot they were read in.
pub struct RowsRead {
    /// Row images (selectable columns only) and sort keys.
    pub rows: Vec<(Arc<Value>, Value)>,
    /// The transaction's snapshot.
    pub snapshot: Snapshot,
}

/// Reads rows of a tracked table as `caller`.
pub async fn read_as(
    pool: &Pool,
    caller: &Caller,
    query: RowQuery<'_>,
) -> Result<RowsRead, DbError> {
    let mut client = pool.get().await?;
    let tx = session::read_as(&mut client, caller, query.timeout).await?;
    // Repeatable read: this snapshot is the one every statement below sees.
    let snapshot = outbox::current_snapshot(&tx).await?;
    let rows = tx
        .query(
            "select image, sort_key from herald.read_rows($1::oid::regclass, $2, $3, $4, $5)",
            &[
                &query.relid,
                query.filter,
                query.order_by,
                &query.limit,
                &query.after.map(ExactJson),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(RowsRead {
        rows: rows
            .iter()
            .map(|r| (Arc::new(r.get::<_, Jsonb>(0).0), r.get::<_, Jsonb>(1).0))
            .collect(),
        snapshot,
    })
}
