//! The `pgherald` command: `serve`, `migrate`, `token`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pgherald::auth::Verifier;
use pgherald::config::parse_duration;
use pgherald::{Application, Config, JwtKey};

#[derive(Parser)]
#[command(
    name = "pgherald",
    version,
    about = "Realtime GraphQL subscriptions straight from Postgres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct KeyArgs {
    /// HS256 secret for JWTs.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM public key (RS256/ES256) instead of a secret.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY_FILE")]
    jwt_public_key_file: Option<PathBuf>,
}

impl KeyArgs {
    fn key(&self) -> anyhow::Result<JwtKey> {
        match (&self.jwt_public_key_file, &self.jwt_secret) {
            (Some(path), _) => Ok(JwtKey::PublicKeyFile(path.clone())),
            (None, Some(secret)) => Ok(JwtKey::Secret(secret.clone())),
            (None, None) => anyhow::bail!(
                "HERALD_JWT_SECRET (or HERALD_JWT_PUBLIC_KEY_FILE) is required; `make run` sets a development secret"
            ),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve GraphQL over HTTP and WebSocket.
    Serve {
        /// Login role's connection string.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Address to serve on.
        #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        key: KeyArgs,
        /// Role for connections without a token (unset: reject them).
        #[arg(long, env = "HERALD_ANON_ROLE")]
        anon_role: Option<String>,
        /// Query pool size.
        #[arg(long, env = "HERALD_POOL_SIZE", default_value_t = 16)]
        pool_size: usize,
        /// How long events are kept for resuming clients.
        #[arg(long, env = "HERALD_RETENTION", default_value = "24h", value_parser = parse_duration)]
        retention: Duration,
        /// Longest any statement of a client's query (or `initial` read) may run.
        #[arg(long, env = "HERALD_QUERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
        query_timeout: Duration,
    },
    /// Create roles and apply pgherald's migrations (and, with --demo, the demo schema).
    Migrate {
        /// Owner or superuser connection string.
        #[arg(long, env = "HERALD_ADMIN_DATABASE_URL", hide_env_values = true)]
        admin_database_url: Option<String>,
        /// Login role's connection string (its password, if any, is set on the role).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Also create this role for anonymous connections.
        #[arg(long, env = "HERALD_ANON_ROLE")]
        anon_role: Option<String>,
        /// Also install the demo SaaS schema of examples/saas (tables in
        /// `public`); without it only the `herald` schema is installed.
        #[arg(
            long,
            env = "HERALD_MIGRATE_DEMO",
            action = clap::ArgAction::SetTrue,
            value_parser = clap::builder::BoolishValueParser::new()
        )]
        demo: bool,
    },
    /// Mint a development JWT (HS256).
    Token {
        /// User id (the `sub` claim).
        #[arg(long)]
        sub: String,
        /// Database role to assume.
        #[arg(long, default_value = "app_user")]
        role: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        #[command(flatten)]
        key: KeyArgs,
    },
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        // One line with the cause chain; never a backtrace or a Debug dump.
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// `{e:#}` on one line: the chain joined by ": ", line breaks inside a
/// message (Postgres's DETAIL and HINT) as "; ", and a cause skipped when the
/// text already ends with it (errors that print their source themselves).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let repeated = text.strip_suffix(&part).is_some_and(|before| {
            before.is_empty() || !before.ends_with(|c: char| c.is_alphanumeric())
        });
        if part.is_empty() || repeated {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pgherald=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            database_url,
            listen,
            key,
            anon_role,
            pool_size,
            retention,
            query_timeout,
        } => {
            let mut config = Config::new(database_url, key.key()?);
            config.listen = listen;
            config.anon_role = anon_role;
            config.pool_size = pool_size;
            config.retention = retention;
            config.query_timeout = query_timeout;
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await;
        }
        Command::Migrate {
            admin_database_url,
            database_url,
            anon_role,
            demo,
        } => {
            let admin = admin_database_url
                .or_else(|| database_url.clone())
                .context("HERALD_ADMIN_DATABASE_URL or DATABASE_URL is required")?;
            let applied = pgherald::db::migrate::run(
                &admin,
                database_url.as_deref(),
                anon_role.as_deref(),
                demo,
            )
            .await
            .context("migration failed")?;
            eprintln!("migrations applied: {applied}");
        }
        Command::Token {
            sub,
            role,
            ttl,
            key,
        } => {
            let JwtKey::Secret(secret) = key.key()? else {
                anyhow::bail!(
                    "`pgherald token` signs with HERALD_JWT_SECRET; a public key cannot sign"
                );
            };
            println!(
                "{}",
                Verifier::hs256(secret.as_bytes()).mint(&sub, &role, ttl)?
            );
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
