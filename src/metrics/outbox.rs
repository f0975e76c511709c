//! The outbox's gauges: its size on disk, its rows (the planner's estimate),
//! and how far the listener is behind the newest commits (the age of the
//! oldest event it has not read). Read at scrape with one statement on the
//! query pool, bounded three ways: at most one reading in flight (a scrape
//! that finds one running serves the last values), at most one reading per
//! [`MIN_INTERVAL`], and a server-side statement timeout. Never on the event
//! path.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::events::snapshot::Snapshot;

/// Scrapes closer together than this share one reading.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest the reading's statement may run.
const STATEMENT_TIMEOUT: &str = "set local statement_timeout = '2s'";
/// Longest a scrape waits for a connection of the query pool.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// One reading of the outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    /// Bytes of the outbox's partitions, their indexes and TOAST included.
    pub bytes: i64,
    /// Rows, as estimated by the last ANALYZE or VACUUM of each partition.
    pub rows: f64,
    /// Seconds since the oldest event the listener has not read was
    /// captured; 0 when it has read everything. `None` before the listener
    /// first connected.
    pub lag: Option<f64>,
}

/// Why a reading failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("no connection from the query pool: {0}")]
    Pool(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

#[derive(Debug, Default)]
struct State {
    last: Option<Reading>,
    taken_at: Option<Instant>,
    errors: u64,
}

/// The outbox gauges, refreshed by [`OutboxGauges::refresh`] and encoded as
/// a collector.
#[derive(Debug, Default)]
pub struct OutboxGauges {
    state: Mutex<State>,
    /// Held while a reading is in flight.
    reading: tokio::sync::Mutex<()>,
}

impl OutboxGauges {
    /// Takes a new reading unless one is in flight or the last is younger
    /// than [`MIN_INTERVAL`]; `position` is where the listener has read up
    /// to (`None`: not started).
    pub async fn refresh(&self, pool: &Pool, position: Option<Snapshot>) {
        let Ok(_reading) = self.reading.try_lock() else {
            return;
        };
        let fresh = self
            .lock()
            .taken_at
            .is_some_and(|at| at.elapsed() < MIN_INTERVAL);
        if fresh {
            return;
        }
        let result = read(pool, position).await;
        let mut state = self.lock();
        state.taken_at = Some(Instant::now());
        match result {
            Ok(reading) => state.last = Some(reading),
            Err(e) => {
                state.errors += 1;
                tracing::warn!(error = %e, "reading the outbox's size and lag for /metrics failed");
            }
        }
    }

    /// The last reading, if any.
    pub fn last(&self) -> Option<Reading> {
        self.lock().last
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn read(pool: &Pool, position: Option<Snapshot>) -> Result<Reading, ReadError> {
    let mut client = tokio::time::timeout(POOL_WAIT, pool.get())
        .await
        .map_err(|_| ReadError::Pool("timed out".into()))?
        .map_err(|e| ReadError::Pool(e.to_string()))?;
    let tx = client.transaction().await?;
    tx.batch_execute(STATEMENT_TIMEOUT).await?;
    let position = position.map(|s| s.to_string());
    let row = tx
        .query_one(include_str!("../../sql/outbox_stats.sql"), &[&position])
        .await?;
    tx.commit().await?;
    Ok(Reading {
        bytes: row.get("bytes"),
        rows: row.get("rows"),
        lag: row.get("lag"),
    })
}

impl Collector for OutboxGauges {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let (last, errors) = {
            let state = self.lock();
            (state.last, state.errors)
        };
        let m = e.encode_descriptor(
            "pgherald_outbox_scrape_errors",
            "Readings of the outbox's size and lag that failed (the last good values are kept).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(errors).encode(m)?;
        let Some(reading) = last else {
            return Ok(());
        };
        let m = e.encode_descriptor(
            "pgherald_outbox_bytes",
            "Bytes of the outbox (herald.events' partitions, indexes and TOAST included).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(reading.bytes).encode(m)?;
        let m = e.encode_descriptor(
            "pgherald_outbox_rows_estimate",
            "Events in the outbox, as estimated by the last ANALYZE or VACUUM of its partitions.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(reading.rows).encode(m)?;
        if let Some(lag) = reading.lag {
            let m = e.encode_descriptor(
                "pgherald_outbox_lag_seconds",
                "Seconds since the oldest outbox event the listener has not read was captured (0: none unread).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(lag).encode(m)?;
        }
        Ok(())
    }
}
