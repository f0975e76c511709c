//! Who may open a connection: tokens in the init payload, the upgrade
//! request's headers and cookies; refusals with 4403; closing at expiry.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{acme, expect_close, next_legacy, whoami};
use crate::helpers::{Frame, SECRET, TestApp, WsClient, bearer_init, spawn_app_with, token_with};

/// Opens a graphql-transport-ws connection with the upgrade `headers`.
async fn connect_with_headers(app: &TestApp, headers: &[(&str, &str)]) -> WsClient {
    WsClient::connect_with(&app.ws_url, Some("graphql-transport-ws"), headers).await
}

/// Asserts that a freshly opened graphql-transport-ws connection that sends
/// `init` is refused with 4403 and no `connection_ack`.
async fn assert_init_refused(app: &TestApp, headers: &[(&str, &str)], init: Value) {
    let mut ws = connect_with_headers(app, headers).await;
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

/// Asserts that a freshly opened graphql-transport-ws connection that sends
/// `init` is acknowledged and acts as `user`.
async fn assert_init_authenticates(
    app: &TestApp,
    headers: &[(&str, &str)],
    init: Value,
    user: &str,
) {
    let mut ws = connect_with_headers(app, headers).await;
    ws.init_with(init).await;
    assert_eq!(whoami(&mut ws).await, json!([user]));
}

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

#[tokio::test]
async fn a_token_in_the_upgrade_authorization_header_authenticates_an_empty_init() {
    let (app, _, alice) = acme().await;
    let header = format!("Bearer {}", app.token(&alice));
    let init = json!({"type": "connection_init", "payload": {}});
    assert_init_authenticates(&app, &[("authorization", &header)], init, &alice).await;
}

#[tokio::test]
async fn a_token_in_a_jwt_cookie_authenticates_an_empty_init() {
    let (app, _, alice) = acme().await;
    let cookie = format!("theme=dark; JWT={}; other=1", app.token(&alice));
    let init = json!({"type": "connection_init", "payload": {}});
    assert_init_authenticates(&app, &[("cookie", &cookie)], init, &alice).await;
}

#[tokio::test]
async fn a_token_in_the_headers_form_of_the_init_payload_authenticates() {
    let (app, _, alice) = acme().await;
    let init = json!({
        "type": "connection_init",
        "payload": {"headers": {"Authorization": format!("Bearer {}", app.token(&alice))}}
    });
    assert_init_authenticates(&app, &[], init, &alice).await;
}

/// Acme on an instance without JWT leeway, so that a connection closes at
/// its token's `exp` exactly: (app, alice).
async fn acme_without_leeway() -> (TestApp, String) {
    let app = spawn_app_with(|c| c.jwt_leeway = Duration::ZERO).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    (app, alice)
}

#[tokio::test]
async fn a_connection_is_closed_with_4403_when_its_token_expires_while_idle() {
    let (app, alice) = acme_without_leeway().await;
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
    let (app, alice) = acme_without_leeway().await;
    let mut ws = WsClient::legacy(&app.ws_url).await;
    let started = Instant::now();
    ws.init(&token_with(&alice, "app_user", 2)).await;
    let frame = next_legacy(&mut ws).await;
    let waited = started.elapsed();
    assert!(matches!(frame, Frame::Close(4403, _)), "{frame:?}");
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
}
