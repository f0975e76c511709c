//! Test harness: a fresh database per test (cloned from a migrated
//! template), a pgherald instance on port 0, an owner connection for writing
//! rows with plain SQL, WebSocket clients, and the real npm clients.
#![allow(dead_code)]

mod changes;
pub mod child_log;
pub mod cluster;
mod database;
mod node;
pub mod proxy;
mod subscriber;
mod ws;

pub use changes::{document_image, insert_document, s, summary, title_of, titles};
pub use database::{connect, empty_database, fresh_database, hold_snapshot, listen};
pub use node::{NodeClient, NodeScript, run_script};
pub use subscriber::{NOTIFICATIONS, Protocol, Subscriber};
pub use ws::{Frame, WsClient};

use database::{admin_password, admin_user, app_password, base_admin_url, url_for};
use std::str::FromStr;
use std::time::Duration;

use pgherald::{Application, Config, JwtKey};
use serde_json::{Value, json};
use tokio_postgres::Client;

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

/// Starts an instance on a fresh database with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an instance on a fresh database, after `tweak` edits its config.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = fresh_database().await;
    spawn_app_on_database(&db, tweak).await
}

/// Starts an instance on a database a test prepared itself (given by its
/// owner's connection string, as [`empty_database`] returns it).
pub async fn spawn_app_on(admin_url: &str) -> TestApp {
    spawn_app_on_with(admin_url, |_| {}).await
}

/// Starts an instance on the database of `admin_url` (another instance's,
/// say), after `tweak` edits its config.
pub async fn spawn_app_on_with(admin_url: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let config = tokio_postgres::Config::from_str(admin_url).expect("owner URL parses");
    let db = config.get_dbname().expect("owner URL names a database");
    spawn_app_on_database(db, tweak).await
}

/// Starts an instance on a fresh database after running `sql` on it as the
/// owner: for settings that connections read only when they open, such as
/// `alter role herald_authenticator in database ... set ...`.
pub async fn spawn_app_after(sql: &str) -> TestApp {
    let db = fresh_database().await;
    let base = base_admin_url();
    let admin_url = url_for(
        &base,
        &admin_user(&base),
        admin_password(&base).as_deref(),
        &db,
    );
    connect(&admin_url)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    spawn_app_on_database(&db, |_| {}).await
}

/// Connection string of login role `user` (with `password`) on the
/// database of `app`.
pub fn url_as(app: &TestApp, user: &str, password: &str) -> String {
    let config = tokio_postgres::Config::from_str(&app.admin_url).expect("owner URL parses");
    let db = config.get_dbname().expect("owner URL names a database");
    url_for(&base_admin_url(), user, Some(password.as_bytes()), db)
}

/// The owner's connection string for database `db`.
pub fn admin_url_for(db: &str) -> String {
    let base = base_admin_url();
    url_for(
        &base,
        &admin_user(&base),
        admin_password(&base).as_deref(),
        db,
    )
}

/// The login role's connection string for database `db`.
pub fn app_url_for(db: &str) -> String {
    url_for(
        &base_admin_url(),
        "herald_authenticator",
        app_password().as_deref(),
        db,
    )
}

async fn spawn_app_on_database(db: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let base = base_admin_url();
    let admin_url = url_for(
        &base,
        &admin_user(&base),
        admin_password(&base).as_deref(),
        db,
    );
    spawn_app_at(admin_url, app_url_for(db), tweak).await
}

/// Starts an instance whose login role connects with `app_url`, its owner
/// with `admin_url` (a database of any cluster, migrated with the demo),
/// after `tweak` edits its config.
pub async fn spawn_app_at(
    admin_url: String,
    app_url: String,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
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
    /// Waits (bounded) until `condition` holds, re-checking it whenever the
    /// hub's subscriptions or the listener's connection change.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&TestApp) -> bool) {
        let state = self.app.state();
        let mut hub = state.hub.changes();
        let mut listener = state.listener.changes();
        let changes = async {
            while !condition(self) {
                tokio::select! {
                    _ = hub.changed() => {}
                    _ = listener.changed() => {}
                }
            }
        };
        tokio::time::timeout(WAIT, changes)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
    }

    /// Waits (bounded) until the instance's schema knows the tracked table
    /// `name`: the schema is rebuilt asynchronously after `herald.track`, and
    /// until then the table is unknown to `changes` and has no typed fields.
    pub async fn wait_for_tracked(&self, name: &str) {
        self.wait_for_schema(&format!("track {name}"), |t| {
            t.app.state().schema.catalog().resolve(name).is_ok()
        })
        .await;
    }

    /// Waits (bounded) until the instance's schema satisfies `condition`,
    /// re-checking on every schema rebuild.
    pub async fn wait_for_schema(&self, what: &str, condition: impl Fn(&TestApp) -> bool) {
        let mut changes = self.app.state().schema.changes();
        let rebuilt = async {
            while !condition(self) {
                let _ = changes.changed().await;
            }
        };
        tokio::time::timeout(WAIT, rebuilt)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for the schema to {what}"));
    }

    /// Waits (bounded) until the listener has begun the batches of
    /// everything committed so far: a test's setup is then never in one
    /// batch with what the test writes next (old images are judged as of a
    /// batch's start).
    pub async fn wait_until_read_so_far(&self) {
        let row = self
            .admin
            .query_one("select pg_current_snapshot()::text", &[])
            .await
            .unwrap();
        let now: pgherald::events::snapshot::Snapshot = row.get::<_, &str>(0).parse().unwrap();
        tokio::time::timeout(WAIT, self.app.state().hub.wait_for(&now))
            .await
            .expect("the listener reads what was committed");
    }

    /// Keeps the listener out until [`TestApp::let_listener_in`]: new
    /// connections of the login role to this database are refused, then the
    /// listener's backend is killed (the query pool keeps the connections it
    /// has). Returns once the instance has seen its listener go.
    pub async fn keep_listener_out(&self) {
        let db = self.database_name().await;
        self.sql(&format!("revoke connect on database \"{db}\" from public"))
            .await;
        self.sql(
            "select pg_terminate_backend(pid) from pg_stat_activity
              where application_name = 'pgherald-listener' and datname = current_database()",
        )
        .await;
        self.wait_until("listener down", |t| !t.app.state().listener.is_connected())
            .await;
    }

    /// Lets the listener connect again; returns once it has.
    pub async fn let_listener_in(&self) {
        let db = self.database_name().await;
        self.sql(&format!("grant connect on database \"{db}\" to public"))
            .await;
        self.wait_until("listener back", |t| t.app.state().listener.is_connected())
            .await;
    }

    async fn database_name(&self) -> String {
        self.admin
            .query_one("select current_database()", &[])
            .await
            .unwrap()
            .get(0)
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

    /// Waits (bounded, in the database) until `n` sessions wait for the
    /// advisory lock `key`: tests hold a lock a policy or query takes, to
    /// hold work at a known point.
    pub async fn wait_for_lock_waiters(&self, key: i64, n: i64) {
        self.sql(&format!(
            "do $$ begin
               for i in 1..1000 loop
                 exit when (select count(*) from pg_locks
                             where locktype = 'advisory' and objid = {key} and not granted) >= {n};
                 perform pg_sleep(0.01);
               end loop;
               if (select count(*) from pg_locks
                    where locktype = 'advisory' and objid = {key} and not granted) < {n} then
                 raise exception 'fewer than {n} sessions wait for lock {key}';
               end if;
             end $$"
        ))
        .await;
    }

    /// The value of metric `name` on the instance's `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.http_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
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

    /// Runs the statement `sql` as `user` would through an API that sets
    /// the caller's context: in a transaction with `set local role app_user`
    /// and `request.jwt.claims` naming `user`, so the demo schema's policies
    /// and column privileges apply. Returns the number of rows it touched,
    /// or the database's refusal.
    pub async fn sql_as(&self, user: &str, sql: &str) -> Result<u64, tokio_postgres::Error> {
        let mut client = connect(&self.admin_url).await;
        let tx = client.transaction().await?;
        tx.batch_execute("set local role app_user").await?;
        let claims = json!({"sub": user, "role": "app_user"}).to_string();
        tx.execute(
            "select set_config('request.jwt.claims', $1, true)",
            &[&claims],
        )
        .await?;
        let touched = tx.execute(sql, &[]).await?;
        tx.commit().await?;
        Ok(touched)
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
