//! Resuming by cursor with the real graphql-ws client underneath: across an
//! instance's restart, a token's expiry (4403) and a graceful shutdown that
//! moves the client to another instance; rows are written while the client
//! is disconnected, and none may be missed or repeated.

use std::time::Duration;

use serde_json::{Value, json};

use super::{RECONNECT, notify, start, titles, until};
use crate::helpers::{
    NodeScript, TestApp, WAIT, spawn_app, spawn_app_on, spawn_app_on_with, spawn_app_with,
    token_with,
};

#[tokio::test]
async fn the_client_resumes_from_its_cursor_when_its_instance_restarts_and_gets_what_was_written_meanwhile_once()
 {
    resumes_after_a_restart(&[]).await;
}

#[tokio::test]
async fn iterating_the_client_resumes_from_its_cursor_when_its_instance_restarts() {
    resumes_after_a_restart(&[("ITERATE", "1".to_owned())]).await;
}

/// The client (`subscribe.mjs` with `env`) is connected to an instance
/// that shuts down; rows are written while no instance runs; another starts
/// on the same address and database.
async fn resumes_after_a_restart(env: &[(&str, String)]) {
    let first = spawn_app().await;
    let tenant = first.tenant("Acme").await;
    let alice = first.user("alice@acme.test", &[&tenant]).await;
    let addr = first.app.local_addr();
    let mut client = start("subscribe.mjs", &[&first.ws_url], &first.token(&alice), env);
    until(&mut client, "connected", WAIT).await;
    first.wait_for_subscriptions(1).await;
    notify(&first.admin, &tenant, &alice, &["a0", "a1"]).await;
    assert_eq!(titles(&mut client, 2, WAIT).await, ["a0", "a1"]);

    let TestApp {
        app,
        admin,
        admin_url,
        ..
    } = first;
    app.shutdown().await;
    let closed = until(&mut client, "closed", WAIT).await;
    assert_eq!(closed["code"], 1001, "{closed}");
    // Written while no instance runs (the client's retries are refused).
    notify(&admin, &tenant, &alice, &["b0", "b1"]).await;
    let second = spawn_app_on_with(&admin_url, |c| c.listen = addr).await;
    until(&mut client, "connected", RECONNECT).await;
    assert_eq!(titles(&mut client, 2, WAIT).await, ["b0", "b1"]);
    // Nothing repeated: the next change is the next one written.
    notify(&second.admin, &tenant, &alice, &["c0"]).await;
    assert_eq!(titles(&mut client, 1, WAIT).await, ["c0"]);
    client.kill().await;
}

#[tokio::test]
async fn when_its_token_expires_the_client_asks_token_for_a_fresh_one_and_resumes_from_its_cursor()
{
    let app = spawn_app_with(|c| c.jwt_leeway = Duration::ZERO).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut client = start("subscribe.mjs", &[&app.ws_url], "ask", &[]);
    until(&mut client, "token", WAIT).await;
    // `exp` has one-second resolution: this token expires in 2 to 3 s.
    client.answer(&token_with(&alice, "app_user", 3)).await;
    until(&mut client, "connected", WAIT).await;
    app.wait_for_subscriptions(1).await;
    notify(&app.admin, &tenant, &alice, &["a0"]).await;
    assert_eq!(titles(&mut client, 1, WAIT).await, ["a0"]);

    let closed = until(&mut client, "closed", WAIT).await;
    assert_eq!(closed["code"], 4403, "{closed}");
    // The client now waits for its token() callback: write meanwhile.
    until(&mut client, "token", WAIT).await;
    notify(&app.admin, &tenant, &alice, &["b0", "b1"]).await;
    client.answer(&app.token(&alice)).await;
    until(&mut client, "connected", WAIT).await;
    assert_eq!(titles(&mut client, 2, WAIT).await, ["b0", "b1"]);
    notify(&app.admin, &tenant, &alice, &["c0"]).await;
    assert_eq!(titles(&mut client, 1, WAIT).await, ["c0"]);
    client.kill().await;
}

#[tokio::test]
async fn a_token_refused_twice_in_a_row_ends_the_subscription_with_an_error_rather_than_retrying_forever()
 {
    let app = spawn_app().await;
    let mut client = start("subscribe.mjs", &[&app.ws_url], "ask", &[]);
    until(&mut client, "token", WAIT).await;
    client.answer("not-a-token").await;
    until(&mut client, "token", WAIT).await;
    client.answer("still-not-a-token").await;
    let error = until(&mut client, "error", WAIT).await;
    assert!(
        error["error"].as_str().unwrap().contains("closed 4403"),
        "{error}"
    );
    client.kill().await;
}

#[tokio::test]
async fn a_token_callback_that_throws_ends_the_subscription_with_its_error() {
    let app = spawn_app().await;
    let mut client = start("subscribe.mjs", &[&app.ws_url], "ask", &[]);
    until(&mut client, "token", WAIT).await;
    client.answer("throw:the identity provider is down").await;
    let error = until(&mut client, "error", WAIT).await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("token(): the identity provider is down"),
        "{error}"
    );
    client.kill().await;
}

#[tokio::test]
async fn on_a_graceful_shutdown_the_client_moves_to_the_next_instance_and_resumes_from_its_cursor()
{
    resumes_on_another_instance_after_a_graceful_shutdown("subscribe.mjs").await;
}

/// Instances A and B on one database; `script` is given both URLs and is
/// connected to A. A shuts down gracefully (1001); while the client waits to
/// retry, rows are written; then it reconnects, to B, and must get exactly
/// those rows, then live ones.
pub(super) async fn resumes_on_another_instance_after_a_graceful_shutdown(script: &str) {
    let first = spawn_app().await;
    let second = spawn_app_on(&first.admin_url).await;
    let tenant = first.tenant("Acme").await;
    let alice = first.user("alice@acme.test", &[&tenant]).await;
    let mut client = start(
        script,
        &[&first.ws_url, &second.ws_url],
        &first.token(&alice),
        &[("GATE_RETRY", "1".to_owned())],
    );
    let opened = until(&mut client, "opened", WAIT).await;
    assert_eq!(opened["url"], first.ws_url.as_str());
    until(&mut client, "connected", WAIT).await;
    first.wait_for_subscriptions(1).await;
    notify(&second.admin, &tenant, &alice, &["a0", "a1"]).await;
    assert_eq!(titles(&mut client, 2, WAIT).await, ["a0", "a1"]);

    first.app.shutdown().await;
    let closed = until(&mut client, "closed", WAIT).await;
    assert_eq!(closed["code"], 1001, "{closed}");
    // The client waits for the test before it retries: write meanwhile.
    until(&mut client, "retry_wait", WAIT).await;
    notify(&second.admin, &tenant, &alice, &["b0", "b1", "b2"]).await;
    client.answer("go").await;
    let opened = until(&mut client, "opened", WAIT).await;
    assert_eq!(opened["url"], second.ws_url.as_str());
    assert_eq!(titles(&mut client, 3, WAIT).await, ["b0", "b1", "b2"]);
    notify(&second.admin, &tenant, &alice, &["c0"]).await;
    assert_eq!(titles(&mut client, 1, WAIT).await, ["c0"]);
    client.kill().await;
}

#[tokio::test]
async fn a_subscription_with_initial_rows_resumes_from_its_cursor_without_reading_them_again() {
    let first = spawn_app().await;
    let second = spawn_app_on(&first.admin_url).await;
    let tenant = first.tenant("Acme").await;
    let alice = first.user("alice@acme.test", &[&tenant]).await;
    notify(&first.admin, &tenant, &alice, &["old0", "old1"]).await;
    let query = "subscription { notifications(initial: true) { op initial row { title } } }";
    let mut client = start(
        "subscribe.mjs",
        &[&first.ws_url, &second.ws_url],
        &first.token(&alice),
        &[("GATE_RETRY", "1".to_owned()), ("QUERY", query.to_owned())],
    );
    // Initial rows come in primary-key order (random ids here).
    let mut initial = vec![next(&mut client, WAIT).await, next(&mut client, WAIT).await];
    initial.sort_by_key(|(title, _)| title.to_string());
    assert_eq!(
        initial,
        [(json!("old0"), json!(true)), (json!("old1"), json!(true))]
    );
    first.wait_for_subscriptions(1).await;
    notify(&second.admin, &tenant, &alice, &["a0"]).await;
    assert_eq!(next(&mut client, WAIT).await, (json!("a0"), json!(false)));

    first.app.shutdown().await;
    until(&mut client, "retry_wait", WAIT).await;
    notify(&second.admin, &tenant, &alice, &["b0"]).await;
    client.answer("go").await;
    // Not the initial rows again, and not refused for `initial` beside `after`.
    assert_eq!(
        next(&mut client, RECONNECT).await,
        (json!("b0"), json!(false))
    );
    notify(&second.admin, &tenant, &alice, &["c0"]).await;
    assert_eq!(next(&mut client, WAIT).await, (json!("c0"), json!(false)));
    client.kill().await;
}

/// The next change's title and `initial` flag; it must carry a cursor.
async fn next(client: &mut NodeScript, timeout: Duration) -> (Value, Value) {
    let event = until(client, "next", timeout).await;
    let change = &event["data"]["data"]["notifications"];
    assert!(change["cursor"].is_string(), "{event}");
    (change["row"]["title"].clone(), change["initial"].clone())
}
