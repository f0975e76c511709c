//! The one place a connection takes on a caller's identity: inside a
//! transaction, with role and claims set transaction-locally (never
//! session-wide, which would leak to the pool's next user).

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};

use crate::auth::Caller;

use super::DbError;

/// Begins a transaction running as `caller`: its role, its claims in
/// `request.jwt.claims`, so that row-level security applies.
pub async fn begin_as<'a>(
    client: &'a mut Client,
    caller: &Caller,
) -> Result<Transaction<'a>, DbError> {
    let tx = client.transaction().await?;
    tx.execute(
        "select herald.set_context($1, $2)",
        &[&caller.role, caller.claims.as_ref()],
    )
    .await?;
    Ok(tx)
}

/// Runs one statement as `caller` in its own transaction and returns its rows.
pub async fn query_as(
    pool: &Pool,
    caller: &Caller,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, DbError> {
    let mut client = pool.get().await?;
    let tx = begin_as(&mut client, caller).await?;
    let rows = tx.query(sql, params).await?;
    tx.commit().await?;
    Ok(rows)
}
