//! Reads `herald.events` between two snapshots: the one query both the
//! listener and cursor catch-up use, so they cannot disagree.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::snapshot::Snapshot;
use super::{Event, Op};
use crate::db::jsonb::Jsonb;

/// Events per page; a batch larger than this is read in several pages.
pub const PAGE_SIZE: i64 = 1000;

/// Failure reading the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The database returned something this code does not understand.
    #[error("unexpected outbox data: {0}")]
    Data(String),
}

impl From<OutboxError> for crate::db::DbError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Db(e) => e.into(),
            OutboxError::Data(d) => crate::db::DbError::Data(d),
        }
    }
}

/// The current snapshot of the database.
pub async fn current_snapshot(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Snapshot, OutboxError> {
    let row = client
        .query_one("select pg_current_snapshot()::text", &[])
        .await?;
    let text: String = row.get(0);
    text.parse().map_err(|e| OutboxError::Data(format!("{e}")))
}

/// The snapshot of a repeatable-read transaction that reads the outbox
/// (`tx`'s first statement), with the outbox's partitions locked against
/// pruning until `tx` ends (`herald.outbox_snapshot`, migrations/V11).
/// `Ok(None)`: a prune emptied a partition while the snapshot was being
/// taken; start another transaction.
pub async fn locked_snapshot(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Option<Snapshot>, OutboxError> {
    match tx.query_one("select herald.outbox_snapshot()", &[]).await {
        Ok(row) => {
            let text: String = row.get(0);
            text.parse()
                .map(Some)
                .map_err(|e| OutboxError::Data(format!("{e}")))
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads pages of the outbox on one connection, with the query prepared
/// once (one round trip per page, not two).
pub struct Reader {
    statement: Statement,
}

impl Reader {
    /// Prepares the read on `client`; valid on that connection only.
    pub async fn prepare(client: &Client) -> Result<Reader, OutboxError> {
        let statement = client
            .prepare(include_str!("../../sql/read_events.sql"))
            .await?;
        Ok(Reader { statement })
    }

    /// One page of the events committed after `low` and visible in `high`,
    /// with an outbox id above `after_id`, in id order.
    pub async fn read_page(
        &self,
        client: &Client,
        low: &Snapshot,
        high: &Snapshot,
        after_id: i64,
    ) -> Result<Vec<Arc<Event>>, OutboxError> {
        let params: [&(dyn ToSql + Sync); 4] =
            [&low.to_string(), &high.to_string(), &after_id, &PAGE_SIZE];
        events(client, &self.statement, &params).await
    }
}

/// Reads a batch's first page inside the repeatable-read transaction that
/// holds the batch's end, so that holding it and reading can share one round
/// trip ([`super::moments`]).
pub struct FirstPage {
    statement: Statement,
}

impl FirstPage {
    /// Prepares the read on `client`; valid on that connection only.
    pub async fn prepare(client: &Client) -> Result<FirstPage, OutboxError> {
        let statement = client
            .prepare(include_str!("../../sql/read_first_page.sql"))
            .await?;
        Ok(FirstPage { statement })
    }

    /// The events committed after `low` and visible in the snapshot of the
    /// transaction open on `client`, at most a page. The request is sent on
    /// the first poll, so it can follow the statement that opens the
    /// transaction without waiting for its answer.
    pub async fn read(
        &self,
        client: &Client,
        low: &Snapshot,
    ) -> Result<Vec<Arc<Event>>, OutboxError> {
        let params: [&(dyn ToSql + Sync); 2] = [&low.to_string(), &PAGE_SIZE];
        events(client, &self.statement, &params).await
    }
}

/// The events a read statement returns.
async fn events(
    client: &Client,
    statement: &Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Arc<Event>>, OutboxError> {
    let rows = client.query(statement, params).await?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(row: &Row) -> Result<Arc<Event>, OutboxError> {
    let op: String = row.get("op");
    let xid: i64 = row.get("xid");
    let relid: u32 = row.get("relid");
    let table: String = row.get("table_name");
    Ok(Arc::new(Event {
        id: row.get("id"),
        xid: xid as u64,
        relid,
        table: table.into(),
        op: Op::from_sql(&op).ok_or_else(|| OutboxError::Data(format!("op {op:?}")))?,
        new_row: row
            .try_get::<_, Option<Jsonb>>("new_row")?
            .map(|j| Arc::new(j.0)),
        old_row: row
            .try_get::<_, Option<Jsonb>>("old_row")?
            .map(|j| Arc::new(j.0)),
        committed_at: row.get("committed_at"),
    }))
}
