//! The pipeline's metrics, read at scrape from the counters the listener,
//! hub, authorizer, relay and WebSocket sessions keep as they run (so that
//! recording stays an atomic add), and encoded by prometheus-client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::Semaphore;

use super::pipeline::EndKind;
use crate::db::authorizer::ContextFailure;
use crate::events::hub::Hub;
use crate::events::listener::ListenerStatus;
use crate::events::relay::RelayStatus;
use crate::ws::Protocol;

/// What the pipeline collector reads.
pub struct Sources {
    /// The hub (its pipeline, authorizer, rendering and routing counters).
    pub hub: Arc<Hub>,
    /// The listener's connection and counters.
    pub listener: Arc<ListenerStatus>,
    /// The relay's state and counters.
    pub relay: Arc<RelayStatus>,
    /// The instance's WebSocket connection permits.
    pub permits: Arc<Semaphore>,
    /// How many permits there are in all.
    pub max_connections: usize,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// Encodes every pipeline metric from [`Sources`] on each scrape.
#[derive(Debug)]
pub(super) struct PipelineCollector(pub(super) Sources);

/// A counter's exported name (ending `_total`, as in `/metrics`).
fn base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = e.encode_descriptor(base(name), help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// A counter family with one label.
fn labelled<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(base(name), help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn load(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

impl Collector for PipelineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Sources {
            hub,
            listener: l,
            relay: r,
            permits,
            max_connections,
        } = &self.0;
        let e = &mut e;
        let a = hub.authorizer_stats();
        let p = hub.pipeline();

        gauge(
            e,
            "pgherald_listener_connected",
            "Whether the listener's LISTEN connection is up (1) or not (0).",
            i64::from(l.is_connected()),
        )?;
        let connects = load(&l.connects);
        counter(
            e,
            "pgherald_listener_connects_total",
            "Times the listener connected, the first time included.",
            connects,
        )?;
        counter(
            e,
            "pgherald_listener_reconnects_total",
            "Times the listener connected again after losing its connection.",
            connects.saturating_sub(1),
        )?;
        gauge(
            e,
            "pgherald_listener_heartbeat_sent",
            "Sequence number of the last heartbeat sent on the listener's current connection.",
            load(&l.heartbeat_sent) as i64,
        )?;
        gauge(
            e,
            "pgherald_listener_heartbeat_seen",
            "Sequence number of the last of the listener's own heartbeats seen back.",
            load(&l.heartbeat_seen) as i64,
        )?;
        counter(
            e,
            "pgherald_listener_foreign_heartbeats_total",
            "Notifications on the heartbeat channel that were not the listener's own (ignored).",
            load(&l.foreign_heartbeats),
        )?;

        counter(
            e,
            "pgherald_events_total",
            "Outbox events read and dispatched by the listener.",
            load(&l.events),
        )?;
        counter(
            e,
            "pgherald_deliveries_total",
            "Events queued for subscriptions (one per subscription an event is delivered to).",
            load(&l.deliveries),
        )?;
        labelled(
            e,
            "pgherald_websocket_frames_sent_total",
            "WebSocket text frames written (deliveries and protocol messages), by subprotocol.",
            "protocol",
            [Protocol::TransportWs, Protocol::LegacyWs]
                .map(|proto| (proto.name(), load(p.frames.of(proto)))),
        )?;
        counter(
            e,
            "pgherald_slow_consumers_total",
            "Subscriptions ended because their client did not keep up (queue full).",
            load(&l.overflows),
        )?;
        labelled(
            e,
            "pgherald_subscriptions_ended_total",
            "Subscriptions the server ended, by reason.",
            "reason",
            EndKind::ALL.map(|kind| (kind.label(), p.ended(kind))),
        )?;
        gauge(
            e,
            "pgherald_subscriptions",
            "Live subscriptions.",
            hub.subscription_count() as i64,
        )?;
        let open = max_connections.saturating_sub(permits.available_permits());
        gauge(
            e,
            "pgherald_websocket_connections",
            "Open WebSocket connections.",
            open as i64,
        )?;

        counter(
            e,
            "pgherald_authorizer_contexts_failed_total",
            "Security contexts the authorizer could not evaluate (counted per page).",
            load(&a.contexts_failed),
        )?;
        counter(
            e,
            "pgherald_authorizer_rows_hidden_by_errors_total",
            "Row images hidden because a policy raised an error on them.",
            load(&a.rows_hidden_by_errors),
        )?;
        counter(
            e,
            "pgherald_authorizer_isolated_pages_total",
            "Pages whose security contexts had to be authorized one per call.",
            load(&a.isolated_pages),
        )?;
        counter(
            e,
            "pgherald_authorizer_snapshot_fallbacks_total",
            "Batches or pages judged at dispatch time because a held snapshot was lost.",
            load(&a.snapshot_fallbacks),
        )?;
        counter(
            e,
            "pgherald_context_failed_subscriptions_total",
            "Subscriptions ended because their security context failed.",
            load(&a.subscriptions_ended),
        )?;
        let kinds = ContextFailure::ALL.map(|f| (f.label(), load(&a.failed_by_kind[f.index()])));
        labelled(
            e,
            "pgherald_authorizer_errors_total",
            "Authorizer errors by kind: a security context whose role, claims or policies \
             could not be evaluated, a row on which a policy raised (row), a page's whole call (call).",
            "kind",
            kinds.into_iter().chain([
                ("row", load(&a.rows_hidden_by_errors)),
                ("call", load(&a.failed_calls)),
            ]),
        )?;

        gauge(
            e,
            "pgherald_relay_active",
            "Whether this instance is the relay (1) or not (0).",
            i64::from(r.is_active()),
        )?;
        counter(
            e,
            "pgherald_relay_elections_total",
            "Times this instance became the relay.",
            load(&r.elections),
        )?;
        counter(
            e,
            "pgherald_relay_polls_total",
            "Polls made while the relay.",
            load(&r.polls),
        )?;
        counter(
            e,
            "pgherald_relay_notifies_total",
            "Wake-ups the relay sent.",
            load(&r.notifies),
        )?;
        gauge(
            e,
            "pgherald_relay_tables",
            "Tables in relay mode, as of the relay's last poll.",
            load(&r.relay_tables) as i64,
        )?;

        for (histogram, stage, what) in p.stages() {
            let name = format!("pgherald_stage_{stage}_seconds");
            let help = format!("Seconds spent {what}.");
            histogram.encode(e.encode_descriptor(&name, &help, None, MetricType::Histogram)?)?;
        }
        p.lag.encode(e.encode_descriptor(
            "pgherald_delivery_lag_seconds",
            "Seconds from an event's capture in the outbox (committed_at) to its delivery \
             being taken off the subscription's queue to be written.",
            None,
            MetricType::Histogram,
        )?)?;
        p.batch_events.encode(e.encode_descriptor(
            "pgherald_batch_events",
            "Events per batch the listener read.",
            None,
            MetricType::Histogram,
        )?)?;

        let renderings = hub.rendering_stats().counters();
        let routing = hub.routing_stats().map(|r| r.counters());
        for (name, help, value) in renderings.iter().chain(routing.iter().flatten()) {
            counter(e, name, help, load(value))?;
        }
        Ok(())
    }
}
