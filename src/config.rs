//! Configuration from the environment (flags mirror it; see `main.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::RoleClaim;
use crate::events::listener::ListenerConfig;
use crate::events::relay::RelayConfig;
use crate::graphql::limits::CostLimits;
use crate::origin::AllowedOrigins;

/// A secret: usable as a `str`, printed by `Debug` as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<String> for DatabaseUrl {
    fn from(s: String) -> DatabaseUrl {
        DatabaseUrl(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

/// A connection string, usable as a `str`; `Debug` prints it with its
/// password (URL or `password=` form) replaced by `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The connection string with its password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        if let Some((scheme, rest)) = url.split_once("://") {
            // scheme://user:password@host/...
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            if let Some(at) = rest[..authority_end].rfind('@') {
                if let Some(colon) = rest[..at].find(':') {
                    return format!("{scheme}://{}:[redacted]{}", &rest[..colon], &rest[at..]);
                }
            }
            // ...?password=...
            return redact_key_values(url, '&');
        }
        redact_key_values(url, ' ')
    }
}

/// `password=...` (key=value form or URL query) with its value redacted.
/// A quoted key=value password may hold spaces: everything from the key on
/// is then cut, which never shows part of it.
fn redact_key_values(text: &str, separator: char) -> String {
    let Some(start) = text.find("password=") else {
        return text.to_owned();
    };
    let value_start = start + "password=".len();
    let rest = &text[value_start..];
    if rest.starts_with('\'') {
        return format!("{}[redacted]", &text[..value_start]);
    }
    let end = rest.find(separator).map_or(text.len(), |i| value_start + i);
    format!("{}[redacted]{}", &text[..value_start], &text[end..])
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Where JWT verification keys come from.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 shared secret.
    Secret(Secret),
    /// PEM public key file for RS256/ES256.
    PublicKeyFile(PathBuf),
    /// JWKS URL (an identity provider's published keys, fetched and
    /// refreshed; keys chosen by `kid`).
    Jwks(String),
}

/// Limits that protect the process and other subscribers from one client.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted WebSocket message.
    pub max_message_bytes: usize,
    /// Operations one connection may run at once.
    pub max_operations: usize,
    /// Open WebSocket connections per instance.
    pub max_connections: usize,
    /// Time allowed between connect and `connection_init`.
    pub init_timeout: Duration,
    /// Interval of WebSocket ping frames.
    pub ping_interval: Duration,
    /// Deliveries a subscription may have queued before it is ended as too slow.
    pub subscription_queue: usize,
    /// Longest a WebSocket write may take; a client that stops reading for
    /// longer is dropped.
    pub write_timeout: Duration,
    /// Open WebSocket connections per client IP (0: no cap).
    pub max_connections_per_ip: usize,
    /// Open WebSocket connections per token subject, `sub` (0: no cap).
    pub max_connections_per_subject: usize,
    /// Time a client has to send an HTTP request's headers.
    pub header_read_timeout: Duration,
    /// Longest a statement of a client's query (or `initial` read) may run.
    pub query_timeout: Duration,
    /// Depth, fields and complexity a request may have.
    pub cost: CostLimits,
}

impl Limits {
    /// Every limit that is out of range, one line each (empty: all valid).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut at_least = |name: &str, value: usize, min: usize| {
            if value < min {
                errors.push(format!("{name} must be at least {min} (got {value})"));
            }
        };
        at_least("HERALD_MAX_MESSAGE_BYTES", self.max_message_bytes, 1024);
        at_least("HERALD_MAX_OPERATIONS", self.max_operations, 1);
        at_least("HERALD_MAX_CONNECTIONS", self.max_connections, 1);
        at_least("HERALD_SUBSCRIPTION_QUEUE", self.subscription_queue, 1);
        at_least("HERALD_MAX_DEPTH", self.cost.max_depth, 2);
        at_least("HERALD_MAX_FIELDS", self.cost.max_fields, 1);
        if self.cost.max_complexity < 1 {
            errors.push("HERALD_MAX_COMPLEXITY must be at least 1 (got 0)".to_owned());
        }
        for (name, value) in [
            ("HERALD_INIT_TIMEOUT", self.init_timeout),
            ("HERALD_PING_INTERVAL", self.ping_interval),
            ("HERALD_WRITE_TIMEOUT", self.write_timeout),
            ("HERALD_HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("HERALD_QUERY_TIMEOUT", self.query_timeout),
        ] {
            if value.is_zero() {
                errors.push(format!("{name} must be more than 0 seconds"));
            }
        }
        errors
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * 1024,
            max_operations: 100,
            max_connections: 10_000,
            init_timeout: Duration::from_secs(3),
            ping_interval: Duration::from_secs(12),
            subscription_queue: 4096,
            write_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
            max_connections_per_subject: 64,
            header_read_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(10),
            cost: CostLimits::default(),
        }
    }
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connection string of the login role `herald_authenticator`.
    pub database_url: DatabaseUrl,
    /// Address to serve on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// JWT verification key.
    pub jwt: JwtKey,
    /// Clock skew allowed on `exp` and `nbf`.
    pub jwt_leeway: Duration,
    /// Required `aud` claim; `None` leaves `aud` unchecked.
    pub jwt_audience: Option<String>,
    /// Required `iss` claim; `None` leaves `iss` unchecked.
    pub jwt_issuer: Option<String>,
    /// Where the role is in the claims (a JSON pointer).
    pub jwt_role_claim: RoleClaim,
    /// How often a JWKS is fetched again.
    pub jwks_refresh: Duration,
    /// Least time between JWKS fetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
    /// How long a role found assumable is trusted before it is checked
    /// again (a revoked grant is refused on the next connection after this).
    pub role_cache_ttl: Duration,
    /// Role for connections without a token; `None` rejects them.
    pub anon_role: Option<String>,
    /// Connection string for the listener, the relay and the snapshot
    /// holders, which need sessions of their own (`None`: `database_url`).
    pub listener_database_url: Option<DatabaseUrl>,
    /// Query pool size.
    pub pool_size: usize,
    /// Internal pool size: the authorizer runs one call per page at a time;
    /// catalog reloads, pruning and readiness checks are rare (default 4).
    pub internal_pool_size: usize,
    /// Outbox retention; older events are pruned.
    pub retention: Duration,
    /// How often to prune.
    pub prune_interval: Duration,
    /// Per-connection limits.
    pub limits: Limits,
    /// Origins besides the server's own whose requests may authenticate with
    /// the `JWT` cookie (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Listener timings (its safety read, heartbeat, reconnects).
    pub listener: ListenerConfig,
    /// Relay election and polling (tables tracked in relay mode).
    pub relay: RelayConfig,
}

impl Config {
    /// A configuration with defaults for everything but the database and key.
    pub fn new(database_url: impl Into<String>, jwt: JwtKey) -> Config {
        Config {
            database_url: DatabaseUrl(database_url.into()),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt,
            jwt_leeway: Duration::from_secs(30),
            jwt_audience: None,
            jwt_issuer: None,
            jwt_role_claim: RoleClaim::default(),
            jwks_refresh: Duration::from_secs(600),
            jwks_min_refetch: Duration::from_secs(30),
            role_cache_ttl: Duration::from_secs(60),
            anon_role: None,
            listener_database_url: None,
            pool_size: 16,
            internal_pool_size: 4,
            retention: Duration::from_secs(24 * 3600),
            prune_interval: Duration::from_secs(300),
            limits: Limits::default(),
            allowed_origins: Vec::new(),
            listener: ListenerConfig::default(),
            relay: RelayConfig::default(),
        }
    }

    /// Every invalid setting, one line each (empty: all valid).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = self.limits.validate();
        if let Err(e) = AllowedOrigins::parse(&self.allowed_origins) {
            errors.extend(e);
        }
        for (name, value) in [
            ("HERALD_POOL_SIZE", self.pool_size),
            ("HERALD_INTERNAL_POOL_SIZE", self.internal_pool_size),
        ] {
            if value < 1 {
                errors.push(format!("{name} must be at least 1 (got 0)"));
            }
        }
        for (name, value) in [
            ("HERALD_RETENTION", self.retention),
            ("HERALD_PRUNE_INTERVAL", self.prune_interval),
            (
                "HERALD_LISTENER_SAFETY_INTERVAL",
                self.listener.safety_interval,
            ),
            (
                "HERALD_LISTENER_HEARTBEAT",
                self.listener.heartbeat_interval,
            ),
            ("HERALD_LISTENER_TIMEOUT", self.listener.query_timeout),
        ] {
            if value.is_zero() {
                errors.push(format!("{name} must be more than 0 seconds"));
            }
        }
        for (name, value) in [
            ("HERALD_RELAY_POLL_INTERVAL", self.relay.poll_interval),
            ("HERALD_RELAY_RETRY_INTERVAL", self.relay.retry_interval),
        ] {
            if self.relay.enabled && value.is_zero() {
                errors.push(format!("{name} must be more than 0 (e.g. 2ms)"));
            }
        }
        errors
    }
}

/// Parses durations like `2ms`, `90s`, `15m`, `1h`, `7d` (plain numbers are
/// seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 30s, 15m, 1h, 7d)"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_jwt_secret_and_the_database_password() {
        for url in [
            "postgres://herald_authenticator:hunter2-pw@db:5432/app",
            "host=db user=herald_authenticator password=hunter2-pw dbname=app",
            "host=db password='hunter2 pw' dbname=app",
            "postgres://db/app?user=x&password=hunter2-pw&sslmode=require",
        ] {
            let config = Config::new(url, JwtKey::Secret("the-jwt-secret-value".into()));
            let debug = format!("{config:?}");
            assert!(!debug.contains("the-jwt-secret-value"), "{debug}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("[redacted]"), "{debug}");
            assert!(debug.contains("db"), "the host is still shown: {debug}");
        }
    }

    #[test]
    fn invalid_limits_are_reported_one_line_each() {
        let mut config = Config::new("postgres://db/app", JwtKey::Secret("s".into()));
        assert!(config.validate().is_empty());
        config.limits.write_timeout = Duration::ZERO;
        config.limits.max_connections = 0;
        config.allowed_origins = vec!["not an origin".into()];
        let errors = config.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("HERALD_WRITE_TIMEOUT")));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("HERALD_MAX_CONNECTIONS "))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("HERALD_ALLOWED_ORIGINS"))
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604800));
        assert_eq!(parse_duration("2ms").unwrap(), Duration::from_millis(2));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
