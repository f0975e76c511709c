//! Relay mode: tables whose capture trigger only writes the outbox, woken by
//! the one instance elected relay; re-election after the relay's backend is
//! terminated, on the same instance or another; switching modes; default
//! mode needing no relay. The listener's safety read is made an hour long,
//! so that only a NOTIFY can wake it: a delivery proves a wake-up was sent.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgherald::Config;
use pgherald::events::relay::{RELAY_LOCK_KEY, RelayStatus};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Notification;

use crate::helpers::{TestApp, WAIT, WsClient, listen, spawn_app_on_with, spawn_app_with};

const HOUR: Duration = Duration::from_secs(3600);

const NOTIFICATIONS: &str = "subscription { notifications(ops: [INSERT]) { row { title } } }";

/// No safety read: only a NOTIFY wakes the listener. Candidates retry often.
fn woken_only_by_notify(c: &mut Config) {
    c.listener.safety_interval = HOUR;
    c.relay.retry_interval = Duration::from_millis(50);
}

/// Waits (bounded) until `condition` holds for `app`'s relay, re-checking
/// on each of its changes (elections, losses, polls).
async fn wait_for_relay(app: &TestApp, what: &str, condition: impl Fn(&RelayStatus) -> bool) {
    let relay = &app.app.state().relay;
    let mut changes = relay.changes();
    let changed = async {
        while !condition(relay) {
            let _ = changes.changed().await;
        }
    };
    tokio::time::timeout(WAIT, changed)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// Waits until `app` is the relay and has seen `tables` tables in relay mode.
async fn wait_until_relaying(app: &TestApp, tables: u64) {
    wait_for_relay(
        app,
        &format!("the relay, with {tables} relay-mode tables"),
        |r| r.is_active() && r.relay_tables.load(Ordering::Relaxed) == tables,
    )
    .await;
}

/// The backend holding the relay lock of the test's database.
async fn relay_backend(app: &TestApp) -> i32 {
    app.admin
        .query_one(
            "select l.pid from pg_locks l
              where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                and l.classid = ($1::bigint >> 32)::oid and l.objid = ($1::bigint & 4294967295)::oid
                and l.database = (select oid from pg_database where datname = current_database())",
            &[&RELAY_LOCK_KEY],
        )
        .await
        .unwrap_or_else(|e| panic!("one backend holds the relay lock: {e:?}"))
        .get(0)
}

async fn backend_pid(app: &TestApp) -> i32 {
    app.admin
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The senders (backend pids) of the wake-ups `heard` received so far: a
/// marker NOTIFY follows them, since notifications arrive in commit order.
async fn wake_ups(app: &TestApp, heard: &mut UnboundedReceiver<Notification>) -> Vec<i32> {
    app.sql("notify herald, 'marker'").await;
    let mut senders = Vec::new();
    loop {
        let n = tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("the marker within the timeout")
            .expect("the LISTEN connection open");
        if n.payload() == "marker" {
            return senders;
        }
        senders.push(n.process_id());
    }
}

/// The function the row trigger of `table` calls.
async fn capture_function(app: &TestApp, table: &str) -> String {
    let def: String = app
        .admin
        .query_one(
            "select pg_get_triggerdef(oid) from pg_trigger
              where tgrelid = $1::text::regclass and tgname = 'herald_capture'",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    def.split(" FUNCTION ").nth(1).unwrap_or(&def).to_owned()
}

async fn is_relay_mode(app: &TestApp, table: &str) -> bool {
    app.admin
        .query_one(
            "select relay from herald.tracked where relid = $1::text::regclass",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

async fn subscribe(app: &TestApp, user: &str) -> WsClient {
    let mut ws = app.transport_as(user).await;
    ws.subscribe("n", NOTIFICATIONS, json!({})).await;
    ws
}

async fn next_title(ws: &mut WsClient) -> String {
    let msg = ws.next_data().await;
    msg["payload"]["data"]["notifications"]["row"]["title"]
        .as_str()
        .unwrap_or_else(|| panic!("a notification, got {msg}"))
        .to_owned()
}

#[tokio::test]
async fn a_relay_mode_table_reaches_its_subscribers_woken_by_the_relay_not_by_the_writers_commit() {
    let app = spawn_app_with(woken_only_by_notify).await;
    app.sql("select herald.track('public.notifications', relay => true)")
        .await;
    assert!(is_relay_mode(&app, "public.notifications").await);
    assert!(
        capture_function(&app, "public.notifications")
            .await
            .starts_with("herald.capture_relayed("),
    );
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    wait_until_relaying(&app, 1).await;
    let relay = relay_backend(&app).await;
    let writer = backend_pid(&app).await;

    let (_listening, mut heard) = listen(&app.admin_url, "herald").await;
    let mut ws = subscribe(&app, &alice).await;
    app.wait_for_subscriptions(1).await;
    app.notify(&tenant, &alice, "info", "relayed").await;
    assert_eq!(next_title(&mut ws).await, "relayed");

    let senders = wake_ups(&app, &mut heard).await;
    assert!(
        !senders.is_empty() && senders.iter().all(|&pid| pid == relay),
        "wake-ups from {senders:?}: relay {relay}, writer {writer}"
    );
    assert_eq!(app.metric("pgherald_relay_active").await, 1);
    assert!(app.metric("pgherald_relay_notifies_total").await >= 1);

    // A TRUNCATE is captured without a NOTIFY too, and relayed.
    let sent = app.app.state().relay.notifies.load(Ordering::Relaxed);
    app.sql("truncate notifications").await;
    wait_for_relay(&app, "the truncate relayed", |r| {
        r.notifies.load(Ordering::Relaxed) > sent
    })
    .await;
    assert_eq!(wake_ups(&app, &mut heard).await, [relay]);
}

#[tokio::test]
async fn commits_of_other_tables_do_not_make_the_relay_notify() {
    let app = spawn_app_with(woken_only_by_notify).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    app.sql(
        "create table public.untracked (id int primary key, v text);
         select herald.track('public.notifications', relay => true)",
    )
    .await;
    wait_until_relaying(&app, 1).await;
    // Past the wake-up of the election (or of the switch).
    let status = &app.app.state().relay;
    let polls = status.polls.load(Ordering::Relaxed);
    wait_for_relay(&app, "two more polls", |r| {
        r.polls.load(Ordering::Relaxed) >= polls + 2
    })
    .await;
    let sent = status.notifies.load(Ordering::Relaxed);

    // An untracked table and a default-mode one, one commit per row.
    for i in 0..100 {
        app.sql(&format!(
            "insert into public.untracked values ({i}, 'x');
             insert into documents (tenant_id, title) values ('{tenant}', 'doc {i}')"
        ))
        .await;
    }
    let polls = status.polls.load(Ordering::Relaxed);
    wait_for_relay(&app, "three polls after the last write", |r| {
        r.polls.load(Ordering::Relaxed) >= polls + 3
    })
    .await;
    assert_eq!(
        status.notifies.load(Ordering::Relaxed),
        sent,
        "no wake-up for commits that wrote no relay-mode event"
    );

    app.notify(&tenant, &alice, "info", "relayed").await;
    wait_for_relay(&app, "one wake-up for the relay-mode row", |r| {
        r.notifies.load(Ordering::Relaxed) == sent + 1
    })
    .await;
}

#[tokio::test]
async fn a_relay_whose_backend_is_terminated_reconnects_and_relays_again() {
    let app = spawn_app_with(woken_only_by_notify).await;
    app.sql("select herald.track('public.notifications', relay => true)")
        .await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    wait_until_relaying(&app, 1).await;
    let mut ws = subscribe(&app, &alice).await;
    app.wait_for_subscriptions(1).await;

    let first = relay_backend(&app).await;
    app.sql(&format!("select pg_terminate_backend({first})"))
        .await;
    wait_for_relay(&app, "elected again on a new connection", |r| {
        r.is_active() && r.elections.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_ne!(relay_backend(&app).await, first);

    app.notify(&tenant, &alice, "info", "after").await;
    assert_eq!(next_title(&mut ws).await, "after");
}

#[tokio::test]
async fn when_the_relays_backend_is_terminated_another_instance_takes_over_and_events_keep_flowing()
{
    // The first instance reconnects its relay only after an hour: the
    // second one must take over.
    let first = spawn_app_with(|c| {
        woken_only_by_notify(c);
        c.relay.min_backoff = HOUR;
        c.relay.max_backoff = HOUR;
    })
    .await;
    first
        .sql("select herald.track('public.notifications', relay => true)")
        .await;
    wait_until_relaying(&first, 1).await;
    let second = spawn_app_on_with(&first.admin_url, woken_only_by_notify).await;
    let tenant = first.tenant("Acme").await;
    let alice = first.user("alice@acme.test", &[&tenant]).await;
    let mut on_first = subscribe(&first, &alice).await;
    let mut on_second = subscribe(&second, &alice).await;
    first.wait_for_subscriptions(1).await;
    second.wait_for_subscriptions(1).await;
    first.notify(&tenant, &alice, "info", "before").await;
    assert_eq!(next_title(&mut on_first).await, "before");
    assert_eq!(next_title(&mut on_second).await, "before");
    assert_eq!(second.metric("pgherald_relay_active").await, 0);

    let killed = relay_backend(&first).await;
    first
        .sql(&format!("select pg_terminate_backend({killed})"))
        .await;
    wait_until_relaying(&second, 1).await;
    assert!(!first.app.state().relay.is_active());
    assert_eq!(second.metric("pgherald_relay_active").await, 1);
    assert_eq!(first.metric("pgherald_relay_active").await, 0);

    for title in ["after 1", "after 2"] {
        first.notify(&tenant, &alice, "info", title).await;
        assert_eq!(next_title(&mut on_first).await, title);
        assert_eq!(next_title(&mut on_second).await, title);
    }
}

#[tokio::test]
async fn switching_a_table_between_modes_moves_its_wake_ups_between_the_writer_and_the_relay() {
    let app = spawn_app_with(woken_only_by_notify).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    wait_for_relay(&app, "the relay", RelayStatus::is_active).await;
    let relay = relay_backend(&app).await;
    let writer = backend_pid(&app).await;
    let (_listening, mut heard) = listen(&app.admin_url, "herald").await;
    let mut ws = subscribe(&app, &alice).await;
    app.wait_for_subscriptions(1).await;

    // Default mode (the demo tracks it so): the writer's commit wakes.
    assert!(!is_relay_mode(&app, "public.notifications").await);
    app.notify(&tenant, &alice, "info", "default").await;
    assert_eq!(next_title(&mut ws).await, "default");
    assert_eq!(wake_ups(&app, &mut heard).await, [writer]);

    // Relay mode; asking twice changes nothing more.
    for _ in 0..2 {
        app.sql("select herald.track('public.notifications', relay => true)")
            .await;
    }
    let triggers: i64 = app
        .admin
        .query_one(
            "select count(*) from pg_trigger
              where tgrelid = 'public.notifications'::regclass and tgname like 'herald%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 2, "one row trigger and one truncate trigger");
    assert!(is_relay_mode(&app, "public.notifications").await);
    assert_eq!(
        wake_ups(&app, &mut heard).await,
        [writer, writer],
        "track itself wakes the listeners, once per call"
    );
    app.notify(&tenant, &alice, "info", "relayed").await;
    assert_eq!(next_title(&mut ws).await, "relayed");
    let senders = wake_ups(&app, &mut heard).await;
    assert!(
        !senders.is_empty() && senders.iter().all(|&pid| pid == relay),
        "wake-ups from {senders:?}: relay {relay}, writer {writer}"
    );

    // With one argument, track means default mode again.
    app.sql("select herald.track('public.notifications')").await;
    assert!(!is_relay_mode(&app, "public.notifications").await);
    assert!(
        capture_function(&app, "public.notifications")
            .await
            .starts_with("herald.capture("),
    );
    assert_eq!(wake_ups(&app, &mut heard).await, [writer]);
    app.notify(&tenant, &alice, "info", "default again").await;
    assert_eq!(next_title(&mut ws).await, "default again");
    assert_eq!(wake_ups(&app, &mut heard).await, [writer]);
}

#[tokio::test]
async fn default_mode_needs_no_relay_one_wake_up_per_writing_transaction() {
    let app = spawn_app_with(|c| {
        c.listener.safety_interval = HOUR;
        c.relay.enabled = false;
    })
    .await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let writer = backend_pid(&app).await;
    let (_listening, mut heard) = listen(&app.admin_url, "herald").await;
    let mut ws = subscribe(&app, &alice).await;
    app.wait_for_subscriptions(1).await;

    app.sql(&format!(
        "begin;
         insert into notifications (tenant_id, user_id, title)
           select '{tenant}', '{alice}', 'n' || g from generate_series(1, 3) g;
         commit;"
    ))
    .await;
    for title in ["n1", "n2", "n3"] {
        assert_eq!(next_title(&mut ws).await, title);
    }
    assert_eq!(wake_ups(&app, &mut heard).await, [writer]);
    assert_eq!(app.metric("pgherald_relay_active").await, 0);
    assert_eq!(app.metric("pgherald_relay_elections_total").await, 0);
}

/// Median and largest time (ms) from a writer's commit returning to the
/// delivery's arrival, over 30 rows written one at a time.
async fn latencies(
    app: &TestApp,
    tenant: &str,
    user: &str,
    ws: &mut WsClient,
    label: &str,
) -> (f64, f64) {
    let mut ms = Vec::new();
    for i in 0..30 {
        let title = format!("{label} {i}");
        app.notify(tenant, user, "info", &title).await;
        let committed = Instant::now();
        assert_eq!(next_title(ws).await, title);
        ms.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

#[tokio::test]
async fn relay_mode_adds_a_few_poll_intervals_of_latency_at_most() {
    let app = spawn_app_with(woken_only_by_notify).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut ws = subscribe(&app, &alice).await;
    app.wait_for_subscriptions(1).await;

    let (default_p50, default_max) = latencies(&app, &tenant, &alice, &mut ws, "default").await;
    app.sql("select herald.track('public.notifications', relay => true)")
        .await;
    wait_until_relaying(&app, 1).await;
    let (relay_p50, relay_max) = latencies(&app, &tenant, &alice, &mut ws, "relay").await;
    println!(
        "commit to delivery, ms: default mode p50 {default_p50:.1} max {default_max:.1}; \
         relay mode (poll every {:?}) p50 {relay_p50:.1} max {relay_max:.1}",
        pgherald::events::relay::RelayConfig::default().poll_interval
    );
    assert!(
        relay_p50 < 250.0,
        "relay mode p50 {relay_p50:.1} ms: the relay should wake within a few polls"
    );
}
