//! Row-level security end to end, adversarially: several users, each on its
//! own connection, and rows written with plain SQL as the owner. Every
//! subscriber must receive exactly the versions of rows its RLS policies let
//! it read (DESIGN.md section 2, "Demo SaaS schema" and "GraphQL"): a
//! notification only by its recipient, a document only by members of its
//! tenant, a user only by themself and colleagues.
//!
//! Absence is proven by order: a subscription receives its events in commit
//! order, so an event a user must not get is written before one it must get,
//! and the received list is compared exactly. Membership changes are made only
//! once the earlier events have been delivered to someone, so that it is
//! unambiguous which memberships were in force when they were authorized.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::delivery::{Client, NOTIFICATIONS, Protocol, document_image, insert_document, title_of};
use crate::helpers::{TestApp, spawn_app};

/// Connects as `user` and subscribes `"c"` to every change of `table`.
async fn watch(app: &TestApp, user: &str, who: &str, table: &str, protocol: Protocol) -> Client {
    let mut c = Client::connect(app, user, who, protocol).await;
    c.changes("c", table, Value::Null, Value::Null).await;
    c
}

/// Asserts that every image in `changes` (row and old) belongs to one of
/// `tenants`: nobody gets a version of a document they could not read.
fn assert_only_tenants(who: &str, changes: &[Value], tenants: &[&str]) {
    for c in changes {
        for key in ["row", "old"] {
            let image = &c[key];
            if image.is_null() {
                continue;
            }
            let tenant = image["tenant_id"].as_str().unwrap_or("<none>");
            assert!(
                tenants.contains(&tenant),
                "{who} received a {key} of tenant {tenant}, outside its tenants {tenants:?}: {c}"
            );
        }
    }
}

/// Adds `user` to `tenant`.
async fn join(app: &TestApp, tenant: &str, user: &str) {
    app.sql(&format!(
        "insert into memberships (tenant_id, user_id) values ('{tenant}', '{user}')"
    ))
    .await;
}

/// `(op, row title, old title)` of one change.
fn shape(c: &Value) -> (String, Option<String>, Option<String>) {
    (
        c["op"].as_str().unwrap_or("<no op>").to_owned(),
        c["row"]["title"].as_str().map(str::to_owned),
        c["old"]["title"].as_str().map(str::to_owned),
    )
}

fn shapes(changes: &[Value]) -> Vec<(String, Option<String>, Option<String>)> {
    changes.iter().map(shape).collect()
}

fn s(op: &str, row: Option<&str>, old: Option<&str>) -> (String, Option<String>, Option<String>) {
    (
        op.to_owned(),
        row.map(str::to_owned),
        old.map(str::to_owned),
    )
}

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

    // Each watches its notifications twice: through `notificationCreated`,
    // and through `changes`, where RLS is the only thing between them.
    let mut a = Client::connect(&app, &alice, "alice", Protocol::Transport).await;
    let mut b = Client::connect(&app, &bob, "bob", Protocol::Legacy).await;
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
            assert_eq!(n["userId"], id.as_str(), "{who} got someone else's: {n}");
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
            .map(|n| n["title"].as_str().unwrap_or("<none>").to_owned())
            .collect()
    };
    assert_eq!(titles(&got_a["mine"]), ["a1", "a2", "a3", "a4"]);
    assert_eq!(titles(&got_b["mine"]), ["b1", "b2", "b3", "b4", "b5"]);
    assert_eq!(
        shapes(&got_a["all"]),
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
        shapes(&got_b["all"]),
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

#[tokio::test]
async fn a_document_reaches_the_members_of_its_tenant_and_nobody_else() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let gina = app.user("gina@globex.test", &[&globex]).await;
    let nora = app.user("nora@nowhere.test", &[]).await;

    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    let mut b = watch(&app, &bob, "bob", "documents", Protocol::Legacy).await;
    let mut g = watch(&app, &gina, "gina", "documents", Protocol::Transport).await;
    let mut n = watch(&app, &nora, "nora", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(4).await;

    insert_document(&app, &acme, "acme-1").await;
    insert_document(&app, &globex, "globex-1").await;
    // Delivered to their tenants: authorized while nora was in no tenant.
    let a1 = a.events("c", 1).await;
    let b1 = b.events("c", 1).await;
    let g1 = g.events("c", 1).await;

    // Nora joins Globex, so that there is an event she must receive.
    join(&app, &globex, &nora).await;
    insert_document(&app, &globex, "globex-2").await;
    insert_document(&app, &acme, "acme-2").await;

    let a2 = a.events("c", 1).await;
    let b2 = b.events("c", 1).await;
    let g2 = g.events("c", 1).await;
    let n1 = n.events("c", 1).await;

    let all = |x: Vec<Value>, y: Vec<Value>| -> Vec<Value> { x.into_iter().chain(y).collect() };
    let (a_all, b_all, g_all) = (all(a1, a2), all(b1, b2), all(g1, g2));
    assert_only_tenants("alice", &a_all, &[&acme]);
    assert_only_tenants("bob", &b_all, &[&acme]);
    assert_only_tenants("gina", &g_all, &[&globex]);
    assert_only_tenants("nora", &n1, &[&globex]);
    let titles =
        |cs: &[Value]| -> Vec<String> { cs.iter().map(|c| title_of(c).to_owned()).collect() };
    assert_eq!(titles(&a_all), ["acme-1", "acme-2"], "alice: {a_all:?}");
    assert_eq!(titles(&b_all), ["acme-1", "acme-2"], "bob: {b_all:?}");
    assert_eq!(titles(&g_all), ["globex-1", "globex-2"], "gina: {g_all:?}");
    assert_eq!(
        titles(&n1),
        ["globex-2"],
        "nora, in no tenant until globex-2, got: {n1:?}"
    );
}

#[tokio::test]
async fn a_user_removed_from_a_tenant_stops_receiving_its_documents() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme, &globex]).await;

    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    let mut b = watch(&app, &bob, "bob", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(2).await;

    let plan = insert_document(&app, &acme, "plan").await;
    let a1 = a.events("c", 1).await;
    let b1 = b.events("c", 1).await;
    assert_eq!(
        shapes(&b1),
        vec![s("INSERT", Some("plan"), None)],
        "bob: {b1:?}"
    );

    app.sql(&format!(
        "delete from memberships where tenant_id = '{acme}' and user_id = '{bob}'"
    ))
    .await;
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
        shapes(&b2),
        vec![s("INSERT", Some("globex-after"), None)],
        "bob, no longer in Acme, must get nothing of it: {b2:?}"
    );
    assert_only_tenants("bob", &b2, &[&globex]);
    let a_all: Vec<Value> = a1.into_iter().chain(a2).collect();
    assert_only_tenants("alice", &a_all, &[&acme]);
    assert_eq!(
        shapes(&a_all),
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
async fn a_delete_reaches_only_those_who_could_see_the_row() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let gina = app.user("gina@globex.test", &[&globex]).await;
    let mia = app.user("mia@both.test", &[&acme, &globex]).await;
    let nora = app.user("nora@nowhere.test", &[]).await;

    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    let mut g = watch(&app, &gina, "gina", "documents", Protocol::Transport).await;
    let mut m = watch(&app, &mia, "mia", "documents", Protocol::Legacy).await;
    let mut n = watch(&app, &nora, "nora", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(4).await;

    let doomed = insert_document(&app, &acme, "acme-doomed").await;
    let gdoomed = insert_document(&app, &globex, "globex-doomed").await;
    let a1 = a.events("c", 1).await;
    let g1 = g.events("c", 1).await;
    let m1 = m.events("c", 2).await;
    let doomed_image = document_image(&app, &doomed).await;
    let gdoomed_image = document_image(&app, &gdoomed).await;

    app.sql(&format!(
        "begin;
         delete from documents where id = '{doomed}';
         delete from documents where id = '{gdoomed}';
         commit;"
    ))
    .await;
    let a2 = a.events("c", 1).await;
    let g2 = g.events("c", 1).await;
    let m2 = m.events("c", 2).await;

    // Later events each of them receives (nora joins Globex for hers, once
    // the deletes were authorized).
    join(&app, &globex, &nora).await;
    insert_document(&app, &globex, "globex-after").await;
    insert_document(&app, &acme, "acme-after").await;
    let a3 = a.events("c", 1).await;
    let g3 = g.events("c", 1).await;
    let m3 = m.events("c", 2).await;
    let n1 = n.events("c", 1).await;

    assert_eq!(a2[0]["op"], "DELETE", "{:?}", a2);
    assert_eq!(a2[0]["old"], doomed_image, "alice's delete: {}", a2[0]);
    assert_eq!(a2[0]["row"], Value::Null, "alice's delete: {}", a2[0]);
    assert_eq!(g2[0]["old"], gdoomed_image, "gina's delete: {}", g2[0]);
    assert_eq!(g2[0]["row"], Value::Null, "gina's delete: {}", g2[0]);

    let cat = |parts: [Vec<Value>; 3]| -> Vec<Value> { parts.into_iter().flatten().collect() };
    let a_all = cat([a1, a2, a3]);
    let g_all = cat([g1, g2, g3]);
    let m_all = cat([m1, m2, m3]);
    assert_only_tenants("alice", &a_all, &[&acme]);
    assert_only_tenants("gina", &g_all, &[&globex]);
    assert_only_tenants("mia", &m_all, &[&acme, &globex]);
    assert_only_tenants("nora", &n1, &[&globex]);
    assert_eq!(
        shapes(&a_all),
        vec![
            s("INSERT", Some("acme-doomed"), None),
            s("DELETE", None, Some("acme-doomed")),
            s("INSERT", Some("acme-after"), None),
        ],
        "alice: {a_all:?}"
    );
    assert_eq!(
        shapes(&g_all),
        vec![
            s("INSERT", Some("globex-doomed"), None),
            s("DELETE", None, Some("globex-doomed")),
            s("INSERT", Some("globex-after"), None),
        ],
        "gina: {g_all:?}"
    );
    assert_eq!(
        shapes(&m_all),
        vec![
            s("INSERT", Some("acme-doomed"), None),
            s("INSERT", Some("globex-doomed"), None),
            s("DELETE", None, Some("acme-doomed")),
            s("DELETE", None, Some("globex-doomed")),
            s("INSERT", Some("globex-after"), None),
            s("INSERT", Some("acme-after"), None),
        ],
        "mia: {m_all:?}"
    );
    assert_eq!(
        shapes(&n1),
        vec![s("INSERT", Some("globex-after"), None)],
        "nora, in no tenant during the deletes: {n1:?}"
    );
}

#[tokio::test]
async fn a_document_moved_to_another_tenant_enters_the_new_tenants_view_and_leaves_the_old_ones() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let gina = app.user("gina@globex.test", &[&globex]).await;
    let mia = app.user("mia@both.test", &[&acme, &globex]).await;
    let nora = app.user("nora@nowhere.test", &[]).await;

    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    let mut g = watch(&app, &gina, "gina", "documents", Protocol::Legacy).await;
    let mut m = watch(&app, &mia, "mia", "documents", Protocol::Transport).await;
    let mut n = watch(&app, &nora, "nora", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(4).await;

    let id = insert_document(&app, &acme, "in-acme").await;
    let v1 = document_image(&app, &id).await;
    let a1 = a.events("c", 1).await;
    let m1 = m.events("c", 1).await;
    assert_eq!(a1[0]["row"], v1, "alice's insert: {}", a1[0]);

    // Acme → Globex.
    app.sql(&format!(
        "update documents set tenant_id = '{globex}', title = 'in-globex' where id = '{id}'"
    ))
    .await;
    let v2 = document_image(&app, &id).await;
    let a2 = a.next_event("c").await;
    let g2 = g.next_event("c").await;
    let m2 = m.next_event("c").await;
    assert_eq!(
        (&a2["op"], &a2["row"], &a2["old"]),
        (&json!("UPDATE"), &Value::Null, &v1),
        "the old tenant's member sees the row leave: {a2}"
    );
    assert_eq!(
        (&g2["op"], &g2["row"], &g2["old"]),
        (&json!("UPDATE"), &v2, &Value::Null),
        "the new tenant's member sees the row enter: {g2}"
    );
    assert_eq!(
        (&m2["op"], &m2["row"], &m2["old"]),
        (&json!("UPDATE"), &v2, &v1),
        "a member of both sees both images: {m2}"
    );

    // And back: Globex → Acme.
    app.sql(&format!(
        "update documents set tenant_id = '{acme}', title = 'back-in-acme' where id = '{id}'"
    ))
    .await;
    let v3 = document_image(&app, &id).await;
    let a3 = a.next_event("c").await;
    let g3 = g.next_event("c").await;
    let m3 = m.next_event("c").await;
    assert_eq!(
        (&a3["op"], &a3["row"], &a3["old"]),
        (&json!("UPDATE"), &v3, &Value::Null),
        "the row enters alice's view again: {a3}"
    );
    assert_eq!(
        (&g3["op"], &g3["row"], &g3["old"]),
        (&json!("UPDATE"), &Value::Null, &v2),
        "the row leaves gina's view: {g3}"
    );
    assert_eq!(
        (&m3["op"], &m3["row"], &m3["old"]),
        (&json!("UPDATE"), &v3, &v2),
        "a member of both sees both images: {m3}"
    );

    // Later events each receives; nora joins Globex for hers.
    join(&app, &globex, &nora).await;
    insert_document(&app, &globex, "globex-end").await;
    insert_document(&app, &acme, "acme-end").await;
    let a4 = a.next_event("c").await;
    let g4 = g.next_event("c").await;
    let m4 = m.events("c", 2).await;
    let n1 = n.next_event("c").await;
    assert_eq!(title_of(&a4), "acme-end", "alice: {a4}");
    assert_eq!(title_of(&g4), "globex-end", "gina: {g4}");
    assert_eq!(
        m4.iter().map(title_of).collect::<Vec<_>>(),
        ["globex-end", "acme-end"],
        "mia: {m4:?}"
    );
    assert_eq!(
        title_of(&n1),
        "globex-end",
        "nora, in no tenant during the moves: {n1}"
    );

    let a_all: Vec<Value> = [a1, vec![a2, a3, a4]].concat();
    let g_all = vec![g2, g3, g4];
    let m_all: Vec<Value> = [m1, vec![m2, m3], m4].concat();
    assert_only_tenants("alice", &a_all, &[&acme]);
    assert_only_tenants("gina", &g_all, &[&globex]);
    assert_only_tenants("mia", &m_all, &[&acme, &globex]);
    assert_only_tenants("nora", &[n1], &[&globex]);
}

/// One write of the mixed workload below, on documents named by key.
enum Write {
    Insert(&'static str, &'static str, &'static str),
    /// Sets tenant and title (a move when the tenant changes).
    Update(&'static str, &'static str, &'static str),
    Delete(&'static str),
}

#[tokio::test]
async fn nobody_ever_receives_a_version_of_a_document_they_could_not_read() {
    use Write::{Delete, Insert, Update};

    let app = spawn_app().await;
    let mut tenant_ids: BTreeMap<&str, String> = BTreeMap::new();
    for name in ["Acme", "Globex", "Initech", "Lobby"] {
        tenant_ids.insert(name, app.tenant(name).await);
    }
    let tenant_name: BTreeMap<String, &str> =
        tenant_ids.iter().map(|(n, id)| (id.clone(), *n)).collect();
    // Everyone is in Lobby, where the last document is written.
    let users: [(&str, &[&str], Protocol); 5] = [
        ("alice", &["Acme", "Lobby"], Protocol::Transport),
        ("gina", &["Globex", "Lobby"], Protocol::Transport),
        ("mia", &["Acme", "Globex", "Lobby"], Protocol::Legacy),
        ("ivan", &["Initech", "Lobby"], Protocol::Legacy),
        ("nora", &["Lobby"], Protocol::Transport),
    ];
    let mut clients = Vec::new();
    for (who, tenants, protocol) in &users {
        let ids: Vec<&str> = tenants.iter().map(|t| tenant_ids[t].as_str()).collect();
        let id = app.user(&format!("{who}@test"), &ids).await;
        clients.push(watch(&app, &id, who, "documents", *protocol).await);
    }
    app.wait_for_subscriptions(users.len()).await;

    let transactions: Vec<Vec<Write>> = vec![
        vec![
            Insert("k1", "Acme", "a1"),
            Insert("k2", "Globex", "g1"),
            Insert("k3", "Initech", "i1"),
        ],
        vec![Update("k1", "Acme", "a1-v2")],
        vec![Update("k1", "Globex", "a1-in-globex")],
        vec![
            Update("k2", "Initech", "g1-in-initech"),
            Update("k3", "Initech", "i1-v2"),
        ],
        vec![Update("k3", "Acme", "i1-in-acme"), Delete("k1")],
        vec![Insert("k4", "Acme", "a2"), Delete("k2")],
        vec![
            Update("k4", "Initech", "a2-in-initech"),
            Update("k3", "Globex", "i1-in-globex"),
        ],
        vec![Update("k3", "Globex", "i1-v3"), Delete("k4")],
        vec![Delete("k3")],
        vec![Insert("end", "Lobby", "end")],
    ];

    // The model: each event as (op, new (tenant, title), old (tenant, title)).
    type Version = (&'static str, &'static str);
    let mut state: BTreeMap<&str, Version> = BTreeMap::new();
    let mut events: Vec<(&str, Option<Version>, Option<Version>)> = Vec::new();
    for tx in &transactions {
        let mut sql = String::from("begin;\n");
        for w in tx {
            match *w {
                Insert(key, tenant, title) => {
                    sql += &format!(
                        "insert into documents (id, tenant_id, title) values (md5('{key}')::uuid, '{}', '{title}');\n",
                        tenant_ids[tenant]
                    );
                    state.insert(key, (tenant, title));
                    events.push(("INSERT", Some((tenant, title)), None));
                }
                Update(key, tenant, title) => {
                    sql += &format!(
                        "update documents set tenant_id = '{}', title = '{title}' where id = md5('{key}')::uuid;\n",
                        tenant_ids[tenant]
                    );
                    let old = state.insert(key, (tenant, title));
                    events.push(("UPDATE", Some((tenant, title)), old));
                }
                Delete(key) => {
                    sql += &format!("delete from documents where id = md5('{key}')::uuid;\n");
                    let old = state.remove(key);
                    events.push(("DELETE", None, old));
                }
            }
        }
        sql += "commit;";
        app.sql(&sql).await;
    }

    type Seen = (String, Option<(String, String)>, Option<(String, String)>);
    for (c, (who, tenants, _)) in clients.iter_mut().zip(&users) {
        let got = c.events_until("c", |e| title_of(e) == "end").await;
        let allowed: Vec<&str> = tenants.iter().map(|t| tenant_ids[t].as_str()).collect();
        assert_only_tenants(who, &got, &allowed);

        let visible = |v: &Option<Version>| v.filter(|(t, _)| tenants.contains(t));
        let owned = |v: Option<Version>| v.map(|(t, n)| (t.to_owned(), n.to_owned()));
        let expected: Vec<Seen> = events
            .iter()
            .filter_map(|(op, new, old)| {
                let (new, old) = (visible(new), visible(old));
                (new.is_some() || old.is_some()).then(|| (op.to_string(), owned(new), owned(old)))
            })
            .collect();
        let image = |i: &Value| -> Option<(String, String)> {
            (!i.is_null()).then(|| {
                let tenant = i["tenant_id"].as_str().unwrap_or_default();
                (
                    tenant_name
                        .get(tenant)
                        .copied()
                        .unwrap_or(tenant)
                        .to_owned(),
                    i["title"].as_str().unwrap_or_default().to_owned(),
                )
            })
        };
        let seen: Vec<Seen> = got
            .iter()
            .map(|e| {
                (
                    e["op"].as_str().unwrap_or_default().to_owned(),
                    image(&e["row"]),
                    image(&e["old"]),
                )
            })
            .collect();
        assert_eq!(seen, expected, "{who} (in {tenants:?})");
    }
}

#[tokio::test]
async fn a_users_profile_changes_reach_themself_and_their_colleagues_only() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
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

#[tokio::test]
async fn row_images_carry_only_the_columns_the_subscriber_may_select() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    app.sql(
        "revoke select on public.notifications from app_user;
         grant select (id, tenant_id, user_id, kind, title, created_at, read_at)
           on public.notifications to app_user;",
    )
    .await;

    let mut a = watch(&app, &alice, "alice", "notifications", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;
    app.sql(&format!(
        "insert into notifications (tenant_id, user_id, title, body, data)
         values ('{acme}', '{alice}', 'hello', 'secret body', '{{\"secret\": 1}}');
         update notifications set read_at = now(), body = 'secret too' where title = 'hello';"
    ))
    .await;

    let got = a.events("c", 2).await;
    let allowed: BTreeSet<&str> = [
        "id",
        "tenant_id",
        "user_id",
        "kind",
        "title",
        "created_at",
        "read_at",
    ]
    .into();
    assert_eq!(
        shapes(&got),
        vec![
            s("INSERT", Some("hello"), None),
            s("UPDATE", Some("hello"), Some("hello")),
        ],
        "{got:?}"
    );
    for c in &got {
        for key in ["row", "old"] {
            if let Some(image) = c[key].as_object() {
                let columns: BTreeSet<&str> = image.keys().map(String::as_str).collect();
                assert_eq!(columns, allowed, "{key} columns: {c}");
            }
        }
    }
}
