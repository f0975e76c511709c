//! `POST /demo`, the demo page's writes: run as the caller, so the demo
//! schema's policies decide; refusals are clear errors with stable codes;
//! absent where `migrate --demo` never ran. (tests/api/browser.rs drives the
//! same route through the page in Chromium.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, app_url_for, connect, empty_database, spawn_app, spawn_app_on};

/// POSTs `action` to `/demo` with `token` (none: no Authorization header).
async fn demo(app: &TestApp, token: Option<&str>, action: Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/demo", app.http_url))
        .json(&action);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The error's code and message; panics on success.
fn refusal(reply: &(StatusCode, Value)) -> (StatusCode, String, String) {
    let error = &reply.1["errors"][0];
    assert!(error.is_object(), "expected an error: {reply:?}");
    (
        reply.0,
        error["extensions"]["code"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn demo_writes_run_as_the_caller_and_row_level_security_refusals_are_clear_errors() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let carol = app.user("carol@globex.test", &[&globex]).await;
    let (alice_t, bob_t, carol_t) = (app.token(&alice), app.token(&bob), app.token(&carol));

    // A document in her tenant; none in another (the policy's WITH CHECK).
    let create = |tenant: &str, title: &str| json!({"action": "create_document", "tenant_id": tenant, "title": title, "body": "b"});
    let (status, reply) = demo(&app, Some(&alice_t), create(&acme, "plan")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let doc = reply["id"].as_str().unwrap().to_owned();
    let (status, code, message) = refusal(&demo(&app, Some(&alice_t), create(&globex, "x")).await);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    assert!(
        message.contains("row-level security") && !message.contains("insert into"),
        "{message}"
    );

    // Carol can neither change nor delete it: to her it does not exist.
    for action in [
        json!({"action": "update_document", "id": doc, "title": "pwned"}),
        json!({"action": "delete_document", "id": doc}),
    ] {
        let (status, code, message) = refusal(&demo(&app, Some(&carol_t), action).await);
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "NOT_FOUND")
        );
        assert!(message.contains("row-level security"), "{message}");
    }
    // Bob, a colleague, can.
    let update = json!({"action": "update_document", "id": doc, "body": "v2"});
    assert_eq!(demo(&app, Some(&bob_t), update).await.0, StatusCode::OK);
    let row = app
        .admin
        .query_one(
            "select title, body from documents where id = $1::text::uuid",
            &[&doc],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, &str>(0), row.get::<_, &str>(1)),
        ("plan", "v2")
    );

    // Notifications: to a colleague in a shared tenant, signed by the caller.
    let notify = |tenant: &str, user: &str| json!({"action": "notify", "tenant_id": tenant, "user_id": user, "title": "hi"});
    let (status, reply) = demo(&app, Some(&alice_t), notify(&acme, &bob)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    for (tenant, user) in [(&globex, &carol), (&acme, &carol)] {
        let (status, _, message) = refusal(&demo(&app, Some(&alice_t), notify(tenant, user)).await);
        assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    }
    let row = app
        .admin
        .query_one(
            "select id::text, user_id::text, kind, data ->> 'from' from notifications",
            &[],
        )
        .await
        .unwrap();
    let note: String = row.get(0);
    assert_eq!(
        (
            row.get::<_, String>(1),
            row.get::<_, &str>(2),
            row.get::<_, String>(3)
        ),
        (bob.clone(), "message", alice.clone())
    );

    // Only the recipient marks it read.
    let mark = json!({"action": "mark_read", "id": note});
    assert_eq!(
        demo(&app, Some(&alice_t), mark.clone()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(demo(&app, Some(&bob_t), mark).await.0, StatusCode::OK);
    let read: bool = app
        .admin
        .query_one("select read_at is not null from notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert!(read);

    // Deleted by its author.
    let delete = json!({"action": "delete_document", "id": doc});
    assert_eq!(demo(&app, Some(&alice_t), delete).await.0, StatusCode::OK);
    let left: i64 = app
        .admin
        .query_one("select count(*) from documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn demo_writes_without_a_token_or_with_bad_input_are_refused_with_what_is_wrong() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let token = app.token(&alice);
    let create = json!({"action": "create_document", "tenant_id": acme, "title": "plan"});

    let (status, code, _) = refusal(&demo(&app, None, create.clone()).await);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    let (status, _, _) = refusal(&demo(&app, Some("not-a-token"), create.clone()).await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The cookie is not a credential here: another site's page could send it.
    let reply = reqwest::Client::new()
        .post(format!("{}/demo", app.http_url))
        .header("cookie", format!("JWT={token}"))
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);

    for (action, needle) in [
        (
            json!({"action": "drop_table"}),
            "unknown variant `drop_table`",
        ),
        (
            json!({"action": "create_document", "title": "t"}),
            "missing field `tenant_id`",
        ),
        (
            json!({"action": "create_document", "tenant_id": "acme", "title": "t"}),
            "not a valid UUID",
        ),
        (
            json!({"action": "create_document", "tenant_id": acme, "title": " "}),
            "the title is empty",
        ),
        (
            json!({"action": "delete_document", "id": alice, "where": "1=1"}),
            "unknown field `where`",
        ),
    ] {
        let (status, code, message) = refusal(&demo(&app, Some(&token), action.clone()).await);
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "BAD_USER_INPUT"),
            "{action}"
        );
        assert!(message.contains(needle), "{action}: {message}");
    }
    let count: i64 = app
        .admin
        .query_one("select count(*) from documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test]
async fn the_demo_route_is_a_404_on_a_database_without_the_demo_schema() {
    // An application's own `documents` table, open to app_user, and no demo.
    let admin_url = empty_database().await;
    let db_name = admin_url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .get_dbname()
        .unwrap()
        .to_owned();
    pgherald::db::migrate::run(&admin_url, Some(&app_url_for(&db_name)), None, false)
        .await
        .expect("core migrations");
    let db = connect(&admin_url).await;
    db.batch_execute(
        "create table public.documents (id uuid primary key default gen_random_uuid(),
           tenant_id uuid, title text not null, body text not null default '',
           updated_at timestamptz);
         grant usage on schema public to app_user;
         grant all on public.documents to app_user",
    )
    .await
    .unwrap();
    let app = spawn_app_on(&admin_url).await;
    let action = json!({"action": "create_document",
                        "tenant_id": "10000000-0000-4000-8000-000000000001", "title": "t"});
    let (status, code, message) = refusal(&demo(&app, Some(&app.token("u")), action).await);
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    assert!(message.contains("migrate --demo"), "{message}");
    let count: i64 = db
        .query_one("select count(*) from public.documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "the application's table is untouched");
}
