//! The query pool (for GraphQL queries, mutations and the authorizer) and
//! connection settings shared with the listener and `migrate`.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::tls::Connector;

/// A connection string that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid database URL: {0}")]
pub struct UrlError(String);

/// Parses `url` (with its TLS settings, see [`super::tls`]) and sets the
/// keepalive and timeout options every pgherald connection uses, so that dead
/// peers are noticed in seconds, not hours. The result dereferences to the
/// [`tokio_postgres::Config`]; connect with [`Connector::connect`].
pub fn connection_config(url: &str) -> Result<Connector, UrlError> {
    let mut config = Connector::from_url(url).map_err(|e| UrlError(e.to_string()))?;
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
    let connector = connection_config(url)?;
    let manager = Manager::from_config(
        connector.config().clone(),
        connector.make_tls_connect(),
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
