//! No loss across listener outages, and exact resumption from cursors.

use pgherald::{Application, Config, JwtKey};
use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp, WsClient, connect, spawn_app};

const CHANGES: &str = "subscription($after: String) { changes(table: \"notifications\", ops: [INSERT], after: $after) { cursor row } }";

async fn insert_notifications(
    app: &TestApp,
    tenant: &str,
    user: &str,
    titles: impl IntoIterator<Item = String>,
) {
    for title in titles {
        // `info` is the column's default kind.
        app.notify(tenant, user, "info", &title).await;
    }
}

/// Reads `n` deliveries; returns (title, cursor) pairs.
async fn read_titles(ws: &mut WsClient, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = ws.next_data().await;
        let change = &msg["payload"]["data"]["changes"];
        assert!(change.is_object(), "unexpected message {msg}");
        out.push((
            change["row"]["title"].as_str().unwrap().to_owned(),
            change["cursor"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

async fn subscribe(app_url: &str, token: &str, after: Option<&str>) -> WsClient {
    let mut ws = WsClient::transport(app_url).await;
    ws.init(token).await;
    ws.subscribe("c", CHANGES, json!({"after": after})).await;
    ws
}

#[tokio::test]
async fn rows_committed_while_the_listener_is_killed_are_delivered_once_after_it_reconnects() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut ws = subscribe(&app.ws_url, &app.token(&alice), None).await;
    app.wait_for_subscriptions(1).await;

    const ROWS: usize = 300;
    let writer = {
        let url = app.admin_url.clone();
        let (tenant, alice) = (tenant.clone(), alice.clone());
        tokio::spawn(async move {
            let client = connect(&url).await;
            for i in 0..ROWS {
                client
                    .execute(
                        "insert into notifications (tenant_id, user_id, title) values ($1::text::uuid, $2::text::uuid, $3)",
                        &[&tenant, &alice, &format!("n{i:04}")],
                    )
                    .await
                    .unwrap();
            }
        })
    };

    // Kill the listener's backend three times while the writer runs, each
    // time after the previous connection has come back.
    let mut received = Vec::new();
    for round in 1..=3u64 {
        received.extend(read_titles(&mut ws, 20).await);
        let killed = app
            .admin
            .query_one(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity
                  where application_name = 'pgherald-listener' and datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(killed.get::<_, i64>(0), 1, "one listener backend to kill");
        app.wait_until("listener reconnected", |t| {
            t.app
                .state()
                .listener
                .connects
                .load(std::sync::atomic::Ordering::Relaxed)
                > round
        })
        .await;
    }
    writer.await.unwrap();
    received.extend(read_titles(&mut ws, ROWS - received.len()).await);

    let titles: Vec<String> = received.into_iter().map(|(t, _)| t).collect();
    let expected: Vec<String> = (0..ROWS).map(|i| format!("n{i:04}")).collect();
    assert_eq!(titles, expected, "every row exactly once, in commit order");
    // And nothing after the last one.
    insert_notifications(&app, &tenant, &alice, ["sentinel".to_owned()]).await;
    assert_eq!(read_titles(&mut ws, 1).await[0].0, "sentinel");
}

#[tokio::test]
async fn a_client_resuming_from_a_cursor_on_another_instance_gets_exactly_what_it_missed() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let token = app.token(&alice);

    let mut ws = subscribe(&app.ws_url, &token, None).await;
    app.wait_for_subscriptions(1).await;
    insert_notifications(&app, &tenant, &alice, (0..5).map(|i| format!("a{i}"))).await;
    let first = read_titles(&mut ws, 5).await;
    // The client saw a0..a2 when its connection dropped.
    let cursor = first[2].1.clone();
    drop(ws);
    app.wait_for_subscriptions(0).await;
    insert_notifications(&app, &tenant, &alice, (0..3).map(|i| format!("b{i}"))).await;

    // A second instance on the same database.
    let mut config = Config::new(app.app_url.clone(), JwtKey::Secret(SECRET.into()));
    config.listen = "127.0.0.1:0".parse().unwrap();
    let other = Application::build(config).await.unwrap();
    let other_url = format!("ws://{}/graphql", other.local_addr());

    let mut ws = subscribe(&other_url, &token, Some(&cursor)).await;
    let missed: Vec<String> = read_titles(&mut ws, 5)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(missed, ["a3", "a4", "b0", "b1", "b2"]);
    // Live events follow, without repeats.
    insert_notifications(&app, &tenant, &alice, ["c0".to_owned()]).await;
    assert_eq!(read_titles(&mut ws, 1).await[0].0, "c0");
    other.shutdown().await;
}

#[tokio::test]
async fn the_cursor_query_lets_a_client_read_state_then_subscribe_without_a_gap() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let token = app.token(&alice);

    insert_notifications(&app, &tenant, &alice, ["before".to_owned()]).await;
    let state = app
        .graphql(
            &token,
            "{ cursor notifications { rows { title } } }",
            json!({}),
        )
        .await;
    let cursor = state["data"]["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(
        state["data"]["notifications"]["rows"],
        json!([{"title": "before"}]),
        "{state}"
    );
    // Written after the read, before the subscription exists.
    insert_notifications(&app, &tenant, &alice, ["gap".to_owned()]).await;

    let mut ws = subscribe(&app.ws_url, &token, Some(&cursor)).await;
    assert_eq!(read_titles(&mut ws, 1).await[0].0, "gap");
    insert_notifications(&app, &tenant, &alice, ["live".to_owned()]).await;
    assert_eq!(read_titles(&mut ws, 1).await[0].0, "live");
}

#[tokio::test]
async fn a_cursor_older_than_retention_or_from_another_database_is_refused_with_resync_required() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let token = app.token(&alice);

    let state = app.graphql(&token, "{ cursor }", json!({})).await;
    let cursor = state["data"]["cursor"].as_str().unwrap().to_owned();
    insert_notifications(&app, &tenant, &alice, ["old".to_owned()]).await;
    app.sql("select herald.prune('0 seconds')").await;

    let mut ws = subscribe(&app.ws_url, &token, Some(&cursor)).await;
    let msg = ws.next_json().await;
    let text = msg.to_string();
    assert!(
        text.contains("RESYNC_REQUIRED") || text.contains("resync"),
        "{msg}"
    );

    // A cursor naming another database identity.
    let mut wire: Value = serde_json::from_slice(&base64_decode(&cursor)).unwrap();
    wire["db"] = json!("someone-else");
    let foreign = base64_encode(&serde_json::to_vec(&wire).unwrap());
    let mut ws = subscribe(&app.ws_url, &token, Some(&foreign)).await;
    let msg = ws.next_json().await;
    assert!(msg.to_string().contains("resync"), "{msg}");

    // Garbage is a clear error too.
    let mut ws = subscribe(&app.ws_url, &token, Some("not-a-cursor")).await;
    let msg = ws.next_json().await;
    assert!(msg.to_string().contains("invalid cursor"), "{msg}");
}

#[tokio::test]
async fn an_edited_cursor_is_refused_instead_of_replaying_what_it_names() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let token = app.token(&alice);
    insert_notifications(&app, &tenant, &alice, ["history".to_owned()]).await;
    let state = app.graphql(&token, "{ cursor }", json!({})).await;
    let cursor = state["data"]["cursor"].as_str().unwrap().to_owned();

    // Moving either bound back (to replay the whole outbox), or the position
    // inside the batch, breaks the signature.
    let wire: Value = serde_json::from_slice(&base64_decode(&cursor)).unwrap();
    for (field, value) in [
        ("lo", json!("1:1:")),
        ("hi", json!("1:1:")),
        ("id", json!(-1)),
    ] {
        let mut edited = wire.clone();
        edited[field] = value;
        let edited = base64_encode(&serde_json::to_vec(&edited).unwrap());
        let mut ws = subscribe(&app.ws_url, &token, Some(&edited)).await;
        let msg = ws.next_json().await;
        assert!(msg.to_string().contains("altered"), "{field}: {msg}");
        assert!(msg.to_string().contains("BAD_USER_INPUT"), "{field}: {msg}");
    }
    // Unsigned, as cursors were before they were signed.
    let mut unsigned = wire.clone();
    unsigned.as_object_mut().unwrap().remove("sig");
    let unsigned = base64_encode(&serde_json::to_vec(&unsigned).unwrap());
    let mut ws = subscribe(&app.ws_url, &token, Some(&unsigned)).await;
    let msg = ws.next_json().await;
    assert!(msg.to_string().contains("invalid cursor"), "{msg}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
