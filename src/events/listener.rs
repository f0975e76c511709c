//! The listener: one dedicated connection per instance (never pooled) that
//! LISTENs for wake-ups and then reads each batch of newly committed events by
//! snapshot difference ([`super::batches`]), which hands it to the hub.
//!
//! Wake-ups are coalesced: many NOTIFYs while a batch is being read become one
//! more read. A slow timer reads anyway, in case a wake-up is lost. After a
//! lost connection it reconnects with capped backoff, LISTENs again and
//! catches up from the last snapshot it dispatched, so nothing committed in
//! the meantime is missed. A heartbeat (a NOTIFY to itself that must come
//! back) notices half-open connections that TCP alone would not.
//!
//! Anyone may NOTIFY pgherald's channels, so a notification is never trusted
//! for more than a wake-up: one on `herald` only causes a read (of what the
//! snapshots say committed), one on `herald_catalog` only a comparison of the
//! catalog, and a heartbeat counts only when it is this session's own: sent
//! by this connection's backend, carrying this session's random token and a
//! sequence number already sent.
//!
//! Each batch is judged at its two boundaries ([`super::moments`]): the
//! snapshot a batch reads up to is held open and exported, its old images are
//! judged in the previous batch's held snapshot and its new ones in its own.
//! The start's hold is released once the whole batch is dispatched, and its
//! end's becomes the next batch's start. When a hold cannot be had or is lost,
//! that batch is judged at dispatch time instead (warned, counted in
//! `/metrics`); it is never lost or stalled for it.
//!
//! A page whose authorization fails is retried (after a reconnect, with
//! backoff); from the [`ISOLATE_AFTER`]th attempt on, its security contexts
//! are authorized one per call and any that fails is ended alone, so that a
//! deterministic failure cannot hold every subscriber forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::batches::{Progress, drain};
use super::hub::Hub;
use super::moments::Holders;
use super::outbox::{self, OutboxError, Reader};

/// Channel the capture trigger notifies.
pub const CHANNEL: &str = "herald";
/// Channel of this listener's heartbeat.
const HEARTBEAT_CHANNEL: &str = "herald_heartbeat";
/// Channel `herald.track`/`untrack` and the DDL event trigger notify.
pub const CATALOG_CHANNEL: &str = "herald_catalog";
/// Failed attempts at a page after which its contexts are authorized one per
/// call, and a failing one ended, whatever the error.
pub const ISOLATE_AFTER: u32 = 3;

/// Listener timings.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Read even without a wake-up this often.
    pub safety_interval: Duration,
    /// Send a heartbeat this often; one not back by the next is a dead connection.
    pub heartbeat_interval: Duration,
    /// Any single query slower than this counts as a dead connection.
    pub query_timeout: Duration,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            safety_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
            query_timeout: Duration::from_secs(15),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Shared view of the listener's health, for `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct ListenerStatus {
    connected: AtomicBool,
    /// Bumped whenever the connection goes up or down, for those waiting on it.
    changes: watch::Sender<u64>,
    /// Times the listener (re)connected.
    pub connects: AtomicU64,
    /// Events read and dispatched.
    pub events: AtomicU64,
    /// Deliveries to subscriptions.
    pub deliveries: AtomicU64,
    /// Subscriptions ended for a full queue.
    pub overflows: AtomicU64,
    /// Sequence number of the last heartbeat sent on the current connection.
    pub heartbeat_sent: AtomicU64,
    /// Sequence number of the last of this connection's own heartbeats seen
    /// back (never above `heartbeat_sent`).
    pub heartbeat_seen: AtomicU64,
    /// Notifications on the heartbeat channel that were not this session's
    /// own heartbeat (ignored).
    pub foreign_heartbeats: AtomicU64,
    /// Woken when tracking or a tracked table's definition may have changed
    /// (and on every connect, since notifications may have been missed).
    pub catalog: Arc<Notify>,
}

impl Default for ListenerStatus {
    fn default() -> Self {
        ListenerStatus {
            connected: AtomicBool::new(false),
            changes: watch::Sender::new(0),
            connects: AtomicU64::new(0),
            events: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            heartbeat_sent: AtomicU64::new(0),
            heartbeat_seen: AtomicU64::new(0),
            foreign_heartbeats: AtomicU64::new(0),
            catalog: Arc::new(Notify::new()),
        }
    }
}

impl ListenerStatus {
    /// Whether the LISTEN connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Changes whenever the connection goes up or down.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records the connection going up (counting it) or down; returns
    /// whether it was up.
    fn set_connected(&self, up: bool) -> bool {
        let was = self.connected.swap(up, Ordering::Relaxed);
        if up {
            self.connects.fetch_add(1, Ordering::Relaxed);
        }
        self.changes.send_modify(|n| *n += 1);
        was
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ListenError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("authorizer: {0}")]
    Dispatch(#[from] crate::db::DbError),
    #[error("query timed out")]
    Timeout,
    #[error("heartbeat not answered")]
    Heartbeat,
    #[error("connection closed")]
    Closed,
}

/// Runs the listener until `shutdown`.
pub async fn run(
    config: crate::db::tls::Connector,
    timings: ListenerConfig,
    hub: Arc<Hub>,
    status: Arc<ListenerStatus>,
    shutdown: CancellationToken,
) {
    let mut progress = Progress::default();
    let mut holders = Holders::new(config.clone(), timings.query_timeout);
    let mut backoff = timings.min_backoff;
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session(&config, &timings, &hub, &status, &mut progress, &mut holders, &shutdown) => r,
        };
        // Down for longer than a batch normally takes: do not hold back
        // vacuum for as long as the outage lasts.
        progress.let_go_of_stale_holds(
            timings.safety_interval + timings.query_timeout,
            hub.authorizer_stats(),
        );
        if status.set_connected(false) {
            backoff = timings.min_backoff;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "listener connection lost");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(timings.max_backoff);
    }
}

/// One connection's heartbeat: the sequence numbers it sent, and which
/// notifications on the heartbeat channel count as its own coming back.
/// Anyone may NOTIFY the channel (and read the token, by listening): only a
/// notification from this connection's own backend, with this session's
/// token and a sequence number already sent, counts.
struct Heartbeat {
    token: String,
    /// This connection's backend pid; 0 until known (nothing counts then).
    pid: AtomicI32,
    status: Arc<ListenerStatus>,
}

impl Heartbeat {
    fn new(status: Arc<ListenerStatus>) -> Heartbeat {
        status.heartbeat_sent.store(0, Ordering::Relaxed);
        status.heartbeat_seen.store(0, Ordering::Relaxed);
        Heartbeat {
            token: session_token(),
            pid: AtomicI32::new(0),
            status,
        }
    }

    /// This connection's backend is `pid`.
    fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// Whether a heartbeat sent has not come back.
    fn overdue(&self) -> bool {
        self.status.heartbeat_seen.load(Ordering::Relaxed)
            < self.status.heartbeat_sent.load(Ordering::Relaxed)
    }

    /// Counts the next heartbeat as sent; returns its payload.
    fn next_payload(&self) -> String {
        let seq = self.status.heartbeat_sent.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}:{seq}", self.token)
    }

    /// A notification on the heartbeat channel from backend `pid`: counts
    /// it if it is one of ours; returns whether it was.
    fn receive(&self, pid: i32, payload: &str) -> bool {
        let own = pid != 0 && pid == self.pid.load(Ordering::Relaxed);
        let seq = payload
            .strip_prefix(self.token.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|seq| seq.parse::<u64>().ok())
            .filter(|&seq| seq <= self.status.heartbeat_sent.load(Ordering::Relaxed));
        match seq {
            Some(seq) if own => {
                self.status.heartbeat_seen.fetch_max(seq, Ordering::Relaxed);
                true
            }
            _ => {
                self.status
                    .foreign_heartbeats
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// A random token per listener session (std's hasher keys are random per
/// process and differ per instance).
fn session_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    format!("{:016x}", hasher.finish())
}

/// One connection's lifetime. Returns `Ok` only on shutdown.
async fn session(
    config: &crate::db::tls::Connector,
    timings: &ListenerConfig,
    hub: &Arc<Hub>,
    status: &Arc<ListenerStatus>,
    progress: &mut Progress,
    holders: &mut Holders,
    shutdown: &CancellationToken,
) -> Result<(), ListenError> {
    let (client, mut connection) = config.connect().await?;
    let wake = hub.wake_handle();
    let heartbeat = Arc::new(Heartbeat::new(status.clone()));
    let closed = CancellationToken::new();

    // Drive the connection ourselves: a pooled connection would drop the
    // notifications, which arrive as asynchronous messages.
    let driver = {
        let wake = wake.clone();
        let catalog = status.catalog.clone();
        let heartbeat = heartbeat.clone();
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == HEARTBEAT_CHANNEL => {
                        if !heartbeat.receive(n.process_id(), n.payload()) {
                            tracing::debug!(pid = n.process_id(), "ignored a foreign heartbeat");
                        }
                    }
                    Ok(AsyncMessage::Notification(n)) if n.channel() == CATALOG_CHANNEL => {
                        catalog.notify_one();
                    }
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "listener connection error");
                        break;
                    }
                }
            }
            closed.cancel();
        })
    };
    let _abort_driver = AbortOnDrop(driver);

    timed(
        timings,
        client.batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {HEARTBEAT_CHANNEL}; LISTEN {CATALOG_CHANNEL}"
        )),
    )
    .await??;
    let pid: i32 = timed(timings, client.query_one("select pg_backend_pid()", &[]))
        .await??
        .get(0);
    heartbeat.set_pid(pid);
    if progress.low.is_none() {
        // First start: the stream begins now, held for the first batch's old
        // images. Clients with a cursor catch up from the outbox.
        let now = match holders.take(None).await {
            Ok(held) => progress.low_held.insert(held).snapshot.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "could not hold the starting snapshot; \
                    the first batch's old images are judged at dispatch time");
                timed(timings, outbox::current_snapshot(&client)).await??
            }
        };
        hub.start_at(now.clone());
        progress.low = Some(now);
    }
    let reader = timed(timings, Reader::prepare(&client)).await??;
    status.set_connected(true);
    status.catalog.notify_one();
    tracing::info!("listener connected");

    // Catch up on whatever committed while we were away.
    drain(&client, &reader, holders, timings, hub, status, progress).await?;

    let mut safety = tokio::time::interval(timings.safety_interval);
    let mut heartbeat_tick = tokio::time::interval(timings.heartbeat_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = closed.cancelled() => return Err(ListenError::Closed),
            _ = wake.notified() => {}
            _ = safety.tick() => {}
            _ = heartbeat_tick.tick() => {
                if heartbeat.overdue() {
                    return Err(ListenError::Heartbeat);
                }
                let sql = format!("NOTIFY {HEARTBEAT_CHANNEL}, '{}'", heartbeat.next_payload());
                timed(timings, client.batch_execute(&sql)).await??;
                continue;
            }
        }
        drain(&client, &reader, holders, timings, hub, status, progress).await?;
    }
}

pub(super) async fn timed<F: std::future::Future>(
    timings: &ListenerConfig,
    f: F,
) -> Result<F::Output, ListenError> {
    tokio::time::timeout(timings.query_timeout, f)
        .await
        .map_err(|_| ListenError::Timeout)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
