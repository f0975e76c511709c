//! The relay: the wake-ups of tables tracked in relay mode. Their capture
//! trigger only writes the outbox, so that writers' commits do not queue on
//! the cluster-wide lock a NOTIFY takes at commit; one instance per database,
//! elected with a session advisory lock ([`RELAY_LOCK_KEY`]), polls for
//! relay-mode events committed since its last look (`herald.relay_poll`,
//! migrations/V9) and sends one NOTIFY per batch of them, from its own
//! transaction, which wakes every instance's listener.
//!
//! Every instance runs this task on a dedicated connection
//! ([`APPLICATION_NAME`]). Those that are not the relay try the lock again
//! every `retry_interval`, so when the relay's session ends (its backend
//! terminated, its instance gone) another takes over; the relay itself
//! reconnects with capped backoff after losing its connection and campaigns
//! again. Nothing is lost while no instance is the relay: the listener's
//! safety read still runs; only the latency of relay-mode events suffers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::tls::Connector;

/// Key of the session advisory lock (`pg_try_advisory_lock(bigint)`) whose
/// holder is the relay. Advisory locks are per database; `pgherald migrate`
/// serialises migrators with 727274.
pub const RELAY_LOCK_KEY: i64 = 727275;

/// The `application_name` of the relay's connection.
pub const APPLICATION_NAME: &str = "pgherald-relay";

/// Relay timings.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Whether this instance campaigns to be the relay at all.
    pub enabled: bool,
    /// How often the relay looks for new relay-mode events.
    pub poll_interval: Duration,
    /// How long the relay waits after a wake-up before looking again (when
    /// longer than `poll_interval`): under sustained writes listeners then
    /// read one batch per this interval instead of one per poll, each batch
    /// costing them a few round trips.
    pub busy_interval: Duration,
    /// How often an instance that is not the relay tries to become it; also
    /// how often the relay looks while no table is in relay mode.
    pub retry_interval: Duration,
    /// Any single query slower than this counts as a dead connection.
    pub query_timeout: Duration,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            poll_interval: Duration::from_millis(2),
            busy_interval: Duration::from_millis(10),
            retry_interval: Duration::from_millis(500),
            query_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RelayConfig {
    /// How long the relay waits before its next poll, after one that saw
    /// `relay_tables` tables in relay mode and did or did not send a wake-up.
    fn pause_after(&self, relay_tables: i32, notified: bool) -> Duration {
        if relay_tables <= 0 {
            // Nothing to relay: look rarely, as candidates do.
            self.retry_interval
        } else if notified {
            self.busy_interval.max(self.poll_interval)
        } else {
            self.poll_interval
        }
    }
}

/// Shared view of the relay, for `/metrics` (and tests).
#[derive(Debug)]
pub struct RelayStatus {
    active: AtomicBool,
    /// Bumped on every change below, for those waiting on one.
    changes: watch::Sender<u64>,
    /// Times this instance became the relay.
    pub elections: AtomicU64,
    /// Polls made while the relay.
    pub polls: AtomicU64,
    /// Wake-ups sent.
    pub notifies: AtomicU64,
    /// Tables in relay mode, as of this instance's last poll.
    pub relay_tables: AtomicU64,
}

impl Default for RelayStatus {
    fn default() -> Self {
        RelayStatus {
            active: AtomicBool::new(false),
            changes: watch::Sender::new(0),
            elections: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            notifies: AtomicU64::new(0),
            relay_tables: AtomicU64::new(0),
        }
    }
}

impl RelayStatus {
    /// Whether this instance holds the relay lock.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Changes on every election, loss and poll.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records becoming the relay (counting it) or not; returns whether it was.
    fn set_active(&self, active: bool) -> bool {
        let was = self.active.swap(active, Ordering::Relaxed);
        if active && !was {
            self.elections.fetch_add(1, Ordering::Relaxed);
        }
        self.changes.send_modify(|n| *n += 1);
        was
    }

    fn polled(&self, relay_tables: u64, notified: bool) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.relay_tables.store(relay_tables, Ordering::Relaxed);
        if notified {
            self.notifies.fetch_add(1, Ordering::Relaxed);
        }
        self.changes.send_modify(|n| *n += 1);
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("query timed out")]
    Timeout,
    #[error("connection closed")]
    Closed,
}

/// Campaigns, and relays while elected, until `shutdown`.
pub async fn run(
    connector: Connector,
    config: RelayConfig,
    status: Arc<RelayStatus>,
    shutdown: CancellationToken,
) {
    let mut backoff = config.min_backoff;
    loop {
        let mut connected = false;
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session(&connector, &config, &status, &mut connected, &shutdown) => r,
        };
        let was_relay = status.set_active(false);
        if connected {
            backoff = config.min_backoff;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, was_relay, retry_in = ?backoff, "relay connection lost");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

/// One connection: campaign until elected, then poll until it fails.
/// Returns `Ok` only on shutdown.
async fn session(
    connector: &Connector,
    config: &RelayConfig,
    status: &RelayStatus,
    connected: &mut bool,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let (client, connection) = timed(config, connector.connect()).await??;
    let closed = CancellationToken::new();
    let driver = {
        let closed = closed.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "relay connection error");
            }
            closed.cancel();
        })
    };
    // Dropping the connection (shutdown, failure) ends the session, which
    // releases the lock for another instance.
    let _abort_driver = AbortOnDrop(driver);
    *connected = true;

    // The relay's transactions write nothing but a NOTIFY (which gives them
    // an xid, hence a commit record): they need not wait for its WAL flush.
    // The wake-up is sent at commit either way, and it is only a wake-up.
    timed(config, client.batch_execute("set synchronous_commit = off")).await??;
    let lock = timed(config, client.prepare("select pg_try_advisory_lock($1)")).await??;
    loop {
        let won: bool = timed(config, client.query_one(&lock, &[&RELAY_LOCK_KEY]))
            .await??
            .get(0);
        if won {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = closed.cancelled() => return Err(RelayError::Closed),
            _ = tokio::time::sleep(config.retry_interval) => {}
        }
    }
    let pid: i32 = timed(config, client.query_one("select pg_backend_pid()", &[]))
        .await??
        .get(0);
    status.set_active(true);
    tracing::info!(pid, lock_key = RELAY_LOCK_KEY, "this instance is the relay");

    let poll = timed(
        config,
        client.prepare("select snapshot, relay_tables, notified from herald.relay_poll($1)"),
    )
    .await??;
    // None on election: the first poll wakes the listeners unconditionally,
    // for whatever committed since the previous relay's last look.
    let mut since: Option<String> = None;
    loop {
        let row = timed(config, client.query_one(&poll, &[&since])).await??;
        since = Some(row.get(0));
        let relay_tables: i32 = row.get(1);
        let notified: bool = row.get(2);
        status.polled(relay_tables.max(0) as u64, notified);
        if notified {
            tracing::debug!(relay_tables, "relay sent a wake-up");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = closed.cancelled() => return Err(RelayError::Closed),
            _ = tokio::time::sleep(config.pause_after(relay_tables, notified)) => {}
        }
    }
}

async fn timed<F: std::future::Future>(
    config: &RelayConfig,
    f: F,
) -> Result<F::Output, RelayError> {
    tokio::time::timeout(config.query_timeout, f)
        .await
        .map_err(|_| RelayError::Timeout)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_polls_often_waits_after_a_wake_up_and_idles_without_relay_tables() {
        let config = RelayConfig::default();
        assert_eq!(config.pause_after(2, false), config.poll_interval);
        assert_eq!(config.pause_after(2, true), config.busy_interval);
        assert_eq!(config.pause_after(0, false), config.retry_interval);
        let slow_polls = RelayConfig {
            poll_interval: Duration::from_millis(50),
            ..RelayConfig::default()
        };
        assert_eq!(
            slow_polls.pause_after(1, true),
            Duration::from_millis(50),
            "never sooner than the poll interval"
        );
    }
}
