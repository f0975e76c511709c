//! Switching a table between default and relay mode, and default mode
//! working as before, without any relay.

use super::*;
use crate::helpers::{listen, spawn_app_with};

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
    // track itself wakes the listeners, once per call. The relay may add
    // one: a change committed in default mode since its last look counts as
    // new once the table is in relay mode (an extra wake-up, nothing more).
    let senders = wake_ups(&app, &mut heard).await;
    let (by_writer, others): (Vec<i32>, Vec<i32>) = senders.iter().partition(|&&pid| pid == writer);
    assert_eq!(by_writer.len(), 2, "wake-ups from {senders:?}");
    assert!(
        others.iter().all(|&pid| pid == relay),
        "wake-ups from {senders:?}"
    );
    app.notify(&tenant, &alice, "info", "relayed").await;
    assert_eq!(next_title(&mut ws).await, "relayed");
    // (The listener may have read it on another wake-up, such as the
    // catalog's after track, before the relay's poll came round.)
    let mut senders = wake_ups(&app, &mut heard).await;
    let started = std::time::Instant::now();
    while senders.is_empty() && started.elapsed() < WAIT {
        senders = wake_ups(&app, &mut heard).await;
    }
    assert!(
        !senders.is_empty() && senders.iter().all(|&pid| pid == relay),
        "wake-ups from {senders:?}: relay {relay}, writer {writer}"
    );
    // Until the relay has sent all it had to (one more may follow the one
    // heard): a round with none.
    while !senders.is_empty() && started.elapsed() < WAIT {
        senders = wake_ups(&app, &mut heard).await;
        assert!(senders.iter().all(|&pid| pid == relay), "{senders:?}");
    }
    assert!(senders.is_empty(), "the relay kept waking: {senders:?}");

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
