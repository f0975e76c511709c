//! The `JWT` cookie is an ambient credential: a browser attaches it to
//! requests other sites' pages make. It counts only from the server's own
//! origin and `HERALD_ALLOWED_ORIGINS`; tokens in an `Authorization` header
//! or the `connection_init` payload count from anywhere. GET runs queries
//! only. GraphiQL needs nothing from the network, and the demo page's cookie
//! is `HttpOnly; SameSite=Strict; Path=/`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Frame, TestApp, WsClient, bearer_init, spawn_app, spawn_app_with};

const FOREIGN: &str = "https://evil.example";

/// The instance's own origin, as a browser on its pages sends it.
fn own_origin(app: &TestApp) -> String {
    app.http_url.clone()
}

/// Opens a graphql-transport-ws connection with a `JWT` cookie for `user`
/// and the upgrade headers `extra`, sends an empty `connection_init`; the
/// frame that answers it.
async fn cookie_init(app: &TestApp, user: &str, extra: &[(&str, &str)]) -> (WsClient, Frame) {
    let cookie = format!("JWT={}", app.token(user));
    let mut headers = vec![("cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    let mut ws = WsClient::connect_with(&app.ws_url, Some("graphql-transport-ws"), &headers).await;
    ws.send(json!({"type": "connection_init", "payload": {}}))
        .await;
    let frame = ws.next().await;
    (ws, frame)
}

/// The ids of the users the connection's caller may see (RLS: itself and
/// its colleagues; alice has none).
async fn whoami(ws: &mut WsClient) -> Value {
    ws.subscribe("me", "query { users { rows { id } } }", json!({}))
        .await;
    let msg = ws.next_json().await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(ws.next_json().await["type"], "complete");
    let rows = msg["payload"]["data"]["users"]["rows"]
        .as_array()
        .unwrap()
        .clone();
    Value::Array(rows.into_iter().map(|r| r["id"].clone()).collect())
}

fn is_ack(frame: &Frame) -> bool {
    matches!(frame, Frame::Json(v) if v["type"] == "connection_ack")
}

#[tokio::test]
async fn a_cookie_upgrade_from_a_foreign_origin_is_refused_and_same_origin_and_header_tokens_work()
{
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;

    // Another site's page: the browser sends the cookie and its own Origin.
    let (_, frame) = cookie_init(&app, &alice, &[("origin", FOREIGN)]).await;
    assert!(
        matches!(frame, Frame::Close(4403, _)),
        "foreign origin with the cookie: {frame:?}"
    );

    // The server's own page, and a client that sends no Origin at all.
    let own = own_origin(&app);
    for extra in [vec![("origin", own.as_str())], vec![]] {
        let (mut ws, frame) = cookie_init(&app, &alice, &extra).await;
        assert!(is_ack(&frame), "{extra:?}: {frame:?}");
        assert_eq!(whoami(&mut ws).await, json!([alice]));
    }

    // A token the client's own code sends is not ambient: any origin may.
    let header = format!("Bearer {}", app.token(&alice));
    let mut ws = WsClient::connect_with(
        &app.ws_url,
        Some("graphql-transport-ws"),
        &[("origin", FOREIGN), ("authorization", &header)],
    )
    .await;
    ws.init_with(json!({"type": "connection_init", "payload": {}}))
        .await;
    assert_eq!(whoami(&mut ws).await, json!([alice]));
    let cookie = format!("JWT={}", app.token("someone else"));
    let mut ws = WsClient::connect_with(
        &app.ws_url,
        Some("graphql-transport-ws"),
        &[("origin", FOREIGN), ("cookie", &cookie)],
    )
    .await;
    ws.init_with(bearer_init(&app.token(&alice))).await;
    assert_eq!(whoami(&mut ws).await, json!([alice]));
}

#[tokio::test]
async fn an_allowed_origin_may_use_the_cookie() {
    let app = spawn_app_with(|c| c.allowed_origins = vec![FOREIGN.to_owned()]).await;
    let (_, frame) = cookie_init(&app, "alice", &[("origin", FOREIGN)]).await;
    assert!(is_ack(&frame), "{frame:?}");
    let (_, frame) = cookie_init(&app, "alice", &[("origin", "https://other.example")]).await;
    assert!(matches!(frame, Frame::Close(4403, _)), "{frame:?}");
}

/// POSTs `{ cursor }` with `headers`; the status and the body.
async fn post_cursor(app: &TestApp, headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", app.http_url))
        .json(&json!({"query": "{ cursor }"}));
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn http_requests_with_the_cookie_from_a_foreign_origin_are_403() {
    let app = spawn_app().await;
    let cookie = format!("JWT={}", app.token("alice"));
    let bearer = format!("Bearer {}", app.token("alice"));

    let foreign = [("cookie", cookie.clone()), ("origin", FOREIGN.to_owned())];
    let (status, body) = post_cursor(&app, &foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cookie"),
        "{body}"
    );
    // A no-cors request from another site carries no Origin, but says where it is from.
    let no_cors = [
        ("cookie", cookie.clone()),
        ("sec-fetch-site", "cross-site".to_owned()),
    ];
    assert_eq!(post_cursor(&app, &no_cors).await.0, StatusCode::FORBIDDEN);

    for ok in [
        vec![("cookie", cookie.clone()), ("origin", own_origin(&app))],
        vec![
            ("cookie", cookie.clone()),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
        vec![("cookie", cookie.clone())],
        vec![
            ("authorization", bearer.clone()),
            ("origin", FOREIGN.to_owned()),
        ],
    ] {
        let (status, body) = post_cursor(&app, &ok).await;
        assert_eq!(status, StatusCode::OK, "{ok:?}: {body}");
        assert!(body["data"]["cursor"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn get_runs_queries_only() {
    let app = spawn_app().await;
    let token = app.token("alice");
    let get = |query: &'static str, operation: Option<&'static str>| {
        let mut params = vec![("query", query)];
        if let Some(op) = operation {
            params.push(("operationName", op));
        }
        reqwest::Client::new()
            .get(format!("{}/graphql", app.http_url))
            .bearer_auth(&token)
            .query(&params)
            .send()
    };
    let ok = get("{ cursor }", None).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    for (query, operation, what) in [
        ("mutation { doSomething }", None, "mutations"),
        (
            "subscription { changes(table: \"x\") { op } }",
            None,
            "subscriptions",
        ),
        (
            "query Q { cursor } mutation M { x }",
            Some("M"),
            "mutations",
        ),
        ("query Q { cursor } mutation M { x }", None, "mutations"),
    ] {
        let response = get(query, operation).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{query}");
        assert_eq!(response.headers()["allow"], "POST");
        let body: Value = response.json().await.unwrap();
        let message = body["errors"][0]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("queries only") && message.contains(what),
            "{message}"
        );
    }
    // The named query of a document that also holds a mutation is fine.
    let response = get("query Q { cursor } mutation M { x }", Some("Q"))
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn graphiql_loads_nothing_from_other_hosts() {
    let app = spawn_app().await;
    let page = reqwest::get(format!("{}/graphiql", app.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("GraphiQL"));
    for pattern in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "import ",
        "cdn",
        "esm.sh",
        "unpkg",
    ] {
        assert!(!page.contains(pattern), "the page has {pattern:?}");
    }
}

#[tokio::test]
async fn the_demo_pages_cookie_is_http_only_same_site_strict_and_works_same_origin_only() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let client = reqwest::Client::new();
    let session = format!("{}/session", app.http_url);

    let refused = client.post(&session).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused = client
        .post(&session)
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let response = client
        .post(&session)
        .bearer_auth(app.token(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let attributes: Vec<&str> = set_cookie.split(';').map(str::trim).collect();
    assert!(attributes[0].starts_with("JWT=ey"), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("SameSite=None"), "{set_cookie}");

    let cookie = attributes[0].to_owned();
    let (status, body) = post_cursor(&app, &[("cookie", cookie.clone())]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) =
        post_cursor(&app, &[("cookie", cookie), ("origin", FOREIGN.to_owned())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let cleared = client.delete(&session).send().await.unwrap();
    let set_cookie = cleared.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with("JWT=;") && set_cookie.contains("Max-Age=0"),
        "{set_cookie}"
    );

    let index = client
        .get(&app.http_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("/session"),
        "the demo page sets the cookie through /session"
    );
    assert!(
        !index.contains("document.cookie"),
        "the page does not write the cookie itself"
    );
}
