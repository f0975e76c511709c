//! A lock-free histogram with fixed buckets, encoded by prometheus-client.
//!
//! prometheus-client's own histogram takes a mutex on every observation;
//! these are observed by every WebSocket write and every delivery, from
//! many tasks at once, so an observation here is two relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds of latency buckets, in microseconds: 50 µs to 10 s.
pub const LATENCY_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// Upper bounds of lag buckets, in microseconds: 1 ms to 5 min (a
/// subscriber is behind by a network round trip at best, by an outage at
/// worst).
pub const LAG_US: &[u64] = &[
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];

/// Upper bounds of size buckets (events in a batch; a page holds 1000).
pub const SIZE: &[u64] = &[1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000];

/// A histogram of non-negative integers (microseconds, or counts) with
/// fixed upper bounds, exported divided by a scale (1e6: seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    scale: f64,
    /// Observations per bucket (not cumulative), the last one above every bound.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram of durations in the latency buckets, in seconds.
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_US, 1e6)
    }

    /// A histogram of durations in the lag buckets, in seconds.
    pub fn lag() -> Histogram {
        Histogram::new(LAG_US, 1e6)
    }

    /// A histogram of counts in the size buckets.
    pub fn size() -> Histogram {
        Histogram::new(SIZE, 1.0)
    }

    fn new(bounds: &'static [u64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            scale,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value (in the histogram's unit: microseconds or a count).
    pub fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Records one duration (for histograms in seconds).
    pub fn observe(&self, elapsed: Duration) {
        self.record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // (upper bound, observations in that bucket alone): the encoder
        // makes them cumulative. The last bucket is +Inf.
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bound = self
                    .bounds
                    .get(i)
                    .map_or(f64::INFINITY, |&b| b as f64 / self.scale);
                (bound, n.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Debug)]
    struct Shared(std::sync::Arc<Histogram>);

    impl EncodeMetric for Shared {
        fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(encoder)
        }
        fn metric_type(&self) -> MetricType {
            self.0.metric_type()
        }
    }

    fn text(h: &std::sync::Arc<Histogram>) -> String {
        let mut registry = Registry::default();
        registry.register("x", "help", Shared(h.clone()));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_in_seconds() {
        let h = std::sync::Arc::new(Histogram::latency());
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_micros(1000));
        h.observe(Duration::from_secs(60));
        let out = text(&h);
        assert!(
            out.contains("# HELP x help.\n# TYPE x histogram\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{le=\"5e-05\"} 1\n"), "{out}");
        // A value on a bound is in that bound's bucket (le: less or equal).
        assert!(out.contains("x_bucket{le=\"0.001\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum 60.00174\nx_count 4\n"), "{out}");
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn a_size_histogram_counts_in_units() {
        let h = std::sync::Arc::new(Histogram::size());
        h.record(1);
        h.record(3);
        h.record(20_000);
        let out = text(&h);
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10000\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 20004.0\nx_count 3\n"), "{out}");
    }
}
