//! The held snapshots live batches are judged at: for each batch boundary,
//! a repeatable-read transaction kept open on a dedicated connection, whose
//! snapshot is exported (`pg_export_snapshot()`) when first needed, so that
//! the authorizer can judge a batch's old images as of its start and its new
//! images as of its end ([`crate::db::as_of`]).
//!
//! The connections are this module's own, made with the listener's
//! connector under the application name [`APPLICATION_NAME`]: not the LISTEN
//! connection (a session inside a transaction receives no notifications),
//! not the client query pool (clients must never be able to starve the
//! listener). At most two snapshots are held at a time (a batch's start and
//! its end), so at most two connections are kept.
//!
//! A held transaction holds back the xmin horizon (what VACUUM may remove)
//! for as long as it is open: the listener releases a batch's start once the
//! whole batch is dispatched, so a snapshot is held for about one batch plus
//! the listener's safety interval, and lets go of holds when it is down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::Event;
use super::outbox::{FirstPage, OutboxError};
use super::snapshot::Snapshot;
use crate::db::as_of::HeldSnapshot;
use crate::db::tls::Connector;

/// The `application_name` of the connections holding snapshots.
pub const APPLICATION_NAME: &str = "pgherald-snapshots";

/// Connections kept between holds (a batch's start and end).
const KEPT_CONNECTIONS: usize = 2;

/// Why a snapshot could not be held.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The database did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The database returned something this code does not understand.
    #[error("unexpected snapshot data: {0}")]
    Data(String),
}

impl From<OutboxError> for HoldError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Db(e) => HoldError::Db(e),
            OutboxError::Data(d) => HoldError::Data(d),
        }
    }
}

/// A `COMMIT` sent and not yet answered.
type Committing = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + Sync>>;

/// A dedicated connection, driven by a task of its own that ends with it.
struct Connection {
    /// Shared with the snapshot's export ([`HeldSnapshot`]).
    client: Arc<Client>,
    driver: tokio::task::JoinHandle<()>,
    /// The first-page read, prepared on this connection.
    first_page: FirstPage,
    /// The end of its last hold, whose answer the next hold takes.
    committing: Option<Committing>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Closes the socket: the server ends any transaction left open.
        self.driver.abort();
    }
}

/// A snapshot held open, until [`Holders::release`] (or drop).
pub struct Held {
    connection: Connection,
    /// The snapshot, as `pg_current_snapshot()` reports it in the holding
    /// transaction: exactly the state the exported snapshot shows.
    pub snapshot: Snapshot,
    /// The snapshot to import, exported when first asked for.
    pub export: HeldSnapshot,
    /// The catalogs' fingerprint in it (`herald.routing_version()`): routes
    /// are used for a batch only when both of its ends show the same.
    pub version: Arc<str>,
    /// The first page of the batch ending here, when asked for: read in
    /// this snapshot, in the same round trip as the hold.
    pub first_page: Option<Vec<Arc<Event>>>,
    taken: Instant,
}

impl Held {
    /// Whether its connection is still up (a killed backend is noticed as
    /// soon as its socket closes).
    pub fn is_alive(&self) -> bool {
        !self.connection.client.is_closed()
    }

    /// How long it has been held.
    pub fn age(&self) -> Duration {
        self.taken.elapsed()
    }
}

/// Takes and releases held snapshots on this module's own connections.
pub struct Holders {
    connector: Connector,
    idle: Vec<Connection>,
    timeout: Duration,
}

impl Holders {
    /// Holders connecting with `connector` (renamed [`APPLICATION_NAME`]);
    /// every round trip is bounded by `timeout`.
    pub fn new(mut connector: Connector, timeout: Duration) -> Holders {
        connector.application_name(APPLICATION_NAME);
        Holders {
            connector,
            idle: Vec::new(),
            timeout,
        }
    }

    /// Holds the current snapshot: begins a repeatable-read transaction and
    /// reads its snapshot (exported later, if ever needed), and with `after`
    /// also reads the first page of the batch from `after` to it, in one
    /// round trip.
    pub async fn take(&mut self, after: Option<&Snapshot>) -> Result<Held, HoldError> {
        while let Some(connection) = self.idle.pop() {
            if connection.client.is_closed() {
                continue;
            }
            match self.begin(connection, after).await {
                Ok(held) => return Ok(held),
                // A connection that died while idle: try a fresh one.
                Err(e) => tracing::debug!(error = %e, "snapshot holder connection failed"),
            }
        }
        let connection = self.connect().await?;
        self.begin(connection, after).await
    }

    /// Ends the holding transaction and keeps its connection for the next
    /// hold. The `COMMIT` is sent now, and its answer is awaited by the next
    /// hold on the connection, which goes out right behind it: the listener
    /// does not wait a round trip between batches for it.
    pub async fn release(&mut self, held: Held) {
        held.export.close().await;
        let mut connection = held.connection;
        if self.idle.len() >= KEPT_CONNECTIONS || connection.client.is_closed() {
            // (Dropped: closing the socket ends the transaction.)
            return;
        }
        let client = connection.client.clone();
        let mut commit: Committing = Box::pin(async move { client.batch_execute("COMMIT").await });
        // The first poll sends it: requests go out in the order they are
        // first polled, so any later hold's BEGIN is behind this COMMIT.
        match futures::poll!(commit.as_mut()) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "releasing a held snapshot failed");
                return;
            }
            Poll::Pending => connection.committing = Some(commit),
        }
        self.idle.push(connection);
    }

    async fn connect(&self) -> Result<Connection, HoldError> {
        let (client, connection) = tokio::time::timeout(self.timeout, self.connector.connect())
            .await
            .map_err(|_| HoldError::Timeout)??;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "snapshot holder connection closed");
            }
        });
        let first_page = tokio::time::timeout(self.timeout, FirstPage::prepare(&client))
            .await
            .map_err(|_| HoldError::Timeout)??;
        Ok(Connection {
            client: Arc::new(client),
            driver,
            first_page,
            committing: None,
        })
    }

    async fn begin(
        &self,
        mut connection: Connection,
        after: Option<&Snapshot>,
    ) -> Result<Held, HoldError> {
        // The last hold's COMMIT, sent before this one's BEGIN: awaited
        // with it, so a connection whose COMMIT failed holds nothing.
        let committed = match connection.committing.take() {
            Some(commit) => commit,
            None => Box::pin(async { Ok(()) }),
        };
        let client = &connection.client;
        let hold = client.simple_query(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
             SELECT pg_catalog.pg_current_snapshot()::text, herald.routing_version()",
        );
        // Sent right behind the hold (futures are polled in order, and a
        // request goes out on its first poll): one round trip for both.
        let read = async {
            match after {
                Some(low) => connection.first_page.read(client, low).await.map(Some),
                None => Ok(None),
            }
        };
        let (committed, messages, first_page) =
            tokio::time::timeout(self.timeout, futures::future::join3(committed, hold, read))
                .await
                .map_err(|_| HoldError::Timeout)?;
        committed?;
        let messages = messages?;
        let first_page = first_page?;
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .ok_or_else(|| HoldError::Data("no row".into()))?;
        let (Some(snapshot), Some(version)) = (row.get(0), row.get(1)) else {
            return Err(HoldError::Data("null snapshot".into()));
        };
        let snapshot = snapshot
            .parse()
            .map_err(|e| HoldError::Data(format!("{e}")))?;
        Ok(Held {
            export: HeldSnapshot::open(connection.client.clone(), self.timeout),
            connection,
            snapshot,
            version: version.into(),
            first_page,
            taken: Instant::now(),
        })
    }
}
