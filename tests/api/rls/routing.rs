//! Routing by policy, end to end: the demo's policies are routable, so an
//! event reaches only the subscribers its policy can let see it and exact
//! routes decide without the authorizer; and what routing keeps (routes,
//! each user's keys) never outlives what it was computed from: a policy
//! changed while subscribed, or keys read from a table pgherald cannot see
//! change.

use super::watch;
use crate::helpers::{Protocol, Subscriber, TestApp, WAIT, spawn_app};

/// (skipped, decided): pairs routed away, checks decided by routes.
async fn routing_counts(app: &TestApp) -> (u64, u64) {
    (
        app.metric("pgherald_routing_skipped_total").await,
        app.metric("pgherald_routing_decided_total").await,
    )
}

#[tokio::test]
async fn a_recipient_policy_routes_each_notification_to_its_recipient_without_the_authorizer() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let mut a = watch(&app, &alice, "alice", "notifications", Protocol::Transport).await;
    let mut b = watch(&app, &bob, "bob", "notifications", Protocol::Transport).await;
    app.wait_for_subscriptions(2).await;

    app.notify(&acme, &bob, "x", "for bob").await;
    app.notify(&acme, &alice, "x", "for alice").await;
    assert_eq!(a.next_event("c").await["row"]["title"], "for alice");
    assert_eq!(b.next_event("c").await["row"]["title"], "for bob");
    let (skipped, decided) = routing_counts(&app).await;
    assert!(
        skipped >= 2,
        "each notification skips the other user: {skipped}"
    );
    assert!(
        decided >= 2,
        "each delivery decided by the route: {decided}"
    );
}

#[tokio::test]
async fn subscribers_keys_are_computed_before_their_first_event_and_kept_for_it() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    // Bob filters on his own id: only his notifications concern him.
    let mut b = Subscriber::connect(&app, &bob, "bob", Protocol::Transport).await;
    let mine = serde_json::json!({"user_id": {"eq": bob}});
    b.changes("c", "notifications", serde_json::Value::Null, mine)
        .await;
    app.wait_for_subscriptions(1).await;
    // Alice takes them all (RLS alone decides): every one concerns her.
    let mut a = watch(&app, &alice, "alice", "notifications", Protocol::Transport).await;
    app.wait_for_subscriptions(2).await;
    let computed = || app.metric("pgherald_routing_keys_computed_total");

    // Before any event, while the listener is idle: alice's keys.
    let mut ahead = app.app.state().hub.keys_ahead();
    let idle = tokio::time::timeout(
        WAIT,
        ahead.wait_for(|_| {
            let stats = app.app.state().hub.routing_stats();
            stats.is_some_and(|s| s.keys_computed() >= 1)
        }),
    )
    .await;
    assert!(idle.is_ok(), "no keys computed while idle");

    // Bob's (a filtered subscription's) come with the first event that
    // finds him, not with alice's.
    app.notify(&acme, &alice, "x", "for alice").await;
    assert_eq!(a.next_event("c").await["row"]["title"], "for alice");
    assert_eq!(computed().await, 1, "alice's were kept for her event");
    app.notify(&acme, &bob, "x", "for bob").await;
    assert_eq!(b.next_event("c").await["row"]["title"], "for bob");
    // (Alice's keys route bob's notification away from her.)
    assert_eq!(computed().await, 2, "bob's with his event, alice's kept");
}

#[tokio::test]
async fn a_policy_widened_while_subscribed_applies_to_the_next_event() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let mut a = watch(&app, &alice, "alice", "notifications", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;
    // Alice's route and keys are in use: bob's notification skips her.
    app.notify(&acme, &bob, "urgent", "before").await;
    app.notify(&acme, &alice, "x", "mine").await;
    assert_eq!(a.next_event("c").await["row"]["title"], "mine");

    app.sql(
        "create policy urgent_for_everyone on notifications for select using (kind = 'urgent')",
    )
    .await;
    // A batch that starts before the change is not routed at all; one that
    // starts after it must use the new policy.
    app.notify(&acme, &alice, "x", "sync").await;
    assert_eq!(a.next_event("c").await["row"]["title"], "sync");
    app.notify(&acme, &bob, "urgent", "after").await;
    let got = a.next_event("c").await;
    assert_eq!(
        got["row"]["title"], "after",
        "the new policy shows bob's urgent notification: {got}"
    );
}

#[tokio::test]
async fn keys_read_from_an_untracked_table_are_not_kept_so_nothing_is_missed() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    // Delegates see the notifications of the users they stand in for; the
    // table is not tracked, so its changes are no events.
    app.sql(
        "create table public.delegates (user_id uuid, delegate uuid);
         grant select on public.delegates to app_user;
         create policy delegates_see on notifications for select
           using (user_id in (select d.user_id from public.delegates d
                               where d.delegate = public.current_user_id()));",
    )
    .await;
    let mut a = watch(&app, &alice, "alice", "notifications", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;
    app.notify(&acme, &bob, "x", "before").await;
    app.notify(&acme, &alice, "x", "mine").await;
    assert_eq!(a.next_event("c").await["row"]["title"], "mine");

    app.sql(&format!(
        "insert into public.delegates values ('{bob}', '{alice}')"
    ))
    .await;
    app.notify(&acme, &bob, "x", "after").await;
    let got = a.next_event("c").await;
    assert_eq!(
        got["row"]["title"], "after",
        "alice now stands in for bob: {got}"
    );
}

#[tokio::test]
async fn keys_kept_from_a_batch_that_changed_them_judge_the_next_update_old_version_as_of_its_end()
{
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[]).await;
    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;

    // One transaction, so one batch: alice's keys differ between its two
    // moments (no tenant at its start, Acme at its end).
    app.sql(&format!(
        "begin;
         insert into memberships (tenant_id, user_id) values ('{acme}', '{alice}');
         insert into documents (tenant_id, title) values ('{acme}', 'plan');
         commit;"
    ))
    .await;
    let inserted = a.next_event("c").await;
    assert_eq!(inserted["row"]["title"], "plan", "{inserted}");

    // A later batch that changes no membership reuses her keys (and the
    // index of them): both of its moments are the end of the batch that
    // computed them. The document leaves her view: only its old version,
    // in Acme, reaches her.
    app.sql(&format!(
        "update documents set tenant_id = '{globex}', title = 'plan-v2' where title = 'plan'"
    ))
    .await;
    let moved = a.next_event("c").await;
    assert_eq!(
        (&moved["row"], &moved["old"]["title"]),
        (&serde_json::Value::Null, &"plan".into()),
        "alice was a member of Acme before the update and after it: {moved}"
    );
}
