//! Column privileges: a row image carries only the columns the subscriber
//! may select.

use std::collections::BTreeSet;

use super::watch;
use crate::helpers::{Protocol, s, spawn_app, summary};

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
        summary(&got),
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

/// A filter was allowed when its subscription started; once its column is
/// revoked, delivering or not would reveal the hidden value (and `lt`/`gt`
/// bisect it), so the subscription ends. Subscriptions that do not filter on
/// the column keep running.
#[tokio::test]
async fn a_filter_on_a_column_revoked_while_it_runs_ends_its_subscription() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let mut on_body =
        crate::helpers::Subscriber::connect(&app, &alice, "body", Protocol::Transport).await;
    on_body
        .changes(
            "b",
            "documents",
            serde_json::json!(null),
            serde_json::json!({"body": {"lt": "m"}}),
        )
        .await;
    let mut plain = watch(&app, &alice, "plain", "documents", Protocol::Transport).await;
    app.wait_for_subscriptions(2).await;
    app.sql(
        "revoke select on public.documents from app_user;
         grant select (id, tenant_id, title, updated_at) on public.documents to app_user",
    )
    .await;
    let errors = on_body.operation_error("b").await;
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{errors:?}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("may no longer select"),
        "{errors:?}"
    );
    app.wait_for_subscriptions(1).await;
    crate::helpers::insert_document(&app, &acme, "sentinel").await;
    let got = plain.events("c", 1).await;
    assert_eq!(summary(&got), [s("INSERT", Some("sentinel"), None)]);
}
