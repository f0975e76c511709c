//! A document reaches the members of its tenant and nobody else: on insert,
//! on delete (only those who could see it), and when it moves between tenants
//! (it enters the new tenant's view and leaves the old one's).

use serde_json::{Value, json};

use super::{
    acme_and_globex, assert_only_tenants, nora_joins_globex_then_both_tenants_write, two_tenants,
    watch,
};
use crate::helpers::{Protocol, document_image, insert_document, s, summary, title_of};

#[tokio::test]
async fn a_document_reaches_the_members_of_its_tenant_and_nobody_else() {
    let (app, acme, globex) = acme_and_globex().await;
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
    nora_joins_globex_then_both_tenants_write(&app, &acme, &globex, &nora, "2").await;

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
async fn a_delete_reaches_only_those_who_could_see_the_row() {
    let (app, acme, globex, nora, [mut a, mut g, mut m, mut n]) =
        two_tenants(Protocol::Transport, Protocol::Legacy).await;

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
    nora_joins_globex_then_both_tenants_write(&app, &acme, &globex, &nora, "after").await;
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
        summary(&a_all),
        vec![
            s("INSERT", Some("acme-doomed"), None),
            s("DELETE", None, Some("acme-doomed")),
            s("INSERT", Some("acme-after"), None),
        ],
        "alice: {a_all:?}"
    );
    assert_eq!(
        summary(&g_all),
        vec![
            s("INSERT", Some("globex-doomed"), None),
            s("DELETE", None, Some("globex-doomed")),
            s("INSERT", Some("globex-after"), None),
        ],
        "gina: {g_all:?}"
    );
    assert_eq!(
        summary(&m_all),
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
        summary(&n1),
        vec![s("INSERT", Some("globex-after"), None)],
        "nora, in no tenant during the deletes: {n1:?}"
    );
}

#[tokio::test]
async fn a_document_moved_to_another_tenant_enters_the_new_tenants_view_and_leaves_the_old_ones() {
    let (app, acme, globex, nora, [mut a, mut g, mut m, mut n]) =
        two_tenants(Protocol::Legacy, Protocol::Transport).await;

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
    nora_joins_globex_then_both_tenants_write(&app, &acme, &globex, &nora, "end").await;
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
