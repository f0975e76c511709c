//! OTLP traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a listener batch
//! and an HTTP request arrive as spans at a collector, here a tiny one on
//! 127.0.0.1 that takes `POST /v1/traces`.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::process::serve;
use crate::helpers::WAIT;

/// A collector on 127.0.0.1: every request's path and body, in order.
async fn collector() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                // HTTP/1.1 requests with a Content-Length, kept alive.
                loop {
                    let mut request_line = String::new();
                    if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        read.read_line(&mut header).await.unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    read.read_exact(&mut body).await.unwrap();
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    write.write_all(reply.as_bytes()).await.unwrap();
                    if tx.send((path, body)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

/// The string attributes of `span`.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

#[tokio::test]
async fn a_listener_batch_and_an_http_request_arrive_as_otlp_spans() {
    let (endpoint, mut exports) = collector().await;
    let served = serve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    // A batch: rows written to a tracked table.
    served
        .admin
        .batch_execute("insert into tenants (name) values ('Acme'), ('Globex')")
        .await
        .unwrap();
    let health = reqwest::get(format!("{}/healthz", served.http_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let mut spans: Vec<Span> = Vec::new();
    let mut services = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let (path, body) = exports.recv().await.expect("collector runs");
            assert_eq!(path, "/v1/traces");
            let request =
                ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            for resource in request.resource_spans {
                if let Some(resource) = &resource.resource {
                    for kv in &resource.attributes {
                        if kv.key == "service.name" {
                            services.push(format!("{:?}", kv.value));
                        }
                    }
                }
                for scope in resource.scope_spans {
                    spans.extend(scope.spans);
                }
            }
            let batch = spans.iter().find(|s| {
                s.name == "listener.batch" && attributes(s).get("events").is_some_and(|n| n != "0")
            });
            let request = spans.iter().any(|s| {
                s.name == "http.request"
                    && attributes(s).get("path").is_some_and(|p| p == "/healthz")
            });
            if let (Some(batch), true) = (batch, request) {
                let dispatch = spans
                    .iter()
                    .find(|s| s.name == "hub.dispatch" && s.parent_span_id == batch.span_id);
                if dispatch.is_some() {
                    return batch.clone();
                }
            }
        }
    })
    .await;
    let names: Vec<(&str, HashMap<String, String>)> = spans
        .iter()
        .map(|s| (s.name.as_str(), attributes(s)))
        .collect();
    let batch =
        found.unwrap_or_else(|_| panic!("no batch with its dispatch and request in {names:?}"));
    assert_eq!(attributes(&batch)["events"], "2");
    assert!(batch.end_time_unix_nano >= batch.start_time_unix_nano);
    assert!(
        services.iter().any(|s| s.contains("pgherald")),
        "{services:?}"
    );
    served.stop().await;
}
