//! Capture (triggers, outbox, wake-ups), migrations, and the bounded
//! per-subscription queue.

use futures::StreamExt;
use serde_json::json;
use tokio_postgres::AsyncMessage;

use crate::helpers::{WsClient, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_transaction_sends_one_wake_up_however_many_rows_it_writes() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;

    let (listener, mut connection) = tokio_postgres::connect(&app.admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN herald").await.unwrap();

    app.sql(&format!(
        "begin;
         insert into documents (tenant_id, title) select '{tenant}', 'doc ' || g from generate_series(1, 50) g;
         update documents set body = 'x';
         delete from documents where title = 'doc 7';
         commit;"
    ))
    .await;
    app.sql(&format!(
        "insert into documents (tenant_id, title) values ('{tenant}', 'one more')"
    ))
    .await;
    // Notifications arrive in commit order: everything before the marker is ours.
    app.sql("notify herald, 'marker'").await;
    let mut wake_ups = Vec::new();
    loop {
        let payload = tokio::time::timeout(crate::helpers::WAIT, notifications.recv())
            .await
            .expect("notifications within the timeout")
            .expect("listener connection open");
        if payload == "marker" {
            break;
        }
        wake_ups.push(payload);
    }
    assert_eq!(wake_ups, ["", ""], "one wake-up per writing transaction");
    let events: i64 = app
        .admin
        .query_one(
            "select count(*) from herald.events where table_name = 'public.documents'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 50 + 50 + 1 + 1, "one outbox row per changed row");
}

#[tokio::test]
async fn track_is_idempotent_untrack_stops_capture_and_a_table_without_a_key_is_refused() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let count = |sql: &'static str| {
        let admin = &app.admin;
        async move { admin.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    app.sql("select herald.track('public.documents'); select herald.track('documents')")
        .await;
    assert_eq!(
        count("select count(*) from pg_trigger where tgrelid = 'public.documents'::regclass and tgname = 'herald_capture'").await,
        1
    );

    app.sql("select herald.untrack('public.documents')").await;
    let before = count("select count(*) from herald.events").await;
    app.sql(&format!(
        "insert into documents (tenant_id, title) values ('{tenant}', 'untracked')"
    ))
    .await;
    assert_eq!(count("select count(*) from herald.events").await, before);
    let tracked = count("select count(*) from herald.tracked where table_name = 'documents'").await;
    assert_eq!(tracked, 0);

    app.sql("create table public.keyless (a int)").await;
    let err = app
        .admin
        .batch_execute("select herald.track('public.keyless')")
        .await
        .expect_err("a table without a primary key is refused");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("has no primary key"),
        "{err:?}"
    );
}

#[tokio::test]
async fn migrating_an_up_to_date_database_again_applies_nothing() {
    let app = spawn_app().await;
    let applied = pgherald::db::migrate::run(&app.admin_url, None, None, true)
        .await
        .expect("migrate runs");
    assert_eq!(applied, 0);
}

#[tokio::test]
async fn a_transaction_far_larger_than_a_subscribers_queue_reaches_it_whole_while_it_reads() {
    let app = spawn_app_with(|c| c.limits.subscription_queue = 16).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(&app.token(&alice)).await;
    ws.subscribe(
        "docs",
        "subscription { changes(table: \"documents\", ops: [INSERT]) { row } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;

    // One transaction of 2500 rows (three pages) for a queue of 16: the
    // listener waits while the subscriber reads, instead of ending it.
    let rows = 2500;
    app.sql(&format!(
        "insert into documents (tenant_id, title) select '{tenant}', 'doc ' || g from generate_series(1, {rows}) g"
    ))
    .await;
    let mut titles = Vec::new();
    while titles.len() < rows {
        let msg = ws.next_json().await;
        assert_eq!(msg["type"], "next", "{msg}");
        titles.push(
            msg["payload"]["data"]["changes"]["row"]["title"]
                .as_str()
                .unwrap_or_else(|| panic!("a next without a row: {msg}"))
                .to_owned(),
        );
    }
    let expected: Vec<String> = (1..=rows).map(|g| format!("doc {g}")).collect();
    assert_eq!(titles, expected, "every row once, in order");
    assert_eq!(app.metric("pgherald_slow_consumers_total").await, 0);
}
