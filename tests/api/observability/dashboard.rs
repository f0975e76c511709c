//! The Grafana dashboard (deploy/grafana/pgherald.json) queries only what an
//! instance exports, so that it cannot rot as metrics change.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Scrape, scrape_until};
use crate::helpers::spawn_app;

const DASHBOARD: &str = include_str!("../../../deploy/grafana/pgherald.json");

/// Every `expr` (and variable query) anywhere in `value`.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The metric names a query names: `pgherald_` and what follows.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("pgherald_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_by_a_running_instance() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "pgherald");
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    assert!(all.len() >= 20, "{all:?}");
    let named: BTreeSet<String> = all.iter().flat_map(|q| metric_names(q)).collect();
    // Anything in the file that looks like a metric is checked too.
    assert_eq!(named, metric_names(DASHBOARD));

    let app = spawn_app().await;
    let scrape = scrape_until(&app, "the outbox gauges", |m| {
        m.value("pgherald_outbox_lag_seconds", "").is_some()
    })
    .await;
    let exported = scrape.names();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    // The labels the dashboard groups by are those of the families.
    for (family, label) in [
        ("pgherald_table_subscriptions", "table"),
        ("pgherald_websocket_frames_sent_total", "protocol"),
        ("pgherald_subscriptions_ended_total", "reason"),
        ("pgherald_authorizer_errors_total", "kind"),
    ] {
        assert!(
            all.iter()
                .any(|q| q.contains(family) && q.contains(&format!("by ({label})"))),
            "no query of {family} by {label}"
        );
        assert!(
            labelled(&scrape, family, label),
            "{family} has no {label} label"
        );
    }
    // Histogram quantiles are taken over buckets.
    assert!(
        all.iter()
            .any(|q| q.contains("histogram_quantile") && q.contains("_bucket"))
    );
}

fn labelled(scrape: &Scrape, family: &str, label: &str) -> bool {
    let prefix = format!("{label}=\"");
    scrape
        .samples
        .iter()
        .any(|(n, l, _)| n == family && l.starts_with(&prefix))
}
