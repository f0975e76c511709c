//! The application: `Application::build` wires the pool, listener, relay,
//! hub, schema reloader, pruner and HTTP server together. `main` and the tests
//! both start pgherald through it.

use std::net::SocketAddr;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::config::Config;
use crate::db::authorizer::PgAuthorizer;
use crate::db::roles::{self, RoleGate};
use crate::db::routes::PgRoutes;
use crate::db::{self, catalog, pool};
use crate::events::catchup;
use crate::events::cursor::CursorCodec;
use crate::events::feed::Feed;
use crate::events::hub::Hub;
use crate::events::listener::{self, ListenerStatus};
use crate::events::privileges;
use crate::events::relay::{self, RelayStatus};
use crate::graphql::{self, SchemaHandle};
use crate::metrics::{self, Metrics};
use crate::origin::AllowedOrigins;
use crate::state::AppState;
use crate::ws;
use crate::{http, server};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The database is unreachable or not migrated.
    #[error("database: {0}")]
    Db(#[from] db::DbError),
    /// The login role would bypass RLS.
    #[error(transparent)]
    UnsafeLogin(#[from] roles::UnsafeLogin),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// A running pgherald instance.
pub struct Application {
    addr: SocketAddr,
    state: Arc<AppState>,
    tasks: TaskTracker,
}

impl Application {
    /// Connects, checks the database, binds, and starts every task.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let invalid = config.validate();
        if !invalid.is_empty() {
            return Err(StartError::Config(invalid.join("; ")));
        }
        let origins = AllowedOrigins::parse(&config.allowed_origins)
            .map_err(|e| StartError::Config(e.join("; ")))?;
        // With a JWKS URL, its first fetch happens here and must succeed.
        let verifier = Verifier::from_config(&config)
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
        let pool = pool::build(&config.database_url, config.pool_size)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let internal_pool = pool::build(&config.database_url, config.internal_pool_size)
            .map_err(|e| StartError::Config(e.to_string()))?;
        roles::check_login_role(&pool).await?;
        let identity: Arc<str> = catchup::server_identity(&pool).await?.into();
        let cursor_key = catchup::cursor_key(&pool).await?;
        let cursors = Arc::new(CursorCodec::new(identity, cursor_key.as_bytes()));
        let listener_url = config
            .listener_database_url
            .as_ref()
            .unwrap_or(&config.database_url);
        let mut listener_config =
            pool::connection_config(listener_url).map_err(|e| StartError::Config(e.to_string()))?;
        listener_config.application_name("pgherald-listener");

        let tcp = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = tcp.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;

        let catalog = catalog::load(&pool).await?;
        let shutdown = CancellationToken::new();
        let hub = Hub::routed(
            Arc::new(PgAuthorizer::new(internal_pool.clone())),
            Arc::new(PgRoutes::new(internal_pool.clone())),
            config.limits.subscription_queue,
        );
        let status = Arc::new(ListenerStatus::default());
        let relay_status = Arc::new(RelayStatus::default());
        let connection_permits = Arc::new(Semaphore::new(config.limits.max_connections));
        let metrics = Metrics::new(metrics::Sources {
            hub: hub.clone(),
            listener: status.clone(),
            relay: relay_status.clone(),
            permits: connection_permits.clone(),
            max_connections: config.limits.max_connections,
        });
        let state = Arc::new(AppState {
            pool: pool.clone(),
            internal_pool: internal_pool.clone(),
            hub: hub.clone(),
            feed: Arc::new(Feed::new(
                hub.clone(),
                pool.clone(),
                cursors,
                config.limits.query_timeout,
            )),
            schema: SchemaHandle::new(graphql::build(catalog)),
            verifier,
            roles: RoleGate::new(config.role_cache_ttl),
            anon_role: config.anon_role.clone(),
            listener: status.clone(),
            relay: relay_status.clone(),
            limits: config.limits.clone(),
            connection_permits,
            connections: ws::Registry::new(
                config.limits.max_connections_per_ip,
                config.limits.max_connections_per_subject,
            ),
            origins,
            shutdown: shutdown.clone(),
            metrics,
        });

        let tasks = TaskTracker::new();
        if config.relay.enabled {
            let mut relay_config = listener_config.clone();
            relay_config.application_name(relay::APPLICATION_NAME);
            tasks.spawn(relay::run(
                relay_config,
                config.relay.clone(),
                relay_status,
                shutdown.clone(),
            ));
        }
        tasks.spawn(listener::run(
            listener_config,
            config.listener.clone(),
            hub,
            status.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(reload_schema(state.clone(), status, shutdown.clone()));
        if let Some(refresh_keys) = state.verifier.refresher(shutdown.clone()) {
            tasks.spawn(refresh_keys);
        }
        tasks.spawn(prune_periodically(
            internal_pool,
            config.retention,
            config.prune_interval,
            shutdown.clone(),
        ));
        let routes = http::routes(state.clone());
        tasks.spawn(server::serve(
            tcp,
            routes,
            config.limits.header_read_timeout,
            shutdown.clone(),
        ));
        tasks.close();
        tracing::info!(%addr, "pgherald serving");
        Ok(Application { addr, state, tasks })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state (tests use it to inspect the hub and listener).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, closes WebSockets with 1001, waits for every task.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        self.tasks.wait().await;
    }

    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// How often the catalog is compared even without a notification (DDL on a
/// tracked table notifies only where the migrating role could create the
/// event trigger).
const CATALOG_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Rebuilds the GraphQL schema whenever the tracked tables change.
async fn reload_schema(
    state: Arc<AppState>,
    status: Arc<ListenerStatus>,
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(CATALOG_POLL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = status.catalog.notified() => {}
            _ = poll.tick() => {}
        }
        // The running schema's catalog, by reference: no copy per poll.
        let running = state.schema.current();
        let current = &running.subscription_info.catalog;
        match catalog::load(&state.internal_pool).await {
            Ok(catalog) if &catalog == current => {}
            Ok(catalog) => {
                let gone: Vec<u32> = current
                    .tables
                    .iter()
                    .filter(|t| catalog.by_relid(t.relid).is_none())
                    .map(|t| t.relid)
                    .collect();
                tracing::info!(
                    tables = catalog.tables.len(),
                    "tracked tables changed; schema rebuilt"
                );
                state.schema.replace(graphql::build(catalog));
                for relid in gone {
                    state.hub.close_table(relid);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the catalog failed"),
        }
        if let Err(e) = privileges::recheck(&state.hub, &state.internal_pool).await {
            tracing::warn!(error = %e, "re-checking filter columns failed");
        }
    }
}

async fn prune_periodically(
    pool: Pool,
    keep: std::time::Duration,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let keep_secs = keep.as_secs_f64();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = async {
            let client = pool.get().await.map_err(db::DbError::from)?;
            let row = client
                .query_one(
                    "select herald.prune(make_interval(secs => $1))",
                    &[&keep_secs],
                )
                .await
                .map_err(db::DbError::from)?;
            Ok::<i64, db::DbError>(row.get(0))
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "outbox pruned"),
            Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
        }
    }
}
