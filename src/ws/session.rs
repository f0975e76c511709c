//! One WebSocket connection: the loop that moves frames between the socket
//! and the protocol's juniper connection, with timers for the init deadline,
//! keep-alive pings, token expiry and shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};
use warp::ws::{Message, WebSocket};

use super::frames::close;
use super::{Protocol, legacy, transport};
use crate::state::AppState;

/// What a protocol handler asks the loop to do.
pub(super) enum Step<In> {
    /// Hand a client message to the juniper connection.
    Forward(In),
    /// Send a text frame.
    Send(String),
    /// Close the socket with a code and reason.
    Close(u16, String),
}

impl<In> Step<In> {
    /// Sends `msg` as JSON; should it not serialise, closes with `error_code`
    /// (each protocol has its own code for an internal error).
    pub(super) fn json(msg: &impl serde::Serialize, error_code: u16) -> Vec<Step<In>> {
        match serde_json::to_string(msg) {
            Ok(text) => vec![Step::Send(text)],
            Err(e) => {
                tracing::error!(error = %e, "serialising a server message");
                vec![Step::Close(error_code, "Internal server error".into())]
            }
        }
    }
}

/// A protocol's pre- and post-processing around its juniper connection.
pub(super) trait Handler: Send {
    /// Client message type of the juniper connection.
    type In: Send;
    /// Output type of the juniper connection.
    type Out: Send;
    /// A text frame from the client.
    fn on_text(&mut self, text: &str) -> Vec<Step<Self::In>>;
    /// An output of the juniper connection (`None`: it ended).
    fn on_output(&mut self, out: Option<Self::Out>) -> Vec<Step<Self::In>>;
    /// The client closed the socket: the message telling juniper so, if any.
    fn on_close(&mut self) -> Option<Self::In>;
    /// Whether `connection_init` was accepted.
    fn initialised(&self) -> bool;
}

/// Runs a connection to its end.
pub async fn run(
    socket: WebSocket,
    protocol: Option<Protocol>,
    upgrade_token: Option<String>,
    state: Arc<AppState>,
) {
    let _permit = match state.connection_permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            let mut socket = socket;
            let _ = socket.send(close(1013, "too many connections")).await;
            return;
        }
    };
    let (expiry_tx, expiry_rx) = oneshot::channel();
    match protocol {
        None => {
            let mut socket = socket;
            let _ = socket.send(close(4406, "Subprotocol not acceptable")).await;
        }
        Some(Protocol::TransportWs) => {
            let (handler, conn) = transport::connection(&state, upgrade_token, expiry_tx);
            drive(socket, handler, conn, expiry_rx, &state).await;
        }
        Some(Protocol::LegacyWs) => {
            let (handler, conn) = legacy::connection(&state, upgrade_token, expiry_tx);
            drive(socket, handler, conn, expiry_rx, &state).await;
        }
    }
}

/// Most outputs written per flush.
const OUTPUT_BURST: usize = 64;

enum Event<Out> {
    Frame(Option<Result<Message, warp::Error>>),
    Output(Option<Out>),
    InitTimeout,
    Ping,
    Expired,
    ExpiryKnown(Option<i64>),
    Shutdown,
}

async fn drive<H, C>(
    mut socket: WebSocket,
    mut handler: H,
    conn: C,
    mut expiry_rx: oneshot::Receiver<Option<i64>>,
    state: &AppState,
) where
    H: Handler,
    C: Sink<H::In> + Stream<Item = H::Out> + Send + Unpin,
{
    let limits = &state.limits;
    let (mut to_conn, mut from_conn) = conn.split();
    let init_deadline = Instant::now() + limits.init_timeout;
    let mut ping_at = Instant::now() + limits.ping_interval;
    let mut last_heard = Instant::now();
    let mut expires_at: Option<Instant> = None;
    let mut expiry_known = false;
    let far = Instant::now() + Duration::from_secs(86400 * 365);

    loop {
        let event = tokio::select! {
            frame = socket.next() => Event::Frame(frame),
            out = from_conn.next() => Event::Output(out),
            _ = sleep_until(init_deadline), if !handler.initialised() => Event::InitTimeout,
            _ = sleep_until(ping_at) => Event::Ping,
            _ = sleep_until(expires_at.unwrap_or(far)), if expires_at.is_some() => Event::Expired,
            exp = &mut expiry_rx, if !expiry_known => Event::ExpiryKnown(exp.ok().flatten()),
            _ = state.shutdown.cancelled() => Event::Shutdown,
        };
        let steps = match event {
            Event::Frame(Some(Ok(msg))) => {
                last_heard = Instant::now();
                if msg.is_text() {
                    let text = msg.to_str().unwrap_or_default();
                    if text.len() > limits.max_message_bytes {
                        vec![Step::Close(1009, "message too big".into())]
                    } else {
                        handler.on_text(text)
                    }
                } else if msg.is_close() {
                    if let Some(input) = handler.on_close() {
                        let _ = to_conn.send(input).await;
                    }
                    break;
                } else if msg.is_binary() {
                    vec![Step::Close(
                        4400,
                        "binary messages are not supported".into(),
                    )]
                } else {
                    // Ping frames are answered by the WebSocket layer; pongs
                    // only prove the peer is alive.
                    Vec::new()
                }
            }
            Event::Frame(Some(Err(e))) => {
                tracing::debug!(error = %e, "websocket read failed");
                break;
            }
            Event::Frame(None) => break,
            Event::Output(out) => {
                // Take whatever else is ready too, so a burst of events goes
                // out with one flush instead of a write per message.
                let mut steps = handler.on_output(out);
                for _ in 0..OUTPUT_BURST {
                    match from_conn.next().now_or_never() {
                        Some(out) => steps.extend(handler.on_output(out)),
                        None => break,
                    }
                }
                steps
            }
            Event::InitTimeout => vec![Step::Close(
                4408,
                "Connection initialisation timeout".into(),
            )],
            Event::Ping => {
                if last_heard.elapsed() > limits.ping_interval * 3 {
                    vec![Step::Close(1011, "keep-alive timeout".into())]
                } else {
                    ping_at = Instant::now() + limits.ping_interval;
                    if socket.send(Message::ping(Vec::<u8>::new())).await.is_err() {
                        break;
                    }
                    Vec::new()
                }
            }
            Event::Expired => vec![Step::Close(4403, "Forbidden: token expired".into())],
            Event::ExpiryKnown(exp) => {
                expiry_known = true;
                expires_at = exp.map(|exp| {
                    let left = exp - chrono::Utc::now().timestamp();
                    Instant::now() + Duration::from_secs(left.max(0) as u64)
                });
                Vec::new()
            }
            Event::Shutdown => vec![Step::Close(1001, "server shutting down".into())],
        };
        let mut closed = false;
        for step in steps {
            match step {
                Step::Forward(input) => {
                    if to_conn.send(input).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                Step::Send(text) => {
                    if socket.feed(Message::text(text)).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                Step::Close(code, reason) => {
                    let _ = socket.send(close(code, &reason)).await;
                    closed = true;
                    break;
                }
            }
        }
        if closed || socket.flush().await.is_err() {
            break;
        }
    }
    let _ = socket.close().await;
}
