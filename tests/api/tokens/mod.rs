//! Tokens as identity providers issue them: `exp` required with a leeway,
//! `nbf`, `aud` and `iss`, the role claim at a configured JSON pointer,
//! claims Postgres can hold, keys from a rotating JWKS ([`jwks`]), and which
//! roles a token may name ([`roles`]). Refusals close a graphql-transport-ws
//! connection with 4403 (an HTTP request gets a 401 naming the reason).

mod jwks;
mod roles;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{Frame, SECRET, TestApp, WAIT, WsClient, bearer_init, spawn_app_with};

/// Seconds since the epoch.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `claims` signed with the test instances' HS256 secret.
fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// What a graphql-transport-ws `connection_init` carrying `token` gets: the
/// ack (the open connection is returned), or the close code.
async fn init_outcome(app: &TestApp, token: &str) -> Result<WsClient, u16> {
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.send(bearer_init(token)).await;
    match ws.next().await {
        Frame::Json(v) if v["type"] == "connection_ack" => Ok(ws),
        Frame::Json(v) => panic!("expected an ack or a close, got {v}"),
        Frame::Close(code, _) => Err(code),
    }
}

/// Asserts that `token` opens a connection; returns it.
async fn assert_accepted(app: &TestApp, token: &str, what: &str) -> WsClient {
    match init_outcome(app, token).await {
        Ok(ws) => ws,
        Err(code) => panic!("{what}: refused with {code}, expected the ack"),
    }
}

/// Asserts that `token` is refused with 4403 and no ack.
async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    match init_outcome(app, token).await {
        Ok(_) => panic!("{what}: acknowledged, expected close 4403"),
        Err(code) => assert_eq!(code, 4403, "{what}"),
    }
}

/// The message of the 401 an HTTP request with `token` gets.
async fn http_refusal(app: &TestApp, token: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.http_url))
        .bearer_auth(token)
        .json(&json!({"query": "{ cursor }"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 401, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(!message.contains('\n'), "one line: {message:?}");
    message
}

/// Waits until a time rule of the server has certainly run out: `period`
/// after `since`, an instant taken once the server started counting (after
/// the cache was filled, the keys fetched). The rule is about time itself,
/// so its deadline is the event waited for.
async fn until_expired(since: Instant, period: Duration) {
    assert!(period < WAIT, "a rule of {period:?} makes a slow test");
    tokio::time::sleep_until(since + period).await;
}

/// An instance and a user of it: (app, user id).
async fn app_with(tweak: impl FnOnce(&mut pgherald::Config)) -> (TestApp, String) {
    let app = spawn_app_with(tweak).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    (app, alice)
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let (app, alice) = app_with(|_| {}).await;
    let t = now();
    for claims in [
        json!({"sub": alice, "role": "app_user", "iat": t}),
        json!({"sub": alice, "role": "app_user", "exp": null}),
        json!({"sub": alice, "role": "app_user", "exp": (t + 600).to_string()}),
    ] {
        let token = hs256(&claims);
        assert_refused(&app, &token, &format!("{claims}")).await;
        let message = http_refusal(&app, &token).await;
        assert!(message.contains("\"exp\""), "{message}");
    }
    let good = json!({"sub": alice, "role": "app_user", "exp": t + 600});
    assert_accepted(&app, &hs256(&good), "with exp").await;
}

#[tokio::test]
async fn an_expired_token_is_accepted_within_the_leeway_and_refused_beyond_it() {
    // The default leeway is 30 s.
    let (app, alice) = app_with(|_| {}).await;
    let t = now();
    let within = hs256(&json!({"sub": alice, "exp": t - 10}));
    let mut ws = assert_accepted(&app, &within, "10 s past exp, 30 s leeway").await;
    // Accepted means usable: the connection is not closed at once for an
    // `exp` that has passed, it lives until exp + leeway (20 s from now).
    assert_eq!(ws.nothing_within(Duration::from_secs(1)).await, None);
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong");
    let beyond = hs256(&json!({"sub": alice, "exp": t - 45}));
    assert_refused(&app, &beyond, "45 s past exp, 30 s leeway").await;
    assert_eq!(http_refusal(&app, &beyond).await, "token expired");

    let (strict, alice) = app_with(|c| c.jwt_leeway = Duration::from_secs(5)).await;
    let late = hs256(&json!({"sub": alice, "exp": now() - 10}));
    assert_refused(&strict, &late, "10 s past exp, 5 s leeway").await;
}

#[tokio::test]
async fn a_connection_closes_when_exp_plus_the_leeway_has_passed() {
    let (app, alice) = app_with(|c| c.jwt_leeway = Duration::from_secs(2)).await;
    let started = Instant::now();
    let token = hs256(&json!({"sub": alice, "exp": now() + 1}));
    let mut ws = assert_accepted(&app, &token, "valid for 1 s").await;
    match ws.next().await {
        Frame::Close(code, _) => assert_eq!(code, 4403),
        other => panic!("expected close 4403, got {other:?}"),
    }
    let waited = started.elapsed();
    // `exp` has one-second resolution: now + 1 s + 2 s leeway is 2 to 3 s away.
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "closed after {waited:?}, expected at exp + leeway (2-3 s)"
    );
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_refused() {
    let (app, alice) = app_with(|_| {}).await;
    let t = now();
    let later = hs256(&json!({"sub": alice, "exp": t + 600, "nbf": t + 120}));
    assert_refused(&app, &later, "nbf in 2 minutes").await;
    assert!(http_refusal(&app, &later).await.contains("nbf"));
    for (nbf, what) in [(t + 10, "nbf within the leeway"), (t - 10, "nbf passed")] {
        let token = hs256(&json!({"sub": alice, "exp": t + 600, "nbf": nbf}));
        assert_accepted(&app, &token, what).await;
    }
}

#[tokio::test]
async fn audience_and_issuer_are_required_when_configured() {
    let (app, alice) = app_with(|c| {
        c.jwt_audience = Some("pgherald".into());
        c.jwt_issuer = Some("https://idp.test/".into());
    })
    .await;
    let t = now();
    let claims = |aud: Value, iss: Value| {
        let mut c = json!({"sub": alice, "exp": t + 600});
        if !aud.is_null() {
            c["aud"] = aud;
        }
        if !iss.is_null() {
            c["iss"] = iss;
        }
        hs256(&c)
    };
    let iss = json!("https://idp.test/");
    assert_accepted(
        &app,
        &claims(json!("pgherald"), iss.clone()),
        "right aud and iss",
    )
    .await;
    assert_accepted(
        &app,
        &claims(json!(["account", "pgherald"]), iss.clone()),
        "aud list holding ours",
    )
    .await;
    for (token, what, message) in [
        (
            claims(json!("account"), iss.clone()),
            "wrong aud",
            "token audience not accepted",
        ),
        (
            claims(json!("pgherald"), json!("https://evil.test/")),
            "wrong iss",
            "token issuer not accepted",
        ),
        (
            claims(Value::Null, iss.clone()),
            "no aud",
            "token claim \"aud\" is missing or malformed",
        ),
        (
            claims(json!("pgherald"), Value::Null),
            "no iss",
            "token claim \"iss\" is missing or malformed",
        ),
    ] {
        assert_refused(&app, &token, what).await;
        assert_eq!(http_refusal(&app, &token).await, message, "{what}");
    }

    // Unconfigured, neither claim is checked.
    let (open, alice) = app_with(|_| {}).await;
    let any = hs256(&json!({"sub": alice, "exp": t + 600, "aud": "x", "iss": "y"}));
    assert_accepted(&open, &any, "aud and iss unconfigured").await;
}

/// The ids of the users `token`'s caller may see (over HTTP), or the error code.
async fn users_seen(app: &TestApp, token: &str) -> Result<Value, Value> {
    let r = app
        .graphql(token, "{ users { rows { id } } }", json!({}))
        .await;
    match r["data"]["users"]["rows"].as_array() {
        Some(rows) => Ok(rows.iter().map(|row| row["id"].clone()).collect()),
        None => Err(r["errors"][0]["extensions"]["code"].clone()),
    }
}

#[tokio::test]
async fn the_role_is_read_at_the_configured_json_pointer() {
    let (app, alice) = app_with(|c| c.jwt_role_claim = "/app_metadata/role".parse().unwrap()).await;
    let t = now();
    // The role at the pointer counts; a top-level `role` does not.
    let nested = hs256(&json!({
        "sub": alice, "exp": t + 600, "role": "no_such_role",
        "app_metadata": {"role": "app_user"}
    }));
    assert_accepted(&app, &nested, "app_user at /app_metadata/role").await;
    assert_eq!(users_seen(&app, &nested).await, Ok(json!([alice])));
    let wrong = hs256(&json!({
        "sub": alice, "exp": t + 600, "role": "app_user",
        "app_metadata": {"role": "no_such_role"}
    }));
    assert_refused(&app, &wrong, "an unknown role at /app_metadata/role").await;
    // Nothing at the pointer: the default role.
    let absent = hs256(&json!({"sub": alice, "exp": t + 600, "role": "no_such_role"}));
    assert_eq!(users_seen(&app, &absent).await, Ok(json!([alice])));

    // Claim names holding slashes and dots, as Hasura's.
    let (hasura, alice) = app_with(|c| {
        c.jwt_role_claim = "/https:~1~1hasura.io~1jwt~1claims/x-hasura-default-role"
            .parse()
            .unwrap();
    })
    .await;
    let claims = |role: &str| {
        hs256(&json!({
            "sub": alice, "exp": t + 600,
            "https://hasura.io/jwt/claims": {"x-hasura-default-role": role}
        }))
    };
    assert_eq!(
        users_seen(&hasura, &claims("app_user")).await,
        Ok(json!([alice]))
    );
    // `anon` may read no user: it is the role the query ran as.
    assert_eq!(
        users_seen(&hasura, &claims("anon")).await,
        Err(json!("FORBIDDEN"))
    );
    assert_refused(
        &hasura,
        &claims("no_such_role"),
        "unknown role at the Hasura path",
    )
    .await;
}

#[tokio::test]
async fn claims_postgres_cannot_store_are_refused_at_verification() {
    let (app, alice) = app_with(|_| {}).await;
    let t = now();
    for claims in [
        json!({"sub": format!("{alice}\u{0}"), "exp": t + 600}),
        json!({"sub": alice, "exp": t + 600, "org": {"teams": ["a", "b\u{0}c"]}}),
        json!({"sub": alice, "exp": t + 600, "org": {"k\u{0}": 1}}),
    ] {
        let token = hs256(&claims);
        assert_refused(&app, &token, &format!("{claims}")).await;
        let message = http_refusal(&app, &token).await;
        assert!(message.contains("NUL"), "{message}");
    }
    // The six characters `\u0000` in a string are fine.
    let text = hs256(&json!({"sub": alice, "exp": t + 600, "note": "\\u0000"}));
    assert_accepted(&app, &text, "a backslash-u text").await;
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_are_never_logged() {
    // The test runtime is single-threaded, so the instance's tasks log to
    // this thread's subscriber.
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, alice) = app_with(|_| {}).await;
    let t = now();
    let tokens = [
        hs256(&json!({"sub": alice, "exp": t + 600})),
        hs256(&json!({"sub": alice, "exp": t - 600})),
        hs256(&json!({"sub": alice})),
        hs256(&json!({"sub": alice, "exp": t + 600, "role": "postgres"})),
        hs256(&json!({"sub": alice, "exp": t + 600, "role": "no_such_role"})),
        hs256(&json!({"sub": "x\u{0}", "exp": t + 600})),
        format!("{}x", hs256(&json!({"sub": alice, "exp": t + 600}))),
    ];
    for token in &tokens {
        let _ = init_outcome(&app, token).await;
        let _ = app.graphql(token, "{ cursor }", json!({})).await;
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("may not be assumed"),
        "the role refusals are logged (the capture works): {logs}"
    );
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token was logged");
    }
}
