//! Limits that keep one client from hurting the instance or other clients:
//! the write deadline (a client that stops reading), connection caps per IP
//! and per subject, the HTTP header-read timeout, and a database outage at
//! login reported as unavailable rather than as a bad token.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

use crate::helpers::{Frame, TestApp, WAIT, WsClient, bearer_init, spawn_app, spawn_app_with};

/// Waits (bounded) until the instance has exactly `n` WebSocket connections open.
async fn wait_for_open_connections(app: &TestApp, n: usize) {
    let mut open = app.app.state().connections.watch();
    // (The guard `wait_for` returns is dropped at once: it holds the watch locked.)
    let reached = tokio::time::timeout(WAIT, open.wait_for(|&open| open == n))
        .await
        .is_ok();
    assert!(
        reached,
        "timed out waiting for {n} open connections ({} open)",
        app.app.state().connections.open()
    );
}

/// An upgrade request for `url` offering graphql-transport-ws.
fn upgrade_request(url: &str) -> Request {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request
}

/// Inserts `n` notifications for `user` in one transaction, numbered from 0
/// in their title, each with a body of `body_bytes` bytes.
async fn insert_numbered(app: &TestApp, tenant: &str, user: &str, n: i32, body_bytes: i32) {
    app.admin
        .execute(
            "insert into notifications (tenant_id, user_id, kind, title, body)
             select $1::text::uuid, $2::text::uuid, 'x', n::text, repeat('x', $4)
               from generate_series(0, $3 - 1) as g(n) order by g.n",
            &[&tenant, &user, &n, &body_bytes],
        )
        .await
        .unwrap();
}

const TITLES: &str = "subscription { notifications(ops: [INSERT]) { row { title } } }";
const BODIES: &str = "subscription { notifications(ops: [INSERT]) { row { title body } } }";

/// Two clients of `user`, both subscribed: one on a socket with a small
/// receive buffer, subscribed to large rows (`"s"`), which the test then
/// stops reading; and a reader of titles (`"r"`).
async fn stalled_and_reader(app: &TestApp, user: &str) -> (WsClient, WsClient) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.app.local_addr()).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(
        upgrade_request(&app.ws_url),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("upgrade");
    let mut stalled = WsClient { socket };
    stalled.init(&app.token(user)).await;
    stalled.subscribe("s", BODIES, json!({})).await;
    let mut reader = app.transport_as(user).await;
    reader.subscribe("r", TITLES, json!({})).await;
    app.wait_for_subscriptions(2).await;
    (stalled, reader)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_within_the_write_timeout_and_others_get_every_event()
 {
    let write_timeout = Duration::from_secs(1);
    let app = spawn_app_with(|c| c.limits.write_timeout = write_timeout).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;

    // The stalled client, which never reads again, and a reader.
    let (stalled, mut reader) = stalled_and_reader(&app, &alice).await;
    wait_for_open_connections(&app, 2).await;
    let mut open = app.app.state().connections.watch();
    let dropped = tokio::spawn(async move {
        let _ = open.wait_for(|&open| open == 1).await;
        Instant::now()
    });

    // ~20 MB for the stalled client: far more than the socket buffers between
    // it and the server hold, so the server's writes to it block.
    let rows = 300;
    insert_numbered(&app, &tenant, &alice, rows, 64 * 1024).await;
    let written = Instant::now();
    app.notify(&tenant, &alice, "x", "sentinel").await;

    // The reader gets every row, in order, then the sentinel.
    let mut titles = Vec::new();
    loop {
        let msg = reader.next_data().await;
        let title = msg["payload"]["data"]["notifications"]["row"]["title"]
            .as_str()
            .unwrap_or_else(|| panic!("{msg}"))
            .to_owned();
        if title == "sentinel" {
            break;
        }
        titles.push(title);
    }
    let expected: Vec<String> = (0..rows).map(|i| i.to_string()).collect();
    assert_eq!(titles, expected, "every row exactly once, in order");

    // The stalled client is gone, the reader is not.
    let dropped_at = tokio::time::timeout(WAIT, dropped)
        .await
        .expect("the stalled client is dropped")
        .unwrap();
    let dropped_after = dropped_at - written;
    assert!(
        dropped_after < write_timeout + Duration::from_secs(5),
        "the stalled client was dropped {dropped_after:?} after the rows were written"
    );
    app.notify(&tenant, &alice, "x", "still here").await;
    let msg = reader.next_data().await;
    assert_eq!(
        msg["payload"]["data"]["notifications"]["row"]["title"],
        "still here"
    );
    drop(stalled);
}

#[tokio::test]
async fn a_subscriber_that_stops_taking_events_gets_an_exact_prefix_then_a_slow_consumer_error() {
    // A long write timeout: the queue, not the socket, is what gives up.
    let app = spawn_app_with(|c| {
        c.limits.subscription_queue = 16;
        c.limits.write_timeout = Duration::from_secs(60);
    })
    .await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;

    // A client that stops reading once subscribed (until it is ended), and a reader.
    let (mut stalled, mut reader) = stalled_and_reader(&app, &alice).await;

    // ~20 MB: far more than the socket buffers and the queue hold.
    let rows = 300;
    insert_numbered(&app, &tenant, &alice, rows, 64 * 1024).await;
    for i in 0..rows {
        let msg = reader.next_data().await;
        assert_eq!(
            msg["payload"]["data"]["notifications"]["row"]["title"],
            i.to_string(),
            "the reader gets every row, in order"
        );
    }
    app.wait_until("the stalled subscription is ended", |app| {
        app.app.state().hub.subscription_count() == 1
    })
    .await;
    assert_eq!(app.metric("pgherald_slow_consumers_total").await, 1);

    // Reading again, it finds an exact prefix, then the error.
    let mut titles = Vec::new();
    let error = loop {
        let msg = stalled.next_json().await;
        match msg["type"].as_str() {
            Some("next") => titles.push(
                msg["payload"]["data"]["notifications"]["row"]["title"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{msg}"))
                    .to_owned(),
            ),
            Some("error") => break msg,
            _ => panic!("unexpected {msg}"),
        }
    };
    assert_eq!(
        error["payload"][0]["extensions"]["code"], "SLOW_CONSUMER",
        "{error}"
    );
    assert!(titles.len() < rows as usize, "{} delivered", titles.len());
    let expected: Vec<String> = (0..titles.len()).map(|i| i.to_string()).collect();
    assert_eq!(titles, expected, "an exact prefix: nothing skipped");
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_refused_with_429_until_one_closes() {
    let app = spawn_app_with(|c| c.limits.max_connections_per_ip = 2).await;
    let first = WsClient::transport(&app.ws_url).await;
    let _second = WsClient::transport(&app.ws_url).await;
    wait_for_open_connections(&app, 2).await;

    let refused = tokio_tungstenite::connect_async(upgrade_request(&app.ws_url)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("expected a 429 refusal, got {other:?}"),
    }

    drop(first);
    wait_for_open_connections(&app, 1).await;
    let mut third = WsClient::transport(&app.ws_url).await;
    third.send(bearer_init(&app.token("someone"))).await;
    assert_eq!(third.next_json().await["type"], "connection_ack");
}

#[tokio::test]
async fn a_subject_over_its_cap_is_closed_with_4429_after_init_and_others_are_not() {
    let app = spawn_app_with(|c| c.limits.max_connections_per_subject = 1).await;
    let alice_token = app.token("alice");
    let first = app.transport_as("alice").await;

    let mut second = WsClient::transport(&app.ws_url).await;
    second.send(bearer_init(&alice_token)).await;
    match second.next().await {
        Frame::Close(code, reason) => assert_eq!(code, 4429, "{reason}"),
        other => panic!("expected close 4429, got {other:?}"),
    }
    // Another subject is not affected.
    let _bob = app.transport_as("bob").await;

    // Once alice's first connection is gone she may connect again.
    drop(first);
    wait_for_open_connections(&app, 1).await;
    let _again = app.transport_as("alice").await;
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_request_headers_is_disconnected() {
    let timeout = Duration::from_secs(1);
    let app = spawn_app_with(|c| c.limits.header_read_timeout = timeout).await;
    let mut stream = TcpStream::connect(app.app.local_addr()).await.unwrap();
    let started = Instant::now();
    // Fewer bytes than an HTTP/2 preface, and no end of the head.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "the connection is still open after {WAIT:?}");
    assert!(
        waited >= timeout - Duration::from_millis(100),
        "closed after only {waited:?}"
    );
    // A complete request on a new connection is still served.
    let health = reqwest::get(format!("{}/healthz", app.http_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Runs `sql` (with `%I` standing for the test database's name) on the
/// server's maintenance database `postgres`, as the owner: a database cannot
/// refuse connections to itself from its own session.
async fn on_maintenance_db(app: &TestApp, sql: &str) {
    let mut config: tokio_postgres::Config = app.admin_url.parse().unwrap();
    let db = config.get_dbname().unwrap().to_owned();
    config.dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let sql = sql
        .replace("%I", &format!("\"{db}\""))
        .replace("%L", &format!("'{db}'"));
    client
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Makes the test database refuse new connections and ends the login
/// role's open ones, so the pool has nothing to give.
async fn take_the_database_away(app: &TestApp) {
    on_maintenance_db(
        app,
        "alter database %I with allow_connections false;
         select pg_terminate_backend(pid) from pg_stat_activity
          where datname = %L and usename = 'herald_authenticator';",
    )
    .await;
}

async fn give_the_database_back(app: &TestApp) {
    on_maintenance_db(app, "alter database %I with allow_connections true;").await;
}

#[tokio::test]
async fn a_database_outage_at_login_is_unavailable_not_a_bad_token() {
    let app = spawn_app().await;
    // A token whose role has never been checked (nothing cached).
    let token = app.token("alice");
    take_the_database_away(&app).await;

    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.send(bearer_init(&token)).await;
    let frame = ws.next().await;

    let mut legacy = WsClient::legacy(&app.ws_url).await;
    legacy.send(bearer_init(&token)).await;
    let legacy_first = legacy.next().await;
    let legacy_close = legacy.next().await;

    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.http_url))
        .bearer_auth(&token)
        .json(&json!({"query": "{ cursor }"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    give_the_database_back(&app).await;

    assert!(
        matches!(frame, Frame::Close(4503, _)),
        "graphql-transport-ws: {frame:?}"
    );
    assert!(
        matches!(&legacy_first, Frame::Json(v) if v["type"] == "connection_error"),
        "graphql-ws: {legacy_first:?}"
    );
    assert!(
        matches!(legacy_close, Frame::Close(4503, _)),
        "graphql-ws: {legacy_close:?}"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
}
