//! GraphQL over WebSocket at the wire level, over raw sockets: what the
//! graphql-ws PROTOCOL.md (graphql-transport-ws) and the legacy
//! subscriptions-transport-ws protocol (graphql-ws) require, and the
//! WebSocket-level behaviour around them (subprotocol negotiation, ping and
//! pong frames, message size, token expiry, shutdown).
//!
//! This file holds what the behaviour files share: the Acme fixture and
//! small assertions on frames.

mod auth;
mod legacy;
mod lifecycle;
mod messages;
mod websocket;

use serde_json::{Value, json};

use crate::helpers::{Frame, TestApp, WsClient, spawn_app};

/// The caller's new notifications (RLS restricts `notifications` to the recipient).
const NOTIFICATIONS: &str =
    "subscription { notifications(ops: [INSERT]) { row { id title user_id } } }";

/// An instance with tenant Acme and its member alice: (app, tenant, alice).
async fn acme() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    app.wait_until_read_so_far().await;
    (app, tenant, alice)
}

/// Inserts a notification titled `title` for `user`.
async fn notify(app: &TestApp, tenant: &str, user: &str, title: &str) {
    app.notify(tenant, user, "x", title).await;
}

/// Starts a [`NOTIFICATIONS`] subscription under each of `ids` and waits
/// until the hub holds exactly that many (callers start with none).
async fn watch(app: &TestApp, ws: &mut WsClient, ids: &[&str]) {
    for id in ids {
        ws.subscribe(id, NOTIFICATIONS, json!({})).await;
    }
    app.wait_for_subscriptions(ids.len()).await;
}

/// Asserts that `msg` delivers the notification `title` to subscription `id`.
fn assert_notification(msg: &Value, id: &str, title: &str) {
    assert_eq!(msg["id"], id, "a message for another subscription: {msg}");
    assert_eq!(
        msg["payload"]["data"]["notifications"]["row"]["title"], title,
        "{msg}"
    );
}

/// The next frame, which must be a close frame: (code, reason).
async fn expect_close(ws: &mut WsClient) -> (u16, String) {
    match ws.next().await {
        Frame::Close(code, reason) => (code, reason),
        Frame::Json(v) => panic!("expected the socket to be closed, got the message {v}"),
    }
}

/// Asserts that the next frame closes the socket with `code`.
async fn assert_closes_with(ws: &mut WsClient, code: u16) {
    let (got, reason) = expect_close(ws).await;
    assert_eq!(got, code, "closed with {got} {reason:?}");
}

/// The next frame of a legacy connection, skipping `ka` keep-alives.
async fn next_legacy(ws: &mut WsClient) -> Frame {
    loop {
        match ws.next().await {
            Frame::Json(v) if v["type"] == "ka" => continue,
            other => return other,
        }
    }
}

/// A ping/pong round-trip; the pong must be the very next message. Proves
/// that the server sent nothing else before it answered.
async fn round_trip(ws: &mut WsClient, tag: &str) {
    ws.send(json!({"type": "ping", "payload": {"tag": tag}}))
        .await;
    let msg = ws.next_json().await;
    assert_eq!(
        msg,
        json!({"type": "pong", "payload": {"tag": tag}}),
        "expected only the pong for {tag:?}"
    );
}

/// The query [`whoami`] sends: the ids of the users the caller may see.
const WHOAMI: &str = "query { users { rows { id } } }";

/// [`WHOAMI`] over an initialised connection: the ids of the users the
/// caller may see, which RLS limits to itself and its colleagues. In the
/// [`acme`] fixture alice has none, so this is `[alice]` for her token.
async fn whoami(ws: &mut WsClient) -> Value {
    ws.subscribe("me", WHOAMI, json!({})).await;
    let msg = ws.next_json().await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["id"], "me", "{msg}");
    assert!(msg["payload"]["errors"].is_null(), "{msg}");
    let complete = ws.next_json().await;
    assert_eq!(complete, json!({"type": "complete", "id": "me"}));
    let rows = msg["payload"]["data"]["users"]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("users rows: {msg}"));
    Value::Array(rows.iter().map(|r| r["id"].clone()).collect())
}
