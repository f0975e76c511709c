//! What the event pipeline measures as it runs: a latency histogram per
//! stage (holding the batch's snapshot with reading its first page, reading
//! each further page, authorizing a page, dispatching it, writing a burst of
//! frames to a WebSocket), the lag from commit to delivery, batch sizes,
//! subscriptions ended by reason and frames written per protocol. Only
//! atomic adds on the hot path; [`super::collect`] reads them at scrape.

use std::sync::atomic::{AtomicU64, Ordering};

use super::histogram::Histogram;
use crate::events::hub::EndReason;
use crate::ws::Protocol;

/// Everything the pipeline records for `/metrics`; one per hub.
#[derive(Debug)]
pub struct Pipeline {
    /// Taking and exporting the snapshot that ends a batch, with reading
    /// the batch's first page (one round trip).
    pub hold: Histogram,
    /// Reading one further page of the outbox (a batch of more than a page,
    /// or one whose end could not be held).
    pub read: Histogram,
    /// One authorizer call for a page (every moment).
    pub authorize: Histogram,
    /// Dispatching one page: matching, authorizing and queueing.
    pub dispatch: Histogram,
    /// Writing one burst of frames to a WebSocket, flush included.
    pub write: Histogram,
    /// From an event's capture (its `committed_at`) to its delivery being
    /// taken off the subscription's queue to be rendered and written.
    pub lag: Histogram,
    /// Events per batch read by the listener.
    pub batch_events: Histogram,
    /// Subscriptions the hub ended, per [`EndKind`].
    ended: [AtomicU64; EndKind::ALL.len()],
    /// WebSocket text frames written, per protocol.
    pub frames: FrameCounts,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            hold: Histogram::latency(),
            read: Histogram::latency(),
            authorize: Histogram::latency(),
            dispatch: Histogram::latency(),
            write: Histogram::latency(),
            lag: Histogram::lag(),
            batch_events: Histogram::size(),
            ended: Default::default(),
            frames: FrameCounts::default(),
        }
    }
}

/// Why a subscription was ended by the server, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndKind {
    /// Its queue stayed full ([`EndReason::SlowConsumer`]).
    SlowConsumer,
    /// Its security context failed ([`EndReason::ContextFailed`]).
    ContextFailed,
    /// Its table went away ([`EndReason::TableGone`]).
    TableGone,
    /// Its filter column was revoked ([`EndReason::ColumnRevoked`]).
    ColumnRevoked,
}

impl EndKind {
    /// Every kind, in label order.
    pub const ALL: [EndKind; 4] = [
        EndKind::SlowConsumer,
        EndKind::ContextFailed,
        EndKind::TableGone,
        EndKind::ColumnRevoked,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            EndKind::SlowConsumer => "slow_consumer",
            EndKind::ContextFailed => "context_failed",
            EndKind::TableGone => "table_gone",
            EndKind::ColumnRevoked => "column_revoked",
        }
    }
}

impl From<EndReason> for EndKind {
    fn from(reason: EndReason) -> EndKind {
        match reason {
            EndReason::SlowConsumer => EndKind::SlowConsumer,
            EndReason::ContextFailed(_) => EndKind::ContextFailed,
            EndReason::TableGone => EndKind::TableGone,
            EndReason::ColumnRevoked => EndKind::ColumnRevoked,
        }
    }
}

/// WebSocket text frames written per subprotocol.
#[derive(Debug, Default)]
pub struct FrameCounts {
    /// `graphql-transport-ws`.
    pub transport_ws: AtomicU64,
    /// Legacy `graphql-ws`.
    pub legacy_ws: AtomicU64,
}

impl FrameCounts {
    /// The counter of `protocol`.
    pub fn of(&self, protocol: Protocol) -> &AtomicU64 {
        match protocol {
            Protocol::TransportWs => &self.transport_ws,
            Protocol::LegacyWs => &self.legacy_ws,
        }
    }
}

impl Pipeline {
    /// Records the lag of an event captured at `committed_at` delivered now
    /// (a clock behind the database's counts as no lag).
    pub fn observe_lag(&self, committed_at: chrono::DateTime<chrono::Utc>) {
        let lag = chrono::Utc::now() - committed_at;
        self.lag.observe(lag.to_std().unwrap_or_default());
    }

    /// Counts `n` subscriptions ended for `reason`.
    pub fn count_ended(&self, reason: impl Into<EndKind>, n: usize) {
        let kind = reason.into();
        let i = EndKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.ended[i].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Subscriptions ended for `kind` so far.
    pub fn ended(&self, kind: EndKind) -> u64 {
        let i = EndKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.ended[i].load(Ordering::Relaxed)
    }

    /// The stage histograms, with their stage name and what they time.
    pub fn stages(&self) -> [(&Histogram, &'static str, &'static str); 5] {
        [
            (
                &self.hold,
                "hold",
                "taking and exporting a batch's end snapshot, and reading its first page",
            ),
            (&self.read, "read", "reading a further page of the outbox"),
            (
                &self.authorize,
                "authorize",
                "in one authorizer call for a page",
            ),
            (
                &self.dispatch,
                "dispatch",
                "dispatching one page: match, authorize, queue",
            ),
            (
                &self.write,
                "write",
                "writing one burst of frames to a WebSocket, flush included",
            ),
        ]
    }
}
