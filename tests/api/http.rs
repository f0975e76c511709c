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

/// `count` pages of `field` read as `token` with `args` (GraphQL argument
/// text, without `first`/`after`) and `first` rows per page, following
/// `endCursor`; returns the `title`s in order. Checks on every page that
/// `hasNextPage` holds exactly when `endCursor` is set and a page is full.
async fn titles_paged(
    app: &TestApp,
    token: &str,
    field: &str,
    args: &str,
    first: usize,
) -> Vec<String> {
    let query = format!(
        "query($after: String) {{ {field}({args} first: {first}, after: $after) {{
            rows {{ title }} endCursor hasNextPage
        }} }}"
    );
    let mut titles = Vec::new();
    let mut after = Value::Null;
    for _ in 0..100 {
        let r = app.graphql(token, &query, json!({"after": after})).await;
        assert!(r["errors"].is_null(), "{query}: {r}");
        let page = &r["data"][field];
        let rows = page["rows"].as_array().unwrap_or_else(|| panic!("{r}"));
        titles.extend(
            rows.iter()
                .map(|row| row["title"].as_str().unwrap().to_owned()),
        );
        let more = page["hasNextPage"]
            .as_bool()
            .unwrap_or_else(|| panic!("{r}"));
        assert_eq!(
            more,
            page["endCursor"].is_string(),
            "{args} first {first}: {r}"
        );
        if !more {
            return titles;
        }
        assert_eq!(
            rows.len(),
            first,
            "a page before the last must be full: {r}"
        );
        after = page["endCursor"].clone();
    }
    panic!("{args} first {first}: more than 100 pages");
}

#[tokio::test]
async fn queries_over_http_see_only_what_the_callers_policies_allow() {
    let app = spawn_app().await;
    let (acme, globex, alice, carol) = two_tenants(&app).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    app.sql(&format!(
        "insert into documents (tenant_id, title) values ('{acme}', 'acme doc'), ('{globex}', 'globex doc');
         insert into notifications (tenant_id, user_id, title) values
           ('{acme}', '{alice}', 'for alice'), ('{acme}', '{bob}', 'for bob'),
           ('{globex}', '{carol}', 'for carol');"
    ))
    .await;
    let r = app
        .graphql(
            &app.token(&alice),
            "{ users(orderBy: [{email: ASC}]) { rows { email } }
               documents { rows { title } }
               notifications { rows { title user_id } }
               tenants { rows { name } }
               memberships(orderBy: [{user_id: ASC}]) { rows { tenant_id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"],
        json!({
            // Herself and her colleague, not carol of Globex.
            "users": {"rows": [{"email": "alice@acme.test"}, {"email": "bob@acme.test"}]},
            "documents": {"rows": [{"title": "acme doc"}]},
            // Not her colleague bob's, though he is in her tenant.
            "notifications": {"rows": [{"title": "for alice", "user_id": alice}]},
            "tenants": {"rows": [{"name": "Acme"}]},
            "memberships": {"rows": [{"tenant_id": acme}, {"tenant_id": acme}]},
        }),
        "{r}"
    );
    // GET works too.
    let r: Value = reqwest::Client::new()
        .get(format!("{}/graphql", app.http_url))
        .query(&[(
            "query",
            "{ documents { rows { title } } notifications { rows { title } } }",
        )])
        .bearer_auth(app.token(&carol))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["data"],
        json!({
            "documents": {"rows": [{"title": "globex doc"}]},
            "notifications": {"rows": [{"title": "for carol"}]},
        }),
        "{r}"
    );
}

#[tokio::test]
async fn query_fields_page_through_exactly_the_callers_rows_in_the_requested_order() {
    let app = spawn_app().await;
    let (acme, globex, alice, carol) = two_tenants(&app).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let mia = app.user("mia@both.test", &[&acme, &globex]).await;
    // Alice's six notifications, three of them read (two at the same time),
    // interleaved with bob's, which she must never see.
    for (user, title, read_at) in [
        (&alice, "t1", None),
        (&bob, "b1", None),
        (&alice, "t2", Some("2024-01-01 10:00+00")),
        (&alice, "t3", Some("2024-01-01 10:00+00")),
        (&bob, "b2", Some("2024-01-01 10:30+00")),
        (&alice, "t4", None),
        (&alice, "t5", Some("2024-01-01 11:00+00")),
        (&alice, "t6", None),
    ] {
        let read_at = read_at.map_or("null".to_owned(), |t| format!("'{t}'"));
        app.sql(&format!(
            "insert into notifications (tenant_id, user_id, title, read_at)
             values ('{acme}', '{user}', '{title}', {read_at})"
        ))
        .await;
    }
    let alice_token = app.token(&alice);
    // Descending puts nulls first, ascending last; later keys break ties.
    let orders = [
        (
            "orderBy: [{read_at: DESC}, {title: ASC}]",
            ["t1", "t4", "t6", "t5", "t2", "t3"],
        ),
        (
            "orderBy: [{read_at: ASC}, {title: DESC}]",
            ["t3", "t2", "t5", "t6", "t4", "t1"],
        ),
        (
            "orderBy: [{title: DESC}]",
            ["t6", "t5", "t4", "t3", "t2", "t1"],
        ),
    ];
    for (args, expected) in orders {
        for first in [1, 2, 4, 5, 6, 7] {
            let got = titles_paged(&app, &alice_token, "notifications", args, first).await;
            assert_eq!(got, expected, "{args}, first: {first}");
        }
    }

    // Documents: only those of the caller's tenants, whatever the page size.
    for n in 0..5 {
        app.sql(&format!(
            "insert into documents (tenant_id, title) values ('{acme}', 'a{n}'), ('{globex}', 'g{n}')"
        ))
        .await;
    }
    let by_title = "orderBy: [{title: ASC}]";
    for first in [1, 3, 10] {
        assert_eq!(
            titles_paged(&app, &alice_token, "documents", by_title, first).await,
            ["a0", "a1", "a2", "a3", "a4"]
        );
        assert_eq!(
            titles_paged(&app, &app.token(&carol), "documents", by_title, first).await,
            ["g0", "g1", "g2", "g3", "g4"]
        );
        assert_eq!(
            titles_paged(&app, &app.token(&mia), "documents", by_title, first).await,
            ["a0", "a1", "a2", "a3", "a4", "g0", "g1", "g2", "g3", "g4"]
        );
    }
    // Without orderBy the primary key orders the rows, and pages still
    // partition them.
    let mut all = titles_paged(&app, &app.token(&mia), "documents", "", 3).await;
    all.sort();
    assert_eq!(
        all,
        ["a0", "a1", "a2", "a3", "a4", "g0", "g1", "g2", "g3", "g4"]
    );
}

#[tokio::test]
async fn bad_page_arguments_are_input_errors() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = two_tenants(&app).await;
    for n in 0..3 {
        app.notify(&acme, &alice, "info", &format!("n{n}")).await;
    }
    let token = app.token(&alice);
    let page = app
        .graphql(
            &token,
            "{ notifications(orderBy: [{kind: ASC}, {title: ASC}], first: 1) { endCursor } }",
            json!({}),
        )
        .await;
    let end_cursor = page["data"]["notifications"]["endCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("{page}"))
        .to_owned();
    for (query, variables) in [
        ("{ notifications(first: -1) { rows { id } } }", json!({})),
        ("{ notifications(first: 1001) { rows { id } } }", json!({})),
        (
            "query($a: String) { notifications(after: $a) { rows { id } } }",
            json!({"a": "not a cursor"}),
        ),
        // A cursor of another sort order.
        (
            "query($a: String) { notifications(after: $a) { rows { id } } }",
            json!({"a": end_cursor}),
        ),
        (
            "{ notifications(orderBy: [{kind: ASC, title: ASC}]) { rows { id } } }",
            json!({}),
        ),
    ] {
        let r = app.graphql(&token, query, variables.clone()).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{query} {variables}: {r}");
        assert!(
            r["data"].is_null() || r["data"]["notifications"].is_null(),
            "{query}: {r}"
        );
    }
}

#[tokio::test]
async fn a_malformed_value_in_where_is_the_callers_error_not_an_internal_one() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = two_tenants(&app).await;
    app.notify(&acme, &alice, "info", "n").await;
    let token = app.token(&alice);
    let query = "query($w: NotificationsWhere) { notifications(where: $w) { rows { id } } }";
    // The database refuses the uuid: an input error naming no internals.
    let r = app
        .graphql(&token, query, json!({"w": {"id": {"eq": "not-a-uuid"}}}))
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert!(r["data"]["notifications"].is_null(), "{r}");
    // GraphQL validation refuses the date-time before anything runs.
    let r = app
        .graphql(
            &token,
            query,
            json!({"w": {"created_at": {"gt": "yesterday-ish"}}}),
        )
        .await;
    let message = r["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("created_at"), "{r}");
    assert!(r["data"].is_null(), "{r}");
}

#[tokio::test]
async fn a_pages_cursor_lets_a_client_read_rows_then_subscribe_after_it_without_a_gap() {
    let app = spawn_app().await;
    let (acme, _, alice, _) = two_tenants(&app).await;
    let token = app.token(&alice);
    app.notify(&acme, &alice, "info", "before").await;
    let page = app
        .graphql(
            &token,
            "{ notifications { rows { title } cursor hasNextPage } }",
            json!({}),
        )
        .await;
    assert_eq!(
        page["data"]["notifications"]["rows"],
        json!([{"title": "before"}]),
        "{page}"
    );
    assert_eq!(
        page["data"]["notifications"]["hasNextPage"], false,
        "{page}"
    );
    let cursor = page["data"]["notifications"]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("{page}"))
        .to_owned();
    // Written after the read, before the subscription exists.
    app.notify(&acme, &alice, "info", "gap").await;

    let mut ws = app.transport_as(&alice).await;
    ws.subscribe(
        "s",
        "subscription($after: String) { notifications(after: $after) { op row { title } } }",
        json!({"after": cursor}),
    )
    .await;
    // The row already read is not repeated; the one written since is not missed.
    let msg = ws.next_data().await;
    assert_eq!(
        msg["payload"]["data"]["notifications"],
        json!({"op": "INSERT", "row": {"title": "gap"}}),
        "{msg}"
    );
    app.notify(&acme, &alice, "info", "live").await;
    let msg = ws.next_data().await;
    assert_eq!(
        msg["payload"]["data"]["notifications"]["row"]["title"], "live",
        "{msg}"
    );
}

#[tokio::test]
async fn writes_as_a_user_are_bound_by_the_demo_policies_and_the_query_fields_show_their_effect() {
    let app = spawn_app().await;
    let (acme, globex, alice, carol) = two_tenants(&app).await;
    let documents = "{ documents { rows { id title body } } }";

    assert_eq!(
        app.sql_as(
            &alice,
            &format!("insert into documents (tenant_id, title) values ('{acme}', 'plan')")
        )
        .await
        .unwrap(),
        1
    );
    let r = app.graphql(&app.token(&alice), documents, json!({})).await;
    let doc = r["data"]["documents"]["rows"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("alice's document: {r}"))
        .to_owned();
    assert_eq!(
        r["data"]["documents"]["rows"],
        json!([{"id": doc, "title": "plan", "body": ""}]),
        "{r}"
    );

    // Into another tenant: refused by the policy's WITH CHECK.
    let err = app
        .sql_as(
            &alice,
            &format!("insert into documents (tenant_id, title) values ('{globex}', 'sneaky')"),
        )
        .await
        .expect_err("an insert into another tenant");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );

    // Carol can neither see, update nor delete Alice's tenant's document.
    let r = app.graphql(&app.token(&carol), documents, json!({})).await;
    assert_eq!(r["data"]["documents"]["rows"], json!([]), "{r}");
    for write in [
        format!("update documents set title = 'pwned' where id = '{doc}'"),
        format!("delete from documents where id = '{doc}'"),
    ] {
        assert_eq!(app.sql_as(&carol, &write).await.unwrap(), 0, "{write}");
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
    let update = format!("update documents set body = 'v2' where id = '{doc}'");
    assert_eq!(app.sql_as(&alice, &update).await.unwrap(), 1);
    let r = app.graphql(&app.token(&alice), documents, json!({})).await;
    assert_eq!(
        r["data"]["documents"]["rows"],
        json!([{"id": doc, "title": "plan", "body": "v2"}]),
        "{r}"
    );
    let delete = format!("delete from documents where id = '{doc}'");
    assert_eq!(app.sql_as(&alice, &delete).await.unwrap(), 1);
    let r = app.graphql(&app.token(&alice), documents, json!({})).await;
    assert_eq!(r["data"]["documents"]["rows"], json!([]), "{r}");

    // Notifications: only the recipient can mark one read, and nobody can
    // change anything else about it.
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
    let mark = format!("update notifications set read_at = now() where id = '{id}'");
    assert_eq!(app.sql_as(&alice, &mark).await.unwrap(), 0);
    assert_eq!(app.sql_as(&carol, &mark).await.unwrap(), 1);
    let err = app
        .sql_as(
            &carol,
            &format!("update notifications set title = 'edited' where id = '{id}'"),
        )
        .await
        .expect_err("an update of a column without the update privilege");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    let r = app
        .graphql(
            &app.token(&carol),
            "{ notifications { rows { title read_at } } }",
            json!({}),
        )
        .await;
    let rows = &r["data"]["notifications"]["rows"];
    assert_eq!(rows[0]["title"], "for carol", "{r}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(rows[0]["read_at"].as_str().unwrap_or_default())
            .is_ok(),
        "read_at must be set, as a date-time: {r}"
    );
    let r = app
        .graphql(
            &app.token(&alice),
            "{ notifications { rows { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["notifications"]["rows"], json!([]), "{r}");
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
    app.keep_listener_out().await;
    let ready = reqwest::get(format!("{}/readyz", app.http_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    app.let_listener_in().await;
    let ready = reqwest::get(format!("{}/readyz", app.http_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// `/metrics` has a histogram per pipeline stage, and a delivered change
/// passes through each: hold, read, authorize, dispatch, write.
#[tokio::test]
async fn metrics_time_every_stage_a_delivered_change_passes_through() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut sub = crate::helpers::Subscriber::connect(
        &app,
        &alice,
        "alice",
        crate::helpers::Protocol::Transport,
    )
    .await;
    sub.start(
        "n",
        "subscription { notifications(ops: [INSERT]) { row { title } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    app.notify(&tenant, &alice, "info", "timed").await;
    assert_eq!(sub.next_event("n").await["row"]["title"], "timed");

    // (A batch's first page is read with its hold: "read" times further
    // pages only, and this batch has one.)
    for stage in ["hold", "authorize", "dispatch", "write"] {
        let count = app
            .metric(&format!("pgherald_stage_{stage}_seconds_count"))
            .await;
        assert!(count >= 1, "{stage} never timed");
    }
    let metrics = reqwest::get(format!("{}/metrics", app.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for stage in ["hold", "read", "authorize", "dispatch", "write"] {
        assert!(
            metrics.contains(&format!("# TYPE pgherald_stage_{stage}_seconds histogram")),
            "{stage}: {metrics}"
        );
    }
}
