//! `pgherald migrate`: cluster-wide roles, then pgherald's own versioned
//! migrations in `migrations/` (the `herald` schema), recorded by refinery in
//! `herald.schema_history`; re-running is a no-op. Nothing outside the
//! `herald` schema is created, so it applies to any application database.
//!
//! With `demo`, the demo SaaS schema of `examples/saas/migrations/` follows
//! (tables in `public`, their policies and `herald.track` calls).
//!
//! Versions apply in version order, and gaps are fine (V7 then V9). A version
//! below the newest applied one that was never applied is a migration that
//! landed late: two branches numbered theirs V8 and V9, and V9 reached this
//! database first. refinery alone refuses it (as "missing from the
//! filesystem"); [`apply`] applies it first, logged, each such version in its
//! own transaction with its history row, as refinery would record it. So
//! migrations must not assume that a higher version is absent: each one
//! replaces only what it owns.

/// pgherald's own schema.
mod herald {
    refinery::embed_migrations!("migrations");
}

/// The demo SaaS application. Versioned refinery migrations rather than an
/// idempotent script: they are applied under the same advisory lock and
/// recorded like the core ones, so a re-run is a no-op, a changed file is
/// reported instead of being half re-applied, and each version runs in one
/// transaction, so a database whose `users` (say) has another shape gets a
/// clear error and no partial demo. A `create table if not exists` script
/// would instead skip the foreign table and go on to track it.
mod demo {
    refinery::embed_migrations!("examples/saas/migrations");
}

/// History of the core migrations: inside the `herald` schema, which
/// pgherald owns, never in the application's `public`.
const CORE_HISTORY: &str = "herald.schema_history";
/// History of the demo migrations, separate so that the two sets version
/// independently.
const DEMO_HISTORY: &str = "herald.demo_schema_history";

/// Serialises concurrent migrators of one database.
const LOCK_KEY: i64 = 727274;

/// pgherald's own migrations, in version order (tests apply subsets with
/// [`apply`]).
pub fn core_migrations() -> Vec<refinery::Migration> {
    let mut all = herald::migrations::runner().get_migrations().clone();
    all.sort();
    all
}

/// Identifies the embedded migrations, core and demo (versions, names,
/// checksums): equal strings mean the same schemas.
pub fn fingerprint() -> String {
    let list = |set: &str, runner: refinery::Runner| {
        runner
            .get_migrations()
            .iter()
            .map(|m| format!("{set}/{}:{}:{}", m.version(), m.name(), m.checksum()))
            .collect::<Vec<_>>()
    };
    let mut all = list("herald", herald::migrations::runner());
    all.extend(list("demo", demo::migrations::runner()));
    all.join(",")
}

/// A Postgres failure as one line: the server's message (with its detail and
/// hint, if any), or the client error and its causes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cause(String);

impl Cause {
    fn of(e: &(dyn std::error::Error + 'static)) -> Cause {
        if let Some(db) = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
        {
            let mut text = db.message().to_owned();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (hint: {hint})"));
            }
            return Cause(one_line(&text));
        }
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        Cause(one_line(&text))
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Migration failure. Its `Display` (with `{:#}`, its cause too) is one line.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Connecting, or a statement around the migrations (lock, roles), failed.
    #[error("database")]
    Db(#[source] Cause),
    /// A migration of `set` failed at `step`.
    #[error("{set}: {step}")]
    Migration {
        /// "herald schema" or "demo schema".
        set: &'static str,
        /// What refinery was doing, e.g. "applying migration V1__schema".
        step: String,
        /// The database's error, if any.
        #[source]
        cause: Option<Cause>,
    },
    /// A `herald` schema made by something else than these migrations.
    #[error(
        "schema herald already exists but has no {CORE_HISTORY}: it was not made by this \
         version of pgherald (an older one kept its history in public.refinery_schema_history); \
         drop schema herald or use a fresh database (private cluster: make pg-destroy)"
    )]
    ForeignHeraldSchema,
    /// A bad URL.
    #[error(transparent)]
    Url(#[from] super::pool::UrlError),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Db(Cause::of(&e))
    }
}

impl MigrateError {
    fn migration(set: &'static str, e: refinery::Error) -> MigrateError {
        match e.kind() {
            refinery::error::Kind::Connection(what, cause) => MigrateError::Migration {
                set,
                step: what.strip_prefix("error ").unwrap_or(what).to_owned(),
                cause: Some(Cause::of(cause.as_ref())),
            },
            other => MigrateError::Migration {
                set,
                step: one_line(&other.to_string()),
                cause: None,
            },
        }
    }
}

/// Applies roles and pgherald's migrations with the owner connection
/// `admin_url`, then, if `demo`, the demo SaaS schema. `anon_role` is created
/// (NOLOGIN) and granted to the login role if given; the login role's
/// password is set from `app_url` when it carries one. Returns how many
/// migrations were applied (0: already up to date).
pub async fn run(
    admin_url: &str,
    app_url: Option<&str>,
    anon_role: Option<&str>,
    demo: bool,
) -> Result<usize, MigrateError> {
    let config = super::pool::connection_config(admin_url)?;
    let (mut client, connection) = config.connect().await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });

    // Several migrators of this database may race (instances started
    // together): serialise them. Advisory locks are per database, so role
    // statements guard against migrators of other databases themselves
    // (sql/roles.sql). A failure ends the session, which releases the lock.
    client
        .execute("select pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    client
        .batch_execute(include_str!("../../sql/roles.sql"))
        .await?;
    if let Some(role) = anon_role {
        client
            .execute("select set_config('herald.anon_role', $1, false)", &[&role])
            .await?;
        client
            .batch_execute(
                "do $$ begin
                   if not exists (select 1 from pg_roles where rolname = current_setting('herald.anon_role')) then
                     begin
                       execute format('create role %I nologin', current_setting('herald.anon_role'));
                     exception when duplicate_object or unique_violation then
                       null; -- created concurrently (see sql/roles.sql)
                     end;
                   end if;
                   if not pg_has_role('herald_authenticator', current_setting('herald.anon_role'), 'member') then
                     begin
                       execute format('grant %I to herald_authenticator', current_setting('herald.anon_role'));
                     exception when unique_violation then
                       null;
                     end;
                   end if;
                 end $$",
            )
            .await?;
    }
    if let Some(password) = app_url
        .and_then(|u| super::pool::connection_config(u).ok())
        .and_then(|c| {
            c.get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        })
    {
        client
            .execute("select set_config('herald.pw', $1, false)", &[&password])
            .await?;
        client
            .batch_execute(
                "do $$ begin
                   execute format('alter role herald_authenticator password %L', current_setting('herald.pw'));
                 end $$; reset herald.pw",
            )
            .await?;
    }

    // The history table lives in the herald schema, so the schema must exist
    // before refinery looks for its history. A herald schema with objects
    // but no history was not made by these migrations: say so rather than
    // fail on its first `create table`.
    let foreign: bool = client
        .query_one(
            "select to_regclass($1) is null
                and (exists (select 1 from pg_class where relnamespace = to_regnamespace('herald'))
                     or exists (select 1 from pg_proc where pronamespace = to_regnamespace('herald')))",
            &[&CORE_HISTORY],
        )
        .await?
        .get(0);
    if foreign {
        return Err(MigrateError::ForeignHeraldSchema);
    }
    client
        .batch_execute(
            "do $$ begin
               if to_regnamespace('herald') is null then create schema herald; end if;
             end $$",
        )
        .await?;

    let mut applied = apply(
        &mut client,
        "herald schema",
        CORE_HISTORY,
        &core_migrations(),
    )
    .await?;
    if demo {
        let demo = demo::migrations::runner().get_migrations().clone();
        applied += apply(&mut client, "demo schema", DEMO_HISTORY, &demo).await?;
    }

    client
        .execute("select pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(applied)
}

/// Applies `migrations` (of `set`, "herald schema" or "demo schema") with
/// their history in `history`: first any that landed late (never applied,
/// below the newest applied version), in version order, then the rest through
/// refinery, which also checks that every applied one is unchanged. Returns
/// how many were applied. The caller serialises migrators.
pub async fn apply(
    client: &mut tokio_postgres::Client,
    set: &'static str,
    history: &str,
    migrations: &[refinery::Migration],
) -> Result<usize, MigrateError> {
    let recorded: bool = client
        .query_one("select to_regclass($1) is not null", &[&history])
        .await?
        .get(0);
    let applied: Vec<i32> = if recorded {
        client
            .query(&format!("select version from {history}"), &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    let newest = applied.iter().copied().max();
    let mut late: Vec<&refinery::Migration> = migrations
        .iter()
        .filter(|m| {
            let version = m.version();
            // Unversioned migrations (U…) apply whenever they are new.
            m.to_string().starts_with('V')
                && !applied.contains(&version)
                && newest.is_some_and(|n| version < n)
        })
        .collect();
    late.sort();
    for m in &late {
        tracing::warn!(
            set,
            migration = %m,
            newest = newest.unwrap_or_default(),
            "applying a migration that landed after a higher version was applied"
        );
        let step = |e: tokio_postgres::Error| MigrateError::Migration {
            set,
            step: format!("applying migration {m} (landed late)"),
            cause: Some(Cause::of(&e)),
        };
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql().unwrap_or_default())
            .await
            .map_err(step)?;
        let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        tx.execute(
            &format!(
                "insert into {history} (version, name, applied_on, checksum) values ($1, $2, $3, $4)"
            ),
            &[
                &m.version(),
                &m.name(),
                &applied_on,
                &m.checksum().to_string(),
            ],
        )
        .await
        .map_err(step)?;
        tx.commit().await.map_err(step)?;
    }
    let report = refinery::Runner::new(migrations)
        .set_migration_table_name(history)
        .run_async(client)
        .await
        .map_err(|e| MigrateError::migration(set, e))?;
    Ok(late.len() + report.applied_migrations().len())
}
