//! The process's logs and traces: log lines to stderr, as text or as JSON
//! lines (`HERALD_LOG_FORMAT=json`, `--log-format json`), filtered by
//! `RUST_LOG` (default `pgherald=info,warn`); and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry traces of batches
//! and requests over OTLP/HTTP ([`otlp`], cargo feature `otlp`).
//!
//! What pgherald logs never holds a token or a row image: tracing calls log
//! errors, counts, ids and names (see docs/observability.md). Postgres
//! errors may quote a value they choke on, as Postgres does in its own log.

#[cfg(feature = "otlp")]
pub mod otlp;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP settings are invalid.
    #[error("OpenTelemetry: {0}")]
    Otlp(String),
    /// A global subscriber was already installed.
    #[error("logging was already set up: {0}")]
    AlreadySet(String),
}

/// Keeps telemetry running; dropping it flushes the traces not yet sent.
#[must_use = "dropping the guard stops exporting traces"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    traces: Option<otlp::Traces>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exports_traces(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.traces.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }
}

/// The log filter: `RUST_LOG`, or pgherald's own info lines and every
/// crate's warnings.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| "pgherald=info,warn".into())
}

/// Installs the process's subscriber: logs in `format`, and traces when the
/// OTLP environment asks for them. Call once, outside any async runtime
/// (the exporter runs on a thread of its own).
pub fn init(format: LogFormat) -> Result<Telemetry, TelemetryError> {
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otlp")]
    {
        let traces = otlp::Traces::from_env()?;
        let layer = traces.as_ref().map(otlp::Traces::layer);
        registry
            .with(layer)
            .try_init()
            .map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
        if traces.is_some() {
            tracing::info!("exporting OpenTelemetry traces over OTLP/HTTP");
        }
        Ok(Telemetry { traces })
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry
            .try_init()
            .map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
        Ok(Telemetry {})
    }
}
