//! The application: shared state, and `Application::build`, which wires the
//! pool, listener, hub, pruner and HTTP server together. `main` and the tests
//! both start pgherald through it.

use std::net::SocketAddr;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Caller, Verifier};
use crate::config::{Config, JwtKey, Limits};
use crate::db::roles::{self, RoleGate};
use crate::db::{self, pool};
use crate::events::catchup;
use crate::events::hub::Hub;
use crate::events::listener::{self, ListenerConfig, ListenerStatus};
use crate::graphql::{self, Schema};
use crate::http;

/// State shared by every request and connection.
pub struct AppState {
    /// Query pool (runs as the login role; callers' identity is set per transaction).
    pub pool: Pool,
    /// Routes events to subscriptions.
    pub hub: Arc<Hub>,
    /// The GraphQL schema.
    pub schema: Arc<Schema>,
    /// JWT verification.
    pub verifier: Verifier,
    /// Which roles tokens may name.
    pub roles: RoleGate,
    /// Role of connections without a token.
    pub anon_role: Option<String>,
    /// Database identity, for cursors.
    pub identity: Arc<str>,
    /// Listener health.
    pub listener: Arc<ListenerStatus>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Caps open WebSocket connections.
    pub connection_permits: Arc<Semaphore>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The caller for `token`: verified, and its role one the login role may assume.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        let caller = match (token, &self.anon_role) {
            (Some(token), _) => self.verifier.verify(token)?,
            (None, Some(anon)) => return Ok(Caller::anonymous(anon)),
            (None, None) => return Err(AuthError::Missing),
        };
        match self.roles.may_assume(&self.pool, &caller.role).await {
            Ok(true) => Ok(caller),
            Ok(false) => Err(AuthError::RoleNotAllowed(caller.role)),
            Err(e) => {
                tracing::error!(error = %e, "role check failed");
                Err(AuthError::Invalid)
            }
        }
    }
}

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
        let verifier = match &config.jwt {
            JwtKey::Secret(s) if s.is_empty() => {
                return Err(StartError::Config("HERALD_JWT_SECRET is empty".into()));
            }
            JwtKey::Secret(s) => Verifier::hs256(s.as_bytes()),
            JwtKey::PublicKeyFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?;
                Verifier::public_key_pem(&pem).map_err(|e| StartError::Config(e.to_string()))?
            }
        };
        let pool = pool::build(&config.database_url, config.pool_size)
            .map_err(|e| StartError::Config(e.to_string()))?;
        roles::check_login_role(&pool).await?;
        let identity: Arc<str> = catchup::server_identity(&pool).await?.into();
        let mut listener_config = pool::connection_config(&config.database_url)
            .map_err(|e| StartError::Config(e.to_string()))?;
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

        let shutdown = CancellationToken::new();
        let hub = Hub::new(pool.clone(), config.limits.subscription_queue);
        let status = Arc::new(ListenerStatus::default());
        let state = Arc::new(AppState {
            pool: pool.clone(),
            hub: hub.clone(),
            schema: graphql::schema(),
            verifier,
            roles: RoleGate::default(),
            anon_role: config.anon_role.clone(),
            identity,
            listener: status.clone(),
            limits: config.limits.clone(),
            connection_permits: Arc::new(Semaphore::new(config.limits.max_connections)),
            shutdown: shutdown.clone(),
        });

        let tasks = TaskTracker::new();
        tasks.spawn(listener::run(
            listener_config,
            ListenerConfig::default(),
            hub,
            status,
            shutdown.clone(),
        ));
        tasks.spawn(prune_periodically(
            pool,
            config.retention,
            config.prune_interval,
            shutdown.clone(),
        ));
        let routes = http::routes(state.clone());
        let server = warp::serve(routes)
            .incoming(tcp)
            .graceful(shutdown.clone().cancelled_owned());
        tasks.spawn(server.run());
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
