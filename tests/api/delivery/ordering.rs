//! Order and routing: a subscription gets its events in commit order, and
//! several subscriptions on one connection each get exactly their own.

use serde_json::{Value, json};

use super::acme;
use crate::helpers::{NOTIFICATIONS, Protocol, Subscriber, insert_document, s, summary};

over_both_protocols!(
    several_updates_of_one_row_arrive_in_commit_order,
    several_subscriptions_on_one_connection_each_get_their_own_events,
);

async fn several_updates_of_one_row_arrive_in_commit_order(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "v0").await;
    // One transaction per update…
    for n in 1..=8 {
        app.sql(&format!(
            "update documents set title = 'v{n}' where id = '{id}'"
        ))
        .await;
    }
    // …and several updates in one transaction.
    app.sql(&format!(
        "begin;
         update documents set title = 'v9' where id = '{id}';
         update documents set title = 'v10' where id = '{id}';
         update documents set title = 'v11' where id = '{id}';
         commit;"
    ))
    .await;

    let got = c.events("docs", 12).await;
    let mut expected = vec![s("INSERT", Some("v0"), None)];
    for n in 1..=11 {
        let (new, old) = (format!("v{n}"), format!("v{}", n - 1));
        expected.push(s("UPDATE", Some(&new), Some(&old)));
    }
    assert_eq!(summary(&got), expected, "delivered {got:?}");
    let cursors: std::collections::BTreeSet<&str> =
        got.iter().filter_map(|c| c["cursor"].as_str()).collect();
    assert_eq!(cursors.len(), got.len(), "every change has its own cursor");
}

async fn several_subscriptions_on_one_connection_each_get_their_own_events(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
    c.changes("all", "documents", Value::Null, Value::Null)
        .await;
    c.changes("all-again", "documents", Value::Null, Value::Null)
        .await;
    c.changes("updates", "documents", json!(["UPDATE"]), Value::Null)
        .await;
    c.start("mine", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(4).await;

    let id = insert_document(&app, &acme, "one").await;
    app.notify(&acme, &alice, "x", "n1").await;
    app.sql(&format!(
        "update documents set title = 'two' where id = '{id}'"
    ))
    .await;
    app.notify(&acme, &alice, "x", "n2").await;

    let got = c
        .collect(&[("all", 2), ("all-again", 2), ("updates", 1), ("mine", 2)])
        .await;
    let both = vec![
        s("INSERT", Some("one"), None),
        s("UPDATE", Some("two"), Some("one")),
    ];
    assert_eq!(summary(&got["all"]), both, "all: {:?}", got["all"]);
    assert_eq!(
        summary(&got["all-again"]),
        both,
        "all-again: {:?}",
        got["all-again"]
    );
    assert_eq!(
        summary(&got["updates"]),
        vec![s("UPDATE", Some("two"), Some("one"))],
        "updates: {:?}",
        got["updates"]
    );
    let titles: Vec<&Value> = got["mine"].iter().map(|n| &n["row"]["title"]).collect();
    assert_eq!(
        titles,
        [&json!("n1"), &json!("n2")],
        "mine: {:?}",
        got["mine"]
    );
    assert_eq!(
        got.len(),
        4,
        "events for unknown operation ids: {:?}",
        got.keys()
    );
}
