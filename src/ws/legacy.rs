//! Legacy `graphql-ws` (subscriptions-transport-ws): invalid messages get a
//! `connection_error` and the socket stays open, as that protocol requires;
//! a refused `connection_init` gets `connection_error`, then a close whose
//! code says why (4403, or 4503 when the token could not be checked).
//!
//! Operation ids are renamed on the way in, as in graphql-transport-ws, so
//! that a second `start` with an id still in use replaces the running
//! operation, as subscriptions-transport-ws servers do: the old one is
//! stopped and nothing more is sent for it (no `complete` that the client
//! would take as the end of the new one), then the new one starts.

use std::collections::HashMap;
use std::sync::Arc;

use juniper_graphql_ws::Init;
use juniper_graphql_ws::graphql_ws::{ClientMessage, Connection, ServerMessage};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::close::Close;
use super::handler::{Handler, Step};
use super::init::{self, Accepted, InitStatus};
use crate::graphql::limits::{self, CostLimits};
use crate::graphql::request::prepare_variables;
use crate::graphql::scalar::Scalar;
use crate::graphql::{Context, Schema};
use crate::origin::Credential;
use crate::state::AppState;

type S = Scalar;

/// Interval of `ka` keep-alive messages (the legacy clients' expectation).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Builds the handler and juniper connection for one socket.
pub(super) fn connection(
    state: &Arc<AppState>,
    upgrade: Credential,
    accepted: oneshot::Sender<Accepted>,
) -> (
    LegacyHandler,
    Connection<Arc<Schema>, impl Init<S, Context> + Send + use<>>,
) {
    let status = InitStatus::default();
    let init = init::callback(state.clone(), upgrade, status.clone(), accepted, KEEP_ALIVE);
    let conn = Connection::new(state.schema.current(), init);
    (LegacyHandler::new(status, state.limits.cost), conn)
}

/// Protocol state kept outside juniper.
pub(super) struct LegacyHandler {
    acked: bool,
    /// The outcome of `connection_init`.
    status: InitStatus,
    next_internal: u64,
    /// Client id → internal id, for operations still running.
    by_client: HashMap<String, String>,
    /// Internal id → client id.
    by_internal: HashMap<String, String>,
    /// What one operation may cost.
    cost: CostLimits,
}

fn connection_error(message: &str) -> Vec<Step<ClientMessage<S>>> {
    vec![Step::Send(
        json!({"type": "connection_error", "payload": {"message": message}}).to_string(),
    )]
}

impl LegacyHandler {
    /// A handler whose `connection_init` outcome is recorded in `status`.
    pub(super) fn new(status: InitStatus, cost: CostLimits) -> LegacyHandler {
        LegacyHandler {
            cost,
            acked: false,
            status,
            next_internal: 0,
            by_client: HashMap::new(),
            by_internal: HashMap::new(),
        }
    }

    /// `start`: a fresh internal id; an operation running under the same
    /// client id is stopped first and forgotten.
    fn start(&mut self, mut msg: Value) -> Vec<Step<ClientMessage<S>>> {
        if let (Some(id), Some(payload)) = (msg.get("id"), msg.get("payload")) {
            if let Err(e) = limits::check_payload(payload, &self.cost) {
                let error = json!({"type": "error", "id": id, "payload":
                    {"message": e.to_string(), "extensions": {"code": "BAD_USER_INPUT"}}});
                return vec![Step::Send(error.to_string())];
            }
        }
        if let Some(payload) = msg.get_mut("payload") {
            let query = payload
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(vars) = payload.get_mut("variables") {
                prepare_variables(&query, vars);
            }
        }
        let Some(id) = msg.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return connection_error("invalid message: start needs an id");
        };
        self.next_internal += 1;
        let internal = self.next_internal.to_string();
        msg["id"] = Value::String(internal.clone());
        let start = match serde_json::from_value::<ClientMessage<S>>(msg) {
            Ok(start) => start,
            Err(e) => return connection_error(&format!("invalid message: {e}")),
        };
        let mut steps = Vec::new();
        if !self.status.accepted() {
            // juniper ignores a `start` before `connection_init`; so do we,
            // without keeping its id.
            return vec![Step::Forward(start)];
        }
        if let Some(old) = self.by_client.remove(&id) {
            self.by_internal.remove(&old);
            steps.push(Step::Forward(ClientMessage::Stop { id: old }));
        }
        self.by_client.insert(id.clone(), internal.clone());
        self.by_internal.insert(internal, id);
        steps.push(Step::Forward(start));
        steps
    }

    /// The client id of internal id `internal`, if its operation is current.
    fn client_id(&self, internal: &str) -> Option<String> {
        self.by_internal.get(internal).cloned()
    }

    /// Ends the operation with internal id `internal`; its client id if it was current.
    fn finish(&mut self, internal: &str) -> Option<String> {
        let client = self.by_internal.remove(internal)?;
        self.by_client.remove(&client);
        Some(client)
    }
}

impl Handler for LegacyHandler {
    type In = ClientMessage<S>;
    type Out = ServerMessage<S>;

    fn on_text(&mut self, text: &str) -> Vec<Step<ClientMessage<S>>> {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return connection_error("invalid message: not JSON");
        };
        match msg.get("type").and_then(Value::as_str) {
            Some("start") => return self.start(msg),
            Some("stop") => {
                // Stop the current operation of that id; its `complete`
                // comes back from juniper under the internal id.
                let Some(id) = msg.get("id").and_then(Value::as_str) else {
                    return connection_error("invalid message: stop needs an id");
                };
                return match self.by_client.get(id) {
                    Some(internal) => vec![Step::Forward(ClientMessage::Stop {
                        id: internal.clone(),
                    })],
                    None => Vec::new(),
                };
            }
            _ => {}
        }
        match serde_json::from_value::<ClientMessage<S>>(msg) {
            Ok(ClientMessage::ConnectionTerminate) => vec![Step::Close(Close::Normal)],
            Ok(m) => vec![Step::Forward(m)],
            Err(e) => connection_error(&format!("invalid message: {e}")),
        }
    }

    fn on_output(&mut self, out: Option<ServerMessage<S>>) -> Vec<Step<ClientMessage<S>>> {
        let Some(msg) = out else {
            return match self.status.refusal() {
                Some((refusal, message)) if !self.acked => {
                    vec![Step::Close(Close::refused(refusal, message))]
                }
                _ => vec![Step::Close(Close::Normal)],
            };
        };
        let msg = match msg {
            ServerMessage::ConnectionAck => {
                self.acked = true;
                ServerMessage::ConnectionAck
            }
            ServerMessage::Data { id, payload } => match self.client_id(&id) {
                Some(id) => ServerMessage::Data { id, payload },
                None => return Vec::new(),
            },
            ServerMessage::Error { id, payload } => match self.client_id(&id) {
                Some(id) => ServerMessage::Error { id, payload },
                None => return Vec::new(),
            },
            ServerMessage::Complete { id } => match self.finish(&id) {
                Some(id) => ServerMessage::Complete { id },
                None => return Vec::new(),
            },
            other => other,
        };
        Step::json(&msg, Close::LegacyInternal)
    }

    fn on_close(&mut self) -> Option<ClientMessage<S>> {
        None
    }

    fn initialised(&self) -> bool {
        self.acked
    }
}
