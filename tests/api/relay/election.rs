//! The relay lock changes hands: the relay's backend terminated, the same
//! instance reconnects and is elected again, or another instance takes over.

use std::sync::atomic::Ordering;

use super::*;
use crate::helpers::{spawn_app_on_with, spawn_app_with};

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
