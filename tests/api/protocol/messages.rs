//! Single graphql-transport-ws messages: `ping` and `pong`, and what closes
//! the socket with 4400 (malformed, binary) or 1009 (oversized).

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{
    NOTIFICATIONS, acme, assert_closes_with, assert_notification, expect_close, notify, round_trip,
    watch,
};
use crate::helpers::{TestApp, WsClient};

/// Sends `text` after init as `user` and expects close 4400 with a short,
/// non-empty reason.
async fn assert_closes_4400(app: &TestApp, user: &str, text: &str) {
    let mut ws = app.transport_as(user).await;
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

#[tokio::test]
async fn invalid_json_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    assert_closes_4400(&app, &alice, "{not json").await;
}

#[tokio::test]
async fn a_message_without_a_type_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    assert_closes_4400(&app, &alice, r#"{"id": "1", "payload": {}}"#).await;
}

#[tokio::test]
async fn a_message_of_an_unknown_type_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    assert_closes_4400(&app, &alice, r#"{"type": "start", "id": "1"}"#).await;
}

#[tokio::test]
async fn a_subscribe_with_an_empty_id_closes_with_4400_and_a_reason() {
    let (app, _, alice) = acme().await;
    let msg = json!({"type": "subscribe", "id": "", "payload": {"query": NOTIFICATIONS}});
    assert_closes_4400(&app, &alice, &msg.to_string()).await;
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
        assert_closes_4400(&app, &alice, &text).await;
    }
}

#[tokio::test]
async fn a_binary_frame_closes_with_4400() {
    let (app, _, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    ws.socket
        .send(Message::Binary(br#"{"type":"ping"}"#.to_vec().into()))
        .await
        .unwrap();
    assert_closes_with(&mut ws, 4400).await;
}

#[tokio::test]
async fn a_text_message_of_exactly_256_kib_is_read_whole_and_small_ones_after_it_too() {
    // The server reads through a buffer of a few KiB: a message at the
    // limit must still arrive whole, and the connection go on afterwards.
    let (app, _, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    let overhead = json!({"type": "ping", "payload": {"padding": ""}})
        .to_string()
        .len();
    let padding =
        "é".repeat((256 * 1024 - overhead) / 2) + &"a".repeat((256 * 1024 - overhead) % 2);
    let ping = json!({"type": "ping", "payload": {"padding": padding}});
    assert_eq!(ping.to_string().len(), 256 * 1024);
    ws.send(ping).await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "pong", "payload": {"padding": padding}})
    );
    ws.send(json!({"type": "ping", "payload": {"n": 2}})).await;
    assert_eq!(
        ws.next_json().await,
        json!({"type": "pong", "payload": {"n": 2}})
    );
}

#[tokio::test]
async fn a_text_message_over_256_kib_closes_with_1009_and_other_connections_keep_receiving() {
    let (app, tenant, alice) = acme().await;
    let mut bystander = app.transport_as(&alice).await;
    watch(&app, &mut bystander, &["b"]).await;

    let mut big = app.transport_as(&alice).await;
    // A well-formed ping that would be answered if size were not checked.
    let padding = "a".repeat(256 * 1024);
    big.send(json!({"type": "ping", "payload": {"padding": padding}}))
        .await;
    assert_closes_with(&mut big, 1009).await;

    notify(&app, &tenant, &alice, "still flowing").await;
    let msg = bystander.next_data().await;
    assert_notification(&msg, "b", "still flowing");
}
