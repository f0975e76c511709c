//! Who wakes the listeners for a relay-mode table (the relay, never the
//! writer's commit), for which commits, and how soon.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use crate::helpers::{listen, spawn_app_with};

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
