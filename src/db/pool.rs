//! The query pool (for GraphQL queries, mutations and the authorizer) and
//! connection settings shared with the listener.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// A connection string that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid database URL: {0}")]
pub struct UrlError(String);

/// Parses `url` and sets the keepalive and timeout options every pgherald
/// connection uses, so that dead peers are noticed in seconds, not hours.
pub fn connection_config(url: &str) -> Result<tokio_postgres::Config, UrlError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| UrlError(e.to_string()))?;
    if config.get_application_name().is_none() {
        config.application_name("pgherald");
    }
    config
        .connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(20));
    Ok(config)
}

/// Builds the query pool. Connections are opened lazily.
pub fn build(url: &str, size: usize) -> Result<Pool, UrlError> {
    let config = connection_config(url)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // Role and claims are only ever set transaction-locally, so a
            // returned connection carries no caller state to reset.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| UrlError(e.to_string()))
}
