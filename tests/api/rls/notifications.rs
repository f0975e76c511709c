//! A notification reaches only its recipient, through the typed
//! `notifications` subscription and through `changes`, whether written
//! alongside a colleague's in one transaction or separately, and when handed
//! over from one user to another.

use serde_json::{Value, json};

use crate::helpers::{NOTIFICATIONS, Protocol, Subscriber, s, spawn_app, summary};

/// Inserts a notification titled `title` for `user`, as a SQL statement.
fn notification_sql(tenant: &str, user: &str, title: &str) -> String {
    format!(
        "insert into notifications (tenant_id, user_id, kind, title) values ('{tenant}', '{user}', 'x', '{title}');"
    )
}

#[tokio::test]
async fn a_user_never_receives_a_colleagues_notification_written_in_the_same_transaction_or_separately()
 {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;

    // Each watches its notifications twice: through the typed subscription
    // (new notifications only), and through `changes`; in both, RLS is the
    // only thing between them.
    let mut a = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    let mut b = Subscriber::connect(&app, &bob, "bob", Protocol::Legacy).await;
    for c in [&mut a, &mut b] {
        c.start("mine", NOTIFICATIONS, json!({})).await;
        c.changes("all", "notifications", Value::Null, Value::Null)
            .await;
    }
    app.wait_for_subscriptions(4).await;

    // One transaction with notifications for both…
    app.sql(&format!(
        "begin; {} {} {} commit;",
        notification_sql(&acme, &bob, "b1"),
        notification_sql(&acme, &alice, "a1"),
        notification_sql(&acme, &bob, "b2"),
    ))
    .await;
    // …then one per transaction, interleaved, with an update of bob's and a
    // notification handed over from bob to alice.
    app.notify(&acme, &bob, "x", "b3").await;
    app.notify(&acme, &alice, "x", "a2").await;
    app.sql(&format!(
        "update notifications set read_at = now() where title = 'b1' and user_id = '{bob}'"
    ))
    .await;
    app.notify(&acme, &bob, "x", "b4").await;
    app.notify(&acme, &alice, "x", "a3").await;
    app.sql(&format!(
        "update notifications set user_id = '{alice}', title = 'b4-for-alice' where title = 'b4'"
    ))
    .await;
    app.notify(&acme, &bob, "x", "b5").await;
    app.notify(&acme, &alice, "x", "a4").await;

    let got_a = a.collect(&[("mine", 4), ("all", 5)]).await;
    let got_b = b.collect(&[("mine", 5), ("all", 7)]).await;

    for (who, id, got) in [("alice", &alice, &got_a), ("bob", &bob, &got_b)] {
        for n in &got["mine"] {
            assert_eq!(n["op"], "INSERT", "{who}: {n}");
            assert_eq!(
                n["row"]["user_id"],
                id.as_str(),
                "{who} got someone else's: {n}"
            );
        }
        for c in &got["all"] {
            for key in ["row", "old"] {
                assert!(
                    c[key].is_null() || c[key]["user_id"] == id.as_str(),
                    "{who} got a {key} of someone else's notification: {c}"
                );
            }
        }
    }
    let titles = |ns: &[Value]| -> Vec<String> {
        ns.iter()
            .map(|n| n["row"]["title"].as_str().unwrap_or("<none>").to_owned())
            .collect()
    };
    assert_eq!(titles(&got_a["mine"]), ["a1", "a2", "a3", "a4"]);
    assert_eq!(titles(&got_b["mine"]), ["b1", "b2", "b3", "b4", "b5"]);
    assert_eq!(
        summary(&got_a["all"]),
        vec![
            s("INSERT", Some("a1"), None),
            s("INSERT", Some("a2"), None),
            s("INSERT", Some("a3"), None),
            // Handed over: alice could not see the old version.
            s("UPDATE", Some("b4-for-alice"), None),
            s("INSERT", Some("a4"), None),
        ],
        "alice: {:?}",
        got_a["all"]
    );
    assert_eq!(
        summary(&got_b["all"]),
        vec![
            s("INSERT", Some("b1"), None),
            s("INSERT", Some("b2"), None),
            s("INSERT", Some("b3"), None),
            s("UPDATE", Some("b1"), Some("b1")),
            s("INSERT", Some("b4"), None),
            // Handed over: bob may not see the new version.
            s("UPDATE", None, Some("b4")),
            s("INSERT", Some("b5"), None),
        ],
        "bob: {:?}",
        got_b["all"]
    );
}
