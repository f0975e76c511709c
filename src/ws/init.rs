//! `connection_init` for both protocols: the token from the payload (or the
//! upgrade request), verified into a caller, the subject's connection slot,
//! and the connection's settings. What happened is shared with the protocol
//! handler ([`InitStatus`]) and handed to the session ([`Accepted`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use juniper::Variables;
use juniper_graphql_ws::ConnectionConfig;
use serde_json::Value;
use tokio::sync::oneshot;

use super::registry::SubjectSlot;
use crate::auth::{self, AuthError};
use crate::graphql::Context;
use crate::graphql::scalar::Scalar;
use crate::origin::Credential;
use crate::state::{AppState, LoginError};

/// Why `connection_init` was refused. The text is what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The token was refused, or could not be checked.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The only token was a cookie sent from an origin that may not use it.
    #[error("the JWT cookie is not accepted from this origin; send the token in connection_init")]
    ForeignCookie,
    /// The token's subject has its cap of connections open.
    #[error("too many connections for this subject")]
    SubjectLimit,
}

/// The kinds of refusal, which decide the close code (see `close.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client may not connect with what it sent.
    Forbidden,
    /// The server could not check the token; the client may try again.
    Unavailable,
    /// The subject has too many connections open.
    SubjectLimit,
}

impl InitError {
    /// The kind of refusal.
    pub fn refusal(&self) -> Refusal {
        match self {
            InitError::Login(LoginError::Unavailable) => Refusal::Unavailable,
            InitError::Login(LoginError::Refused(_)) | InitError::ForeignCookie => {
                Refusal::Forbidden
            }
            InitError::SubjectLimit => Refusal::SubjectLimit,
        }
    }
}

impl From<AuthError> for InitError {
    fn from(e: AuthError) -> InitError {
        InitError::Login(e.into())
    }
}

/// What the session learns from an accepted `connection_init`.
#[derive(Debug, Default)]
pub(super) struct Accepted {
    /// The token's expiry (seconds since the epoch).
    pub exp: Option<i64>,
    /// The subject's connection slot, held as long as the connection.
    pub slot: Option<SubjectSlot>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Waiting,
    Accepted,
    Refused(Refusal, String),
}

/// The outcome of `connection_init`, shared by the init callback and the
/// protocol handler.
#[derive(Clone, Debug, Default)]
pub(super) struct InitStatus(Arc<Mutex<State>>);

impl InitStatus {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the token was accepted.
    pub fn accepted(&self) -> bool {
        matches!(*self.state(), State::Accepted)
    }

    /// Why `connection_init` was refused (and the message), once it was.
    pub fn refusal(&self) -> Option<(Refusal, String)> {
        match &*self.state() {
            State::Refused(kind, message) => Some((*kind, message.clone())),
            _ => None,
        }
    }

    /// Records the outcome.
    pub fn set<T>(&self, outcome: &Result<T, InitError>) {
        *self.state() = match outcome {
            Ok(_) => State::Accepted,
            Err(e) => State::Refused(e.refusal(), e.to_string()),
        };
    }
}

/// The init callback of one connection's juniper connection: authenticates
/// the payload's token (else the upgrade request's), takes a slot for the
/// token's subject, records the outcome in `status` and hands the session
/// what it needs on `accepted`. `keep_alive` is juniper's own keep-alive
/// interval (zero: none).
pub(super) fn callback(
    app: Arc<AppState>,
    upgrade: Credential,
    status: InitStatus,
    accepted: oneshot::Sender<Accepted>,
    keep_alive: Duration,
) -> impl FnOnce(
    Variables<Scalar>,
) -> BoxFuture<'static, Result<ConnectionConfig<Context, Scalar>, InitError>>
+ Send
+ Unpin
+ 'static {
    move |params: Variables<Scalar>| {
        Box::pin(async move {
            let result = accept(&app, &params, &upgrade).await;
            status.set(&result);
            let (caller, slot) = result?;
            let _ = accepted.send(Accepted {
                exp: caller.exp,
                slot,
            });
            Ok(ConnectionConfig::new(app.context(caller))
                .with_max_in_flight_operations(app.limits.max_operations)
                .with_keep_alive_interval(keep_alive))
        }) as BoxFuture<'static, _>
    }
}

async fn accept(
    app: &AppState,
    params: &Variables<Scalar>,
    upgrade: &Credential,
) -> Result<(crate::auth::Caller, Option<SubjectSlot>), InitError> {
    let payload = serde_json::to_value(params).unwrap_or(Value::Null);
    let token = match auth::token_from_init_payload(&payload) {
        Some(token) => Some(token),
        None if *upgrade == Credential::RefusedCookie => return Err(InitError::ForeignCookie),
        None => upgrade.token().map(str::to_owned),
    };
    let caller = app.authenticate(token.as_deref()).await?;
    let slot = match caller.sub() {
        Some(sub) => Some(
            app.connections
                .open_subject(sub)
                .ok_or(InitError::SubjectLimit)?,
        ),
        None => None,
    };
    Ok((caller, slot))
}
