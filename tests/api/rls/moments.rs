//! The moments live changes are judged at: a change's old version against
//! the database as it was at the start of its batch, its new version as it is
//! at the end (docs/architecture.md, "When authorization is evaluated"),
//! never as it is when the batch happens to be dispatched.
//!
//! - one transaction that grants access and deletes a row the user could not
//!   read before (accepting an invitation) does not reveal that row;
//! - deleting a tenant with `ON DELETE CASCADE` reaches every member with
//!   the deletes of its documents;
//! - with dispatch held back behind a lock (the documents policy also reads a
//!   `gate` table the test locks) while a membership changes, a revoked user
//!   still receives what was committed while she was a member, and a user
//!   added meanwhile receives nothing committed before she was added;
//! - a killed snapshot holder costs nothing but the precision of one batch:
//!   delivery continues, and `/metrics` counts the fallback.
//!
//! "Did not receive" is proven by a sentinel change the user legitimately
//! receives arriving first and only.

use serde_json::Value;
use tokio_postgres::Client;

use super::{acme_and_globex, watch};
use crate::helpers::{Protocol, TestApp, WAIT, connect, insert_document, s, summary};

/// Adds `public.invitations` (readable by the members of its tenant only)
/// and tracks it.
async fn invitations(app: &TestApp) {
    app.sql(
        "create table public.invitations (
           id uuid primary key default gen_random_uuid(),
           tenant_id uuid not null references public.tenants (id) on delete cascade,
           email text not null);
         alter table public.invitations enable row level security;
         create policy invitations_members on public.invitations for select
           using (tenant_id in (select public.my_tenant_ids()));
         grant select on public.invitations to app_user;
         select herald.track('public.invitations')",
    )
    .await;
    app.wait_for_tracked("invitations").await;
}

/// `(op, row email, old email)` of invitation changes.
fn emails(changes: &[Value]) -> Vec<(String, Option<String>, Option<String>)> {
    changes
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap_or("<no op>").to_owned(),
                c["row"]["email"].as_str().map(str::to_owned),
                c["old"]["email"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn e(op: &str, row: Option<&str>, old: Option<&str>) -> (String, Option<String>, Option<String>) {
    (
        op.to_owned(),
        row.map(str::to_owned),
        old.map(str::to_owned),
    )
}

#[tokio::test]
async fn accepting_an_invitation_does_not_reveal_the_invitation_deleted_in_the_same_transaction() {
    let (app, acme, _) = acme_and_globex().await;
    invitations(&app).await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let nora = app.user("nora@nowhere.test", &[]).await;

    let mut a = watch(&app, &alice, "alice", "invitations", Protocol::Transport).await;
    let mut n = watch(&app, &nora, "nora", "invitations", Protocol::Transport).await;
    let mut n_members = watch(&app, &nora, "nora", "memberships", Protocol::Legacy).await;
    app.wait_for_subscriptions(3).await;

    let invitation: String = app
        .admin
        .query_one(
            "insert into invitations (tenant_id, email) values ($1::text::uuid, 'nora@nowhere.test')
             returning id::text",
            &[&acme],
        )
        .await
        .unwrap()
        .get(0);
    // Delivered (to alice) before nora accepts: authorized while she was no member.
    assert_eq!(
        emails(&a.events("c", 1).await),
        [e("INSERT", Some("nora@nowhere.test"), None)]
    );

    // Accepting: the membership and the end of the invitation, in one transaction.
    app.sql(&format!(
        "begin;
         insert into memberships (tenant_id, user_id) values ('{acme}', '{nora}');
         delete from invitations where id = '{invitation}';
         commit"
    ))
    .await;
    app.sql(&format!(
        "insert into invitations (tenant_id, email) values ('{acme}', 'sentinel@acme.test')"
    ))
    .await;

    let got = n.events("c", 1).await;
    assert_eq!(
        emails(&got),
        [e("INSERT", Some("sentinel@acme.test"), None)],
        "nora could not read the invitation before she accepted it, so its delete \
         (an old version, judged as of before the batch) must not reach her: {got:?}"
    );
    let joined = n_members.events("c", 1).await;
    assert_eq!(joined[0]["op"], "INSERT", "{joined:?}");
    assert_eq!(
        joined[0]["row"]["user_id"].as_str(),
        Some(nora.as_str()),
        "nora's own membership (a new version, judged as of after the batch): {joined:?}"
    );
    assert_eq!(
        emails(&a.events("c", 2).await),
        [
            e("DELETE", None, Some("nora@nowhere.test")),
            e("INSERT", Some("sentinel@acme.test"), None),
        ],
        "alice, a member throughout, sees the invitation go"
    );
}

#[tokio::test]
async fn deleting_a_tenant_with_cascade_reaches_every_member_with_each_document_delete() {
    let (app, acme, globex) = acme_and_globex().await;
    let alice = app.user("alice@acme.test", &[&acme, &globex]).await;
    let bob = app.user("bob@acme.test", &[&acme, &globex]).await;
    let gina = app.user("gina@globex.test", &[&globex]).await;
    insert_document(&app, &acme, "plan").await;
    insert_document(&app, &acme, "roadmap").await;

    let mut watchers = [
        watch(&app, &alice, "alice", "documents", Protocol::Transport).await,
        watch(&app, &bob, "bob", "documents", Protocol::Legacy).await,
        watch(&app, &gina, "gina", "documents", Protocol::Transport).await,
    ];
    app.wait_for_subscriptions(3).await;

    // Cascades to Acme's memberships and documents, in the same transaction.
    app.sql(&format!("delete from tenants where id = '{acme}'"))
        .await;
    insert_document(&app, &globex, "sentinel").await;

    for (i, w) in watchers.iter_mut().enumerate() {
        let got = w
            .events_until("c", |c| c["row"]["title"] == "sentinel")
            .await;
        // (The inserts may arrive first: the listener may not have read
        // them when the subscriptions registered.)
        let mut deletes: Vec<_> = summary(&got[..got.len() - 1])
            .into_iter()
            .filter(|(op, _, _)| op == "DELETE")
            .collect();
        deletes.sort();
        let expected = if i < 2 {
            vec![
                s("DELETE", None, Some("plan")),
                s("DELETE", None, Some("roadmap")),
            ]
        } else {
            vec![]
        };
        assert_eq!(
            deletes, expected,
            "{}: members of Acme until the delete see each of its documents go: {got:?}",
            w.who
        );
    }
}

/// Makes the documents policy also read `public.gate`, so that a test
/// holding a lock on the gate holds every authorization of a document.
async fn gate_documents(app: &TestApp) {
    app.sql(
        "create table public.gate (open boolean not null);
         insert into public.gate values (true);
         grant select on public.gate to app_user;
         alter policy documents_members on public.documents
           using (tenant_id in (select public.my_tenant_ids())
                  and exists (select 1 from public.gate where open))",
    )
    .await;
}

/// Closes the gate: an open transaction holding it exclusively, on a
/// connection of its own. Roll it back to open the gate.
async fn close_gate(app: &TestApp) -> Client {
    let holder = connect(&app.admin_url).await;
    holder
        .batch_execute("begin; lock table public.gate in access exclusive mode")
        .await
        .unwrap();
    holder
}

/// Waits (bounded) until the listener has derived the route of the new
/// subscriber (ahead of its first event, while idle): deriving it reads the
/// policy, which a closed gate would hold, and the listener with it.
async fn wait_until_routed(app: &TestApp) {
    let mut ahead = app.app.state().hub.keys_ahead();
    let routed = tokio::time::timeout(WAIT, ahead.wait_for(|n| *n >= 1)).await;
    assert!(routed.is_ok(), "the subscriber's route was not derived");
}

/// Updates `document`'s title as one transaction, and waits (bounded) until
/// the listener has begun the batch holding it: its snapshots are taken, and
/// its dispatch is what the gate holds. (Waits for that transaction, not for
/// everything committed so far: the listener's own heartbeat commits too, and
/// a batch after the held one cannot begin.)
async fn update_title_and_wait_until_read(app: &TestApp, document: &str, title: &str) {
    let row = app
        .admin
        .query_one(
            "update documents set title = $1 where id = $2::text::uuid
             returning pg_current_xact_id()::text",
            &[&title, &document],
        )
        .await
        .unwrap();
    let xid: u64 = row.get::<_, &str>(0).parse().unwrap();
    tokio::time::timeout(WAIT, app.app.state().hub.wait_until(|p| p.sees(xid)))
        .await
        .expect("the listener reads the batch");
}

#[tokio::test]
async fn a_member_removed_while_dispatch_is_held_back_still_receives_what_was_committed_while_she_was_a_member()
 {
    let (app, acme, globex) = acme_and_globex().await;
    gate_documents(&app).await;
    let alice = app.user("alice@acme.test", &[&acme, &globex]).await;
    let plan = insert_document(&app, &acme, "plan").await;
    app.wait_until_read_so_far().await;
    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;
    wait_until_routed(&app).await;

    let gate = close_gate(&app).await;
    update_title_and_wait_until_read(&app, &plan, "plan-v2").await;
    // Revoked after the batch was read, before it is authorized.
    app.sql(&format!(
        "delete from memberships where tenant_id = '{acme}' and user_id = '{alice}'"
    ))
    .await;
    gate.batch_execute("rollback").await.unwrap();
    insert_document(&app, &globex, "sentinel").await;

    let got = a
        .events_until("c", |c| c["row"]["title"] == "sentinel")
        .await;
    assert_eq!(
        summary(&got),
        vec![
            s("UPDATE", Some("plan-v2"), Some("plan")),
            s("INSERT", Some("sentinel"), None),
        ],
        "alice was a member from before the update to after it: {got:?}"
    );
}

#[tokio::test]
async fn a_user_added_while_dispatch_is_held_back_does_not_receive_what_was_committed_before() {
    let (app, acme, _) = acme_and_globex().await;
    gate_documents(&app).await;
    let nora = app.user("nora@nowhere.test", &[]).await;
    let plan = insert_document(&app, &acme, "plan").await;
    app.wait_until_read_so_far().await;
    let mut n = watch(&app, &nora, "nora", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;
    wait_until_routed(&app).await;

    let gate = close_gate(&app).await;
    update_title_and_wait_until_read(&app, &plan, "plan-v2").await;
    // Granted after the batch was read, before it is authorized.
    app.sql(&format!(
        "insert into memberships (tenant_id, user_id) values ('{acme}', '{nora}')"
    ))
    .await;
    gate.batch_execute("rollback").await.unwrap();
    insert_document(&app, &acme, "sentinel").await;

    let got = n.events("c", 1).await;
    assert_eq!(
        summary(&got),
        vec![s("INSERT", Some("sentinel"), None)],
        "nora joined after the update's batch was read: {got:?}"
    );
}

#[tokio::test]
async fn killed_snapshot_holders_cost_a_fallback_never_a_change() {
    const FALLBACKS: &str = "pgherald_authorizer_snapshot_fallbacks_total";
    let (app, acme, _) = acme_and_globex().await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let mut a = watch(&app, &alice, "alice", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(1).await;
    let plan = insert_document(&app, &acme, "plan").await;
    assert_eq!(
        summary(&a.events("c", 1).await),
        [s("INSERT", Some("plan"), None)]
    );
    assert_eq!(app.metric(FALLBACKS).await, 0);

    // Kill every connection holding this instance's snapshots (the held
    // batch start among them), and wait until their backends are gone.
    app.sql(
        "do $$ declare
           holders int;
         begin
           perform pg_terminate_backend(pid) from pg_stat_activity
             where application_name = 'pgherald-snapshots' and datname = current_database();
           for i in 1..1000 loop
             perform pg_stat_clear_snapshot();
             select count(*) into holders from pg_stat_activity
              where application_name = 'pgherald-snapshots' and datname = current_database();
             exit when holders = 0;
             perform pg_sleep(0.01);
           end loop;
           if holders > 0 then raise exception 'the holders did not go'; end if;
         end $$",
    )
    .await;
    // An old image (judged now, for want of the batch's start), then more.
    app.sql(&format!(
        "update documents set title = 'plan-v2' where id = '{plan}'"
    ))
    .await;
    insert_document(&app, &acme, "after").await;
    assert_eq!(
        summary(&a.events("c", 2).await),
        [
            s("UPDATE", Some("plan-v2"), Some("plan")),
            s("INSERT", Some("after"), None),
        ],
        "nothing lost"
    );
    assert!(app.metric(FALLBACKS).await >= 1, "the fallback is counted");
    // Held again: a later change is judged at its moments, no fallback.
    let counted = app.metric(FALLBACKS).await;
    app.sql(&format!("delete from documents where id = '{plan}'"))
        .await;
    assert_eq!(
        summary(&a.events("c", 1).await),
        [s("DELETE", None, Some("plan-v2"))]
    );
    assert_eq!(app.metric(FALLBACKS).await, counted);
}
