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
use crate::events::relay::RelayStatus;
use crate::graphql::{Context, SchemaHandle};
use crate::metrics::Metrics;
use crate::origin::AllowedOrigins;
use crate::ws::Registry;

/// Why a caller could not be established.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// The token was refused (missing, invalid, expired, a role not allowed).
    #[error(transparent)]
    Refused(#[from] AuthError),
    /// The token could not be checked: the database did not answer. Not the
    /// client's fault; it may try again.
    #[error("service unavailable: the database could not be reached")]
    Unavailable,
}

impl LoginError {
    /// The HTTP status and error code it is answered with: a refused token
    /// is 401, one that could not be checked 503.
    pub fn http_status(&self) -> (warp::http::StatusCode, &'static str) {
        match self {
            LoginError::Refused(_) => (warp::http::StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            LoginError::Unavailable => (warp::http::StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        }
    }
}

/// State shared by every request and connection.
pub struct AppState {
    /// Query pool for callers' reads (runs as the login role; callers'
    /// identity is set per transaction).
    pub pool: Pool,
    /// A small pool of its own for the work every subscriber depends on
    /// (authorizing batches, catalog reloads, pruning, readiness), so that a
    /// flood of client queries cannot starve it.
    pub internal_pool: Pool,
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
    /// Whether this instance is the relay, and what it sent.
    pub relay: Arc<RelayStatus>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Caps open WebSocket connections.
    pub connection_permits: Arc<Semaphore>,
    /// Open WebSocket connections per client IP and per subject.
    pub connections: Arc<Registry>,
    /// Origins besides the server's own that may authenticate with the cookie.
    pub origins: AllowedOrigins,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// The instance's metrics registry, for `/metrics`.
    pub metrics: Metrics,
}

impl AppState {
    /// The caller for `token`: verified, and its role one the login role may assume.
    /// A database failure during the role check is [`LoginError::Unavailable`],
    /// never a refusal of the token.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, LoginError> {
        let caller = match (token, &self.anon_role) {
            (Some(token), _) => self.verifier.verify(token).await?,
            // The anonymous role passes the same role check as a token's.
            (None, Some(anon)) => Caller::anonymous(anon),
            (None, None) => return Err(AuthError::Missing.into()),
        };
        match self.roles.may_assume(&self.pool, &caller.role).await {
            Ok(true) => Ok(caller),
            Ok(false) => Err(AuthError::RoleNotAllowed(caller.role).into()),
            Err(e) => {
                tracing::error!(error = %e, "role check failed: database unavailable");
                Err(LoginError::Unavailable)
            }
        }
    }

    /// The GraphQL context of `caller`'s operations.
    pub fn context(&self, caller: Caller) -> Context {
        Context {
            caller: Arc::new(caller),
            pool: self.pool.clone(),
            feed: self.feed.clone(),
            query_timeout: self.limits.query_timeout,
        }
    }
}
