//! The one place a connection takes on a caller's identity: inside a
//! transaction, with role and claims set transaction-locally (never
//! session-wide, which would leak to the pool's next user).

use tokio_postgres::{Client, Transaction};

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
