//! Real third-party clients from npm (tests/clients/subscribe.mjs), with their
//! default settings: `graphql-ws` (graphql-transport-ws) and
//! `subscriptions-transport-ws` (legacy graphql-ws).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{NodeClient, WAIT, spawn_app};

/// The caller's new notifications (RLS restricts `notifications` to the recipient).
const NOTIFICATIONS: &str =
    "subscription { notifications(ops: [INSERT]) { op row { id title user_id } } }";

/// Waits for the client's `connected` event.
async fn connected(client: &mut NodeClient, who: &str) {
    let event = client.next_event(WAIT).await;
    assert_eq!(event["event"], "connected", "{who}: {event}");
}

/// The next event, which must be `next`; returns its `data`.
async fn next_data(client: &mut NodeClient, who: &str) -> Value {
    let event = client.next_event(WAIT).await;
    assert_eq!(event["event"], "next", "{who}: {event}");
    assert!(event["data"]["errors"].is_null(), "{who}: {event}");
    event["data"]["data"].clone()
}

#[tokio::test]
async fn a_graphql_ws_client_with_default_settings_stays_connected_and_receives_events_for_over_a_minute()
 {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let mut client = NodeClient::spawn(
        &app.ws_url,
        &app.token(&alice),
        "transport",
        NOTIFICATIONS,
        json!({}),
    );
    connected(&mut client, "alice").await;
    app.wait_for_subscriptions(1).await;

    app.notify(&acme, &alice, "x", "at the start").await;
    let data = next_data(&mut client, "alice").await;
    assert_eq!(data["notifications"]["row"]["title"], "at the start");

    // 65 s with no traffic from the client: no event of any kind (a `closed`
    // would show here), and the subscription stays registered.
    let quiet = Duration::from_secs(65);
    match tokio::time::timeout(quiet, client.next_event(quiet + WAIT)).await {
        Err(_) => {}
        Ok(event) => panic!("expected silence for {quiet:?}, got {event}"),
    }
    assert_eq!(app.app.state().hub.subscription_count(), 1);

    app.notify(&acme, &alice, "x", "a minute later").await;
    let data = next_data(&mut client, "alice").await;
    assert_eq!(data["notifications"]["row"]["title"], "a minute later");
    assert_eq!(data["notifications"]["row"]["user_id"], json!(alice));
    client.kill().await;
}

#[tokio::test]
async fn the_legacy_subscriptions_transport_ws_client_receives_its_notification_and_another_users_does_not()
 {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let mut for_alice = NodeClient::spawn(
        &app.ws_url,
        &app.token(&alice),
        "legacy",
        NOTIFICATIONS,
        json!({}),
    );
    let mut for_bob = NodeClient::spawn(
        &app.ws_url,
        &app.token(&bob),
        "legacy",
        NOTIFICATIONS,
        json!({}),
    );
    connected(&mut for_alice, "alice").await;
    connected(&mut for_bob, "bob").await;
    app.wait_for_subscriptions(2).await;

    app.notify(&acme, &alice, "x", "for alice").await;
    let data = next_data(&mut for_alice, "alice").await;
    assert_eq!(data["notifications"]["row"]["title"], "for alice");
    assert_eq!(data["notifications"]["row"]["user_id"], json!(alice));

    // Bob's first delivery is his own, later notification: alice's never reached him.
    app.notify(&acme, &bob, "x", "for bob").await;
    let data = next_data(&mut for_bob, "bob").await;
    assert_eq!(data["notifications"]["row"]["title"], "for bob");
    assert_eq!(data["notifications"]["row"]["user_id"], json!(bob));

    for_alice.kill().await;
    for_bob.kill().await;
}

#[tokio::test]
async fn a_graphql_ws_client_passing_a_json_filter_variable_receives_only_matching_rows() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let query = "subscription($filter: JSON) { changes(table: \"notifications\", ops: [INSERT], filter: $filter) { op row } }";
    let filter = json!({"kind": {"eq": "mention"}, "title": {"neq": "muted"}});
    let mut client = NodeClient::spawn(
        &app.ws_url,
        &app.token(&alice),
        "transport",
        query,
        json!({"filter": filter}),
    );
    connected(&mut client, "alice").await;
    app.wait_for_subscriptions(1).await;

    for (kind, title) in [
        ("digest", "skip 1"),
        ("mention", "keep 1"),
        ("mention", "muted"),
        ("digest", "skip 2"),
        ("mention", "keep 2"),
    ] {
        app.notify(&acme, &alice, kind, title).await;
    }
    // Changes arrive in commit order, so anything unmatched that slipped
    // through would show up before or between these.
    for title in ["keep 1", "keep 2"] {
        let data = next_data(&mut client, "alice").await;
        let change = &data["changes"];
        assert_eq!(change["op"], "INSERT", "{data}");
        assert_eq!(change["row"]["title"], title, "{data}");
        assert_eq!(change["row"]["kind"], "mention", "{data}");
    }
    client.kill().await;
}
