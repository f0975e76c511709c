//! `pgherald migrate`: pgherald's own schema only (history inside `herald`),
//! on application databases that already have tables of the demo's names;
//! the demo behind `--demo`; failures as one line of stderr.

use std::process::Output;

use tokio_postgres::Client;

use crate::helpers::{connect, empty_database};

/// Tables of the demo's names, in other shapes, as an application might have.
const APP_TABLES: &str = "
    create table public.users (id bigint primary key, name text);
    create table public.tenants (x int);
    create table public.notifications (id serial primary key, message text not null);
    create table public.documents (path text primary key, size bigint)";

/// Everything in `public` a migration could add or change: relations and
/// their columns, functions, triggers, policies, row security.
async fn public_schema(db: &Client) -> Vec<String> {
    db.query(
        "select 'relation ' || relname || ' ' || relkind::text || ' rls=' || relrowsecurity::text
           from pg_class where relnamespace = 'public'::regnamespace
         union all
         select 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           from pg_attribute a join pg_class c on c.oid = a.attrelid
          where c.relnamespace = 'public'::regnamespace and a.attnum > 0 and not a.attisdropped
         union all
         select 'function ' || proname from pg_proc where pronamespace = 'public'::regnamespace
         union all
         select 'trigger ' || t.tgname || ' on ' || c.relname
           from pg_trigger t join pg_class c on c.oid = t.tgrelid
          where c.relnamespace = 'public'::regnamespace
         union all
         select 'policy ' || p.polname || ' on ' || c.relname
           from pg_policy p join pg_class c on c.oid = p.polrelid
          where c.relnamespace = 'public'::regnamespace
         order by 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Names of the migrations in `dir` (`V<n>__<name>.sql`), in version order.
fn migration_names(dir: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found: Vec<(u32, String)> = std::fs::read_dir(path)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let (version, rest) = name.strip_prefix('V')?.split_once("__")?;
            Some((version.parse().ok()?, rest.strip_suffix(".sql")?.to_owned()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name).collect()
}

async fn tables_in(db: &Client, schema: &str) -> Vec<String> {
    db.query(
        "select table_name::text from information_schema.tables
          where table_schema = $1 order by 1",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// `pgherald migrate ARGS` against `admin_url`, with backtraces requested
/// and nothing else from the environment.
async fn migrate_command(admin_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgherald"));
    command
        .arg("migrate")
        .args(args)
        .env("HERALD_ADMIN_DATABASE_URL", admin_url)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .env_remove("DATABASE_URL")
        .env_remove("HERALD_ANON_ROLE")
        .env_remove("HERALD_MIGRATE_DEMO")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("pgherald runs")
}

/// Asserts `output` failed with exit code 1 and exactly one stderr line
/// starting `error:`, without backtrace or Debug output; returns the line.
fn single_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for noise in ["backtrace", "panicked", "Caused by", "Error {", "DbError"] {
        assert!(!stderr.contains(noise), "{noise:?} in: {stderr}");
    }
    lines[0].to_owned()
}

#[tokio::test]
async fn migrate_installs_only_the_herald_schema_beside_existing_application_tables() {
    let url = empty_database().await;
    let db = connect(&url).await;
    db.batch_execute(APP_TABLES).await.unwrap();
    let before = public_schema(&db).await;

    let applied = pgherald::db::migrate::run(&url, None, None, false)
        .await
        .expect("migrate succeeds next to foreign users/tenants/notifications/documents");
    assert!(applied >= 1, "applied {applied}");

    assert_eq!(
        public_schema(&db).await,
        before,
        "public must be left untouched"
    );
    assert_eq!(
        tables_in(&db, "public").await,
        ["documents", "notifications", "tenants", "users"],
        "no table created in public (no refinery_schema_history either)"
    );
    let history: Vec<String> = db
        .query(
            "select name::text from herald.schema_history order by version",
            &[],
        )
        .await
        .expect("history inside the herald schema")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(history, migration_names("migrations"));
    assert!(
        tables_in(&db, "herald")
            .await
            .contains(&"events".to_owned())
    );
    let tracked: i64 = db
        .query_one("select count(*) from herald.tracked", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tracked, 0, "no application table is tracked");

    let again = pgherald::db::migrate::run(&url, None, None, false)
        .await
        .expect("second run succeeds");
    assert_eq!(again, 0, "a second run applies nothing");
    assert_eq!(public_schema(&db).await, before);
}

#[tokio::test]
async fn concurrent_migrations_of_one_database_all_succeed_and_apply_once() {
    let url = empty_database().await;
    let runs = (0..4).map(|_| pgherald::db::migrate::run(&url, None, None, true));
    let applied: Vec<usize> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.expect("every concurrent migrator succeeds"))
        .collect();
    // Every core and demo migration, applied by exactly one of them.
    let all =
        migration_names("migrations").len() + migration_names("examples/saas/migrations").len();
    assert_eq!(applied.iter().sum::<usize>(), all, "{applied:?}");
    assert_eq!(applied.iter().filter(|&&n| n > 0).count(), 1, "{applied:?}");
}

#[tokio::test]
async fn migrate_demo_installs_the_saas_schema_once() {
    let url = empty_database().await;
    let first = migrate_command(&url, &[], &[("HERALD_MIGRATE_DEMO", "1")]).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let db = connect(&url).await;
    let tracked: Vec<String> = db
        .query(
            "select table_name::text from herald.tracked order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tracked,
        [
            "documents",
            "memberships",
            "notifications",
            "tenants",
            "users"
        ]
    );
    let demo_history: i64 = db
        .query_one("select count(*) from herald.demo_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    let demo_migrations = migration_names("examples/saas/migrations").len();
    assert_eq!(demo_history, demo_migrations as i64);

    let second = migrate_command(&url, &["--demo"], &[]).await;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("migrations applied: 0"), "{stderr}");
}

#[tokio::test]
async fn a_failing_demo_migration_is_one_error_line_with_exit_code_1() {
    let url = empty_database().await;
    let db = connect(&url).await;
    db.batch_execute("create table public.users (id bigint primary key, name text)")
        .await
        .unwrap();
    let before = public_schema(&db).await;

    let output = migrate_command(&url, &["--demo"], &[]).await;
    let line = single_error_line(&output);
    assert!(
        line.starts_with("error: migration failed: demo schema: "),
        "{line}"
    );
    assert!(
        line.contains(r#"relation "users" already exists"#),
        "{line}"
    );

    // The demo version ran in one transaction: none of it is left behind.
    assert_eq!(public_schema(&db).await, before);
}

#[tokio::test]
async fn serve_that_cannot_start_is_one_error_line_with_exit_code_1() {
    let url = empty_database().await;
    let missing = url.replace("dbname=", "dbname=missing_");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgherald"))
        .arg("serve")
        .env("DATABASE_URL", &missing)
        .env("HERALD_JWT_SECRET", "test-secret")
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .env_remove("HERALD_JWT_PUBLIC_KEY_FILE")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("pgherald runs");
    let line = single_error_line(&output);
    assert!(line.contains("does not exist"), "{line}");
}
