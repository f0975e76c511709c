//! Flags that limit what one client may take: connections, operations,
//! message sizes, queues, time, and the cost of a request (`serve`).

use std::time::Duration;

use crate::Config;
use crate::config::{Limits, parse_duration};
use crate::graphql::limits::CostLimits;

/// Limits that protect the instance and other clients from one client, and
/// who may use the `JWT` cookie (`serve`).
#[derive(clap::Args)]
pub struct LimitArgs {
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
    pub fn apply(self, config: &mut Config) {
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
