//! A graphql-transport-ws connection's life: the init deadline, what may be
//! sent when, operation ids, and how operations end (`next`, `error`,
//! `complete`).

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{
    NOTIFICATIONS, acme, assert_closes_with, assert_notification, expect_close, notify, round_trip,
    watch, whoami,
};
use crate::helpers::{WsClient, bearer_init};

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
    let mut ws = app.transport_as(&alice).await;
    ws.send(bearer_init(&app.token(&alice))).await;
    assert_closes_with(&mut ws, 4429).await;
}

#[tokio::test]
async fn a_subscribe_before_connection_init_closes_with_4401() {
    let (app, _, _) = acme().await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.subscribe("1", NOTIFICATIONS, json!({})).await;
    assert_closes_with(&mut ws, 4401).await;
}

#[tokio::test]
async fn subscribing_with_an_id_that_is_still_active_closes_with_4409() {
    let (app, _, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    watch(&app, &mut ws, &["dup"]).await;
    ws.subscribe("dup", NOTIFICATIONS, json!({})).await;
    assert_closes_with(&mut ws, 4409).await;
}

#[tokio::test]
async fn an_id_can_be_reused_after_the_client_completes_it() {
    let (app, tenant, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    watch(&app, &mut ws, &["again"]).await;
    ws.send(json!({"type": "complete", "id": "again"})).await;
    app.wait_for_subscriptions(0).await;

    watch(&app, &mut ws, &["again"]).await;
    notify(&app, &tenant, &alice, "second life").await;
    let msg = ws.next_data().await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_notification(&msg, "again", "second life");
}

#[tokio::test]
async fn an_id_can_be_reused_after_its_query_completed() {
    let (app, _, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    for _ in 0..2 {
        assert_eq!(whoami(&mut ws).await, json!([alice]));
    }
}

#[tokio::test]
async fn after_the_client_completes_a_subscription_nothing_more_arrives_for_it_and_no_complete_is_echoed()
 {
    let (app, tenant, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
    watch(&app, &mut ws, &["stopped", "live"]).await;

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
        assert_notification(&msg, "live", title);
    }
    round_trip(&mut ws, "after the events").await;
    assert_eq!(ws.nothing_within(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn an_operation_that_fails_validation_gets_exactly_one_error_and_no_complete() {
    let (app, _, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
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
    watch(&app, &mut ws, &["bad"]).await;
}

#[tokio::test]
async fn a_subscription_that_fails_to_start_gets_exactly_one_error_and_no_complete() {
    let (app, _, alice) = acme().await;
    let mut ws = app.transport_as(&alice).await;
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
    let mut ws = app.transport_as(&alice).await;
    ws.subscribe("q", "query { users { rows { id } } cursor }", json!({}))
        .await;
    let next = ws.next_json().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "q");
    assert_eq!(
        next["payload"]["data"]["users"]["rows"],
        json!([{"id": alice}]),
        "{next}"
    );
    assert!(next["payload"]["data"]["cursor"].is_string(), "{next}");
    assert_eq!(ws.next_json().await, json!({"type": "complete", "id": "q"}));
    round_trip(&mut ws, "after complete").await;
}
