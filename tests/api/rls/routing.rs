//! Routing by policy: the demo's policies are routable, so events reach only
//! the subscribers their policy can let see them, and the exact ones are
//! decided without the authorizer; what routing keeps (routes, each user's
//! keys) follows memberships and policies as they change.

use serde_json::Value;

use super::watch;
use crate::helpers::{Protocol, spawn_app};

#[tokio::test]
async fn a_recipient_policy_routes_each_notification_to_its_recipient_alone() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let mut a = watch(&app, &alice, "alice", "notifications", Protocol::Transport).await;
    let mut b = watch(&app, &bob, "bob", "notifications", Protocol::Transport).await;
    app.wait_for_subscriptions(2).await;

    app.notify(&acme, &bob, "x", "for bob").await;
    app.notify(&acme, &alice, "x", "for alice").await;
    let got = a.next_event("c").await;
    assert_eq!(got["row"]["title"], "for alice");
    let got = b.next_event("c").await;
    assert_eq!(got["row"]["title"], "for bob");
    println!(
        "skipped {} decided {} keys {} derived {} unrouted {}",
        app.metric("pgherald_routing_skipped_total").await,
        app.metric("pgherald_routing_decided_total").await,
        app.metric("pgherald_routing_keys_computed_total").await,
        app.metric("pgherald_routing_routes_derived_total").await,
        app.metric("pgherald_routing_unrouted_pages_total").await,
    );
    let _ = Value::Null;
}
