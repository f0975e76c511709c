//! The one place a connection takes on a caller's identity: inside a
//! transaction, with role and claims set transaction-locally (never
//! session-wide, which would leak to the pool's next user), and a statement
//! timeout, so that one caller's expensive read cannot hold a connection for long.

use std::time::Duration;

use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::auth::Caller;

use super::DbError;

/// Begins a read-only, repeatable-read transaction running as `caller`: its
/// role, its claims in `request.jwt.claims` (row-level security applies),
/// and every statement limited to `timeout`. Every statement sees the
/// transaction's one snapshot.
pub async fn read_as<'a>(
    client: &'a mut Client,
    caller: &Caller,
    timeout: Duration,
) -> Result<Transaction<'a>, DbError> {
    let tx = read_only(client).await?;
    assume(&tx, caller, timeout).await?;
    Ok(tx)
}

/// A read-only repeatable-read transaction: every statement sees its one
/// snapshot.
pub async fn read_only(client: &mut Client) -> Result<Transaction<'_>, DbError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Makes the rest of transaction `tx` run as `caller`: its role and claims
/// (row-level security applies), and every statement limited to `timeout`.
pub async fn assume(
    tx: &Transaction<'_>,
    caller: &Caller,
    timeout: Duration,
) -> Result<(), DbError> {
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "select herald.set_context($1, $2), set_config('statement_timeout', $3::bigint::text, true)",
        &[&caller.role, caller.claims.as_ref(), &timeout_ms],
    )
    .await?;
    Ok(())
}
