//! `/metrics`: every metric of an instance in the Prometheus text format,
//! with `# HELP` and `# TYPE`, encoded by prometheus-client from one
//! registry per [`crate::Application`] (tests run many in one process).
//!
//! The hot path only adds to atomics ([`pipeline`], and the counters of the
//! listener, authorizer, relay, renderings and routing); [`collect`] reads
//! them at scrape. The subscriptions per table are counted at scrape, and
//! the outbox's size and lag read with one bounded statement
//! ([`outbox`]). docs/observability.md lists every metric.

pub mod collect;
mod histogram;
pub mod outbox;
pub mod pipeline;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::{CONTENT_TYPE, encode};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

pub use collect::Sources;
pub use histogram::Histogram;
use outbox::OutboxGauges;

use crate::state::AppState;

/// A counter as its owner lists it: exported name (ending `_total`), help,
/// value.
pub type CounterSpec<'a> = (&'static str, &'static str, &'a AtomicU64);

/// An instance's metrics: its registry, and the values read at scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tables: Arc<TableSubscriptions>,
    outbox: Arc<OutboxGauges>,
}

impl Metrics {
    /// The registry of an instance whose pipeline is `sources`.
    pub fn new(sources: Sources) -> Metrics {
        let tables = Arc::new(TableSubscriptions::default());
        let outbox = Arc::new(OutboxGauges::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collect::PipelineCollector(sources)));
        registry.register_collector(Box::new(tables.clone()));
        registry.register_collector(Box::new(outbox.clone()));
        Metrics {
            registry,
            tables,
            outbox,
        }
    }

    /// The text of a scrape (values read at scrape are read first).
    pub async fn text(&self, state: &AppState) -> String {
        self.tables.count(state);
        self.outbox.refresh(&state.pool, state.hub.position()).await;
        let mut out = String::new();
        // Writing to a String cannot fail; a collector's error would be a bug.
        encode(&mut out, &self.registry).expect("metrics encode");
        out
    }
}

/// `GET /metrics`.
pub async fn scrape(state: Arc<AppState>) -> Response {
    let text = state.metrics.text(&state).await;
    let reply = warp::reply::with_header(text, "content-type", CONTENT_TYPE);
    warp::reply::with_status(reply, StatusCode::OK).into_response()
}

/// Live subscriptions per tracked table, counted at scrape.
#[derive(Debug, Default)]
struct TableSubscriptions {
    /// (table, subscriptions), as of the last count.
    counts: Mutex<Vec<(String, usize)>>,
}

impl TableSubscriptions {
    /// Counts every tracked table's subscriptions (0 included, so that a
    /// table's series does not vanish with its last subscriber).
    fn count(&self, state: &AppState) {
        let per_relid = state.hub.subscriptions_per_table();
        let schema = state.schema.current();
        let catalog = &schema.subscription_info.catalog;
        let counts = catalog
            .tables
            .iter()
            .map(|t| {
                let n = per_relid
                    .iter()
                    .find(|(relid, _)| *relid == t.relid)
                    .map_or(0, |(_, n)| *n);
                (t.qualified.clone(), n)
            })
            .collect();
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }
}

impl Collector for TableSubscriptions {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = e.encode_descriptor(
            "pgherald_table_subscriptions",
            "Live subscriptions per tracked table.",
            None,
            MetricType::Gauge,
        )?;
        for (table, n) in counts.iter() {
            let labels = [("table", table.as_str())];
            ConstGauge::new(*n as i64).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
