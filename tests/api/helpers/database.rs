//! Databases for tests: the server from the environment, a migrated
//! template, and a fresh clone of it per test.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

pub(super) fn base_admin_url() -> String {
    std::env::var("PGHERALD_TEST_ADMIN_URL")
        .or_else(|_| std::env::var("HERALD_ADMIN_DATABASE_URL"))
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("no database: run the tests with `make test` (or set PGHERALD_TEST_ADMIN_URL)")
}

/// Connection string for `user` on database `db`, on the server of `base`.
pub(super) fn url_for(base: &str, user: &str, password: Option<&[u8]>, db: &str) -> String {
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

/// Holds a snapshot of the database at `url` as it is now, until the
/// returned connection commits or is dropped; exported when first asked
/// for, as the listener's held snapshots are.
pub async fn hold_snapshot(url: &str) -> (Arc<Client>, pgherald::db::as_of::HeldSnapshot) {
    let holder = Arc::new(connect(url).await);
    // (The select takes the transaction's snapshot: now, not at its export.)
    holder
        .batch_execute(
            "begin isolation level repeatable read read only; select pg_current_snapshot()",
        )
        .await
        .unwrap();
    let held = pgherald::db::as_of::HeldSnapshot::open(holder.clone(), Duration::from_secs(10));
    (holder, held)
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

/// A connection to `url` that LISTENs on `channel`, and the notifications it
/// receives, with the pid of the backend that sent each.
pub async fn listen(
    url: &str,
    channel: &str,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
) {
    use futures::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n);
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    (client, rx)
}

/// A fingerprint of the migrations compiled into pgherald, core and demo (and
/// of the role script), so a template from another version is never reused.
fn migrations_fingerprint() -> String {
    let text = pgherald::db::migrate::fingerprint() + include_str!("../../../sql/roles.sql");
    // FNV-1a: stable across runs, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Drops test databases whose test process has exited (they are never dropped
/// by the test itself: a failing test's database is kept for inspection until
/// the next run), so repeated local runs do not fill the disk.
/// Templates of other migration versions go too.
async fn drop_leftovers(maintenance: &Client, current_template: &str) {
    let rows = maintenance
        .query(
            "select datname from pg_database
              where datname like 'pgherald\\_test\\_%' or datname like 'pgherald\\_tpl\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let running = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        let stale = if name.starts_with("pgherald_tpl_") {
            name != current_template
        } else {
            !running
        };
        if stale {
            let _ = maintenance
                .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                .await;
        }
    }
}

/// Name for a new test database (its pid lets `drop_leftovers` clean up).
fn test_database_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "pgherald_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}

/// Creates an empty database (from `template0`: nothing pgherald made, no
/// migration) and returns the owner's connection string to it.
pub async fn empty_database() -> String {
    let base = base_admin_url();
    let user = admin_user(&base);
    let password = admin_password(&base);
    let maintenance = connect(&url_for(&base, &user, password.as_deref(), "postgres")).await;
    let name = test_database_name();
    maintenance
        .batch_execute(&format!("create database \"{name}\" template template0"))
        .await
        .unwrap();
    url_for(&base, &user, password.as_deref(), &name)
}

/// Creates a fresh, migrated database and returns its name.
pub async fn fresh_database() -> String {
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
    drop_leftovers(&maintenance, &template).await;
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
        pgherald::db::migrate::run(&url, None, Some("anon"), true)
            .await
            .expect("migrations apply");
        maintenance
            .batch_execute(&format!(
                "alter database \"{building}\" rename to \"{template}\""
            ))
            .await
            .unwrap();
    }
    let name = test_database_name();
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

pub(super) fn admin_user(base: &str) -> String {
    tokio_postgres::Config::from_str(base)
        .unwrap()
        .get_user()
        .unwrap_or("postgres")
        .to_owned()
}

pub(super) fn admin_password(base: &str) -> Option<Vec<u8>> {
    tokio_postgres::Config::from_str(base)
        .unwrap()
        .get_password()
        .map(<[u8]>::to_vec)
}

/// Password of the login role, when the environment gives one.
pub(super) fn app_password() -> Option<Vec<u8>> {
    let url = std::env::var("DATABASE_URL").ok()?;
    tokio_postgres::Config::from_str(&url)
        .ok()?
        .get_password()
        .map(<[u8]>::to_vec)
}
