//! Unit tests of the WebSocket layer without a socket: the protocol handlers
//! around real juniper connections over a small schema, driven by the real
//! [`Session`] over an in-memory socket, with the clock paused
//! (`tokio::time::pause`) so the session's timers run in virtual time.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{Sink, Stream, StreamExt};
use juniper::{
    EmptyMutation, FieldError, RootNode, Variables, graphql_object, graphql_subscription,
};
use juniper_graphql_ws::ConnectionConfig;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::close::{Close, Dropped};
use super::init::{Accepted, InitError, InitStatus};
use super::legacy::LegacyHandler;
use super::session::{Ended, Session, Settings};
use super::transport::TransportHandler;
use super::*;
use crate::auth::AuthError;
use crate::graphql::scalar::Scalar;
use crate::state::LoginError;

#[test]
fn negotiation_takes_the_first_supported_offer_and_nothing_else() {
    assert_eq!(negotiate(Some("graphql-ws")), Some(Protocol::LegacyWs));
    assert_eq!(
        negotiate(Some("foo, graphql-transport-ws, graphql-ws")),
        Some(Protocol::TransportWs)
    );
    assert_eq!(negotiate(Some("foo")), None);
    assert_eq!(negotiate(None), None);
}

#[test]
fn upgraded_sockets_get_small_buffers_and_the_message_limit_as_backstop() {
    let max = 256 * 1024;
    let config = socket_config(max);
    // tungstenite's default is 128 KiB, allocated and zero-filled per
    // connection: it must not come back.
    assert!(
        config.read_buffer_size <= 8 * 1024,
        "read buffer of {} bytes per connection",
        config.read_buffer_size
    );
    assert!(
        config.write_buffer_size <= 8 * 1024,
        "write buffer of {} bytes per connection",
        config.write_buffer_size
    );
    // tungstenite panics on a config that breaks this.
    assert!(config.max_write_buffer_size > config.write_buffer_size);
    assert_eq!(config.max_message_size, Some(4 * max));
    assert_eq!(config.max_frame_size, Some(4 * max));
}

// ---- a small schema -------------------------------------------------------

#[derive(Clone)]
struct Ctx;

impl juniper::Context for Ctx {}

struct Query;

#[graphql_object(context = Ctx, scalar = Scalar)]
impl Query {
    fn hello() -> &'static str {
        "hi"
    }
}

struct Subscription;

type Strings = Pin<Box<dyn Stream<Item = Result<String, FieldError<Scalar>>> + Send>>;

#[graphql_subscription(context = Ctx, scalar = Scalar)]
impl Subscription {
    /// `n` events, `"0"` to `"n-1"`, then the end.
    async fn count(n: i32) -> Strings {
        Box::pin(futures::stream::iter((0..n).map(|i| Ok(i.to_string()))))
    }

    /// Events of `bytes` bytes each, as fast as they are taken, forever.
    async fn flood(bytes: i32) -> Strings {
        let text = "x".repeat(bytes as usize);
        Box::pin(futures::stream::repeat_with(move || Ok(text.clone())))
    }

    /// No event, ever.
    async fn never() -> Strings {
        Box::pin(futures::stream::pending())
    }
}

type TestSchema = RootNode<Query, EmptyMutation<Ctx>, Subscription, Scalar>;

fn schema() -> Arc<TestSchema> {
    Arc::new(TestSchema::new_with_scalar_value(
        Query,
        EmptyMutation::new(),
        Subscription,
    ))
}

type InitFn = Box<
    dyn FnOnce(
            Variables<Scalar>,
        ) -> BoxFuture<'static, Result<ConnectionConfig<Ctx, Scalar>, InitError>>
        + Send
        + Unpin,
>;

/// An init callback as `init::callback` is, with a fixed outcome: accepted
/// with the expiry `exp`, or refused with `refusal`.
fn init_with(
    status: InitStatus,
    accepted: oneshot::Sender<Accepted>,
    outcome: Result<Option<i64>, fn() -> InitError>,
    keep_alive: Duration,
) -> InitFn {
    Box::new(move |_params| {
        Box::pin(async move {
            let result = outcome.map_err(|refusal| refusal());
            status.set(&result);
            let exp = result?;
            let _ = accepted.send(Accepted { exp, slot: None });
            Ok(ConnectionConfig::new(Ctx)
                .with_max_in_flight_operations(10)
                .with_keep_alive_interval(keep_alive))
        })
    })
}

// ---- an in-memory socket --------------------------------------------------

/// The server's end: frames from the client come in unbounded; frames to the
/// client go into a bounded channel, so a client that stops reading blocks
/// the server's writes as a full TCP window does.
struct MemorySocket {
    incoming: mpsc::UnboundedReceiver<Message>,
    outgoing: mpsc::Sender<Message>,
}

impl Stream for MemorySocket {
    type Item = Result<Message, mpsc::SendError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_next_unpin(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for MemorySocket {
    type Error = mpsc::SendError;
    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outgoing).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.outgoing).start_send(item)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outgoing).poll_flush(cx)
    }
    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outgoing).poll_close(cx)
    }
}

/// The code of a close frame.
fn close_code(msg: &Message) -> Option<u16> {
    match msg {
        Message::Close(Some(frame)) => Some(frame.code.into()),
        _ => None,
    }
}

/// The client's end.
struct Peer {
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::Receiver<Message>,
}

impl Peer {
    fn send(&self, msg: Value) {
        self.tx
            .unbounded_send(Message::text(msg.to_string()))
            .unwrap();
    }

    /// The next frame other than a ping (in virtual time: at most a minute).
    async fn next(&mut self) -> Option<Message> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.rx.next())
                .await
                .expect("a frame within a minute")?;
            if !msg.is_ping() {
                return Some(msg);
            }
        }
    }

    async fn next_json(&mut self) -> Value {
        let msg = self.next().await.expect("a message");
        assert!(msg.is_text(), "expected a text frame, got {msg:?}");
        serde_json::from_str(msg.to_text().unwrap()).unwrap()
    }

    /// The next frame, which must be a close frame: its code.
    async fn close_code(&mut self) -> u16 {
        let msg = self.next().await.expect("a close frame");
        close_code(&msg).unwrap_or_else(|| panic!("expected a close frame, got {msg:?}"))
    }
}

fn settings() -> Settings {
    Settings {
        init_timeout: Duration::from_secs(3),
        ping_interval: Duration::from_secs(12),
        write_timeout: Duration::from_secs(10),
        max_message_bytes: 64 * 1024,
    }
}

/// A running session of `protocol` whose init ends with `outcome`; the
/// client side, the session's task and its shutdown token.
fn start(
    protocol: Protocol,
    outcome: Result<Option<i64>, fn() -> InitError>,
    settings: Settings,
    window: usize,
) -> (Peer, JoinHandle<Ended>, CancellationToken) {
    let (client_tx, incoming) = mpsc::unbounded();
    let (outgoing, client_rx) = mpsc::channel(window);
    let socket = MemorySocket { incoming, outgoing };
    let peer = Peer {
        tx: client_tx,
        rx: client_rx,
    };
    let shutdown = CancellationToken::new();
    let (accepted_tx, accepted_rx) = oneshot::channel();
    let status = InitStatus::default();
    let task = match protocol {
        Protocol::TransportWs => {
            let init = init_with(status.clone(), accepted_tx, outcome, Duration::ZERO);
            let conn = juniper_graphql_ws::graphql_transport_ws::Connection::new(schema(), init);
            let handler = TransportHandler::new(status, Default::default());
            let session = Session::new(
                socket,
                handler,
                conn,
                accepted_rx,
                settings,
                shutdown.clone(),
            );
            tokio::spawn(session.run())
        }
        Protocol::LegacyWs => {
            let init = init_with(status.clone(), accepted_tx, outcome, Duration::ZERO);
            let conn = juniper_graphql_ws::graphql_ws::Connection::new(schema(), init);
            let handler = LegacyHandler::new(status, Default::default());
            let session = Session::new(
                socket,
                handler,
                conn,
                accepted_rx,
                settings,
                shutdown.clone(),
            );
            tokio::spawn(session.run())
        }
    };
    (peer, task, shutdown)
}

fn init_msg() -> Value {
    json!({"type": "connection_init", "payload": {}})
}

/// A transport session with an accepted init.
async fn transport_session(
    settings: Settings,
    window: usize,
) -> (Peer, JoinHandle<Ended>, CancellationToken) {
    let (mut peer, task, shutdown) = start(Protocol::TransportWs, Ok(None), settings, window);
    peer.send(init_msg());
    assert_eq!(peer.next_json().await, json!({"type": "connection_ack"}));
    (peer, task, shutdown)
}

// ---- graphql-transport-ws ---------------------------------------------------

#[tokio::test(start_paused = true)]
async fn transport_streams_a_subscription_and_ends_it_with_complete() {
    let (mut peer, _task, _) = transport_session(settings(), 64).await;
    peer.send(json!({"type": "subscribe", "id": "a", "payload": {"query": "subscription { count(n: 2) }"}}));
    for i in ["0", "1"] {
        let msg = peer.next_json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(msg["id"], "a");
        assert_eq!(msg["payload"]["data"]["count"], i);
    }
    assert_eq!(
        peer.next_json().await,
        json!({"type": "complete", "id": "a"})
    );
}

#[tokio::test(start_paused = true)]
async fn transport_init_refusals_close_with_the_code_of_their_reason() {
    fn unavailable() -> InitError {
        InitError::Login(LoginError::Unavailable)
    }
    fn invalid() -> InitError {
        AuthError::Invalid.into()
    }
    fn subject_limit() -> InitError {
        InitError::SubjectLimit
    }
    for (refusal, code) in [
        (unavailable as fn() -> InitError, 4503),
        (invalid, 4403),
        (subject_limit, 4429),
    ] {
        let (mut peer, task, _) = start(Protocol::TransportWs, Err(refusal), settings(), 64);
        peer.send(init_msg());
        assert_eq!(peer.close_code().await, code, "{}", refusal());
        assert_eq!(
            task.await.unwrap(),
            Ended::Closed(Close::refused(refusal().refusal(), refusal().to_string()))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn transport_without_init_is_closed_4408_after_the_init_timeout() {
    let (mut peer, task, _) = start(Protocol::TransportWs, Ok(None), settings(), 64);
    let started = Instant::now();
    assert_eq!(peer.close_code().await, 4408);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(task.await.unwrap(), Ended::Closed(Close::InitTimeout));
}

#[tokio::test(start_paused = true)]
async fn pings_go_out_every_interval_and_a_silent_client_is_closed_1011() {
    let (mut peer, task, _) = transport_session(settings(), 64).await;
    let started = Instant::now();
    let mut pings = 0;
    let code = loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), peer.rx.next())
            .await
            .unwrap()
            .unwrap();
        if msg.is_ping() {
            pings += 1;
            continue;
        }
        break close_code(&msg).unwrap();
    };
    assert_eq!(code, 1011);
    assert_eq!(pings, 3, "a ping at 12, 24 and 36 s");
    assert_eq!(started.elapsed(), Duration::from_secs(48));
    assert_eq!(task.await.unwrap(), Ended::Closed(Close::KeepAliveTimeout));
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_closed_4403_when_its_token_expires() {
    let exp = chrono::Utc::now().timestamp() + 5;
    let (mut peer, task, _) = start(Protocol::TransportWs, Ok(Some(exp)), settings(), 64);
    peer.send(init_msg());
    assert_eq!(peer.next_json().await["type"], "connection_ack");
    let started = Instant::now();
    assert_eq!(peer.close_code().await, 4403);
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(task.await.unwrap(), Ended::Closed(Close::Expired));
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_1001() {
    let (mut peer, task, shutdown) = transport_session(settings(), 64).await;
    shutdown.cancel();
    assert_eq!(peer.close_code().await, 1001);
    assert_eq!(task.await.unwrap(), Ended::Closed(Close::Shutdown));
}

/// Starts a flood of 1 KiB events to a client that never reads: the
/// session's writes block once the window of 8 frames is full.
async fn flooded(settings: Settings) -> (Peer, JoinHandle<Ended>, CancellationToken) {
    let (peer, task, shutdown) = transport_session(settings, 8).await;
    peer.send(json!({"type": "subscribe", "id": "f", "payload": {"query": "subscription { flood(bytes: 1024) }"}}));
    (peer, task, shutdown)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let (_peer, task, _) = flooded(settings()).await;
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the session ends")
        .unwrap();
    assert_eq!(ended, Ended::Dropped(Dropped::WriteTimeout));
    let waited = started.elapsed();
    assert_eq!(waited, Duration::from_secs(10), "dropped after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_expiry_end_a_session_whose_write_is_blocked() {
    // Writes may block for a whole minute here: only the interruptions end it.
    let patient = Settings {
        write_timeout: Duration::from_secs(60),
        ..settings()
    };
    let (_peer, task, shutdown) = flooded(patient).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "the write is blocked, not failed");
    let at = Instant::now();
    shutdown.cancel();
    let ended = task.await.unwrap();
    assert_eq!(ended, Ended::Dropped(Dropped::Interrupted));
    assert_eq!(at.elapsed(), Duration::ZERO);

    let exp = chrono::Utc::now().timestamp() + 5;
    let (mut peer, task, _) = start(Protocol::TransportWs, Ok(Some(exp)), patient, 8);
    peer.send(init_msg());
    assert_eq!(peer.next_json().await["type"], "connection_ack");
    peer.send(json!({"type": "subscribe", "id": "f", "payload": {"query": "subscription { flood(bytes: 1024) }"}}));
    let started = Instant::now();
    let ended = task.await.unwrap();
    assert_eq!(ended, Ended::Dropped(Dropped::Interrupted));
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// ---- legacy graphql-ws -------------------------------------------------------

/// A legacy session with an accepted init (its `ka` consumed).
async fn legacy_session() -> (Peer, JoinHandle<Ended>, CancellationToken) {
    let (mut peer, task, shutdown) = start(Protocol::LegacyWs, Ok(None), settings(), 64);
    peer.send(init_msg());
    assert_eq!(peer.next_json().await, json!({"type": "connection_ack"}));
    (peer, task, shutdown)
}

#[tokio::test(start_paused = true)]
async fn legacy_a_second_start_with_a_running_id_replaces_the_operation() {
    let (mut peer, _task, _) = legacy_session().await;
    peer.send(json!({"type": "start", "id": "a", "payload": {"query": "subscription { never }"}}));
    peer.send(
        json!({"type": "start", "id": "a", "payload": {"query": "subscription { count(n: 2) }"}}),
    );
    // The new operation's events, then its complete: nothing of the old one
    // (whose complete would end the client's new observer).
    for i in ["0", "1"] {
        let msg = peer.next_json().await;
        assert_eq!(msg["type"], "data", "{msg}");
        assert_eq!(msg["id"], "a");
        assert_eq!(msg["payload"]["data"]["count"], i);
    }
    assert_eq!(
        peer.next_json().await,
        json!({"type": "complete", "id": "a"})
    );
    // The id is free again, and stop works on the newest operation.
    peer.send(json!({"type": "start", "id": "a", "payload": {"query": "subscription { never }"}}));
    peer.send(json!({"type": "stop", "id": "a"}));
    assert_eq!(
        peer.next_json().await,
        json!({"type": "complete", "id": "a"})
    );
}

#[tokio::test(start_paused = true)]
async fn legacy_refused_init_gets_connection_error_then_the_close_code_of_its_reason() {
    fn unavailable() -> InitError {
        InitError::Login(LoginError::Unavailable)
    }
    let (mut peer, _task, _) = start(Protocol::LegacyWs, Err(unavailable), settings(), 64);
    peer.send(init_msg());
    let error = peer.next_json().await;
    assert_eq!(error["type"], "connection_error", "{error}");
    assert_eq!(peer.close_code().await, 4503);
}

// ---- fuzzing the protocol handlers -------------------------------------------

mod fuzz {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::{Value, json};

    use super::super::handler::Handler;
    use super::super::init::InitStatus;
    use super::super::legacy::LegacyHandler;
    use super::super::transport::TransportHandler;

    /// A client message: well-formed or not, of any type, id and payload.
    fn message() -> impl Strategy<Value = String> {
        let kind = prop::sample::select(vec![
            "connection_init",
            "subscribe",
            "complete",
            "ping",
            "pong",
            "start",
            "stop",
            "connection_terminate",
            "next",
            "",
            "unknown",
        ]);
        let id = prop_oneof![
            Just(Value::Null),
            Just(json!("")),
            "[a-c]{1,2}".prop_map(Value::String),
            any::<i64>().prop_map(|n| json!(n)),
        ];
        let query = prop::sample::select(vec![
            "subscription { a { b } }",
            "subscription { a: x b: y }",
            "{ cursor }",
            "query Q { a(first: 1000) { rows(first: 1000) { id } } }",
            "not graphql",
            "",
        ]);
        let payload = prop_oneof![
            Just(Value::Null),
            Just(json!([])),
            (query, any::<bool>()).prop_map(|(q, vars)| {
                if vars {
                    json!({"query": q, "variables": {"f": {"a": {"eq": 1}}, "n": 5}})
                } else {
                    json!({"query": q, "operationName": "Q"})
                }
            }),
        ];
        prop_oneof![
            4 => (kind, id, payload).prop_map(|(t, id, payload)| {
                json!({"type": t, "id": id, "payload": payload}).to_string()
            }),
            1 => any::<String>(),
            1 => "[\\[\\]{}\":, a-z0-9]{0,40}",
        ]
    }

    fn runner() -> TestRunner {
        TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        })
    }

    #[test]
    fn the_handlers_never_panic_on_any_message_sequence() {
        runner()
            .run(&prop::collection::vec(message(), 1..30), |messages| {
                let mut transport =
                    TransportHandler::new(InitStatus::default(), Default::default());
                let mut legacy = LegacyHandler::new(InitStatus::default(), Default::default());
                for text in &messages {
                    let _ = transport.on_text(text);
                    let _ = legacy.on_text(text);
                }
                let _ = transport.on_close();
                let _ = legacy.on_close();
                Ok(())
            })
            .unwrap();
    }
}
