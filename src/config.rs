//! Configuration from the environment (flags mirror it; see `main.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where JWT verification keys come from.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 shared secret.
    Secret(String),
    /// PEM public key file for RS256/ES256.
    PublicKeyFile(PathBuf),
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
        }
    }
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connection string of the login role `herald_authenticator`.
    pub database_url: String,
    /// Address to serve on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// JWT verification key.
    pub jwt: JwtKey,
    /// Role for connections without a token; `None` rejects them.
    pub anon_role: Option<String>,
    /// Query pool size.
    pub pool_size: usize,
    /// Longest a statement of a caller's query may run.
    pub query_timeout: Duration,
    /// Outbox retention; older events are pruned.
    pub retention: Duration,
    /// How often to prune.
    pub prune_interval: Duration,
    /// Per-connection limits.
    pub limits: Limits,
}

impl Config {
    /// A configuration with defaults for everything but the database and key.
    pub fn new(database_url: impl Into<String>, jwt: JwtKey) -> Config {
        Config {
            database_url: database_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt,
            anon_role: None,
            pool_size: 16,
            query_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(24 * 3600),
            prune_interval: Duration::from_secs(300),
            limits: Limits::default(),
        }
    }
}

/// Parses durations like `90s`, `15m`, `1h`, `7d` (plain numbers are seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 30s, 15m, 1h, 7d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration unit in {s:?} (s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604800));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
