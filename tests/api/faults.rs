//! Faults the rest of the suite does not reach: a listener connection whose
//! network path died without a close (half-open), and Postgres stopped and
//! started again while rows are being written and delivered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::config::Host;

use crate::helpers::cluster::{Cluster, describe};
use crate::helpers::proxy::Proxy;
use crate::helpers::{
    TestApp, WsClient, admin_url_for, app_url_for, connect, fresh_database, spawn_app_at,
    spawn_app_on_with,
};

const NOTIFICATIONS: &str = "subscription { notifications(ops: [INSERT]) { row { title } } }";

/// The titles of the next `n` notifications delivered to `ws`.
async fn titles(ws: &mut WsClient, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = ws.next_data().await;
        let title = &msg["payload"]["data"]["notifications"]["row"]["title"];
        out.push(
            title
                .as_str()
                .unwrap_or_else(|| panic!("a notification, got {msg}"))
                .to_owned(),
        );
    }
    out
}

/// `url` (key/value or URL form) with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let config = tokio_postgres::Config::from_str(url).expect("a connection string");
    let mut out = format!(
        "host={} port={} user={} dbname={}",
        addr.ip(),
        addr.port(),
        config.get_user().expect("a user"),
        config.get_dbname().expect("a database"),
    );
    if let Some(password) = config.get_password() {
        out.push_str(&format!(
            " password='{}'",
            String::from_utf8_lossy(password)
        ));
    }
    out
}

/// Where `url` connects to (its first TCP host).
fn address_of(url: &str) -> SocketAddr {
    let config = tokio_postgres::Config::from_str(url).expect("a connection string");
    let host = match &config.get_hosts()[0] {
        Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        Host::Unix(path) => panic!("a TCP host, not the socket {path:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".into()
    } else {
        host
    };
    format!("{host}:{port}").parse().expect("an IP address")
}

#[tokio::test]
async fn a_half_open_listener_connection_is_replaced_within_the_heartbeat_bound_and_nothing_is_lost()
 {
    const HEARTBEAT: Duration = Duration::from_millis(500);
    const LISTENER_TIMEOUT: Duration = Duration::from_secs(1);
    // Only the connections that need a session of their own (the listener,
    // the relay, the snapshot holders) go through the proxy.
    let db = fresh_database().await;
    let proxy = Proxy::start(address_of(&app_url_for(&db))).await;
    let listener_url = through(&app_url_for(&db), proxy.addr);
    let app = spawn_app_on_with(&admin_url_for(&db), |config| {
        config.listener_database_url = Some(listener_url.into());
        config.listener.heartbeat_interval = HEARTBEAT;
        config.listener.query_timeout = LISTENER_TIMEOUT;
    })
    .await;

    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut ws = app.transport_as(&alice).await;
    ws.subscribe("n", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;
    app.notify(&tenant, &alice, "info", "before").await;
    assert_eq!(titles(&mut ws, 1).await, ["before"]);

    let connects = app.app.state().listener.connects.load(Ordering::Relaxed);
    let frozen_at = Instant::now();
    proxy.freeze_open_connections();
    // Written while the listener's socket is dead but not closed: no
    // notification reaches it, and Postgres sees nothing wrong.
    app.notify(&tenant, &alice, "info", "while half-open").await;
    app.wait_until("the listener reconnected", |t| {
        t.app.state().listener.connects.load(Ordering::Relaxed) > connects
    })
    .await;
    let detected = frozen_at.elapsed();
    assert!(proxy.frozen() >= 1, "the listener's connection was frozen");
    // A missed heartbeat is noticed at the next one; a query stuck on the
    // dead socket at the listener's timeout. Allow a second for scheduling.
    let bound = 2 * HEARTBEAT + LISTENER_TIMEOUT + Duration::from_secs(1);
    assert!(
        detected < bound,
        "replaced after {detected:?}, more than {bound:?}"
    );
    app.notify(&tenant, &alice, "info", "after").await;
    assert_eq!(titles(&mut ws, 2).await, ["while half-open", "after"]);
    assert_eq!(ws.nothing_within(Duration::from_millis(300)).await, None);
}

/// An instance with the demo schema on a cluster of the test's own.
async fn spawn_app_on_cluster(pg: &Cluster) -> TestApp {
    let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let app_url = format!(
        "postgres://herald_authenticator@127.0.0.1:{}/postgres",
        pg.port
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgherald"))
        .args(["migrate", "--demo"])
        .env_remove("HERALD_ANON_ROLE")
        .env("HERALD_ADMIN_DATABASE_URL", &admin_url)
        .env("DATABASE_URL", &app_url)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "migrate: {}", describe(&out));
    spawn_app_at(admin_url, app_url, |config| config.pool_size = 4).await
}

#[tokio::test]
async fn postgres_stopped_and_started_again_under_load_loses_and_repeats_nothing() {
    let pg = Cluster::start("restart", |_| String::new());
    let app = spawn_app_on_cluster(&pg).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let bob = app.user("bob@acme.test", &[&tenant]).await;
    let mut subscribers = Vec::new();
    for user in [&alice, &bob] {
        let mut ws = app.transport_as(user).await;
        ws.subscribe("n", NOTIFICATIONS, json!({})).await;
        subscribers.push(ws);
    }
    app.wait_for_subscriptions(2).await;

    // A writer that keeps inserting, alternating recipients, reconnecting
    // whenever the server is gone, until told to stop. An insert whose
    // outcome is unknown (the server went away during it) is settled by
    // reading the table at the end.
    let (restarted, restarted_rx) = tokio::sync::watch::channel(false);
    let writer = {
        let (url, tenant, users) = (
            app.admin_url.clone(),
            tenant.clone(),
            [alice.clone(), bob.clone()],
        );
        let mut restarted = restarted_rx;
        tokio::spawn(async move {
            let mut client = None;
            let mut written_after_restart = 0;
            for i in 0.. {
                if written_after_restart >= 100 {
                    break;
                }
                if client
                    .as_ref()
                    .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
                {
                    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                        Ok((c, connection)) => {
                            tokio::spawn(connection);
                            client = Some(c);
                        }
                        Err(_) => {
                            // The server is down: it is back once the test
                            // has started it again.
                            let _ = restarted.wait_for(|up| *up).await;
                            continue;
                        }
                    }
                }
                let done = client
                    .as_ref()
                    .unwrap()
                    .execute(
                        "insert into notifications (tenant_id, user_id, title) values ($1::text::uuid, $2::text::uuid, $3)",
                        &[&tenant, &users[i % 2], &format!("r{i:05}")],
                    )
                    .await;
                if done.is_ok() && *restarted.borrow() {
                    written_after_restart += 1;
                }
            }
        })
    };

    // Restart once both have seen traffic.
    let mut seen: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (n, ws) in subscribers.iter_mut().enumerate() {
        seen.entry(n).or_default().extend(titles(ws, 10).await);
    }
    let connects = app.app.state().listener.connects.load(Ordering::Relaxed);
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    restarted.send_replace(true);
    app.wait_until("the listener reconnected", |t| {
        t.app.state().listener.connects.load(Ordering::Relaxed) > connects
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the writer finishes")
        .unwrap();

    // What was committed, by recipient, in commit order (one writer, titles
    // numbered in the order it wrote them).
    let admin = connect(&app.admin_url).await;
    let rows = admin
        .query(
            "select user_id::text, title from notifications order by title",
            &[],
        )
        .await
        .unwrap();
    for (n, user) in [&alice, &bob].into_iter().enumerate() {
        let expected: Vec<String> = rows
            .iter()
            .filter(|r| r.get::<_, String>(0) == *user)
            .map(|r| r.get(1))
            .collect();
        let ws = &mut subscribers[n];
        let got = seen.get_mut(&n).unwrap();
        let missing = expected.len() - got.len();
        got.extend(titles(ws, missing).await);
        assert_eq!(
            *got, expected,
            "subscriber {n}: every committed row once, in order"
        );
        assert_eq!(ws.nothing_within(Duration::from_millis(300)).await, None);
    }
    assert!(
        rows.len() > 120,
        "the writer wrote before, during and after the restart ({} rows)",
        rows.len()
    );
    drop(pg);
}
