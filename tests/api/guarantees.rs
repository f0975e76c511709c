//! The delivery guarantees, each attacked where a plausible bug would break
//! it: resume checks RLS, table and filter; batches larger than a page are
//! read whole; a transaction open across batches is not lost; a prune does not
//! refuse recent cursors; filter and visibility judge the same row version.
//! "Nobody else receives it" cases end with a sentinel everyone receives.

use serde_json::{Value, json};

use crate::helpers::{Protocol, Subscriber, TestApp, spawn_app, titles};

/// `changes` on `table` with the cursor field, resuming `after` if given.
const RESUME: &str = "subscription($t: String!, $after: String, $f: JSON) {
    changes(table: $t, after: $after, filter: $f) { op cursor row old } }";

async fn acme_and_globex(app: &TestApp) -> (String, String, String, String) {
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let carol = app.user("carol@globex.test", &[&globex]).await;
    (acme, globex, alice, carol)
}

#[tokio::test]
async fn resume_delivers_only_what_the_callers_rls_table_and_filter_allow() {
    let app = spawn_app().await;
    let (acme, globex, alice, carol) = acme_and_globex(&app).await;
    // Take a cursor, go offline, and let all kinds of rows change.
    let state = app
        .graphql(&app.token(&alice), "{ cursor }", json!({}))
        .await;
    let cursor = state["data"]["cursor"].as_str().unwrap().to_owned();
    app.sql(&format!(
        "insert into documents (tenant_id, title) values
           ('{acme}', 'acme keep'), ('{globex}', 'globex secret'), ('{acme}', 'acme skip');
         insert into notifications (tenant_id, user_id, title) values
           ('{globex}', '{carol}', 'carol note'), ('{acme}', '{alice}', 'other table keep')"
    ))
    .await;
    // Resume on documents with a filter: only Acme's (RLS), only documents
    // (table), only titles matching (filter).
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start(
        "r",
        RESUME,
        json!({"t": "documents", "after": cursor, "f": {"title": {"like": "%keep%"}}}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    crate::helpers::insert_document(&app, &acme, "sentinel keep").await;
    let got = sub.events("r", 2).await;
    assert_eq!(titles(&got), ["acme keep", "sentinel keep"]);
}

/// Attacks the table check of resume's list of changed rows
/// (`herald.changed_rows`): a notification of Alice's, deleted while she
/// was offline, has an image that passes the documents policy (its tenant is
/// Acme) and the filter (its title). Were other tables' changes listed, she
/// would get a documents `DELETE` whose key is the notification's.
#[tokio::test]
async fn resume_never_removes_rows_of_another_table() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = acme_and_globex(&app).await;
    app.notify(&acme, &alice, "info", "note keep").await;
    let state = app
        .graphql(&app.token(&alice), "{ cursor }", json!({}))
        .await;
    let cursor = state["data"]["cursor"].as_str().unwrap().to_owned();
    app.sql("delete from notifications where title = 'note keep'")
        .await;

    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start(
        "r",
        RESUME,
        json!({"t": "documents", "after": cursor, "f": {"title": {"like": "%keep%"}}}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    crate::helpers::insert_document(&app, &acme, "sentinel keep").await;
    let got = sub.events("r", 1).await;
    assert_eq!(got[0]["op"], "INSERT", "{got:?}");
    assert_eq!(got[0]["row"]["title"], "sentinel keep", "{got:?}");
}

#[tokio::test]
async fn a_transaction_larger_than_a_page_is_delivered_whole_live_and_on_resume() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = acme_and_globex(&app).await;
    let state = app
        .graphql(&app.token(&alice), "{ cursor }", json!({}))
        .await;
    let cursor = state["data"]["cursor"].as_str().unwrap().to_owned();
    let mut live = Subscriber::connect(&app, &alice, "live", Protocol::Transport).await;
    live.start("l", RESUME, json!({"t": "documents"})).await;
    app.wait_for_subscriptions(1).await;
    // 2500 rows in one transaction: three pages of the outbox reader.
    app.sql(&format!(
        "insert into documents (tenant_id, title)
           select '{acme}', 'doc ' || g from generate_series(1, 2500) g"
    ))
    .await;
    let got = live.events("l", 2500).await;
    assert_eq!(titles(&got).last().unwrap(), "doc 2500");

    let mut resumed = Subscriber::connect(&app, &alice, "resumed", Protocol::Transport).await;
    resumed
        .start("r", RESUME, json!({"t": "documents", "after": cursor}))
        .await;
    let got = resumed.events("r", 2500).await;
    let expected: Vec<String> = (1..=2500).map(|i| format!("doc {i}")).collect();
    assert_eq!(titles(&got), expected);
}

#[tokio::test]
async fn a_transaction_open_across_batches_is_delivered_when_it_commits() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = acme_and_globex(&app).await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start("d", RESUME, json!({"t": "documents"})).await;
    app.wait_for_subscriptions(1).await;

    // A long transaction writes first and commits last.
    let long = crate::helpers::connect(&app.admin_url).await;
    long.batch_execute(&format!(
        "begin; insert into documents (tenant_id, title) values ('{acme}', 'long')"
    ))
    .await
    .unwrap();
    // Later transactions commit meanwhile and are delivered (no head-of-line blocking).
    crate::helpers::insert_document(&app, &acme, "short 1").await;
    assert_eq!(titles(&sub.events("d", 1).await), ["short 1"]);
    crate::helpers::insert_document(&app, &acme, "short 2").await;
    assert_eq!(titles(&sub.events("d", 1).await), ["short 2"]);
    long.batch_execute("commit").await.unwrap();
    crate::helpers::insert_document(&app, &acme, "after").await;
    assert_eq!(titles(&sub.events("d", 2).await), ["long", "after"]);
}

#[tokio::test]
async fn pruning_old_events_does_not_refuse_a_recent_cursor() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = acme_and_globex(&app).await;
    // Any transaction running in the cluster holds back every snapshot's
    // xmin: the retention check must not mistake that for an old cursor.
    let holder = crate::helpers::connect(&app.admin_url).await;
    holder
        .batch_execute("begin; select pg_current_xact_id()")
        .await
        .unwrap();
    crate::helpers::insert_document(&app, &acme, "old").await;
    app.sql("select herald.prune('0 seconds')").await;
    let state = app
        .graphql(&app.token(&alice), "{ cursor }", json!({}))
        .await;
    let cursor = state["data"]["cursor"].as_str().unwrap().to_owned();
    crate::helpers::insert_document(&app, &acme, "missed").await;
    app.sql("select herald.prune('1 hour')").await;

    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start("r", RESUME, json!({"t": "documents", "after": cursor}))
        .await;
    assert_eq!(titles(&sub.events("r", 1).await), ["missed"]);
    holder.batch_execute("rollback").await.unwrap();
}

#[tokio::test]
async fn filter_and_visibility_judge_the_same_row_version() {
    let app = spawn_app().await;
    let (acme, globex, alice, _) = acme_and_globex(&app).await;
    let doc = crate::helpers::insert_document(&app, &globex, "secret plan").await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    // Alice filters on a title only the invisible (Globex) version has.
    sub.start(
        "f",
        RESUME,
        json!({"t": "documents", "f": {"title": {"eq": "secret plan"}}}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    // The row moves to Acme (visible to Alice) and is renamed in the same
    // update: the new version is visible but does not match; the old matches
    // but was invisible. Alice must get nothing of it.
    app.sql(&format!(
        "update documents set tenant_id = '{acme}', title = 'renamed' where id = '{doc}'"
    ))
    .await;
    crate::helpers::insert_document(&app, &acme, "secret plan").await;
    let got = sub.events("f", 1).await;
    assert_eq!(got[0]["op"], "INSERT", "{got:?}");
    assert_eq!(got[0]["row"]["title"], "secret plan");
    assert_eq!(got[0]["old"], Value::Null);
}
