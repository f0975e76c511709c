//! `pgherald serve`'s flags, and the [`Config`] they make: the database and
//! its pools, the outbox's upkeep, the listener's timings and the relay.
//! Each flag has an environment variable (`serve --help` lists them).

use std::net::SocketAddr;
use std::time::Duration;

use super::limits::LimitArgs;
use super::tokens::{ClaimArgs, KeyArgs, TokenCheckArgs};
use crate::Config;
use crate::config::parse_duration;

/// Everything `serve` takes.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Login role's connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Address to serve on (in a container: 0.0.0.0:8080).
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
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    relay: RelayArgs,
}

impl ServeArgs {
    /// The configuration (not yet validated: see [`Config::validate`]).
    pub fn config(self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.database_url, self.key.key()?);
        config.listen = self.listen;
        config.jwt_leeway = self.checks.jwt_leeway;
        config.jwt_audience = self.claims.jwt_audience;
        config.jwt_issuer = self.claims.jwt_issuer;
        config.jwt_role_claim = self.claims.jwt_role_claim;
        config.jwks_refresh = self.checks.jwks_refresh;
        config.role_cache_ttl = self.checks.role_cache_ttl;
        config.anon_role = self.anon_role;
        self.database.apply(&mut config);
        self.listener.apply(&mut config);
        self.limits.apply(&mut config);
        self.relay.apply(&mut config);
        Ok(config)
    }
}

/// Connections to Postgres beyond `DATABASE_URL`, and the outbox's upkeep.
#[derive(clap::Args)]
struct DatabaseArgs {
    /// Connection string for the connections that need a session of their
    /// own: the listener (LISTEN), the relay (advisory lock) and the snapshot
    /// holders. Set it to a direct or session-pooled port when DATABASE_URL
    /// goes through a transaction pooler such as PgBouncer (unset: DATABASE_URL).
    #[arg(long, env = "HERALD_LISTENER_DATABASE_URL", hide_env_values = true)]
    listener_database_url: Option<String>,
    /// Query pool size (clients' queries and `initial` reads).
    #[arg(long, env = "HERALD_POOL_SIZE", default_value_t = 16)]
    pool_size: usize,
    /// Internal pool size: the authorizer, catalog reloads, pruning, readiness.
    #[arg(long, env = "HERALD_INTERNAL_POOL_SIZE", default_value_t = 4)]
    internal_pool_size: usize,
    /// How long events are kept for resuming clients.
    #[arg(long, env = "HERALD_RETENTION", default_value = "24h", value_parser = parse_duration)]
    retention: Duration,
    /// How often the outbox is pruned to the retention.
    #[arg(long, env = "HERALD_PRUNE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    prune_interval: Duration,
}

impl DatabaseArgs {
    fn apply(self, config: &mut Config) {
        config.listener_database_url = self.listener_database_url.map(Into::into);
        config.pool_size = self.pool_size;
        config.internal_pool_size = self.internal_pool_size;
        config.retention = self.retention;
        config.prune_interval = self.prune_interval;
    }
}

/// The listener's timings.
#[derive(clap::Args)]
struct ListenerArgs {
    /// How often the listener reads even without a wake-up (a safety net for
    /// a lost notification).
    #[arg(long, env = "HERALD_LISTENER_SAFETY_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    listener_safety_interval: Duration,
    /// How often the listener sends itself a heartbeat; one not back by the
    /// next means a dead connection (a half-open socket), which is replaced.
    #[arg(long, env = "HERALD_LISTENER_HEARTBEAT", default_value = "5s", value_parser = parse_duration)]
    listener_heartbeat: Duration,
    /// Longest any query of the listener may take before its connection is
    /// taken for dead and replaced.
    #[arg(long, env = "HERALD_LISTENER_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    listener_timeout: Duration,
}

impl ListenerArgs {
    fn apply(self, config: &mut Config) {
        config.listener.safety_interval = self.listener_safety_interval;
        config.listener.heartbeat_interval = self.listener_heartbeat;
        config.listener.query_timeout = self.listener_timeout;
    }
}

/// The relay: who sends the wake-ups of tables tracked in relay mode.
#[derive(clap::Args)]
pub struct RelayArgs {
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
