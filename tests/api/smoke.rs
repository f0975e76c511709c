//! The shortest path through the system.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_inserted_notification_reaches_its_recipient_over_graphql_transport_ws() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;

    let mut ws = app.transport_as(&alice).await;
    ws.subscribe(
        "1",
        "subscription { notifications(ops: [INSERT]) { op row { title user_id } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;

    app.sql(&format!(
        "insert into notifications (tenant_id, user_id, kind, title) values ('{acme}', '{alice}', 'x', 'hi')"
    ))
    .await;
    let msg = ws.next_data().await;
    assert_eq!(msg["id"], "1");
    assert_eq!(
        msg["payload"]["data"]["notifications"],
        json!({"op": "INSERT", "row": {"title": "hi", "user_id": alice}})
    );
}
