//! Subscriptions the server must refuse: an unknown or untracked table, an
//! unknown filter column or operator. Each is a GraphQL error naming the
//! culprit, and the connection keeps working.

use serde_json::{Value, json};

use super::acme;
use crate::helpers::{Protocol, Subscriber, insert_document};

/// The messages of `errors`, joined (for `contains` assertions).
fn messages(errors: &[Value]) -> String {
    errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

over_both_protocols!(
    an_unknown_or_untracked_table_is_a_graphql_error_naming_it_and_the_connection_keeps_working,
    an_unknown_filter_column_or_operator_is_a_graphql_error_naming_it_and_the_connection_keeps_working,
);

async fn an_unknown_or_untracked_table_is_a_graphql_error_naming_it_and_the_connection_keeps_working(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    // A real table the caller may read, but not tracked.
    app.sql(
        "create table public.scratch (id int primary key);
         grant select on public.scratch to app_user;",
    )
    .await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;

    c.changes("missing", "no_such_table", Value::Null, Value::Null)
        .await;
    let errors = c.operation_error("missing").await;
    assert!(
        messages(&errors).contains("no_such_table"),
        "the error must name the table: {errors:?}"
    );

    c.changes("untracked", "public.scratch", Value::Null, Value::Null)
        .await;
    let errors = c.operation_error("untracked").await;
    assert!(
        messages(&errors).contains("scratch"),
        "the error must name the table: {errors:?}"
    );

    // The connection is still open, and a subscription on it works.
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;
    insert_document(&app, &acme, "still here").await;
    let change = c.next_event("docs").await;
    assert_eq!(change["row"]["title"], "still here", "{change}");
}

async fn an_unknown_filter_column_or_operator_is_a_graphql_error_naming_it_and_the_connection_keeps_working(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;

    c.changes(
        "column",
        "documents",
        Value::Null,
        json!({"no_such_column": {"eq": 1}}),
    )
    .await;
    let errors = c.operation_error("column").await;
    assert!(
        messages(&errors).contains("no_such_column"),
        "the error must name the column: {errors:?}"
    );

    c.changes(
        "operator",
        "documents",
        Value::Null,
        json!({"title": {"regex": "x"}}),
    )
    .await;
    let errors = c.operation_error("operator").await;
    assert!(
        messages(&errors).contains("regex"),
        "the error must name the operator: {errors:?}"
    );

    // Through the string-literal form too; SQL never sees the column name.
    c.start(
        "literal",
        r#"subscription { changes(table: "documents", filter: "{\"title; drop table documents\": {\"eq\": 1}}") { op } }"#,
        json!({}),
    )
    .await;
    let errors = c.operation_error("literal").await;
    assert!(
        messages(&errors).contains("drop table documents"),
        "the error must name the column: {errors:?}"
    );

    // No subscription was left behind; the connection still works.
    c.changes(
        "docs",
        "documents",
        Value::Null,
        json!({"title": {"eq": "ok"}}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    insert_document(&app, &acme, "ok").await;
    let change = c.next_event("docs").await;
    assert_eq!(change["row"]["title"], "ok", "{change}");
}
