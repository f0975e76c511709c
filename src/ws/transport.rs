//! `graphql-transport-ws`: pre-checks of client messages and filtering of
//! server messages around juniper's protocol connection, so that the
//! connection follows the graphql-ws PROTOCOL.md:
//! - `ping` is answered here with a `pong` echoing the payload; `pong` is ignored;
//! - malformed messages close 4400, a second `connection_init` 4429, a busy id 4409;
//! - ids are renamed on the way in, so that after an `error` no `complete` is
//!   sent, nothing is echoed after a client `complete`, and ids can be reused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use juniper_graphql_ws::Init;
use juniper_graphql_ws::graphql_transport_ws::{
    ClientMessage, Connection, Input, NextPayload, Output, ServerMessage,
};
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

/// Builds the handler and juniper connection for one socket.
pub(super) fn connection(
    state: &Arc<AppState>,
    upgrade: Credential,
    accepted: oneshot::Sender<Accepted>,
) -> (
    TransportHandler,
    Connection<Arc<Schema>, impl Init<S, Context> + Send + use<>>,
) {
    let status = InitStatus::default();
    // Keep-alive is done with ping frames by the session; juniper's own
    // would close connections of clients that send no `ping`.
    let init = init::callback(
        state.clone(),
        upgrade,
        status.clone(),
        accepted,
        Duration::ZERO,
    );
    let conn = Connection::new(state.schema.current(), init);
    (TransportHandler::new(status, state.limits.cost), conn)
}

/// Protocol state kept outside juniper.
pub(super) struct TransportHandler {
    init_received: bool,
    /// The outcome of `connection_init`. A subscribe that follows
    /// `connection_init` without waiting for the ack (pipelining) is fine
    /// once it is accepted: juniper handles messages in order.
    status: InitStatus,
    next_internal: u64,
    /// Client id → internal id, for operations still running.
    by_client: HashMap<String, String>,
    /// Internal id → client id.
    by_internal: HashMap<String, String>,
    /// What one operation may cost.
    cost: CostLimits,
}

fn bad(reason: impl Into<String>) -> Vec<Step<Input<S>>> {
    vec![Step::Close(Close::BadRequest(reason.into()))]
}

impl TransportHandler {
    /// A handler whose `connection_init` outcome is recorded in `status`.
    pub(super) fn new(status: InitStatus, cost: CostLimits) -> TransportHandler {
        TransportHandler {
            cost,
            init_received: false,
            status,
            next_internal: 0,
            by_client: HashMap::new(),
            by_internal: HashMap::new(),
        }
    }
}

impl Handler for TransportHandler {
    type In = Input<S>;
    type Out = Output<S>;

    fn on_text(&mut self, text: &str) -> Vec<Step<Input<S>>> {
        let Ok(mut msg) = serde_json::from_str::<Value>(text) else {
            return bad("Invalid message received: not JSON");
        };
        let Some(kind) = msg.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return bad("Invalid message received: missing type");
        };
        match kind.as_str() {
            "ping" => {
                let mut pong = json!({"type": "pong"});
                if let Some(p) = msg.get("payload").filter(|p| !p.is_null()) {
                    pong["payload"] = p.clone();
                }
                vec![Step::Send(pong.to_string())]
            }
            "pong" => Vec::new(),
            "connection_init" => {
                if self.init_received {
                    return vec![Step::Close(Close::TooManyInits)];
                }
                self.init_received = true;
                if msg
                    .get("payload")
                    .is_some_and(|p| !p.is_object() && !p.is_null())
                {
                    return bad("Invalid message received: payload must be an object");
                }
                forward(msg)
            }
            "subscribe" => {
                let id = match msg.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => id.to_owned(),
                    _ => return bad("Invalid message received: subscribe needs a non-empty id"),
                };
                if !self.status.accepted() {
                    return vec![Step::Close(Close::Unauthorized)];
                }
                if self.by_client.contains_key(&id) {
                    return vec![Step::Close(Close::SubscriberExists(id))];
                }
                let Some(payload) = msg.get_mut("payload").filter(|p| p.is_object()) else {
                    return bad("Invalid message received: subscribe needs a payload object");
                };
                let Some(query) = payload
                    .get("query")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    return bad("Invalid message received: subscribe needs a query");
                };
                if let Err(e) = limits::check_payload(payload, &self.cost) {
                    // Refused before juniper sees it: `error` ends the operation.
                    let error = json!({"type": "error", "id": id, "payload": [
                        {"message": e.to_string(), "extensions": {"code": "BAD_USER_INPUT"}}
                    ]});
                    return vec![Step::Send(error.to_string())];
                }
                if let Some(vars) = payload.get_mut("variables") {
                    prepare_variables(&query, vars);
                }
                self.next_internal += 1;
                let internal = self.next_internal.to_string();
                self.by_client.insert(id.clone(), internal.clone());
                self.by_internal.insert(internal.clone(), id);
                msg["id"] = Value::String(internal);
                forward(msg)
            }
            "complete" => {
                let Some(id) = msg.get("id").and_then(Value::as_str) else {
                    return bad("Invalid message received: complete needs an id");
                };
                match self.by_client.remove(id) {
                    Some(internal) => {
                        self.by_internal.remove(&internal);
                        vec![Step::Forward(Input::Message(ClientMessage::Complete {
                            id: internal,
                        }))]
                    }
                    None => Vec::new(),
                }
            }
            other => bad(format!("Invalid message received: unknown type {other:?}")),
        }
    }

    fn on_output(&mut self, out: Option<Output<S>>) -> Vec<Step<Input<S>>> {
        let msg = match out {
            None => return vec![Step::Close(Close::Normal)],
            // A refused `connection_init` (juniper says 4403 for any
            // refusal): the code follows the reason.
            Some(Output::Close { code, message }) => {
                let close = match self.status.refusal() {
                    Some((refusal, message)) => Close::refused(refusal, message),
                    None => Close::from_juniper(code, message),
                };
                return vec![Step::Close(close)];
            }
            Some(Output::Message(msg)) => msg,
        };
        let msg = match msg {
            ServerMessage::ConnectionAck => ServerMessage::ConnectionAck,
            // Our pongs are sent by `on_text`; juniper's keep-alive is off.
            ServerMessage::Pong => return Vec::new(),
            // A result that is nothing but errors is the end of the operation
            // (a subscription that could not start, or a stream that failed):
            // the protocol says `error`, which also means no `complete`.
            ServerMessage::Next { id, payload } if only_errors(&payload) => {
                let Some(client) = self.finish(&id) else {
                    return Vec::new();
                };
                let text = json!({"type": "error", "id": client, "payload": payload.errors});
                return vec![Step::Send(text.to_string())];
            }
            ServerMessage::Next { id, payload } => match self.by_internal.get(&id) {
                Some(client) => ServerMessage::Next {
                    id: client.clone(),
                    payload,
                },
                None => return Vec::new(),
            },
            ServerMessage::Error { id, payload } => match self.finish(&id) {
                Some(client) => ServerMessage::Error {
                    id: client,
                    payload,
                },
                None => return Vec::new(),
            },
            ServerMessage::Complete { id } => match self.finish(&id) {
                Some(client) => ServerMessage::Complete { id: client },
                None => return Vec::new(),
            },
        };
        Step::json(&msg, Close::Internal)
    }

    fn on_close(&mut self) -> Option<Input<S>> {
        Some(Input::Close)
    }

    fn initialised(&self) -> bool {
        self.status.accepted()
    }
}

impl TransportHandler {
    /// Ends the operation with internal id `internal`; its client id if it was running.
    fn finish(&mut self, internal: &str) -> Option<String> {
        let client = self.by_internal.remove(internal)?;
        self.by_client.remove(&client);
        Some(client)
    }
}

/// Whether a result carries errors and no data at all (null, or every root
/// field null: juniper reports a failed subscription event as `{field: null}`).
fn only_errors(payload: &NextPayload<S>) -> bool {
    !payload.errors.is_empty()
        && (payload.data.is_null()
            || payload
                .data
                .as_object_value()
                .is_some_and(|o| o.iter().all(|(_, v)| v.is_null())))
}

fn forward(msg: Value) -> Vec<Step<Input<S>>> {
    match serde_json::from_value::<ClientMessage<S>>(msg) {
        Ok(m) => vec![Step::Forward(Input::Message(m))],
        Err(e) => bad(format!("Invalid message received: {e}")),
    }
}
