//! Test harness: a fresh database per test (cloned from a migrated
#![allow(dead_code)]
//! template), a pgherald instance on port 0, an owner connection for writing
//! rows with plain SQL, WebSocket clients, and the real npm clients.

use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgherald::{Application, Config, JwtKey};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_postgres::{Client, NoTls};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

/// Secret the test instances sign tokens with.
pub const SECRET: &str = "test-secret-of-some-length";

/// A running instance with its own database.
pub struct TestApp {
    /// The instance.
    pub app: Application,
    /// `ws://…/graphql`.
    pub ws_url: String,
    /// `http://…`.
    pub http_url: String,
    /// Owner connection to the test database (bypasses RLS; writes test rows).
    pub admin: Client,
    /// Connection string of the login role on the test database.
    pub app_url: String,
    /// Owner connection string of the test database.
    pub admin_url: String,
}

fn base_admin_url() -> String {
    std::env::var("PGHERALD_TEST_ADMIN_URL")
        .or_else(|_| std::env::var("HERALD_ADMIN_DATABASE_URL"))
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("no database: run the tests with `make test` (or set PGHERALD_TEST_ADMIN_URL)")
}

/// Connection string for `user` on database `db`, on the server of `base`.
fn url_for(base: &str, user: &str, password: Option<&[u8]>, db: &str) -> String {
    let config = tokio_postgres::Config::from_str(base).expect("admin URL parses");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut url = format!("host={host} port={port} user={user} dbname={db}");
    if let Some(pw) = password {
        url.push_str(&format!(" password='{}'", String::from_utf8_lossy(pw)));
    }
    url
}

/// A plain connection to `url` (the owner's or the login role's).
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fingerprint of the migrations, so a stale template is rebuilt.
fn migrations_fingerprint() -> String {
    let mut text = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        text.push_str(&std::fs::read_to_string(path).unwrap());
    }
    text.push_str(include_str!("../../sql/roles.sql"));
    // FNV-1a: stable across runs, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Creates a fresh, migrated database and returns its name.
pub async fn fresh_database() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = base_admin_url();
    let maintenance = connect(&url_for(
        &base,
        &admin_user(&base),
        admin_password(&base).as_deref(),
        "postgres",
    ))
    .await;
    // Serialise template creation and cloning across test processes.
    maintenance
        .batch_execute("select pg_advisory_lock(4242001)")
        .await
        .unwrap();
    let template = format!("pgherald_tpl_{}", migrations_fingerprint());
    let exists = maintenance
        .query_opt("select 1 from pg_database where datname = $1", &[&template])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        maintenance
            .batch_execute(&format!("drop database if exists \"{building}\""))
            .await
            .unwrap();
        maintenance
            .batch_execute(&format!("create database \"{building}\""))
            .await
            .unwrap();
        let url = url_for(
            &base,
            &admin_user(&base),
            admin_password(&base).as_deref(),
            &building,
        );
        pgherald::db::migrate::run(&url, None, Some("anon"))
            .await
            .expect("migrations apply");
        maintenance
            .batch_execute(&format!(
                "alter database \"{building}\" rename to \"{template}\""
            ))
            .await
            .unwrap();
    }
    let name = format!(
        "pgherald_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    maintenance
        .batch_execute(&format!(
            "create database \"{name}\" template \"{template}\""
        ))
        .await
        .unwrap();
    maintenance
        .batch_execute("select pg_advisory_unlock(4242001)")
        .await
        .unwrap();
    name
}

fn admin_user(base: &str) -> String {
    tokio_postgres::Config::from_str(base)
        .unwrap()
        .get_user()
        .unwrap_or("postgres")
        .to_owned()
}

fn admin_password(base: &str) -> Option<Vec<u8>> {
    tokio_postgres::Config::from_str(base)
        .unwrap()
        .get_password()
        .map(<[u8]>::to_vec)
}

/// Password of the login role, when the environment gives one.
fn app_password() -> Option<Vec<u8>> {
    let url = std::env::var("DATABASE_URL").ok()?;
    tokio_postgres::Config::from_str(&url)
        .ok()?
        .get_password()
        .map(<[u8]>::to_vec)
}

/// Starts an instance on a fresh database with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an instance on a fresh database, after `tweak` edits its config.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = fresh_database().await;
    let base = base_admin_url();
    let admin_url = url_for(
        &base,
        &admin_user(&base),
        admin_password(&base).as_deref(),
        &db,
    );
    let app_url = url_for(
        &base,
        "herald_authenticator",
        app_password().as_deref(),
        &db,
    );
    let mut config = Config::new(app_url.clone(), JwtKey::Secret(SECRET.into()));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.pool_size = 8;
    tweak(&mut config);
    let app = Application::build(config).await.expect("app starts");
    let addr = app.local_addr();
    let test = TestApp {
        app,
        ws_url: format!("ws://{addr}/graphql"),
        http_url: format!("http://{addr}"),
        admin: connect(&admin_url).await,
        app_url,
        admin_url,
    };
    test.wait_until("listener connected", |t| {
        t.app.state().listener.is_connected() && t.app.state().hub.position().is_some()
    })
    .await;
    test
}

impl TestApp {
    /// Waits (bounded) until `condition` holds, re-checking as the app works.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&TestApp) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !condition(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the hub holds `n` subscriptions.
    pub async fn wait_for_subscriptions(&self, n: usize) {
        self.wait_until(&format!("{n} subscriptions"), |t| {
            t.app.state().hub.subscription_count() == n
        })
        .await;
    }

    /// A token for user `sub`.
    pub fn token(&self, sub: &str) -> String {
        token_with(sub, "app_user", 3600)
    }

    /// Runs SQL as the owner.
    pub async fn sql(&self, sql: &str) {
        self.admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Creates a tenant; returns its id.
    pub async fn tenant(&self, name: &str) -> String {
        let row = self
            .admin
            .query_one(
                "insert into tenants (name) values ($1) returning id::text",
                &[&name],
            )
            .await
            .unwrap();
        row.get(0)
    }

    /// Creates a user that is a member of `tenants`; returns its id.
    pub async fn user(&self, email: &str, tenants: &[&str]) -> String {
        let row = self
            .admin
            .query_one(
                "insert into users (email) values ($1) returning id::text",
                &[&email],
            )
            .await
            .unwrap();
        let id: String = row.get(0);
        for t in tenants {
            self.admin
                .execute(
                    "insert into memberships (tenant_id, user_id) values ($1::text::uuid, $2::text::uuid)",
                    &[t, &id],
                )
                .await
                .unwrap();
        }
        id
    }

    /// Inserts a notification of `kind` for `user` in `tenant`.
    pub async fn notify(&self, tenant: &str, user: &str, kind: &str, title: &str) {
        self.admin
            .execute(
                "insert into notifications (tenant_id, user_id, kind, title) values ($1::text::uuid, $2::text::uuid, $3, $4)",
                &[&tenant, &user, &kind, &title],
            )
            .await
            .unwrap();
    }

    /// A graphql-transport-ws connection, initialised with `user`'s token.
    pub async fn transport_as(&self, user: &str) -> WsClient {
        let mut ws = WsClient::transport(&self.ws_url).await;
        ws.init(&self.token(user)).await;
        ws
    }

    /// A legacy graphql-ws connection, initialised with `user`'s token.
    pub async fn legacy_as(&self, user: &str) -> WsClient {
        let mut ws = WsClient::legacy(&self.ws_url).await;
        ws.init(&self.token(user)).await;
        ws
    }

    /// POSTs a GraphQL request with `token`.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.http_url))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A token with any role and lifetime (negative: already expired).
pub fn token_with(sub: &str, role: &str, ttl_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": sub, "role": role, "iat": now, "exp": now + ttl_secs});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A `connection_init` message carrying `token` as a bearer authorization.
pub fn bearer_init(token: &str) -> Value {
    json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
}

/// What a WebSocket read produced.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A JSON text message.
    Json(Value),
    /// A close frame.
    Close(u16, String),
}

/// A raw WebSocket client for protocol-level tests.
pub struct WsClient {
    /// The socket.
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects offering `subprotocol`, with extra request headers.
    pub async fn connect_with(
        url: &str,
        subprotocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> WsClient {
        let mut request = url.into_client_request().unwrap();
        if let Some(p) = subprotocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        for (k, v) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = k.parse().unwrap();
            request.headers_mut().insert(name, v.parse().unwrap());
        }
        let (socket, _response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        WsClient { socket }
    }

    /// Connects with `graphql-transport-ws`.
    pub async fn transport(url: &str) -> WsClient {
        Self::connect_with(url, Some("graphql-transport-ws"), &[]).await
    }

    /// Connects with legacy `graphql-ws`.
    pub async fn legacy(url: &str) -> WsClient {
        Self::connect_with(url, Some("graphql-ws"), &[]).await
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, msg: Value) {
        self.socket
            .send(Message::text(msg.to_string()))
            .await
            .unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Next JSON message or close frame (ping/pong frames skipped).
    pub async fn next(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a websocket message within the timeout");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(&t).unwrap());
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Frame::Close(f.code.into(), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return Frame::Close(1006, String::new());
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Next JSON message; panics on anything else.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Frame::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Whether nothing arrives within `d` (for asserting absence after a
    /// later event has proven the pipeline moved on).
    pub async fn nothing_within(&mut self, d: Duration) -> Option<Value> {
        match tokio::time::timeout(d, self.next()).await {
            Err(_) => None,
            Ok(Frame::Json(v)) => Some(v),
            Ok(other) => Some(json!({"frame": format!("{other:?}")})),
        }
    }

    /// `connection_init` with a token; expects the ack (either protocol).
    pub async fn init(&mut self, token: &str) {
        self.init_with(bearer_init(token)).await;
    }

    /// Sends the `connection_init` message `init`; expects the ack.
    pub async fn init_with(&mut self, init: Value) {
        self.send(init).await;
        let ack = self.next_json().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// Starts a graphql-transport-ws subscription.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"type": "subscribe", "id": id, "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// Starts a legacy graphql-ws subscription.
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        self.send(
            json!({"type": "start", "id": id, "payload": {"query": query, "variables": variables}}),
        )
        .await;
    }

    /// Next data payload of either protocol (`next` or `data`), skipping `ka`.
    pub async fn next_data(&mut self) -> Value {
        loop {
            let msg = self.next_json().await;
            match msg["type"].as_str() {
                Some("next") | Some("data") => return msg,
                Some("ka") => continue,
                _ => panic!("expected data, got {msg}"),
            }
        }
    }
}

/// A real npm client (tests/clients/subscribe.mjs) printing events as JSON lines.
pub struct NodeClient {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl NodeClient {
    /// Starts the client for `query`; `protocol` is "transport" or "legacy".
    pub fn spawn(
        url: &str,
        token: &str,
        protocol: &str,
        query: &str,
        variables: Value,
    ) -> NodeClient {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
        assert!(
            std::path::Path::new(dir).join("node_modules").exists(),
            "npm clients missing: run `make test` (it runs npm ci in tests/clients)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("subscribe.mjs")
            .current_dir(dir)
            .env("URL", url)
            .env("TOKEN", token)
            .env("PROTOCOL", protocol)
            .env("QUERY", query)
            .env("VARIABLES", variables.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        NodeClient { child, lines }
    }

    /// Next event line, within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Value {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .expect("a client event within the timeout")
            .expect("client output readable")
            .expect("client still running");
        serde_json::from_str(&line).unwrap()
    }

    /// Stops the client.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
