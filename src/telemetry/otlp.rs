//! OpenTelemetry traces over OTLP/HTTP, on when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The spans are
//! pgherald's own tracing spans at info level and above: each listener
//! batch (`listener.batch`, with its pages' `outbox.read`, `hub.dispatch`
//! and `authorizer` calls), each HTTP request (`http.request`) and each
//! WebSocket session (`ws.session`). The standard variables apply:
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
//! `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME` (default `pgherald`), `OTEL_RESOURCE_ATTRIBUTES` and
//! the batch processor's `OTEL_BSP_*`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;

/// The endpoint variables, either of which turns tracing on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// A running trace pipeline; shut down (flushing) on drop.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The pipeline the environment asks for; `None` when no endpoint is set.
    pub fn from_env() -> Result<Option<Traces>, TelemetryError> {
        let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
        if !ENDPOINT_VARS.iter().any(|v| set(v)) {
            return Ok(None);
        }
        let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            Err(_) | Ok("") | Ok("http/protobuf") => Protocol::HttpBinary,
            Ok("http/json") => Protocol::HttpJson,
            Ok(other) => {
                return Err(TelemetryError::Otlp(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported; \
                     use http/protobuf (the default) or http/json"
                )));
            }
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        let resource = if set("OTEL_SERVICE_NAME") {
            Resource::builder().build()
        } else {
            Resource::builder().with_service_name("pgherald").build()
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Traces { provider }))
    }

    /// The tracing layer that turns pgherald's spans into exported ones.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("pgherald");
        let spans = Targets::new()
            .with_target("pgherald", LevelFilter::INFO)
            .with_default(LevelFilter::OFF);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans)
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OpenTelemetry: flushing traces at exit failed: {e}");
        }
    }
}
