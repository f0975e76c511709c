//! Resume converges: a client resuming from a cursor gets the current version
//! of each row changed since, read as it may see it now, and key-only
//! removals of rows it had; never a version from before it could read the
//! row, never the key of a row it never had. "Nobody receives it" cases end
//! with a sentinel.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::{Protocol, Subscriber, TestApp, insert_document, s, spawn_app, summary};

/// `changes` on documents, resuming after `$after`, filtered by `$f`.
const RESUME: &str = "subscription($after: String, $f: JSON) {
    changes(table: \"documents\", after: $after, filter: $f) { op table cursor row old } }";

/// A cursor meaning "now" for `user`.
async fn cursor_now(app: &TestApp, user: &str) -> String {
    let state = app.graphql(&app.token(user), "{ cursor }", json!({})).await;
    state["data"]["cursor"].as_str().expect("cursor").to_owned()
}

async fn resume(app: &TestApp, user: &str, cursor: &str, filter: Value) -> Subscriber {
    let mut sub = Subscriber::connect(app, user, user, Protocol::Transport).await;
    sub.start("r", RESUME, json!({"after": cursor, "f": filter}))
        .await;
    sub
}

async fn until_sentinel(sub: &mut Subscriber) -> Vec<Value> {
    sub.events_until("r", |e| e["row"]["title"] == "sentinel")
        .await
}

#[tokio::test]
async fn a_user_who_joined_while_offline_gets_current_rows_not_their_history() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let bob = app.user("bob@example.test", &[]).await;
    let cursor = cursor_now(&app, &bob).await;
    // While Bob is offline and not yet a member, Acme writes and redacts.
    let doc = insert_document(&app, &acme, "draft with secret").await;
    app.sql(&format!(
        "update documents set title = 'redacted' where id = '{doc}';
         update documents set body = 'v3' where id = '{doc}'"
    ))
    .await;
    let doomed = insert_document(&app, &acme, "deleted before bob joined").await;
    app.sql(&format!("delete from documents where id = '{doomed}'"))
        .await;
    app.sql(&format!(
        "insert into memberships (tenant_id, user_id) values ('{acme}', '{bob}')"
    ))
    .await;

    let mut sub = resume(&app, &bob, &cursor, json!({})).await;
    app.wait_for_subscriptions(1).await;
    insert_document(&app, &acme, "sentinel").await;
    let got = until_sentinel(&mut sub).await;
    // One change for the row, at its current version; nothing of the
    // deleted row, nothing of the draft.
    assert_eq!(
        summary(&got),
        [
            s("INSERT", Some("redacted"), None),
            s("INSERT", Some("sentinel"), None)
        ],
        "{got:?}"
    );
    assert_eq!(got[0]["row"]["body"], "v3");
    // Named as live changes name it.
    assert_eq!(got[0]["table"], "public.documents");
    assert_eq!(got[1]["table"], "public.documents");
}

#[tokio::test]
async fn rows_gone_from_the_view_are_removed_by_key_only() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let kept = insert_document(&app, &acme, "in: kept").await;
    let deleted = insert_document(&app, &acme, "in: deleted").await;
    let moved = insert_document(&app, &acme, "in: moved").await;
    let cursor = cursor_now(&app, &alice).await;
    // Offline: one row changes several times, one is deleted, one leaves
    // the filter.
    for title in ["in: kept 2", "in: kept 3"] {
        app.sql(&format!(
            "update documents set title = '{title}' where id = '{kept}'"
        ))
        .await;
    }
    app.sql(&format!(
        "delete from documents where id = '{deleted}';
         update documents set title = 'out: moved' where id = '{moved}'"
    ))
    .await;

    let in_filter = json!({"title": {"like": "in: %"}});
    let mut sub = resume(&app, &alice, &cursor, in_filter).await;
    app.wait_for_subscriptions(1).await;
    insert_document(&app, &acme, "in: x").await;
    insert_document(&app, &acme, "sentinel").await;
    let mut got = sub.events("r", 4).await;
    assert_eq!(
        summary(&got),
        [
            s("UPDATE", Some("in: kept 3"), None),
            s("DELETE", None, None),
            s("UPDATE", None, None),
            s("INSERT", Some("in: x"), None),
        ],
        "{got:?}"
    );
    // Removals carry the primary key and nothing else.
    assert_eq!(got[1]["old"], json!({"id": deleted}));
    assert_eq!(got[2]["old"], json!({"id": moved}));
    assert!(got[0]["old"].is_null(), "no history is handed out");
    // The sentinel does not match the filter: the stream is quiet until the next match.
    insert_document(&app, &acme, "in: y").await;
    got = sub.events("r", 1).await;
    assert_eq!(summary(&got), [s("INSERT", Some("in: y"), None)]);
}

#[tokio::test]
async fn resume_never_reveals_the_keys_of_rows_the_caller_never_had() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let carol = app.user("carol@globex.test", &[&globex]).await;
    let outside = insert_document(&app, &acme, "outside alice's filter").await;
    let secret = insert_document(&app, &acme, "acme only").await;
    let alice_cursor = cursor_now(&app, &alice).await;
    let carol_cursor = cursor_now(&app, &carol).await;
    app.sql(&format!(
        "delete from documents where id in ('{outside}', '{secret}')"
    ))
    .await;
    insert_document(&app, &acme, "acme new").await;

    // Carol never could see Acme's rows; Alice's filter never matched the
    // row outside it.
    let mut carol_sub = resume(&app, &carol, &carol_cursor, json!({})).await;
    let filter = json!({"title": {"in": ["acme only", "sentinel"]}});
    let mut alice_sub = resume(&app, &alice, &alice_cursor, filter).await;
    app.wait_for_subscriptions(2).await;
    insert_document(&app, &globex, "sentinel").await;
    insert_document(&app, &acme, "sentinel").await;
    let carol_got = until_sentinel(&mut carol_sub).await;
    assert_eq!(
        summary(&carol_got),
        [s("INSERT", Some("sentinel"), None)],
        "{carol_got:?}"
    );
    let alice_got = until_sentinel(&mut alice_sub).await;
    assert_eq!(
        summary(&alice_got),
        [s("DELETE", None, None), s("INSERT", Some("sentinel"), None)],
        "{alice_got:?}"
    );
    assert_eq!(alice_got[0]["old"], json!({"id": secret}));
}

#[tokio::test]
async fn resuming_while_writes_continue_loses_and_repeats_nothing() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let cursor = cursor_now(&app, &alice).await;
    const N: usize = 300;
    let (written, mut written_rx) = tokio::sync::watch::channel(0usize);
    let writer = {
        let admin = crate::helpers::connect(&app.admin_url).await;
        let acme = acme.clone();
        tokio::spawn(async move {
            for i in 0..N {
                admin
                    .execute(
                        "insert into documents (tenant_id, title) values ($1::text::uuid, $2)",
                        &[&acme, &format!("doc {i}")],
                    )
                    .await
                    .unwrap();
                written.send_replace(i + 1);
            }
        })
    };
    // Resume while the writer is a third of the way through.
    tokio::time::timeout(crate::helpers::WAIT, written_rx.wait_for(|&n| n >= N / 3))
        .await
        .expect("writer progresses")
        .unwrap();
    let mut sub = resume(&app, &alice, &cursor, json!({})).await;
    let got = sub
        .events_until("r", |e| e["row"]["title"] == format!("doc {}", N - 1))
        .await;
    writer.await.unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for e in &got {
        *seen
            .entry(e["row"]["title"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "delivered twice: {repeated:?}");
    let titles: Vec<String> = got
        .iter()
        .map(|e| e["row"]["title"].as_str().unwrap_or("?").to_owned())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("doc {i}")).collect();
    assert_eq!(titles, expected, "in order, none missing");
}

#[tokio::test]
async fn too_many_rows_changed_since_a_cursor_needs_a_resync() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let cursor = cursor_now(&app, &alice).await;
    app.sql(&format!(
        "insert into documents (tenant_id, title)
           select '{acme}', 'doc ' || g from generate_series(1, 10001) g"
    ))
    .await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start("r", RESUME, json!({"after": cursor, "f": {}}))
        .await;
    let errors = sub.operation_error("r").await;
    assert_eq!(
        errors[0]["extensions"]["code"], "RESYNC_REQUIRED",
        "{errors:?}"
    );
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("10000 rows"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn changes_the_listener_has_not_dispatched_yet_come_once_when_resuming() {
    let app = spawn_app().await;
    // Authorizing a change of gated_items waits for a lock the test holds:
    // the listener stops at a known batch while later changes pile up.
    app.sql(
        "create table public.gated_items (id int primary key);
         create function public.gate() returns boolean language plpgsql as $$
           begin perform pg_advisory_xact_lock_shared(4243); return true; end $$;
         alter table public.gated_items enable row level security;
         create policy gated on public.gated_items for select using (public.gate());
         grant select on public.gated_items to app_user;
         grant execute on function public.gate() to app_user;
         select herald.track('public.gated_items')",
    )
    .await;
    app.wait_for_tracked("gated_items").await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let cursor = cursor_now(&app, &alice).await;
    let mut gated = Subscriber::connect(&app, &alice, "gated", Protocol::Transport).await;
    gated
        .changes("g", "gated_items", json!(null), json!(null))
        .await;
    app.wait_for_subscriptions(1).await;
    app.sql("select pg_advisory_lock(4243); insert into public.gated_items values (1)")
        .await;
    app.wait_for_lock_waiters(4243, 1).await;
    // Committed while the listener is held: the live stream has them ahead.
    for i in 0..5 {
        insert_document(&app, &acme, &format!("doc {i}")).await;
    }

    let mut sub = resume(&app, &alice, &cursor, json!({})).await;
    app.wait_for_subscriptions(2).await;
    app.sql("select pg_advisory_unlock(4243)").await;
    insert_document(&app, &acme, "sentinel").await;
    let got = until_sentinel(&mut sub).await;
    let titles: Vec<&str> = got
        .iter()
        .map(|e| e["row"]["title"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        titles,
        ["doc 0", "doc 1", "doc 2", "doc 3", "doc 4", "sentinel"]
    );
    assert_eq!(gated.events("g", 1).await[0]["op"], "INSERT");
}

#[tokio::test]
async fn resuming_without_select_on_the_primary_key_is_forbidden() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    app.sql(
        "revoke select on documents from app_user;
         grant select (tenant_id, title) on documents to app_user",
    )
    .await;
    let cursor = cursor_now(&app, &alice).await;
    insert_document(&app, &acme, "changed").await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start("r", RESUME, json!({"after": cursor, "f": {}}))
        .await;
    let errors = sub.operation_error("r").await;
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{errors:?}");
}
