//! GraphQL over HTTP, under the caller's RLS, and the operational endpoints.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn two_tenants(app: &TestApp) -> (String, String, String, String) {
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let carol = app.user("carol@globex.test", &[&globex]).await;
    (acme, globex, alice, carol)
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {response}"))
}

#[tokio::test]
async fn queries_over_http_see_only_what_the_callers_policies_allow() {
    let app = spawn_app().await;
    let (acme, globex, alice, carol) = two_tenants(&app).await;
    app.sql(&format!(
        "insert into documents (tenant_id, title) values ('{acme}', 'acme doc'), ('{globex}', 'globex doc');
         insert into notifications (tenant_id, user_id, title) values ('{acme}', '{alice}', 'for alice'), ('{globex}', '{carol}', 'for carol');"
    ))
    .await;
    let r = app
        .graphql(
            &app.token(&alice),
            "{ me { email } documents { title } notifications { title } tenants { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"],
        json!({
            "me": {"email": "alice@acme.test"},
            "documents": [{"title": "acme doc"}],
            "notifications": [{"title": "for alice"}],
            "tenants": [{"name": "Acme"}],
        }),
        "{r}"
    );
    // GET works too.
    let url = format!(
        "{}/graphql?query=%7B%20documents%20%7B%20title%20%7D%20%7D",
        app.http_url
    );
    let r: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(app.token(&carol))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["data"]["documents"],
        json!([{"title": "globex doc"}]),
        "{r}"
    );
}

#[tokio::test]
async fn mutations_run_under_the_callers_rls_and_cannot_touch_other_tenants_rows() {
    let app = spawn_app().await;
    let (acme, globex, alice, carol) = two_tenants(&app).await;
    let alice_token = app.token(&alice);

    let created = app
        .graphql(
            &alice_token,
            "mutation($t: String!) { createDocument(tenantId: $t, title: \"plan\") { id tenantId title } }",
            json!({"t": acme}),
        )
        .await;
    let doc = created["data"]["createDocument"]["id"]
        .as_str()
        .expect("created")
        .to_owned();

    // Into another tenant: refused by the policy's WITH CHECK.
    let r = app
        .graphql(
            &alice_token,
            "mutation($t: String!) { createDocument(tenantId: $t, title: \"sneaky\") { id } }",
            json!({"t": globex}),
        )
        .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");

    // Carol can neither see, update nor delete Alice's tenant's document.
    let carol_token = app.token(&carol);
    for mutation in [
        "mutation($id: String!) { updateDocument(id: $id, title: \"pwned\") { id } }",
        "mutation($id: String!) { deleteDocument(id: $id) }",
    ] {
        let r = app
            .graphql(&carol_token, mutation, json!({"id": doc}))
            .await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
    }
    let title: String = app
        .admin
        .query_one(
            "select title from documents where id = $1::text::uuid",
            &[&doc],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "plan");

    // Alice updates and deletes it.
    let r = app
        .graphql(
            &alice_token,
            "mutation($id: String!) { updateDocument(id: $id, body: \"v2\") { title body } }",
            json!({"id": doc}),
        )
        .await;
    assert_eq!(
        r["data"]["updateDocument"],
        json!({"title": "plan", "body": "v2"}),
        "{r}"
    );
    let r = app
        .graphql(
            &alice_token,
            "mutation($id: String!) { deleteDocument(id: $id) }",
            json!({"id": doc}),
        )
        .await;
    assert_eq!(r["data"]["deleteDocument"], json!(doc), "{r}");

    // Notifications: only the recipient can mark one read.
    app.notify(&globex, &carol, "info", "for carol").await;
    let id: String = app
        .admin
        .query_one(
            "select id::text from notifications where title = 'for carol'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mark = "mutation($id: String!) { markNotificationRead(id: $id) { readAt } }";
    let r = app.graphql(&alice_token, mark, json!({"id": id})).await;
    assert_eq!(code(&r), "NOT_FOUND", "{r}");
    let r = app.graphql(&carol_token, mark, json!({"id": id})).await;
    assert!(
        r["data"]["markNotificationRead"]["readAt"].is_string(),
        "{r}"
    );

    // Malformed ids are input errors, not internal ones.
    let r = app
        .graphql(&carol_token, mark, json!({"id": "not-a-uuid"}))
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_and_unknown_paths_404() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let url = format!("{}/graphql", app.http_url);
    let body = json!({"query": "{ cursor }"});

    let r = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(&url)
        .bearer_auth("garbage")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .get(format!("{}/nope", app.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn health_readiness_metrics_graphiql_and_the_demo_page_are_served() {
    let app = spawn_app().await;
    let get = |path: &str| reqwest::get(format!("{}{path}", app.http_url));

    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"database": true, "listener": true})
    );

    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("pgherald_listener_connected 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pgherald_subscriptions 0"), "{metrics}");

    let graphiql = get("/graphiql").await.unwrap().text().await.unwrap();
    assert!(graphiql.to_lowercase().contains("graphiql"));
    let index = get("/").await.unwrap().text().await.unwrap();
    assert!(index.contains("graphql-transport-ws"));
}

#[tokio::test]
async fn readyz_is_unready_while_the_listener_is_down() {
    let app = spawn_app().await;
    // Keep the listener out: forbid new connections of the login role to this
    // database, then kill its listener backend.
    app.sql("select 1").await;
    let db: String = app
        .admin
        .query_one("select current_database()", &[])
        .await
        .unwrap()
        .get(0);
    app.sql(&format!("revoke connect on database \"{db}\" from public"))
        .await;
    app.sql(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where application_name = 'pgherald-listener' and datname = current_database()",
    )
    .await;
    app.wait_until("listener down", |t| !t.app.state().listener.is_connected())
        .await;
    let ready = reqwest::get(format!("{}/readyz", app.http_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    app.sql(&format!("grant connect on database \"{db}\" to public"))
        .await;
    app.wait_until("listener back", |t| t.app.state().listener.is_connected())
        .await;
    let ready = reqwest::get(format!("{}/readyz", app.http_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
