//! Behaviour below the GraphQL protocols: WebSocket ping and pong frames,
//! subprotocol negotiation, and closing every socket at shutdown.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{
    NOTIFICATIONS, acme, assert_closes_with, assert_notification, next_legacy, notify, round_trip,
    watch,
};
use crate::helpers::{Frame, TestApp, WAIT, WsClient, bearer_init};

/// Connects offering the subprotocols `offer`, asserts that `expected` was
/// accepted, and initialises the connection as `user`.
async fn init_offering(app: &TestApp, user: &str, offer: &str, expected: &str) -> WsClient {
    let mut request = app.ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", offer.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects");
    let accepted = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(accepted.as_deref(), Some(expected), "offered {offer:?}");
    let mut ws = WsClient { socket };
    ws.init(&app.token(user)).await;
    ws
}

/// Handles a frame read while `doing`: records a pong, which must echo a
/// later ping than the pongs before it, and skips the server's own pings.
fn record_pong(msg: Option<Result<Message, WsError>>, pongs: &mut Vec<u32>, doing: &str) {
    let payload = match msg {
        Some(Ok(Message::Pong(p))) => p,
        Some(Ok(Message::Ping(_))) => return,
        other => panic!("{doing}, got {other:?}"),
    };
    let n = u32::from_be_bytes(
        payload[..]
            .try_into()
            .expect("a pong echoes the ping's 4 bytes"),
    );
    assert!(
        pongs.last().is_none_or(|&last| n > last),
        "pong {n} after {pongs:?}"
    );
    pongs.push(n);
}

#[tokio::test]
async fn a_client_sending_ping_frames_every_100_ms_gets_pongs_stays_connected_and_still_receives_events()
 {
    let (app, tenant, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    watch(&app, &mut ws, &["s"]).await;

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut sent: u32 = 0;
    let mut pongs: Vec<u32> = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            _ = tick.tick() => {
                sent += 1;
                ws.socket.send(Message::Ping(sent.to_be_bytes().to_vec().into())).await.unwrap();
            }
            msg = ws.socket.next() => record_pong(msg, &mut pongs, "while sending ping frames"),
        }
    }
    // The last ping is answered too.
    while pongs.last() != Some(&sent) {
        let msg = tokio::time::timeout(WAIT, ws.socket.next())
            .await
            .expect("the last pong");
        record_pong(msg, &mut pongs, "waiting for the last pong");
    }
    assert!(sent >= 45, "only {sent} pings sent");
    // Pongs to pings still queued may be merged, but not many.
    assert!(
        pongs.len() as u32 * 2 >= sent,
        "{} pongs for {sent} pings",
        pongs.len()
    );

    notify(&app, &tenant, &alice, "after the pings").await;
    let msg = ws.next_data().await;
    assert_notification(&msg, "s", "after the pings");
}

#[tokio::test]
async fn offering_no_subprotocol_closes_the_socket_with_4406() {
    let (app, _, alice) = acme().await;
    let mut request = app.ws_url.as_str().into_client_request().unwrap();
    request.headers_mut().remove("sec-websocket-protocol");
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade succeeds; the refusal is a close code");
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    let mut ws = WsClient { socket };
    // Even a client that goes ahead gets nothing but the close.
    let _ = ws
        .socket
        .send(Message::text(bearer_init(&app.token(&alice)).to_string()))
        .await;
    assert_closes_with(&mut ws, 4406).await;
}

#[tokio::test]
async fn offering_graphql_ws_is_answered_with_graphql_ws_and_speaks_the_legacy_protocol() {
    let (app, _, alice) = acme().await;
    let mut ws = init_offering(&app, &alice, "graphql-ws", "graphql-ws").await;
    assert_eq!(ws.next_json().await["type"], "ka");
}

#[tokio::test]
async fn offering_both_subprotocols_picks_the_first_offered() {
    let (app, _, alice) = acme().await;
    let offer = "graphql-transport-ws, graphql-ws";
    let mut ws = init_offering(&app, &alice, offer, "graphql-transport-ws").await;
    // A graphql-transport-ws `ping` message is understood.
    round_trip(&mut ws, "transport").await;

    let offer = "graphql-ws, graphql-transport-ws";
    let mut ws = init_offering(&app, &alice, offer, "graphql-ws").await;
    assert_eq!(ws.next_json().await["type"], "ka");
}

#[tokio::test]
async fn server_shutdown_closes_open_sockets_with_1001() {
    let (app, _, alice) = acme().await;
    let mut transport = app.transport_as(&alice).await;
    transport.subscribe("s", NOTIFICATIONS, json!({})).await;
    let mut legacy = app.legacy_as(&alice).await;
    legacy.start("s", NOTIFICATIONS, json!({})).await;
    let mut idle = WsClient::transport(&app.ws_url).await;
    app.wait_for_subscriptions(2).await;

    let application = app.app;
    let (done, t, l, i) = tokio::join!(
        tokio::time::timeout(WAIT, application.shutdown()),
        transport.next(),
        next_legacy(&mut legacy),
        idle.next(),
    );
    assert!(
        matches!(t, Frame::Close(1001, _)),
        "graphql-transport-ws got {t:?}"
    );
    assert!(matches!(l, Frame::Close(1001, _)), "graphql-ws got {l:?}");
    assert!(
        matches!(i, Frame::Close(1001, _)),
        "uninitialised socket got {i:?}"
    );
    assert!(done.is_ok(), "shutdown did not finish within {WAIT:?}");
}
