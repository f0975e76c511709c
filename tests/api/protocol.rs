//! GraphQL over WebSocket at the wire level, over raw sockets: what the
//! graphql-ws PROTOCOL.md (graphql-transport-ws) and the legacy
//! subscriptions-transport-ws protocol (graphql-ws) require, and the
//! WebSocket-level behaviour around them (subprotocol negotiation, ping and
//! pong frames, message size, token expiry, shutdown).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{Frame, SECRET, TestApp, WAIT, WsClient, spawn_app, token_with};

const NOTIFICATIONS: &str = "subscription { notificationCreated { id title userId } }";

/// An instance with tenant Acme and its member alice: (app, tenant, alice).
async fn acme() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    (app, tenant, alice)
}

/// Inserts a notification for `user`.
async fn notify(app: &TestApp, tenant: &str, user: &str, title: &str) {
    app.admin
        .execute(
            "insert into notifications (tenant_id, user_id, kind, title) values ($1::text::uuid, $2::text::uuid, 'x', $3)",
            &[&tenant, &user, &title],
        )
        .await
        .unwrap();
}

/// The next frame, which must be a close frame: (code, reason).
async fn expect_close(ws: &mut WsClient) -> (u16, String) {
    match ws.next().await {
        Frame::Close(code, reason) => (code, reason),
        Frame::Json(v) => panic!("expected the socket to be closed, got the message {v}"),
    }
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

/// Asserts that a freshly opened graphql-transport-ws connection that sends
/// `init` is refused with 4403 and no `connection_ack`.
async fn assert_init_refused(app: &TestApp, headers: &[(&str, &str)], init: Value) {
    let mut ws = WsClient::connect_with(&app.ws_url, Some("graphql-transport-ws"), headers).await;
    ws.send(init.clone()).await;
    match ws.next().await {
        Frame::Close(code, reason) => {
            assert_eq!(
                code, 4403,
                "init {init} closed with {code} {reason:?}, not 4403"
            );
        }
        Frame::Json(v) => panic!("init {init} must be refused with 4403 and nothing else, got {v}"),
    }
}

fn bearer_init(token: &str) -> Value {
    json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
}

// ---------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn a_connection_init_without_a_token_is_refused_with_4403_and_no_ack() {
    let (app, _, _) = acme().await;
    assert_init_refused(&app, &[], json!({"type": "connection_init", "payload": {}})).await;
    assert_init_refused(&app, &[], json!({"type": "connection_init"})).await;
}

#[tokio::test]
async fn an_expired_token_is_refused_with_4403_and_no_ack() {
    let (app, _, alice) = acme().await;
    assert_init_refused(&app, &[], bearer_init(&token_with(&alice, "app_user", -60))).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused_with_4403_and_no_ack() {
    let (app, _, alice) = acme().await;
    let now = chrono::Utc::now().timestamp();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": alice, "role": "app_user", "iat": now, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(format!("not-{SECRET}").as_bytes()),
    )
    .unwrap();
    assert_init_refused(&app, &[], bearer_init(&forged)).await;
    // The same claims signed with the right secret are accepted: the refusal
    // above is about the signature only.
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&token_with(&alice, "app_user", 3600)).await;
}

#[tokio::test]
async fn a_token_naming_a_role_the_service_may_not_assume_is_refused_with_4403_and_no_ack() {
    let (app, _, alice) = acme().await;
    for role in [
        "postgres",
        "herald_authenticator",
        "pg_read_all_data",
        "no_such_role",
    ] {
        assert_init_refused(&app, &[], bearer_init(&token_with(&alice, role, 3600))).await;
    }
}

#[tokio::test]
async fn a_bad_token_in_the_upgrade_header_is_refused_with_4403_too() {
    let (app, _, alice) = acme().await;
    let expired = format!("Bearer {}", token_with(&alice, "app_user", -60));
    assert_init_refused(
        &app,
        &[("authorization", &expired)],
        json!({"type": "connection_init", "payload": {}}),
    )
    .await;
}

#[tokio::test]
async fn a_refused_legacy_init_gets_a_connection_error_and_then_close_4403() {
    let (app, _, alice) = acme().await;
    for init in [
        json!({"type": "connection_init", "payload": {}}),
        bearer_init(&token_with(&alice, "app_user", -60)),
        bearer_init(&token_with(&alice, "postgres", 3600)),
    ] {
        let mut ws = WsClient::legacy(&app.ws_url).await;
        ws.send(init.clone()).await;
        let first = ws.next().await;
        match &first {
            Frame::Json(v) => assert_eq!(v["type"], "connection_error", "init {init}: {v}"),
            other => panic!("init {init}: expected connection_error first, got {other:?}"),
        }
        let (code, _) = expect_close(&mut ws).await;
        assert_eq!(code, 4403, "init {init}");
    }
}

/// `query { me { id } }` over an initialised connection: the caller's id.
async fn whoami(ws: &mut WsClient) -> Value {
    ws.subscribe("me", "query { me { id } }", json!({})).await;
    let msg = ws.next_json().await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["id"], "me", "{msg}");
    let complete = ws.next_json().await;
    assert_eq!(complete, json!({"type": "complete", "id": "me"}));
    msg["payload"]["data"]["me"]["id"].clone()
}

#[tokio::test]
async fn a_token_in_the_upgrade_authorization_header_authenticates_an_empty_init() {
    let (app, _, alice) = acme().await;
    let header = format!("Bearer {}", app.token(&alice));
    let mut ws = WsClient::connect_with(
        &app.ws_url,
        Some("graphql-transport-ws"),
        &[("authorization", &header)],
    )
    .await;
    ws.send(json!({"type": "connection_init", "payload": {}}))
        .await;
    let ack = ws.next_json().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(whoami(&mut ws).await, json!(alice));
}

#[tokio::test]
async fn a_token_in_a_jwt_cookie_authenticates_an_empty_init() {
    let (app, _, alice) = acme().await;
    let cookie = format!("theme=dark; JWT={}; other=1", app.token(&alice));
    let mut ws = WsClient::connect_with(
        &app.ws_url,
        Some("graphql-transport-ws"),
        &[("cookie", &cookie)],
    )
    .await;
    ws.send(json!({"type": "connection_init", "payload": {}}))
        .await;
    let ack = ws.next_json().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(whoami(&mut ws).await, json!(alice));
}

#[tokio::test]
async fn a_token_in_the_headers_form_of_the_init_payload_authenticates() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.send(json!({
        "type": "connection_init",
        "payload": {"headers": {"Authorization": format!("Bearer {}", app.token(&alice))}}
    }))
    .await;
    let ack = ws.next_json().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(whoami(&mut ws).await, json!(alice));
}

// ---------------------------------------------------------------------------
// Connection lifecycle

#[tokio::test]
async fn a_connection_that_sends_no_init_within_3_seconds_is_closed_with_4408() {
    let (app, _, _) = acme().await;
    let started = Instant::now();
    let mut ws = WsClient::transport(&app.ws_url).await;
    let (code, _) = expect_close(&mut ws).await;
    let waited = started.elapsed();
    assert_eq!(code, 4408);
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(6),
        "closed after {waited:?}, expected about 3 s"
    );
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.send(bearer_init(&app.token(&alice))).await;
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 4429);
}

#[tokio::test]
async fn a_subscribe_before_connection_init_closes_with_4401() {
    let (app, _, _) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.subscribe("1", NOTIFICATIONS, json!({})).await;
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 4401);
}

#[tokio::test]
async fn subscribing_with_an_id_that_is_still_active_closes_with_4409() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe("dup", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
    ws.subscribe("dup", NOTIFICATIONS, json!({})).await;
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 4409);
}

#[tokio::test]
async fn an_id_can_be_reused_after_the_client_completes_it() {
    let (app, tenant, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe("again", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
    ws.send(json!({"type": "complete", "id": "again"})).await;
    app.wait_for_subscriptions(0).await;

    ws.subscribe("again", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
    notify(&app, &tenant, &alice, "second life").await;
    let msg = ws.next_data().await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(msg["id"], "again");
    assert_eq!(
        msg["payload"]["data"]["notificationCreated"]["title"],
        "second life"
    );
}

#[tokio::test]
async fn an_id_can_be_reused_after_its_query_completed() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    for _ in 0..2 {
        assert_eq!(whoami(&mut ws).await, json!(alice));
    }
}

// ---------------------------------------------------------------------------
// ping / pong messages

#[tokio::test]
async fn ping_before_and_after_init_gets_a_pong_echoing_the_payload() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.send(json!({"type": "ping", "payload": {"n": 1, "s": "before"}}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "pong", "payload": {"n": 1, "s": "before"}})
    );
    ws.init(&app.token(&alice)).await;
    ws.send(json!({"type": "ping", "payload": {"n": 2, "s": "after"}}))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "pong", "payload": {"n": 2, "s": "after"}})
    );
    ws.send(json!({"type": "ping"})).await;
    let pong = ws.next_json().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert!(
        pong["payload"].is_null(),
        "a ping without payload got {pong}"
    );
}

#[tokio::test]
async fn a_pong_message_gets_no_answer() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    // Before init…
    ws.send(json!({"type": "pong", "payload": {"unsolicited": true}}))
        .await;
    round_trip(&mut ws, "after the first pong").await;
    // …and after it.
    ws.init(&app.token(&alice)).await;
    ws.send(json!({"type": "pong"})).await;
    round_trip(&mut ws, "after the second pong").await;
}

// ---------------------------------------------------------------------------
// Malformed messages

/// Sends `text` after init and expects close 4400 with a short, non-empty reason.
async fn assert_closes_4400(app: &TestApp, token: &str, text: &str) {
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(token).await;
    ws.send_text(text).await;
    let (code, reason) = expect_close(&mut ws).await;
    let shown: String = text.chars().take(80).collect();
    assert_eq!(code, 4400, "{shown:?} closed with {code} {reason:?}");
    assert!(!reason.is_empty(), "{shown:?}: 4400 without a reason");
    assert!(
        reason.len() <= 123,
        "{shown:?}: reason of {} bytes",
        reason.len()
    );
}

#[tokio::test]
async fn invalid_json_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    assert_closes_4400(&app, &app.token(&alice), "{not json").await;
}

#[tokio::test]
async fn a_message_without_a_type_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    assert_closes_4400(&app, &app.token(&alice), r#"{"id": "1", "payload": {}}"#).await;
}

#[tokio::test]
async fn a_message_of_an_unknown_type_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    assert_closes_4400(&app, &app.token(&alice), r#"{"type": "start", "id": "1"}"#).await;
}

#[tokio::test]
async fn a_subscribe_with_an_empty_id_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    let msg = json!({"type": "subscribe", "id": "", "payload": {"query": NOTIFICATIONS}});
    assert_closes_4400(&app, &app.token(&alice), &msg.to_string()).await;
}

#[tokio::test]
async fn close_reasons_that_quote_long_input_still_fit_in_a_close_frame() {
    let (app, _, alice) = acme().await;
    // Reasons that could quote the offending input: a long unknown type (also
    // multi-byte), and a subscribe whose fields fail to parse.
    let long_type = json!({"type": "t".repeat(1000)}).to_string();
    let long_utf8 = json!({"type": "é".repeat(500)}).to_string();
    let bad_subscribe =
        json!({"type": "subscribe", "id": "x".repeat(1000), "payload": {"query": 42}}).to_string();
    for text in [long_type, long_utf8, bad_subscribe] {
        assert_closes_4400(&app, &app.token(&alice), &text).await;
    }
}

#[tokio::test]
async fn a_binary_frame_closes_with_4400() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.socket
        .send(Message::Binary(br#"{"type":"ping"}"#.to_vec().into()))
        .await
        .unwrap();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 4400, "{reason:?}");
}

#[tokio::test]
async fn a_text_message_over_256_kib_closes_with_1009_and_other_connections_keep_receiving() {
    let (app, tenant, alice) = acme().await;
    let mut bystander = WsClient::transport(&app.ws_url).await;
    bystander.init(&app.token(&alice)).await;
    bystander.subscribe("b", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;

    let mut big = WsClient::transport(&app.ws_url).await;
    big.init(&app.token(&alice)).await;
    // A well-formed ping that would be answered if size were not checked.
    let padding = "a".repeat(256 * 1024);
    big.send(json!({"type": "ping", "payload": {"padding": padding}}))
        .await;
    let (code, _) = expect_close(&mut big).await;
    assert_eq!(code, 1009);

    notify(&app, &tenant, &alice, "still flowing").await;
    let msg = bystander.next_data().await;
    assert_eq!(msg["id"], "b");
    assert_eq!(
        msg["payload"]["data"]["notificationCreated"]["title"],
        "still flowing"
    );
}

// ---------------------------------------------------------------------------
// Operations

#[tokio::test]
async fn after_the_client_completes_a_subscription_nothing_more_arrives_for_it_and_no_complete_is_echoed()
 {
    let (app, tenant, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe("stopped", NOTIFICATIONS, json!({})).await;
    ws.subscribe("live", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(2).await;

    ws.send(json!({"type": "complete", "id": "stopped"})).await;
    // The server handles messages in order: once this pong is back, the
    // complete was handled, and nothing (no echoed complete) came before it.
    round_trip(&mut ws, "after complete").await;
    app.wait_for_subscriptions(1).await;

    notify(&app, &tenant, &alice, "one").await;
    notify(&app, &tenant, &alice, "two").await;
    for title in ["one", "two"] {
        let msg = ws.next_json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(
            msg["id"], "live",
            "a message for a completed subscription: {msg}"
        );
        assert_eq!(
            msg["payload"]["data"]["notificationCreated"]["title"],
            title
        );
    }
    round_trip(&mut ws, "after the events").await;
    assert_eq!(ws.nothing_within(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn an_operation_that_fails_validation_gets_exactly_one_error_and_no_complete() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe("bad", "subscription { noSuchField }", json!({}))
        .await;
    let msg = ws.next_json().await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["id"], "bad");
    let errors = msg["payload"]
        .as_array()
        .unwrap_or_else(|| panic!("error payload must be a list: {msg}"));
    assert!(!errors.is_empty(), "{msg}");
    assert!(errors[0]["message"].is_string(), "{msg}");
    // No complete: the next message is the pong.
    round_trip(&mut ws, "after error").await;
    // And the id is free again.
    ws.subscribe("bad", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
}

#[tokio::test]
async fn a_subscription_that_fails_to_start_gets_exactly_one_error_and_no_complete() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe(
        "nope",
        "subscription { changes(table: \"no_such_table\") { cursor } }",
        json!({}),
    )
    .await;
    let msg = ws.next_json().await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["id"], "nope");
    assert!(
        msg["payload"].as_array().is_some_and(|e| !e.is_empty()),
        "{msg}"
    );
    round_trip(&mut ws, "after error").await;
}

#[tokio::test]
async fn a_query_over_the_socket_returns_next_then_complete() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe("q", "query { me { id } cursor }", json!({}))
        .await;
    let next = ws.next_json().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "q");
    assert_eq!(next["payload"]["data"]["me"]["id"], json!(alice));
    assert!(next["payload"]["data"]["cursor"].is_string(), "{next}");
    assert_eq!(ws.next_json().await, json!({"type": "complete", "id": "q"}));
    round_trip(&mut ws, "after complete").await;
}

// ---------------------------------------------------------------------------
// WebSocket frames, keep-alive, expiry

#[tokio::test]
async fn a_client_sending_ping_frames_every_100_ms_gets_pongs_stays_connected_and_still_receives_events()
 {
    let (app, tenant, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe("s", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut sent: u32 = 0;
    let mut pongs: Vec<u32> = Vec::new();
    let on_pong = |payload: &[u8], pongs: &mut Vec<u32>| {
        let n = u32::from_be_bytes(
            payload
                .try_into()
                .expect("a pong echoes the ping's 4 bytes"),
        );
        assert!(
            pongs.last().is_none_or(|&last| n > last),
            "pong {n} after {pongs:?}"
        );
        pongs.push(n);
    };
    while started.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            _ = tick.tick() => {
                sent += 1;
                ws.socket.send(Message::Ping(sent.to_be_bytes().to_vec().into())).await.unwrap();
            }
            msg = ws.socket.next() => match msg {
                Some(Ok(Message::Pong(p))) => on_pong(&p, &mut pongs),
                Some(Ok(Message::Ping(_))) => {}
                other => panic!("while sending ping frames, got {other:?}"),
            }
        }
    }
    // The last ping is answered too.
    while pongs.last() != Some(&sent) {
        match tokio::time::timeout(WAIT, ws.socket.next())
            .await
            .expect("the last pong")
        {
            Some(Ok(Message::Pong(p))) => on_pong(&p, &mut pongs),
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("waiting for the last pong, got {other:?}"),
        }
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
    assert_eq!(msg["id"], "s");
    assert_eq!(
        msg["payload"]["data"]["notificationCreated"]["title"],
        "after the pings"
    );
}

#[tokio::test]
async fn a_connection_is_closed_with_4403_when_its_token_expires_while_idle() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    let started = Instant::now();
    ws.init(&token_with(&alice, "app_user", 2)).await;
    let (code, reason) = expect_close(&mut ws).await;
    let waited = started.elapsed();
    assert_eq!(code, 4403, "{reason:?}");
    // `exp` has one-second resolution: now + 2 s is between 1 and 2 s away.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}, expected at the token's expiry (1–2 s)"
    );
}

#[tokio::test]
async fn a_legacy_connection_is_closed_with_4403_when_its_token_expires() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::legacy(&app.ws_url).await;
    let started = Instant::now();
    ws.init(&token_with(&alice, "app_user", 2)).await;
    let frame = next_legacy(&mut ws).await;
    let waited = started.elapsed();
    assert!(matches!(frame, Frame::Close(4403, _)), "{frame:?}");
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
}

// ---------------------------------------------------------------------------
// Subprotocol negotiation

/// Connects offering `offer`; returns the socket and the accepted subprotocol.
async fn connect_offering(url: &str, offer: &str) -> (WsClient, Option<String>) {
    let mut request = url.into_client_request().unwrap();
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
    (WsClient { socket }, accepted)
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
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 4406);
}

#[tokio::test]
async fn offering_graphql_ws_is_answered_with_graphql_ws_and_speaks_the_legacy_protocol() {
    let (app, _, alice) = acme().await;
    let (mut ws, accepted) = connect_offering(&app.ws_url, "graphql-ws").await;
    assert_eq!(accepted.as_deref(), Some("graphql-ws"));
    ws.init(&app.token(&alice)).await;
    assert_eq!(ws.next_json().await["type"], "ka");
}

#[tokio::test]
async fn offering_both_subprotocols_picks_the_first_offered() {
    let (app, _, alice) = acme().await;
    let (mut ws, accepted) =
        connect_offering(&app.ws_url, "graphql-transport-ws, graphql-ws").await;
    assert_eq!(accepted.as_deref(), Some("graphql-transport-ws"));
    ws.init(&app.token(&alice)).await;
    // A graphql-transport-ws `ping` message is understood.
    round_trip(&mut ws, "transport").await;

    let (mut ws, accepted) =
        connect_offering(&app.ws_url, "graphql-ws, graphql-transport-ws").await;
    assert_eq!(accepted.as_deref(), Some("graphql-ws"));
    ws.init(&app.token(&alice)).await;
    assert_eq!(ws.next_json().await["type"], "ka");
}

// ---------------------------------------------------------------------------
// Legacy graphql-ws

#[tokio::test]
async fn legacy_invalid_json_gets_a_connection_error_and_the_socket_stays_open() {
    let (app, tenant, alice) = acme().await;
    let mut ws = WsClient::legacy(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.send_text("{not json").await;
    match next_legacy(&mut ws).await {
        Frame::Json(v) => assert_eq!(v["type"], "connection_error", "{v}"),
        other => panic!("expected connection_error, got {other:?}"),
    }
    ws.start("s", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
    notify(&app, &tenant, &alice, "after the garbage").await;
    let msg = ws.next_data().await;
    assert_eq!(msg["type"], "data", "{msg}");
    assert_eq!(msg["id"], "s");
    assert_eq!(
        msg["payload"]["data"]["notificationCreated"]["title"],
        "after the garbage"
    );
}

#[tokio::test]
async fn legacy_stop_ends_a_subscription_with_complete() {
    let (app, tenant, alice) = acme().await;
    let mut ws = WsClient::legacy(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.start("stopped", NOTIFICATIONS, json!({})).await;
    ws.start("live", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(2).await;
    ws.send(json!({"type": "stop", "id": "stopped"})).await;
    match next_legacy(&mut ws).await {
        Frame::Json(v) => assert_eq!(v, json!({"type": "complete", "id": "stopped"})),
        other => panic!("expected complete, got {other:?}"),
    }
    app.wait_for_subscriptions(1).await;
    notify(&app, &tenant, &alice, "only live").await;
    let msg = ws.next_data().await;
    assert_eq!(msg["id"], "live", "{msg}");
}

#[tokio::test]
async fn legacy_connections_get_ka_keep_alives_within_the_clients_30_second_window() {
    let (app, _, alice) = acme().await;
    let mut ws = WsClient::legacy(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
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

// ---------------------------------------------------------------------------
// Shutdown

#[tokio::test]
async fn server_shutdown_closes_open_sockets_with_1001() {
    let (app, _, alice) = acme().await;
    let mut transport = WsClient::transport(&app.ws_url).await;
    transport.init(&app.token(&alice)).await;
    transport.subscribe("s", NOTIFICATIONS, json!({})).await;
    let mut legacy = WsClient::legacy(&app.ws_url).await;
    legacy.init(&app.token(&alice)).await;
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
