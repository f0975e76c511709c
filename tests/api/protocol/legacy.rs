//! The legacy subscriptions-transport-ws protocol (`graphql-ws`): lenient
//! errors, `stop`, and `ka` keep-alives.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{NOTIFICATIONS, acme, assert_notification, next_legacy, notify};
use crate::helpers::{Frame, WAIT, WsClient};

/// The next message of a legacy connection, skipping `ka`; panics on a close.
async fn next_legacy_json(ws: &mut WsClient) -> Value {
    match next_legacy(ws).await {
        Frame::Json(v) => v,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next text message within `d` (ping/pong frames skipped).
async fn next_text_within(ws: &mut WsClient, d: Duration) -> Value {
    let deadline = Instant::now() + d;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {d:?}"));
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn legacy_invalid_json_gets_a_connection_error_and_the_socket_stays_open() {
    let (app, tenant, alice) = acme().await;
    let mut ws = app.legacy_as(&alice).await;
    ws.send_text("{not json").await;
    let error = next_legacy_json(&mut ws).await;
    assert_eq!(error["type"], "connection_error", "{error}");
    ws.start("s", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
    notify(&app, &tenant, &alice, "after the garbage").await;
    let msg = ws.next_data().await;
    assert_eq!(msg["type"], "data", "{msg}");
    assert_notification(&msg, "s", "after the garbage");
}

#[tokio::test]
async fn legacy_stop_ends_a_subscription_with_complete() {
    let (app, tenant, alice) = acme().await;
    let mut ws = app.legacy_as(&alice).await;
    ws.start("stopped", NOTIFICATIONS, json!({})).await;
    ws.start("live", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(2).await;
    ws.send(json!({"type": "stop", "id": "stopped"})).await;
    assert_eq!(
        next_legacy_json(&mut ws).await,
        json!({"type": "complete", "id": "stopped"})
    );
    app.wait_for_subscriptions(1).await;
    notify(&app, &tenant, &alice, "only live").await;
    let msg = ws.next_data().await;
    assert_eq!(msg["id"], "live", "{msg}");
}

#[tokio::test]
async fn legacy_connections_get_ka_keep_alives_within_the_clients_30_second_window() {
    let (app, _, alice) = acme().await;
    let mut ws = app.legacy_as(&alice).await;
    // The first right after the ack, then again before the client's 30 s
    // keep-alive timeout (which starts with the first ka) runs out.
    assert_eq!(next_text_within(&mut ws, WAIT).await, json!({"type": "ka"}));
    let first = Instant::now();
    assert_eq!(
        next_text_within(&mut ws, Duration::from_secs(29)).await,
        json!({"type": "ka"})
    );
    assert!(
        first.elapsed() > Duration::from_secs(1),
        "ka after {:?}",
        first.elapsed()
    );
}

#[tokio::test]
async fn legacy_a_second_start_with_a_running_id_replaces_the_operation() {
    let (app, tenant, alice) = acme().await;
    let mut ws = app.legacy_as(&alice).await;
    // The first operation under "a" would see only rows titled "old".
    let old = "subscription { notifications(ops: [INSERT], where: {title: {eq: \"old\"}}) { row { id title user_id } } }";
    ws.start("a", old, json!({})).await;
    app.wait_for_subscriptions(1).await;
    let hub = app.app.state().hub.clone();
    let mut changes = hub.changes();
    let before = *changes.borrow_and_update();
    ws.start("a", NOTIFICATIONS, json!({})).await;
    // The old one is stopped (one change of the hub) and the new one
    // registered (another): still one subscription.
    // (The guard `wait_for` returns is dropped at once: it holds the
    // hub's watch locked.)
    let replaced = tokio::time::timeout(WAIT, changes.wait_for(|n| *n >= before + 2))
        .await
        .is_ok();
    assert!(replaced, "the second start did not replace the first");
    assert_eq!(hub.subscription_count(), 1);
    notify(&app, &tenant, &alice, "new").await;
    notify(&app, &tenant, &alice, "old").await;
    // Both rows reach the new operation; the old one sends nothing, not
    // even a `complete`, which the client would take as the new one's end.
    for title in ["new", "old"] {
        let msg = next_legacy_json(&mut ws).await;
        assert_eq!(msg["type"], "data", "{msg}");
        assert_notification(&msg, "a", title);
    }
    ws.send(json!({"type": "stop", "id": "a"})).await;
    assert_eq!(
        next_legacy_json(&mut ws).await,
        json!({"type": "complete", "id": "a"})
    );
}
