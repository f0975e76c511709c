//! `connection_init` for both protocols: the token from the payload (or the
//! upgrade request), verified into a caller, and the connection's settings.

use crate::graphql::scalar::Scalar;
use std::sync::Arc;
use std::time::Duration;

use juniper::Variables;
use juniper_graphql_ws::ConnectionConfig;
use serde_json::Value;

use crate::auth::{self, AuthError};
use crate::graphql::Context;
use crate::state::AppState;

/// Authenticates an init payload; returns the connection's configuration
/// (with `keep_alive` as juniper's keep-alive interval, zero for none) and
/// the token's expiry.
pub(super) async fn accept(
    app: Arc<AppState>,
    params: Variables<Scalar>,
    upgrade_token: Option<String>,
    keep_alive: Duration,
) -> Result<(ConnectionConfig<Context, Scalar>, Option<i64>), AuthError> {
    let payload = serde_json::to_value(&params).unwrap_or(Value::Null);
    let token = auth::token_from_init_payload(&payload).or(upgrade_token);
    let caller = app.authenticate(token.as_deref()).await?;
    let exp = caller.exp;
    let max_ops = app.limits.max_operations;
    let config = ConnectionConfig::new(app.context(caller))
        .with_max_in_flight_operations(max_ops)
        .with_keep_alive_interval(keep_alive);
    Ok((config, exp))
}
