//! State shared by every request and connection: what the HTTP and WebSocket
//! handlers need, built once by [`crate::app::Application::build`].

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, Caller, Verifier};
use crate::config::Limits;
use crate::db::roles::RoleGate;
use crate::events::feed::Feed;
use crate::events::hub::Hub;
use crate::events::listener::ListenerStatus;
use crate::graphql::{Context, SchemaHandle};

/// State shared by every request and connection.
pub struct AppState {
    /// Query pool for callers' reads (runs as the login role; callers'
    /// identity is set per transaction).
    pub pool: Pool,
    /// A small pool of its own for the work every subscriber depends on
    /// (authorizing batches, catalog reloads, pruning, readiness), so that a
    /// flood of client queries cannot starve it.
    pub internal_pool: Pool,
    /// Longest a statement of a caller's read may run.
    pub query_timeout: std::time::Duration,
    /// Routes events to subscriptions.
    pub hub: Arc<Hub>,
    /// Where subscriptions join the event stream.
    pub feed: Arc<Feed>,
    /// The GraphQL schema, rebuilt when the tracked tables change.
    pub schema: SchemaHandle,
    /// JWT verification.
    pub verifier: Verifier,
    /// Which roles tokens may name.
    pub roles: RoleGate,
    /// Role of connections without a token.
    pub anon_role: Option<String>,
    /// Listener health.
    pub listener: Arc<ListenerStatus>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Caps open WebSocket connections.
    pub connection_permits: Arc<Semaphore>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The caller for `token`: verified, and its role one the login role may assume.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        let caller = match (token, &self.anon_role) {
            (Some(token), _) => self.verifier.verify(token)?,
            (None, Some(anon)) => return Ok(Caller::anonymous(anon)),
            (None, None) => return Err(AuthError::Missing),
        };
        match self.roles.may_assume(&self.pool, &caller.role).await {
            Ok(true) => Ok(caller),
            Ok(false) => Err(AuthError::RoleNotAllowed(caller.role)),
            Err(e) => {
                tracing::error!(error = %e, "role check failed");
                Err(AuthError::Invalid)
            }
        }
    }

    /// The GraphQL context of `caller`'s operations.
    pub fn context(&self, caller: Caller) -> Context {
        Context {
            caller: Arc::new(caller),
            pool: self.pool.clone(),
            feed: self.feed.clone(),
            query_timeout: self.query_timeout,
        }
    }
}
