//! `pgherald migrate`: cluster-wide roles, then the versioned migrations in
//! `migrations/` (recorded by refinery; re-running is a no-op).

use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Identifies the embedded migrations (versions, names, checksums): equal
/// strings mean the same schema.
pub fn fingerprint() -> String {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| format!("{}:{}:{}", m.version(), m.name(), m.checksum()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Migration failure.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Connecting or a role statement failed.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migration(#[from] refinery::Error),
    /// A bad URL.
    #[error(transparent)]
    Url(#[from] super::pool::UrlError),
}

/// Applies roles and migrations with the owner connection `admin_url`.
/// `anon_role` is created (NOLOGIN) and granted to the login role if given;
/// the login role's password is set from `app_url` when it carries one.
pub async fn run(
    admin_url: &str,
    app_url: Option<&str>,
    anon_role: Option<&str>,
) -> Result<usize, MigrateError> {
    let config = super::pool::connection_config(admin_url)?;
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });

    // Several migrators may race on a fresh cluster (parallel tests); role
    // DDL is cluster-wide, so serialise it.
    client
        .batch_execute("select pg_advisory_lock(727274)")
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
                     execute format('create role %I nologin', current_setting('herald.anon_role'));
                   end if;
                   execute format('grant %I to herald_authenticator', current_setting('herald.anon_role'));
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
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await?;
    client
        .batch_execute("select pg_advisory_unlock(727274)")
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(report.applied_migrations().len())
}
