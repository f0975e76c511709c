//! The API generated from the tracked tables, end to end on the demo schema:
//! per table a typed subscription (`notifications(where:, ops:, after:,
//! initial:)` streaming `NotificationsChange`) and a typed query field
//! (`notifications(where:, orderBy:, first:, after:)` returning a
//! `NotificationsPage`), over graphql-transport-ws and HTTP.
//!
//! - rows carry their columns with GraphQL types (uuid and timestamptz as
//!   strings, jsonb as an object);
//! - `where` filters, written inline or passed in a variable, `ops`, and
//!   `old` on updates and deletes;
//! - `initial: true` and a page's `cursor` hand over to the change stream
//!   with nothing missed or repeated while rows are being written;
//! - columns the role may not select are refused by name, unknown columns
//!   fail GraphQL validation;
//! - graphql-js accepts the schema the server introspects.
//!
//! Absence is proven by order, as in [`crate::delivery`]: a subscription's
//! events arrive in commit order, so each scenario ends with a write every
//! subscription must receive, and the received lists are compared exactly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{Protocol, Subscriber, TestApp, WAIT, connect, run_script, spawn_app};

/// An instance with tenant Acme and its members alice and bob:
/// (app, acme, alice, bob).
async fn acme() -> (TestApp, String, String, String) {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    app.wait_until_read_so_far().await;
    (app, acme, alice, bob)
}

/// Alice's graphql-transport-ws connection.
async fn alice_subscriber(app: &TestApp, alice: &str) -> Subscriber {
    Subscriber::connect(app, alice, "alice", Protocol::Transport).await
}

/// The messages of `errors`, joined (for `contains` assertions).
fn messages(errors: &[Value]) -> String {
    errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The messages of an HTTP GraphQL response's errors, joined; panics when
/// it has none.
fn http_errors(response: &Value) -> String {
    let errors = response["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors: {response}"));
    assert!(!errors.is_empty(), "expected errors: {response}");
    messages(errors)
}

/// Inserts a notification with plain SQL as the owner.
async fn insert(
    app: &TestApp,
    tenant: &str,
    user: &str,
    kind: &str,
    title: &str,
    body: Option<&str>,
) {
    app.admin
        .execute(
            "insert into notifications (tenant_id, user_id, kind, title, body)
             values ($1::text::uuid, $2::text::uuid, $3, $4, $5)",
            &[&tenant, &user, &kind, &title, &body],
        )
        .await
        .unwrap();
}

/// `row.title` of each event.
fn titles(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["row"]["title"]
                .as_str()
                .unwrap_or("<no title>")
                .to_owned()
        })
        .collect()
}

/// Whether `s` is a UUID in canonical text form.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        })
}

/// An RFC 3339 date-time string as an instant; panics on anything else.
fn instant(value: &Value, what: &str) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what}: {text:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

/// The most rows a [`Writer`] writes, whatever happens.
const MAX_WRITES: usize = 5000;

/// Inserts alice's notifications `w00000`, `w00001`, … one per transaction,
/// in order, on a connection of its own, and after every tenth one of bob's,
/// until stopped. Commit order is write order.
struct Writer {
    stop: Arc<AtomicBool>,
    written: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<usize>,
}

impl Writer {
    fn start(app: &TestApp, tenant: &str, alice: &str, bob: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (report, written) = watch::channel(0);
        let (url, tenant, alice, bob) = (
            app.admin_url.clone(),
            tenant.to_owned(),
            alice.to_owned(),
            bob.to_owned(),
        );
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let client = connect(&url).await;
            let insert = "insert into notifications (tenant_id, user_id, title)
                          values ($1::text::uuid, $2::text::uuid, $3)";
            // Writes are paced: they are to overlap what the test does
            // meanwhile, not to load the machine.
            let mut pace = tokio::time::interval(Duration::from_millis(2));
            let mut n = 0;
            while n < MAX_WRITES && !stopped.load(Ordering::Relaxed) {
                pace.tick().await;
                client
                    .execute(insert, &[&tenant, &alice, &format!("w{n:05}")])
                    .await
                    .unwrap();
                n += 1;
                if n % 10 == 0 {
                    client
                        .execute(insert, &[&tenant, &bob, &format!("bob{n:05}")])
                        .await
                        .unwrap();
                }
                report.send_replace(n);
            }
            n
        });
        Writer {
            stop,
            written,
            task,
        }
    }

    /// Waits until at least `n` rows are written.
    async fn wait_for(&mut self, n: usize) {
        tokio::time::timeout(WAIT, self.written.wait_for(|w| *w >= n))
            .await
            .unwrap_or_else(|_| panic!("the writer did not reach {n} rows"))
            .expect("the writer is running");
    }

    /// How many rows are written so far.
    fn written(&self) -> usize {
        *self.written.borrow()
    }

    /// Stops the writer; returns how many of alice's rows it wrote.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.task.await.unwrap();
        assert!(
            n < MAX_WRITES,
            "the writer ran out before the test was done"
        );
        n
    }
}

/// `w00000` … the `n`th title a [`Writer`] writes.
fn written_titles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i:05}")).collect()
}

#[tokio::test]
async fn rows_arrive_over_graphql_transport_ws_with_their_graphql_types() {
    let (app, acme, alice, _) = acme().await;
    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "n",
        "subscription { notifications {
            op initial cursor committedAt
            row { id tenant_id user_id kind title body data created_at read_at }
            old { id read_at }
        } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;

    let data = json!({"doc": 7, "ratio": 0.5, "tags": ["a", null], "nested": {"ok": true}});
    let row = app
        .admin
        .query_one(
            "insert into notifications (tenant_id, user_id, kind, title, data)
             values ($1::text::uuid, $2::text::uuid, 'mention', 'typed', $3)
             returning id::text, created_at",
            &[&acme, &alice, &data],
        )
        .await
        .unwrap();
    let id: String = row.get(0);
    let created_at: chrono::DateTime<chrono::Utc> = row.get(1);

    let change = c.next_event("n").await;
    assert_eq!(change["op"], "INSERT", "{change}");
    assert_eq!(change["initial"], false, "{change}");
    assert_eq!(change["old"], Value::Null, "old of an insert: {change}");
    assert!(
        change["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "{change}"
    );
    instant(&change["committedAt"], "committedAt");
    let r = &change["row"];
    for (column, expected) in [("id", &id), ("tenant_id", &acme), ("user_id", &alice)] {
        let value = r[column].as_str().unwrap_or_default();
        assert!(is_uuid(value), "{column} must be a uuid string: {change}");
        assert_eq!(value, expected, "{column}: {change}");
    }
    assert_eq!(r["kind"], "mention", "{change}");
    assert_eq!(r["title"], "typed", "{change}");
    assert_eq!(r["body"], Value::Null, "{change}");
    assert!(r["data"].is_object(), "data must be an object: {change}");
    assert_eq!(r["data"], data, "{change}");
    assert_eq!(
        instant(&r["created_at"], "created_at"),
        created_at,
        "{change}"
    );
    assert_eq!(r["read_at"], Value::Null, "{change}");

    // A timestamptz set in another zone, with microseconds, is the same instant.
    app.sql(&format!(
        "update notifications set read_at = '2024-02-29 23:59:58.123456-05' where id = '{id}'"
    ))
    .await;
    let change = c.next_event("n").await;
    assert_eq!(change["op"], "UPDATE", "{change}");
    let expected = chrono::DateTime::parse_from_rfc3339("2024-03-01T04:59:58.123456Z").unwrap();
    assert_eq!(
        instant(&change["row"]["read_at"], "read_at"),
        expected,
        "{change}"
    );
    assert_eq!(
        change["old"],
        json!({"id": id, "read_at": null}),
        "{change}"
    );
}

#[tokio::test]
async fn typename_resolves_on_the_generated_objects() {
    let (app, acme, alice, _) = acme().await;
    insert(&app, &acme, &alice, "info", "read", None).await;
    let r = app
        .graphql(
            &app.token(&alice),
            "{ __typename notifications { __typename rows { __typename title } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"],
        json!({
            "__typename": "Query",
            "notifications": {
                "__typename": "NotificationsPage",
                "rows": [{"__typename": "Notifications", "title": "read"}],
            },
        }),
        "{r}"
    );
    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "n",
        "subscription { notifications { __typename op row { __typename title } old { __typename } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    insert(&app, &acme, &alice, "info", "streamed", None).await;
    assert_eq!(
        c.next_event("n").await,
        json!({
            "__typename": "NotificationsChange",
            "op": "INSERT",
            "row": {"__typename": "Notifications", "title": "streamed"},
            "old": null,
        })
    );
}

#[tokio::test]
async fn where_written_inline_or_in_a_variable_delivers_only_matching_changes() {
    let (app, acme, alice, bob) = acme().await;
    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "alerts",
        r#"subscription { notifications(where: {kind: {eq: "alert"}}) { row { title } } }"#,
        json!({}),
    )
    .await;
    c.start(
        "vars",
        "subscription($w: NotificationsWhere) { notifications(where: $w) { row { title } } }",
        json!({"w": {"kind": {"in": ["alert", "digest"]}, "title": {"neq": "skip"}}}),
    )
    .await;
    c.start(
        "anded",
        r#"subscription { notifications(where: {kind: {neq: "info"}, title: {gte: "m"}}) { row { title } } }"#,
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(3).await;

    for (user, kind, title) in [
        (&alice, "info", "a"),
        (&alice, "alert", "b"),
        (&alice, "digest", "skip"),
        (&bob, "alert", "bob's"),
        (&alice, "digest", "c"),
        (&alice, "info", "zz"),
        // Matches every filter: anything unmatched would arrive before it.
        (&alice, "alert", "zz-last"),
    ] {
        insert(&app, &acme, user, kind, title, None).await;
    }
    let got = c.collect(&[("alerts", 2), ("vars", 3), ("anded", 2)]).await;
    assert_eq!(titles(&got["alerts"]), ["b", "zz-last"], "{got:?}");
    assert_eq!(titles(&got["vars"]), ["b", "c", "zz-last"], "{got:?}");
    assert_eq!(titles(&got["anded"]), ["skip", "zz-last"], "{got:?}");
}

#[tokio::test]
async fn where_combinators_and_string_and_null_operators_inline_and_in_variables() {
    let (app, acme, alice, bob) = acme().await;
    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "or",
        r#"subscription { notifications(where: {_or: [{kind: {eq: "alert"}}, {title: {like: "urgent%"}}]}) {
            row { title } } }"#,
        json!({}),
    )
    .await;
    c.start(
        "vars",
        "subscription($w: NotificationsWhere) { notifications(where: $w) { row { title } } }",
        json!({"w": {
            "_and": [{"kind": {"in": ["info", "alert"]}}, {"_not": {"title": {"ilike": "%SKIP%"}}}],
            "body": {"isNull": true},
        }}),
    )
    .await;
    c.start(
        "with-body",
        r#"subscription { notifications(where: {_or: [{body: {isNull: false}}, {title: {eq: "urgent zz"}}]}) {
            row { title } } }"#,
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(3).await;

    for (user, kind, title, body) in [
        (&alice, "info", "plain", None),
        (&alice, "alert", "b", None),
        (&alice, "info", "urgent c", Some("text")),
        // `like` is case-sensitive.
        (&alice, "digest", "Urgent d", None),
        (&alice, "info", "please Skip", None),
        (&bob, "alert", "urgent, for bob", Some("x")),
        // Matches every filter: anything unmatched would arrive before it.
        (&alice, "alert", "urgent zz", None),
    ] {
        insert(&app, &acme, user, kind, title, body).await;
    }
    let got = c.collect(&[("or", 3), ("vars", 3), ("with-body", 2)]).await;
    assert_eq!(
        titles(&got["or"]),
        ["b", "urgent c", "urgent zz"],
        "{got:?}"
    );
    assert_eq!(titles(&got["vars"]), ["plain", "b", "urgent zz"], "{got:?}");
    assert_eq!(
        titles(&got["with-body"]),
        ["urgent c", "urgent zz"],
        "{got:?}"
    );

    // A column the role may not select is refused inside a combinator too.
    app.sql(
        "revoke select on public.notifications from app_user;
         grant select (id, tenant_id, user_id, kind, title, data, created_at, read_at)
           on public.notifications to app_user;",
    )
    .await;
    c.start(
        "nested",
        r#"subscription { notifications(where: {_or: [{title: {eq: "x"}}, {_not: {body: {eq: "x"}}}]}) {
            row { title } } }"#,
        json!({}),
    )
    .await;
    // The running subscriptions that filter on it end; the new one is refused.
    let mut ended = std::collections::BTreeMap::new();
    while ended.len() < 3 {
        let msg = c.next_message().await;
        assert_eq!(msg["type"], "error", "{msg}");
        ended.insert(
            msg["id"].as_str().unwrap().to_owned(),
            msg["payload"].clone(),
        );
    }
    assert!(
        messages(ended["nested"].as_array().unwrap()).contains("body"),
        "{ended:?}"
    );
    for id in ["vars", "with-body"] {
        assert_eq!(ended[id][0]["extensions"]["code"], "FORBIDDEN", "{ended:?}");
    }
}

#[tokio::test]
async fn ops_select_operations_and_old_carries_the_previous_version_on_update_and_delete() {
    let (app, acme, alice, _) = acme().await;
    let mut c = alice_subscriber(&app, &alice).await;
    let versions = "op row { title read_at } old { title read_at }";
    c.start(
        "upd-del",
        &format!("subscription {{ notifications(ops: [UPDATE, DELETE]) {{ {versions} }} }}"),
        json!({}),
    )
    .await;
    c.start(
        "del",
        &format!("subscription {{ notifications(ops: [DELETE]) {{ {versions} }} }}"),
        json!({}),
    )
    .await;
    c.start(
        "all",
        &format!("subscription {{ notifications {{ {versions} }} }}"),
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(3).await;

    insert(&app, &acme, &alice, "info", "n1", None).await;
    app.sql("update notifications set title = 'n1 read', read_at = '2024-01-01 10:00:00+00' where title = 'n1'")
        .await;
    app.sql("delete from notifications where title = 'n1 read'")
        .await;
    insert(&app, &acme, &alice, "info", "n2", None).await;
    app.sql("update notifications set title = 'n2b' where title = 'n2'")
        .await;
    app.sql("delete from notifications where title = 'n2b'")
        .await;

    let got = c.collect(&[("upd-del", 4), ("del", 2), ("all", 6)]).await;
    let read = json!({"title": "n1 read", "read_at": "<read>"});
    // read_at as an instant, whatever offset it is written with.
    let normal = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                for key in ["row", "old"] {
                    if e[key]["read_at"].is_string() {
                        let at = instant(&e[key]["read_at"], "read_at");
                        assert_eq!(at.to_rfc3339(), "2024-01-01T10:00:00+00:00", "{e}");
                        e[key]["read_at"] = json!("<read>");
                    }
                }
                e
            })
            .collect()
    };
    let unread = |title: &str| json!({"title": title, "read_at": null});
    let update_n1 = json!({"op": "UPDATE", "row": read, "old": unread("n1")});
    let delete_n1 = json!({"op": "DELETE", "row": null, "old": read});
    let update_n2 = json!({"op": "UPDATE", "row": unread("n2b"), "old": unread("n2")});
    let delete_n2 = json!({"op": "DELETE", "row": null, "old": unread("n2b")});
    assert_eq!(
        normal(&got["upd-del"]),
        [
            update_n1.clone(),
            delete_n1.clone(),
            update_n2.clone(),
            delete_n2.clone()
        ],
        "{got:?}"
    );
    assert_eq!(
        normal(&got["del"]),
        [delete_n1.clone(), delete_n2.clone()],
        "{got:?}"
    );
    assert_eq!(
        normal(&got["all"]),
        [
            json!({"op": "INSERT", "row": unread("n1"), "old": null}),
            update_n1,
            delete_n1,
            json!({"op": "INSERT", "row": unread("n2"), "old": null}),
            update_n2,
            delete_n2,
        ],
        "{got:?}"
    );
}

#[tokio::test]
async fn initial_true_streams_the_current_rows_then_every_later_change_once_while_rows_are_written()
{
    let (app, acme, alice, bob) = acme().await;
    for n in 0..20 {
        insert(&app, &acme, &alice, "info", &format!("pre{n:02}"), None).await;
        insert(&app, &acme, &bob, "info", &format!("bob pre{n:02}"), None).await;
    }
    let mut writer = Writer::start(&app, &acme, &alice, &bob);
    writer.wait_for(30).await;

    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "n",
        "subscription { notifications(initial: true) { op initial cursor row { title user_id } } }",
        json!({}),
    )
    .await;
    // The stream starts once the subscription is registered (after its
    // initial read), so its first event also says it is live.
    let first = c.next_event("n").await;
    assert_eq!(app.app.state().hub.subscription_count(), 1);
    // Keep writing for a while after the subscription is live.
    let live_at = writer.written();
    writer.wait_for(live_at + 30).await;
    let written = writer.stop().await;
    insert(&app, &acme, &alice, "info", "sentinel", None).await;

    let mut events = vec![first];
    events.extend(
        c.events_until("n", |e| e["row"]["title"] == "sentinel")
            .await,
    );
    for e in &events {
        assert_eq!(e["op"], "INSERT", "{e}");
        assert_eq!(
            e["row"]["user_id"],
            alice.as_str(),
            "someone else's row: {e}"
        );
    }
    // The initial rows first, all flagged and at one snapshot's cursor…
    let split = events
        .iter()
        .position(|e| e["initial"] == false)
        .expect("changes after the initial rows");
    let (initial, changes) = events.split_at(split);
    assert!(
        changes.iter().all(|e| e["initial"] == false),
        "an initial row after a change: {events:?}"
    );
    let snapshot_cursors: std::collections::BTreeSet<&str> = initial
        .iter()
        .filter_map(|e| e["cursor"].as_str())
        .collect();
    assert_eq!(snapshot_cursors.len(), 1, "initial rows at several cursors");
    let mut initial_titles = titles(initial);
    initial_titles.sort();
    let pre: Vec<String> = (0..20).map(|n| format!("pre{n:02}")).collect();
    let initial_written: Vec<String> = initial_titles
        .iter()
        .filter(|t| t.starts_with('w'))
        .cloned()
        .collect();
    assert_eq!(
        initial_titles.len(),
        pre.len() + initial_written.len(),
        "{initial_titles:?}"
    );
    assert!(initial_titles.starts_with(&pre), "{initial_titles:?}");
    // …then every row written after that snapshot, in commit order: the two
    // together are every row, each once.
    let mut all = initial_written.clone();
    all.extend(titles(changes));
    let mut expected = written_titles(written);
    expected.push("sentinel".into());
    assert_eq!(all, expected, "initial rows then changes");
    assert!(
        initial_written.len() >= 30 && changes.len() > 30,
        "the writes must overlap the hand-over: {} initial, {} changes",
        initial_written.len(),
        changes.len()
    );
}

#[tokio::test]
async fn initial_true_with_where_streams_only_the_matching_rows_then_matching_changes() {
    let (app, acme, alice, bob) = acme().await;
    for (user, kind, title) in [
        (&alice, "alert", "a1"),
        (&alice, "info", "i1"),
        (&bob, "alert", "bob a1"),
        (&alice, "alert", "a2"),
    ] {
        insert(&app, &acme, user, kind, title, None).await;
    }
    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "n",
        r#"subscription { notifications(where: {kind: {eq: "alert"}}, initial: true) {
            initial row { title } } }"#,
        json!({}),
    )
    .await;
    let mut initial = c.events("n", 2).await;
    initial.sort_by_key(|e| e["row"]["title"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        initial,
        [
            json!({"initial": true, "row": {"title": "a1"}}),
            json!({"initial": true, "row": {"title": "a2"}}),
        ]
    );
    app.wait_for_subscriptions(1).await;
    insert(&app, &acme, &alice, "info", "i2", None).await;
    insert(&app, &acme, &alice, "alert", "a3", None).await;
    assert_eq!(
        c.next_event("n").await,
        json!({"initial": false, "row": {"title": "a3"}})
    );
}

#[tokio::test]
async fn contradictory_or_empty_subscription_arguments_are_errors_and_the_connection_keeps_working()
{
    let (app, acme, alice, _) = acme().await;
    let mut c = alice_subscriber(&app, &alice).await;
    let cursor = app
        .graphql(&app.token(&alice), "{ cursor }", json!({}))
        .await["data"]["cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    c.start(
        "both",
        "subscription($a: String) { notifications(initial: true, after: $a) { op } }",
        json!({"a": cursor}),
    )
    .await;
    let errors = c.operation_error("both").await;
    assert!(
        messages(&errors).contains("initial") && messages(&errors).contains("after"),
        "{errors:?}"
    );
    assert_eq!(
        errors[0]["extensions"]["code"], "BAD_USER_INPUT",
        "{errors:?}"
    );
    c.start(
        "none",
        "subscription { notifications(ops: []) { op } }",
        json!({}),
    )
    .await;
    let errors = c.operation_error("none").await;
    assert!(messages(&errors).contains("ops"), "{errors:?}");
    c.start(
        "garbage",
        r#"subscription { notifications(after: "not a cursor") { op } }"#,
        json!({}),
    )
    .await;
    let errors = c.operation_error("garbage").await;
    assert!(messages(&errors).contains("cursor"), "{errors:?}");

    c.start(
        "ok",
        "subscription { notifications { row { title } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    insert(&app, &acme, &alice, "info", "still here", None).await;
    assert_eq!(
        c.next_event("ok").await,
        json!({"row": {"title": "still here"}})
    );
}

#[tokio::test]
async fn a_query_fields_page_and_a_subscription_after_its_cursor_see_every_row_once_while_rows_are_written()
 {
    let (app, acme, alice, bob) = acme().await;
    let mut writer = Writer::start(&app, &acme, &alice, &bob);
    writer.wait_for(30).await;

    let page = app
        .graphql(
            &app.token(&alice),
            "{ notifications(orderBy: [{title: ASC}], first: 1000) {
                rows { title user_id } cursor hasNextPage endCursor } }",
            json!({}),
        )
        .await;
    let page = &page["data"]["notifications"];
    assert_eq!(page["hasNextPage"], false, "{page}");
    assert_eq!(page["endCursor"], Value::Null, "{page}");
    let rows = page["rows"].as_array().unwrap_or_else(|| panic!("{page}"));
    assert!(
        rows.iter().all(|r| r["user_id"] == alice.as_str()),
        "someone else's row: {page}"
    );
    let read: Vec<String> = rows
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_owned())
        .collect();
    let cursor = page["cursor"].as_str().expect("a cursor").to_owned();

    // More rows are written between the read and the subscription, and after.
    let read_at = writer.written();
    writer.wait_for(read_at + 20).await;
    let mut c = alice_subscriber(&app, &alice).await;
    c.start(
        "n",
        "subscription($after: String) { notifications(after: $after) { op initial row { title } } }",
        json!({"after": cursor}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    let live_at = writer.written();
    writer.wait_for(live_at + 20).await;
    let written = writer.stop().await;
    insert(&app, &acme, &alice, "info", "sentinel", None).await;

    let changes = c
        .events_until("n", |e| e["row"]["title"] == "sentinel")
        .await;
    assert!(
        changes
            .iter()
            .all(|e| e["op"] == "INSERT" && e["initial"] == false),
        "{changes:?}"
    );
    let mut all = read.clone();
    all.extend(titles(&changes));
    let mut expected = written_titles(written);
    expected.push("sentinel".into());
    assert_eq!(
        all, expected,
        "the page's rows, then the changes after its cursor"
    );
    assert!(read.len() >= 30, "{} rows read", read.len());
}

#[tokio::test]
async fn a_column_the_role_may_not_select_is_refused_by_name_in_selections_where_and_order_by() {
    let (app, acme, alice, _) = acme().await;
    app.sql(
        "revoke select on public.notifications from app_user;
         grant select (id, tenant_id, user_id, kind, title, data, created_at, read_at)
           on public.notifications to app_user;",
    )
    .await;
    insert(&app, &acme, &alice, "info", "old news", Some("secret body")).await;
    let mut c = alice_subscriber(&app, &alice).await;
    let refused = [
        (
            "row",
            "subscription { notifications { row { id body } } }",
            json!({}),
        ),
        (
            "old",
            "subscription { notifications { op old { body } } }",
            json!({}),
        ),
        (
            "fragment",
            "subscription { notifications { row { ...F } } } fragment F on Notifications { title body }",
            json!({}),
        ),
        (
            "initial",
            "subscription { notifications(initial: true) { row { body } } }",
            json!({}),
        ),
        (
            "where",
            r#"subscription { notifications(where: {body: {eq: "secret body"}}) { row { id } } }"#,
            json!({}),
        ),
        (
            "where-var",
            "subscription($w: NotificationsWhere) { notifications(where: $w) { row { id } } }",
            json!({"w": {"body": {"eq": "secret body"}}}),
        ),
    ];
    for (id, query, variables) in refused {
        c.start(id, query, variables).await;
        let errors = c.operation_error(id).await;
        let text = messages(&errors);
        assert!(
            text.contains("body"),
            "{id}: the error must name the column: {errors:?}"
        );
        assert!(
            !text.contains("secret"),
            "{id}: the error leaks data: {errors:?}"
        );
    }
    assert_eq!(app.app.state().hub.subscription_count(), 0);

    let token = app.token(&alice);
    for query in [
        "{ notifications { rows { id body } } }",
        r#"{ notifications(where: {body: {isNull: false}}) { rows { id } } }"#,
        "{ notifications(orderBy: [{body: ASC}]) { rows { id } } }",
    ] {
        let r = app.graphql(&token, query, json!({})).await;
        let text = http_errors(&r);
        assert!(
            text.contains("body"),
            "{query}: the error must name the column: {r}"
        );
        assert!(
            !text.contains("secret"),
            "{query}: the error leaks data: {r}"
        );
        assert!(r["data"]["notifications"].is_null(), "{query}: {r}");
    }

    // Everything else still works, and rows carry no body.
    let r = app
        .graphql(
            &token,
            "{ notifications { rows { title data } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["notifications"]["rows"],
        json!([{"title": "old news", "data": {}}]),
        "{r}"
    );
    c.start(
        "allowed",
        "subscription { notifications { op row { title kind } old { title } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    insert(&app, &acme, &alice, "info", "new", Some("another secret")).await;
    assert_eq!(
        c.next_event("allowed").await,
        json!({"op": "INSERT", "row": {"title": "new", "kind": "info"}, "old": null})
    );
}

#[tokio::test]
async fn an_unknown_column_or_operator_in_where_is_a_graphql_validation_error() {
    let (app, acme, alice, _) = acme().await;
    let mut c = alice_subscriber(&app, &alice).await;
    let refused = [
        (
            "column",
            "no_such_column",
            "subscription { notifications(where: {no_such_column: {eq: 1}}) { op } }",
            json!({}),
        ),
        (
            "nested",
            "no_such_column",
            r#"subscription { notifications(where: {_or: [{title: {eq: "x"}}, {no_such_column: {eq: 1}}]}) { op } }"#,
            json!({}),
        ),
        (
            "operator",
            "regex",
            r#"subscription { notifications(where: {title: {regex: "x"}}) { op } }"#,
            json!({}),
        ),
        (
            "variable",
            "no_such_column",
            "subscription($w: NotificationsWhere) { notifications(where: $w) { op } }",
            json!({"w": {"no_such_column": {"eq": 1}}}),
        ),
        (
            "selected",
            "no_such_column",
            "subscription { notifications { row { no_such_column } } }",
            json!({}),
        ),
    ];
    for (id, culprit, query, variables) in refused {
        c.start(id, query, variables).await;
        let errors = c.operation_error(id).await;
        assert!(
            messages(&errors).contains(culprit),
            "{id}: the error must name {culprit}: {errors:?}"
        );
        // Validation errors, not errors of a started operation.
        assert!(
            errors
                .iter()
                .all(|e| e["extensions"]["code"] != "BAD_USER_INPUT"),
            "{id}: {errors:?}"
        );
    }

    let token = app.token(&alice);
    for (culprit, query) in [
        (
            "no_such_column",
            "{ notifications(where: {no_such_column: {eq: 1}}) { rows { id } } }",
        ),
        (
            "no_such_column",
            "{ notifications(orderBy: [{no_such_column: ASC}]) { rows { id } } }",
        ),
        (
            "like",
            "{ notifications(where: {data: {like: \"x\"}}) { rows { id } } }",
        ),
    ] {
        let r = app.graphql(&token, query, json!({})).await;
        assert!(http_errors(&r).contains(culprit), "{query}: {r}");
        assert!(r["data"].is_null(), "{query}: not executed: {r}");
    }

    // No subscription was left behind; the connection still works.
    c.start(
        "ok",
        "subscription { notifications { row { title } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    insert(&app, &acme, &alice, "info", "ok", None).await;
    assert_eq!(c.next_event("ok").await, json!({"row": {"title": "ok"}}));
}

#[tokio::test]
async fn query_fields_read_only_the_rows_where_matches_inline_or_in_a_variable() {
    let (app, acme, alice, bob) = acme().await;
    let globex = app.tenant("Globex").await;
    for (user, kind, title, body) in [
        (&alice, "alert", "a1", None),
        (&alice, "info", "i1", Some("text")),
        (&bob, "alert", "bob a1", None),
        (&alice, "alert", "a2", Some("text")),
        (&alice, "digest", "urgent d", None),
    ] {
        insert(&app, &acme, user, kind, title, body).await;
    }
    app.sql(&format!(
        "insert into documents (tenant_id, title) values ('{acme}', 'acme doc'), ('{globex}', 'globex doc')"
    ))
    .await;
    let token = app.token(&alice);
    let cases = [
        (
            r#"{ notifications(where: {kind: {eq: "alert"}}, orderBy: [{title: ASC}]) { rows { title } } }"#,
            json!({}),
            vec!["a1", "a2"],
        ),
        (
            r#"{ notifications(where: {_or: [{kind: {eq: "digest"}}, {body: {isNull: false}}]}, orderBy: [{title: ASC}]) {
                rows { title } } }"#,
            json!({}),
            vec!["a2", "i1", "urgent d"],
        ),
        (
            "query($w: NotificationsWhere) { notifications(where: $w, orderBy: [{title: DESC}]) { rows { title } } }",
            json!({"w": {"_not": {"kind": {"eq": "info"}}, "title": {"like": "%1%"}}}),
            vec!["a1"],
        ),
    ];
    for (query, variables, expected) in cases {
        let r = app.graphql(&token, query, variables.clone()).await;
        assert!(r["errors"].is_null(), "{query}: {r}");
        let rows = r["data"]["notifications"]["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {r}"));
        let got: Vec<&str> = rows
            .iter()
            .filter_map(|row| row["title"].as_str())
            .collect();
        assert_eq!(got, expected, "{query} {variables}: {r}");
    }
    // A filter naming another tenant does not get around RLS.
    let r = app
        .graphql(
            &token,
            "query($t: UUID) { documents(where: {tenant_id: {eq: $t}}) { rows { title } } }",
            json!({"t": globex}),
        )
        .await;
    assert_eq!(r["data"]["documents"]["rows"], json!([]), "{r}");
}

/// Operations graphql-js must accept against the introspected schema.
const VALID_OPERATIONS: &[&str] = &[
    "subscription { notifications(ops: [INSERT]) { op row { id tenant_id user_id kind title body data created_at read_at } } }",
    r#"subscription($w: NotificationsWhere, $after: String) {
        notifications(where: $w, ops: [UPDATE, DELETE], after: $after) { op initial cursor committedAt row { id } old { id } }
        }"#,
    r#"subscription { notifications(where: {_or: [{kind: {eq: "alert"}}, {title: {like: "a%"}}], _not: {read_at: {isNull: false}}}, initial: true) {
        row { title } } }"#,
    "subscription($t: String!, $f: JSON) { changes(table: $t, filter: $f) { cursor op table row old committedAt } }",
    r#"query { cursor
        notifications(orderBy: [{created_at: DESC}], first: 10, after: null) { rows { id title } cursor endCursor hasNextPage }
        documents(where: {title: {ilike: "%plan%"}}) { rows { id tenant_id title body updated_at } }
        users { rows { id email display_name } }
        tenants { rows { id name } }
        memberships { rows { tenant_id user_id role } } }"#,
];

/// Operations graphql-js must refuse.
const INVALID_OPERATIONS: &[&str] = &[
    "subscription { notifications(where: {no_such_column: {eq: 1}}) { op } }",
    "subscription { notificationCreated { id } }",
    "query { notifications { rows { tenantId } } }",
];

#[tokio::test]
async fn the_introspected_schema_is_valid_for_graphql_js_and_types_the_demo_tables() {
    let (app, _, alice, _) = acme().await;
    let operations: Vec<&str> = VALID_OPERATIONS
        .iter()
        .chain(INVALID_OPERATIONS)
        .copied()
        .collect();
    let out = run_script(
        "schema.mjs",
        &[
            ("URL", format!("{}/graphql", app.http_url)),
            ("TOKEN", app.token(&alice)),
            ("OPERATIONS", json!(operations).to_string()),
        ],
        WAIT,
    )
    .await;
    assert!(out["fatal"].is_null(), "graphql-js: {}", out["fatal"]);
    assert_eq!(out["schemaErrors"], json!([]), "graphql-js: invalid schema");
    let results = out["operations"].as_array().unwrap();
    for (op, errors) in operations.iter().zip(results) {
        let valid = VALID_OPERATIONS.contains(op);
        assert_eq!(
            errors.as_array().unwrap().is_empty(),
            valid,
            "graphql-js on {op}: {errors}"
        );
    }

    let types = &out["types"];
    let field_types = |name: &str| -> BTreeMap<String, String> {
        types[name]
            .as_object()
            .unwrap_or_else(|| panic!("no type {name}: {}", out["sdl"]))
            .iter()
            .map(|(k, v)| (k.clone(), v["type"].as_str().unwrap().to_owned()))
            .collect()
    };
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        field_types("Notifications"),
        expect(&[
            ("id", "UUID!"),
            ("tenant_id", "UUID!"),
            ("user_id", "UUID!"),
            ("kind", "String!"),
            ("title", "String!"),
            ("body", "String"),
            ("data", "JSON!"),
            ("created_at", "DateTime!"),
            ("read_at", "DateTime"),
        ])
    );
    assert_eq!(
        field_types("NotificationsChange"),
        expect(&[
            ("op", "ChangeOp!"),
            ("initial", "Boolean!"),
            ("cursor", "String!"),
            ("committedAt", "DateTime!"),
            ("row", "Notifications"),
            ("old", "Notifications"),
        ])
    );
    assert_eq!(
        field_types("NotificationsPage"),
        expect(&[
            ("rows", "[Notifications!]!"),
            ("cursor", "String!"),
            ("endCursor", "String"),
            ("hasNextPage", "Boolean!"),
        ])
    );
    let mut where_fields = expect(&[
        ("_and", "[NotificationsWhere!]"),
        ("_or", "[NotificationsWhere!]"),
        ("_not", "NotificationsWhere"),
        ("id", "UUIDComparison"),
        ("tenant_id", "UUIDComparison"),
        ("user_id", "UUIDComparison"),
        ("kind", "StringComparison"),
        ("title", "StringComparison"),
        ("body", "StringComparison"),
        ("data", "JSONComparison"),
        ("created_at", "DateTimeComparison"),
        ("read_at", "DateTimeComparison"),
    ]);
    assert_eq!(field_types("NotificationsWhere"), where_fields);
    where_fields.retain(|k, _| !k.starts_with('_') && k != "data");
    assert_eq!(
        field_types("NotificationsOrderBy"),
        where_fields
            .keys()
            .map(|k| (k.clone(), "OrderDirection".to_owned()))
            .collect()
    );
    assert_eq!(
        field_types("StringComparison"),
        expect(&[
            ("eq", "String"),
            ("neq", "String"),
            ("lt", "String"),
            ("lte", "String"),
            ("gt", "String"),
            ("gte", "String"),
            ("in", "[String!]"),
            ("isNull", "Boolean"),
            ("like", "String"),
            ("ilike", "String"),
        ])
    );

    // Per table a query and a subscription field, beside the generic ones;
    // no mutations.
    let tables = [
        "documents",
        "memberships",
        "notifications",
        "tenants",
        "users",
    ];
    let mut query_fields: Vec<String> = field_types("Query").into_keys().collect();
    query_fields.sort();
    let mut expected: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    expected.push("cursor".into());
    expected.sort();
    assert_eq!(query_fields, expected);
    let mut subscription_fields: Vec<String> = field_types("Subscription").into_keys().collect();
    subscription_fields.sort();
    expected.retain(|f| f != "cursor");
    expected.push("changes".into());
    expected.sort();
    assert_eq!(subscription_fields, expected);
    assert!(
        types
            .as_object()
            .unwrap()
            .keys()
            .all(|t| !t.contains("Mutation")),
        "{}",
        out["sdl"]
    );
    // Writes are SQL's business: the server has no mutations to run.
    let r = app
        .graphql(&app.token(&alice), "mutation { __typename }", json!({}))
        .await;
    assert!(
        r["data"].is_null() && r["errors"][0]["message"].is_string(),
        "{r}"
    );

    let args = |root: &str, field: &str| -> Value {
        let args = &types[root][field]["args"];
        assert!(args.is_object(), "{root}.{field}: {}", out["sdl"]);
        args.clone()
    };
    let subscription = args("Subscription", "notifications");
    assert_eq!(
        types["Subscription"]["notifications"]["type"],
        "NotificationsChange!"
    );
    assert_eq!(subscription["where"]["type"], "NotificationsWhere");
    assert_eq!(subscription["ops"]["type"], "[ChangeOp!]");
    assert_eq!(subscription["after"]["type"], "String");
    assert_eq!(subscription["initial"]["default"], false, "{subscription}");
    assert!(
        ["Boolean", "Boolean!"].contains(&subscription["initial"]["type"].as_str().unwrap_or("")),
        "{subscription}"
    );
    let query = args("Query", "notifications");
    assert_eq!(
        types["Query"]["notifications"]["type"],
        "NotificationsPage!"
    );
    assert_eq!(query["where"]["type"], "NotificationsWhere");
    assert_eq!(query["orderBy"]["type"], "[NotificationsOrderBy!]");
    assert_eq!(query["first"]["default"], 100, "{query}");
    assert_eq!(query["after"]["type"], "String");
}
