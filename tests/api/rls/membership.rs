//! Visibility that follows membership: a user removed from a tenant stops
//! receiving its documents, and a user's profile reaches themself and their
//! colleagues only.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{acme_and_globex, assert_only_tenants, watch};
use crate::helpers::{Protocol, insert_document, s, summary};

#[tokio::test]
async fn a_user_removed_from_a_tenant_stops_receiving_its_documents() {
    let (app, acme, globex) = acme_and_globex().await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme, &globex]).await;

    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    let mut b = watch(&app, &bob, "bob", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(2).await;

    let plan = insert_document(&app, &acme, "plan").await;
    let a1 = a.events("c", 1).await;
    let b1 = b.events("c", 1).await;
    assert_eq!(
        summary(&b1),
        vec![s("INSERT", Some("plan"), None)],
        "bob: {b1:?}"
    );

    app.sql(&format!(
        "delete from memberships where tenant_id = '{acme}' and user_id = '{bob}'"
    ))
    .await;
    // Old versions are judged as of their batch's start: once Bob has a
    // change committed after his removal, later batches start without him.
    insert_document(&app, &globex, "globex-between").await;
    assert_eq!(
        summary(&b.events("c", 1).await),
        vec![s("INSERT", Some("globex-between"), None)]
    );
    app.sql(&format!(
        "update documents set title = 'plan-v2' where id = '{plan}'"
    ))
    .await;
    insert_document(&app, &acme, "acme-after").await;
    app.sql(&format!("delete from documents where id = '{plan}'"))
        .await;
    insert_document(&app, &globex, "globex-after").await;

    let a2 = a.events("c", 3).await;
    let b2 = b.events("c", 1).await;
    assert_eq!(
        summary(&b2),
        vec![s("INSERT", Some("globex-after"), None)],
        "bob, no longer in Acme, must get nothing of it: {b2:?}"
    );
    assert_only_tenants("bob", &b2, &[&globex]);
    let a_all: Vec<Value> = a1.into_iter().chain(a2).collect();
    assert_only_tenants("alice", &a_all, &[&acme]);
    assert_eq!(
        summary(&a_all),
        vec![
            s("INSERT", Some("plan"), None),
            s("UPDATE", Some("plan-v2"), Some("plan")),
            s("INSERT", Some("acme-after"), None),
            s("DELETE", None, Some("plan-v2")),
        ],
        "alice: {a_all:?}"
    );
}

#[tokio::test]
async fn a_users_profile_changes_reach_themself_and_their_colleagues_only() {
    let (app, acme, globex) = acme_and_globex().await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let gina = app.user("gina@globex.test", &[&globex]).await;

    let mut a = watch(&app, &alice, "alice", "users", Protocol::Transport).await;
    let mut b = watch(&app, &bob, "bob", "users", Protocol::Legacy).await;
    let mut g = watch(&app, &gina, "gina", "users", Protocol::Transport).await;
    app.wait_for_subscriptions(3).await;

    for (user, name) in [(&gina, "g1"), (&bob, "b1"), (&alice, "a1"), (&gina, "g2")] {
        app.sql(&format!(
            "update users set display_name = '{name}' where id = '{user}'"
        ))
        .await;
    }
    let names = |cs: &[Value]| -> Vec<String> {
        cs.iter()
            .map(|c| {
                assert_eq!(c["op"], "UPDATE", "{c}");
                c["row"]["display_name"]
                    .as_str()
                    .unwrap_or("<none>")
                    .to_owned()
            })
            .collect()
    };
    let got_a = a.events("c", 2).await;
    let got_b = b.events("c", 2).await;
    let got_g = g.events("c", 2).await;
    assert_eq!(names(&got_a), ["b1", "a1"], "alice: {got_a:?}");
    assert_eq!(names(&got_b), ["b1", "a1"], "bob: {got_b:?}");
    assert_eq!(names(&got_g), ["g1", "g2"], "gina: {got_g:?}");
    let ids = |cs: &[Value]| -> BTreeSet<String> {
        cs.iter()
            .flat_map(|c| [&c["row"]["id"], &c["old"]["id"]])
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        ids(&got_g),
        BTreeSet::from([gina.clone()]),
        "gina: {got_g:?}"
    );
}
