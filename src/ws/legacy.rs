//! Legacy `graphql-ws` (subscriptions-transport-ws): invalid messages get a
//! `connection_error` and the socket stays open, as that protocol requires;
//! a refused `connection_init` gets `connection_error`, then close 4403.

use crate::graphql::scalar::Scalar;
use std::sync::Arc;

use juniper_graphql_ws::Init;
use juniper_graphql_ws::graphql_ws::{ClientMessage, Connection, ServerMessage};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::init;
use super::session::{Handler, Step};
use crate::graphql::{Context, Schema, request::prepare_variables};
use crate::state::AppState;

type S = Scalar;

/// Interval of `ka` keep-alive messages (the legacy clients' expectation).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Builds the handler and juniper connection for one socket.
pub(super) fn connection(
    state: &Arc<AppState>,
    upgrade_token: Option<String>,
    expiry: oneshot::Sender<Option<i64>>,
) -> (
    LegacyHandler,
    Connection<Arc<Schema>, impl Init<S, Context> + Send + use<>>,
) {
    let app = state.clone();
    let init = move |params: juniper::Variables<S>| async move {
        let (config, exp) = init::accept(app, params, upgrade_token, KEEP_ALIVE).await?;
        let _ = expiry.send(exp);
        Ok::<_, crate::auth::AuthError>(config)
    };
    let conn = Connection::new(state.schema.current(), init);
    (LegacyHandler::default(), conn)
}

/// Protocol state kept outside juniper.
#[derive(Default)]
pub(super) struct LegacyHandler {
    acked: bool,
    refused: bool,
}

fn connection_error(message: &str) -> Vec<Step<ClientMessage<S>>> {
    vec![Step::Send(
        json!({"type": "connection_error", "payload": {"message": message}}).to_string(),
    )]
}

impl Handler for LegacyHandler {
    type In = ClientMessage<S>;
    type Out = ServerMessage<S>;

    fn on_text(&mut self, text: &str) -> Vec<Step<ClientMessage<S>>> {
        let Ok(mut msg) = serde_json::from_str::<Value>(text) else {
            return connection_error("invalid message: not JSON");
        };
        if msg.get("type").and_then(Value::as_str) == Some("start") {
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
        }
        match serde_json::from_value::<ClientMessage<S>>(msg) {
            Ok(ClientMessage::ConnectionTerminate) => {
                vec![Step::Close(1000, "connection terminated".into())]
            }
            Ok(m) => vec![Step::Forward(m)],
            Err(e) => connection_error(&format!("invalid message: {e}")),
        }
    }

    fn on_output(&mut self, out: Option<ServerMessage<S>>) -> Vec<Step<ClientMessage<S>>> {
        let Some(msg) = out else {
            return if self.refused {
                vec![Step::Close(4403, "Forbidden".into())]
            } else {
                vec![Step::Close(1000, "Normal Closure".into())]
            };
        };
        match &msg {
            ServerMessage::ConnectionAck => self.acked = true,
            ServerMessage::ConnectionError { .. } if !self.acked => self.refused = true,
            _ => {}
        }
        Step::json(&msg, 1011)
    }

    fn on_close(&mut self) -> Option<ClientMessage<S>> {
        None
    }

    fn initialised(&self) -> bool {
        self.acked
    }
}
