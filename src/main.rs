//! The `pgherald` command: `serve`, `migrate`, `token`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pgherald::auth::{RoleClaim, TokenRules, Verifier};
use pgherald::config::parse_duration;
use pgherald::graphql::limits::CostLimits;
use pgherald::telemetry::{self, LogFormat};
use pgherald::{Application, Config, JwtKey, Limits};

#[derive(Parser)]
#[command(
    name = "pgherald",
    version,
    about = "Realtime GraphQL subscriptions straight from Postgres"
)]
struct Cli {
    /// Log line format on stderr: text, or one JSON object per line.
    #[arg(
        long,
        global = true,
        env = "HERALD_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: LogFormat,
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
    /// JWKS URL of an identity provider (keys by `kid`, refreshed);
    /// wins over the public key and the secret.
    #[arg(long, env = "HERALD_JWKS_URL")]
    jwks_url: Option<String>,
}

/// What tokens carry: checked by `serve`, written by `token`.
#[derive(clap::Args)]
struct ClaimArgs {
    /// Required `aud` claim (unset: `aud` is not checked).
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Required `iss` claim (unset: `iss` is not checked).
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Where the role is in the claims: a JSON pointer, e.g. /app_metadata/role
    /// (`~1` stands for `/` inside a name).
    #[arg(long, env = "HERALD_JWT_ROLE_CLAIM", default_value = "/role")]
    jwt_role_claim: RoleClaim,
}

impl ClaimArgs {
    /// The rules minted tokens are written for.
    fn rules(&self) -> TokenRules {
        TokenRules {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            role_claim: self.jwt_role_claim.clone(),
            ..TokenRules::default()
        }
    }
}

/// How `serve` checks tokens over time.
#[derive(clap::Args)]
struct TokenCheckArgs {
    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "HERALD_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    jwt_leeway: Duration,
    /// How often the JWKS is fetched again.
    #[arg(long, env = "HERALD_JWKS_REFRESH", default_value = "10m", value_parser = parse_duration)]
    jwks_refresh: Duration,
    /// How long a token role found assumable is trusted before it is checked
    /// again (a revoked grant is refused once this has passed).
    #[arg(long, env = "HERALD_ROLE_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    role_cache_ttl: Duration,
}

/// The relay: who sends the wake-ups of tables tracked in relay mode.
#[derive(clap::Args)]
struct RelayArgs {
    /// Campaign to be the relay (one instance per database is; the others
    /// stand by). Off: this instance never relays.
    #[arg(
        long = "relay",
        env = "HERALD_RELAY",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    enabled: bool,
    /// How often the relay looks for new events of relay-mode tables (the
    /// most it delays a change while writes are sparse).
    #[arg(long, env = "HERALD_RELAY_POLL_INTERVAL", default_value = "2ms", value_parser = parse_duration)]
    relay_poll_interval: Duration,
    /// How long the relay waits after a wake-up before looking again: under
    /// sustained writes, listeners read one batch per this interval.
    #[arg(long, env = "HERALD_RELAY_BUSY_INTERVAL", default_value = "10ms", value_parser = parse_duration)]
    relay_busy_interval: Duration,
    /// How often an instance that is not the relay tries to become it.
    #[arg(long, env = "HERALD_RELAY_RETRY_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    relay_retry_interval: Duration,
}

impl RelayArgs {
    /// Puts the relay settings into `config`.
    fn apply(self, config: &mut Config) {
        config.relay.enabled = self.enabled;
        config.relay.poll_interval = self.relay_poll_interval;
        config.relay.busy_interval = self.relay_busy_interval;
        config.relay.retry_interval = self.relay_retry_interval;
    }
}

/// Limits that protect the instance and other clients from one client, and
/// who may use the `JWT` cookie (`serve`).
#[derive(clap::Args)]
struct LimitArgs {
    /// Origins besides the server's own whose requests may authenticate
    /// with the JWT cookie, comma-separated (scheme://host[:port]).
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Longest a WebSocket write may take; a client that stops reading is dropped.
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// Open WebSocket connections per client IP (0: no cap); more are refused with 429.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Open WebSocket connections per token subject (0: no cap); more are closed with 4429.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_SUBJECT", default_value_t = Limits::default().max_connections_per_subject)]
    max_connections_per_subject: usize,
    /// Time a client has to send an HTTP request's headers.
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Open WebSocket connections per instance; more are closed with 1013.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Largest WebSocket message and HTTP body, in bytes.
    #[arg(long, env = "HERALD_MAX_MESSAGE_BYTES", default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Operations one WebSocket connection may run at once.
    #[arg(long, env = "HERALD_MAX_OPERATIONS", default_value_t = Limits::default().max_operations)]
    max_operations: usize,
    /// Time from the WebSocket upgrade to an accepted connection_init.
    #[arg(long, env = "HERALD_INIT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    init_timeout: Duration,
    /// Interval of WebSocket ping frames.
    #[arg(long, env = "HERALD_PING_INTERVAL", default_value = "12s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// Deliveries a subscription may have queued before it ends with SLOW_CONSUMER.
    #[arg(long, env = "HERALD_SUBSCRIPTION_QUEUE", default_value_t = Limits::default().subscription_queue)]
    subscription_queue: usize,
    /// Longest any statement of a client's query (or `initial` read) may run.
    #[arg(long, env = "HERALD_QUERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    query_timeout: Duration,
    /// Deepest field nesting of a request (introspection exempt).
    #[arg(long, env = "HERALD_MAX_DEPTH", default_value_t = Limits::default().cost.max_depth)]
    max_depth: usize,
    /// Field selections per request, fragments expanded, aliases counted.
    #[arg(long, env = "HERALD_MAX_FIELDS", default_value_t = Limits::default().cost.max_fields)]
    max_fields: usize,
    /// Fields weighted by the rows a list may return (`first`, default 100).
    #[arg(long, env = "HERALD_MAX_COMPLEXITY", default_value_t = Limits::default().cost.max_complexity)]
    max_complexity: u64,
}

impl LimitArgs {
    /// Puts the limits into `config`.
    fn apply(self, config: &mut Config) {
        config.allowed_origins = self.allowed_origins;
        config.limits = Limits {
            max_message_bytes: self.max_message_bytes,
            max_operations: self.max_operations,
            max_connections: self.max_connections,
            init_timeout: self.init_timeout,
            ping_interval: self.ping_interval,
            subscription_queue: self.subscription_queue,
            write_timeout: self.write_timeout,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections_per_subject: self.max_connections_per_subject,
            header_read_timeout: self.header_read_timeout,
            query_timeout: self.query_timeout,
            cost: CostLimits {
                max_depth: self.max_depth,
                max_fields: self.max_fields,
                max_complexity: self.max_complexity,
            },
        };
    }
}

impl KeyArgs {
    fn key(&self) -> anyhow::Result<JwtKey> {
        match (&self.jwks_url, &self.jwt_public_key_file, &self.jwt_secret) {
            (Some(url), _, _) => Ok(JwtKey::Jwks(url.clone())),
            (None, Some(path), _) => Ok(JwtKey::PublicKeyFile(path.clone())),
            (None, None, Some(secret)) => Ok(JwtKey::Secret(secret.clone().into())),
            (None, None, None) => anyhow::bail!(
                "HERALD_JWT_SECRET (or HERALD_JWT_PUBLIC_KEY_FILE or HERALD_JWKS_URL) is required; `make run` sets a development secret"
            ),
        }
    }
}

// `Serve` carries every serve flag; the enum is built once per process, so
// its size does not matter.
#[allow(clippy::large_enum_variant)]
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
        #[command(flatten)]
        claims: ClaimArgs,
        #[command(flatten)]
        checks: TokenCheckArgs,
        /// Role for connections without a token (unset: reject them).
        #[arg(long, env = "HERALD_ANON_ROLE")]
        anon_role: Option<String>,
        /// Query pool size.
        #[arg(long, env = "HERALD_POOL_SIZE", default_value_t = 16)]
        pool_size: usize,
        /// How long events are kept for resuming clients.
        #[arg(long, env = "HERALD_RETENTION", default_value = "24h", value_parser = parse_duration)]
        retention: Duration,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        relay: RelayArgs,
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
        #[command(flatten)]
        claims: ClaimArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    // Before the runtime: the trace exporter runs on a thread of its own,
    // and flushes when `_telemetry` drops, after the runtime has stopped.
    let result = telemetry::init(cli.log_format)
        .map_err(anyhow::Error::from)
        .and_then(|_telemetry| {
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(run(cli.command))
        });
    if let Err(e) = result {
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            database_url,
            listen,
            key,
            claims,
            checks,
            anon_role,
            pool_size,
            retention,
            limits,
            relay,
        } => {
            let mut config = Config::new(database_url, key.key()?);
            limits.apply(&mut config);
            relay.apply(&mut config);
            config.jwt_leeway = checks.jwt_leeway;
            config.jwt_audience = claims.jwt_audience;
            config.jwt_issuer = claims.jwt_issuer;
            config.jwt_role_claim = claims.jwt_role_claim;
            config.jwks_refresh = checks.jwks_refresh;
            config.role_cache_ttl = checks.role_cache_ttl;
            config.listen = listen;
            config.anon_role = anon_role;
            config.pool_size = pool_size;
            config.retention = retention;
            let invalid = config.validate();
            if !invalid.is_empty() {
                // One line per invalid setting, all of them at once.
                for line in invalid {
                    eprintln!("error: {line}");
                }
                std::process::exit(1);
            }
            raise_open_file_limit(config.limits.max_connections);
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
            claims,
        } => {
            let JwtKey::Secret(secret) = key.key()? else {
                anyhow::bail!(
                    "`pgherald token` signs with HERALD_JWT_SECRET; a public key cannot sign"
                );
            };
            let verifier = Verifier::hs256(secret.as_bytes()).with_rules(claims.rules())?;
            println!("{}", verifier.mint(&sub, &role, ttl)?);
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

/// Lifts the open-file soft limit to the hard one (each WebSocket holds a
/// descriptor), and warns when even that is below `max_connections`.
fn raise_open_file_limit(max_connections: usize) {
    match pgherald::fdlimit::raise() {
        Ok((Some(soft), _)) if soft < max_connections as u64 + 64 => tracing::warn!(
            soft,
            max_connections,
            "the open-file limit is below HERALD_MAX_CONNECTIONS; raise the hard limit \
             (ulimit -Hn, LimitNOFILE) or connections will fail to be accepted"
        ),
        Ok((soft, hard)) => tracing::debug!(?soft, ?hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "the open-file limit could not be raised"),
    }
}
