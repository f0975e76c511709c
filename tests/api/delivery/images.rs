//! The row images and operations `changes` delivers for inserts, updates and
//! deletes, and every column of a new notification the typed `notifications`
//! subscription delivers.

use serde_json::{Value, json};

use super::acme;
use crate::helpers::{NOTIFICATIONS, Protocol, Subscriber, document_image, insert_document};

over_both_protocols!(
    an_insert_made_with_plain_sql_arrives_as_insert_with_the_new_row_and_a_null_old,
    an_update_arrives_with_the_new_row_and_the_previous_version_as_old,
    a_delete_arrives_with_the_previous_version_as_old_and_a_null_row,
    a_notification_inserted_with_plain_sql_reaches_its_recipient_with_every_field,
);

async fn an_insert_made_with_plain_sql_arrives_as_insert_with_the_new_row_and_a_null_old(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "Quarterly plan").await;
    let change = c.next_event("docs").await;
    let image = document_image(&app, &id).await;

    assert_eq!(change["op"], "INSERT", "{change}");
    assert_eq!(change["table"], "public.documents", "{change}");
    assert_eq!(change["row"], image, "row must be the new image: {change}");
    assert_eq!(change["row"]["id"], id.as_str());
    assert_eq!(change["row"]["tenant_id"], acme.as_str());
    assert_eq!(change["row"]["title"], "Quarterly plan");
    assert_eq!(change["old"], Value::Null, "old of an insert: {change}");
    assert!(
        change["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "cursor: {change}"
    );
    let committed_at = change["committedAt"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(committed_at).is_ok(),
        "committedAt must be a date-time: {change}"
    );
}

async fn an_update_arrives_with_the_new_row_and_the_previous_version_as_old(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "Draft").await;
    let inserted = c.next_event("docs").await;
    assert_eq!(inserted["op"], "INSERT", "{inserted}");
    let before = document_image(&app, &id).await;

    app.sql(&format!(
        "update documents set title = 'Final', body = 'signed', updated_at = updated_at + interval '1 hour'
          where id = '{id}'"
    ))
    .await;
    let change = c.next_event("docs").await;
    let after = document_image(&app, &id).await;

    assert_eq!(change["op"], "UPDATE", "{change}");
    assert_eq!(change["table"], "public.documents", "{change}");
    assert_eq!(change["row"], after, "row must be the new image: {change}");
    assert_eq!(
        change["old"], before,
        "old must be the previous image: {change}"
    );
    assert_eq!(change["row"]["title"], "Final");
    assert_eq!(change["old"]["title"], "Draft");
    assert_ne!(
        change["cursor"], inserted["cursor"],
        "each change has its own cursor"
    );
}

async fn a_delete_arrives_with_the_previous_version_as_old_and_a_null_row(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
    // The schema-qualified name works as well as the bare one.
    c.changes("docs", "public.documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "Obsolete").await;
    let inserted = c.next_event("docs").await;
    assert_eq!(inserted["op"], "INSERT", "{inserted}");
    let before = document_image(&app, &id).await;

    app.sql(&format!("delete from documents where id = '{id}'"))
        .await;
    let change = c.next_event("docs").await;

    assert_eq!(change["op"], "DELETE", "{change}");
    assert_eq!(change["table"], "public.documents", "{change}");
    assert_eq!(change["row"], Value::Null, "row of a delete: {change}");
    assert_eq!(
        change["old"], before,
        "old must be the deleted image: {change}"
    );
}

async fn a_notification_inserted_with_plain_sql_reaches_its_recipient_with_every_field(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
    c.start("mine", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;

    let row = app
        .admin
        .query_one(
            "insert into notifications (tenant_id, user_id, kind, title, body, data)
             values ($1::text::uuid, $2::text::uuid, 'mention', 'You were mentioned', 'in Plan', '{\"doc\": 7}')
             returning id::text, to_jsonb(created_at)",
            &[&acme, &alice],
        )
        .await
        .unwrap();
    let id: String = row.get(0);
    let created_at: Value = row.get(1);

    let n = c.next_event("mine").await;
    assert_eq!(n["op"], "INSERT", "{n}");
    let n = &n["row"];
    assert_eq!(n["id"], id.as_str(), "{n}");
    assert_eq!(n["tenant_id"], acme.as_str(), "{n}");
    assert_eq!(n["user_id"], alice.as_str(), "{n}");
    assert_eq!(n["kind"], "mention", "{n}");
    assert_eq!(n["title"], "You were mentioned", "{n}");
    assert_eq!(n["body"], "in Plan", "{n}");
    assert_eq!(n["data"], json!({"doc": 7}), "{n}");
    assert_eq!(n["read_at"], Value::Null, "{n}");
    let sent = chrono::DateTime::parse_from_rfc3339(n["created_at"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("created_at {n}: {e}"));
    let stored = chrono::DateTime::parse_from_rfc3339(created_at.as_str().unwrap()).unwrap();
    assert_eq!(sent, stored, "created_at: {n}");
}
