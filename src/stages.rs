//! Where the time goes: a latency histogram per stage of the pipeline, as
//! Prometheus histograms in `/metrics`. Holding the batch's snapshot (and
//! reading its first page, in the same round trip), reading each further
//! page of the outbox, authorizing a page, dispatching it (matching,
//! authorizing and queueing together), and writing a burst of frames to a
//! WebSocket. And how the pipeline's counters are written out.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds.
const BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// A latency histogram with fixed buckets; lock-free.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one above every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Appends the histogram in Prometheus text format, in seconds.
    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BOUNDS_US.get(i) {
                Some(bound) => {
                    let le = *bound as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Appends `counters` (name, help, value) in Prometheus text format: a
/// `# HELP` line for those that have one, a `# TYPE` line, the value.
pub fn render_counters(out: &mut String, counters: &[(&str, Option<&str>, &AtomicU64)]) {
    for (name, help, value) in counters {
        if let Some(help) = help {
            let _ = writeln!(out, "# HELP {name} {help}");
        }
        let _ = writeln!(
            out,
            "# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
}

/// The stages of the pipeline.
#[derive(Default)]
pub struct Stages {
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
}

impl Stages {
    /// Appends every stage's histogram in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let stages = [
            (
                &self.hold,
                "hold",
                "taking and exporting a batch's end snapshot, and reading its first page",
            ),
            (&self.read, "read", "reading a further page of the outbox"),
            (
                &self.authorize,
                "authorize",
                "one authorizer call for a page",
            ),
            (
                &self.dispatch,
                "dispatch",
                "dispatching one page: match, authorize, queue",
            ),
            (
                &self.write,
                "write",
                "writing one burst of frames to a WebSocket",
            ),
        ];
        for (histogram, stage, help) in stages {
            histogram.render(
                &format!("pgherald_stage_{stage}_seconds"),
                &format!("Seconds spent {help}."),
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_in_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render("x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.00005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 60.00074\nx_count 3\n"), "{out}");
    }
}
