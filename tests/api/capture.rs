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
async fn a_subscriber_whose_queue_overflows_gets_an_exact_prefix_then_a_slow_consumer_error() {
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

    // One batch far larger than the queue.
    app.sql(&format!(
        "insert into documents (tenant_id, title) select '{tenant}', 'doc ' || g from generate_series(1, 500) g"
    ))
    .await;
    let mut titles = Vec::new();
    let error = loop {
        let msg = ws.next_json().await;
        match msg["type"].as_str() {
            Some("next") => titles.push(
                msg["payload"]["data"]["changes"]["row"]["title"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a next without a row: {msg}"))
                    .to_owned(),
            ),
            Some("error") => break msg,
            _ => panic!("unexpected {msg}"),
        }
    };
    assert_eq!(error["id"], "docs");
    assert_eq!(
        error["payload"][0]["extensions"]["code"], "SLOW_CONSUMER",
        "{error}"
    );
    assert!(
        !titles.is_empty() && titles.len() <= 16,
        "{} delivered",
        titles.len()
    );
    let expected: Vec<String> = (1..=titles.len()).map(|g| format!("doc {g}")).collect();
    assert_eq!(
        titles, expected,
        "what was delivered is an exact prefix: nothing skipped"
    );
    app.wait_for_subscriptions(0).await;

    // The connection is fine; a new subscription works.
    ws.subscribe(
        "again",
        "subscription { changes(table: \"documents\", ops: [INSERT]) { row } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    app.sql(&format!(
        "insert into documents (tenant_id, title) values ('{tenant}', 'after')"
    ))
    .await;
    let msg = ws.next_data().await;
    assert_eq!(msg["id"], "again");
    assert_eq!(msg["payload"]["data"]["changes"]["row"]["title"], "after");
}
