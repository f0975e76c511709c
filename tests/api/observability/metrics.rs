//! `/metrics` over HTTP from a running instance: every family with HELP and
//! TYPE, the labelled families, histograms that move with deliveries, the
//! subscriptions per table, the outbox gauges and the listener's reconnects.

use serde_json::json;

use super::{Scrape, scrape_until};
use crate::helpers::{Protocol, Subscriber, TestApp, spawn_app};

/// Every family an instance exports (docs/observability.md lists them).
const FAMILIES: &[(&str, &str)] = &[
    ("pgherald_listener_connected", "gauge"),
    ("pgherald_listener_connects_total", "counter"),
    ("pgherald_listener_reconnects_total", "counter"),
    ("pgherald_listener_heartbeat_sent", "gauge"),
    ("pgherald_listener_heartbeat_seen", "gauge"),
    ("pgherald_listener_foreign_heartbeats_total", "counter"),
    ("pgherald_events_total", "counter"),
    ("pgherald_deliveries_total", "counter"),
    ("pgherald_websocket_frames_sent_total", "counter"),
    ("pgherald_slow_consumers_total", "counter"),
    ("pgherald_subscriptions_ended_total", "counter"),
    ("pgherald_subscriptions", "gauge"),
    ("pgherald_table_subscriptions", "gauge"),
    ("pgherald_websocket_connections", "gauge"),
    ("pgherald_authorizer_contexts_failed_total", "counter"),
    ("pgherald_authorizer_rows_hidden_by_errors_total", "counter"),
    ("pgherald_authorizer_isolated_pages_total", "counter"),
    ("pgherald_authorizer_snapshot_fallbacks_total", "counter"),
    ("pgherald_context_failed_subscriptions_total", "counter"),
    ("pgherald_authorizer_errors_total", "counter"),
    ("pgherald_relay_active", "gauge"),
    ("pgherald_relay_elections_total", "counter"),
    ("pgherald_relay_polls_total", "counter"),
    ("pgherald_relay_notifies_total", "counter"),
    ("pgherald_relay_tables", "gauge"),
    ("pgherald_stage_hold_seconds", "histogram"),
    ("pgherald_stage_read_seconds", "histogram"),
    ("pgherald_stage_authorize_seconds", "histogram"),
    ("pgherald_stage_dispatch_seconds", "histogram"),
    ("pgherald_stage_write_seconds", "histogram"),
    ("pgherald_delivery_lag_seconds", "histogram"),
    ("pgherald_batch_events", "histogram"),
    ("pgherald_renderings_total", "counter"),
    ("pgherald_renderings_shared_total", "counter"),
    ("pgherald_routing_skipped_total", "counter"),
    ("pgherald_routing_decided_total", "counter"),
    ("pgherald_routing_keys_computed_total", "counter"),
    ("pgherald_routing_routes_derived_total", "counter"),
    ("pgherald_routing_unrouted_pages_total", "counter"),
    ("pgherald_outbox_scrape_errors_total", "counter"),
    ("pgherald_outbox_bytes", "gauge"),
    ("pgherald_outbox_rows_estimate", "gauge"),
    ("pgherald_outbox_lag_seconds", "gauge"),
];

/// An instance with alice subscribed to her notifications over
/// graphql-transport-ws, and one delivered.
struct Scene {
    app: TestApp,
    tenant: String,
    alice: String,
    sub: Subscriber,
}

async fn scene() -> Scene {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    app.wait_until_read_so_far().await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start(
        "n",
        "subscription { notifications(ops: [INSERT]) { row { title } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    app.notify(&tenant, &alice, "info", "first").await;
    assert_eq!(sub.next_event("n").await["row"]["title"], "first");
    Scene {
        app,
        tenant,
        alice,
        sub,
    }
}

#[tokio::test]
async fn every_family_has_help_and_type_and_a_third_party_parser_reads_the_scrape() {
    let s = scene().await;
    let scrape = scrape_until(&s.app, "the outbox gauges", |m| {
        m.value("pgherald_outbox_bytes", "").is_some()
    })
    .await;
    for (family, kind) in FAMILIES {
        assert_eq!(
            scrape.types.get(*family).map(String::as_str),
            Some(*kind),
            "TYPE of {family} in\n{}",
            scrape.text
        );
        let help = scrape.help.get(*family);
        assert!(
            help.is_some_and(|h| h.len() > 10 && h.ends_with('.')),
            "HELP of {family}: {help:?}"
        );
    }
    // Nothing exported that is not listed (and so documented).
    let listed: Vec<&str> = FAMILIES.iter().map(|(f, _)| *f).collect();
    for name in scrape.names() {
        let family = scrape.family_of(name);
        assert!(listed.contains(&family), "{name} is not a listed family");
    }
    // Every sample of a family follows its TYPE line.
    assert_eq!(scrape.types.len(), scrape.help.len());

    let lines = scrape.text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the scrape parses");
    for (family, _) in FAMILIES {
        assert!(parsed.docs.contains_key(*family), "{family} has no HELP");
    }
    let connected = parsed
        .samples
        .iter()
        .find(|s| s.metric == "pgherald_listener_connected")
        .expect("pgherald_listener_connected");
    assert!(matches!(connected.value, prometheus_parse::Value::Gauge(v) if v == 1.0));
}

#[tokio::test]
async fn labelled_families_carry_their_labels() {
    let s = scene().await;
    let scrape = Scrape::of(&s.app).await;
    for reason in [
        "slow_consumer",
        "context_failed",
        "table_gone",
        "column_revoked",
    ] {
        let labels = format!("reason=\"{reason}\"");
        assert_eq!(
            scrape.get("pgherald_subscriptions_ended_total", &labels),
            0.0
        );
    }
    for kind in ["role", "claims", "policy", "row", "call"] {
        let labels = format!("kind=\"{kind}\"");
        assert_eq!(scrape.get("pgherald_authorizer_errors_total", &labels), 0.0);
    }
    // The subscriber speaks graphql-transport-ws: its ack and its event.
    let frames = |protocol: &str| {
        let labels = format!("protocol=\"{protocol}\"");
        scrape.get("pgherald_websocket_frames_sent_total", &labels)
    };
    assert!(frames("graphql-transport-ws") >= 2.0, "{}", scrape.text);
    assert_eq!(frames("graphql-ws"), 0.0);
    for table in [
        "notifications",
        "documents",
        "users",
        "tenants",
        "memberships",
    ] {
        let labels = format!("table=\"public.{table}\"");
        assert!(
            scrape
                .value("pgherald_table_subscriptions", &labels)
                .is_some(),
            "{table}: {}",
            scrape.text
        );
    }
}

#[tokio::test]
async fn histograms_move_with_deliveries() {
    let mut s = scene().await;
    let before = Scrape::of(&s.app).await;
    for i in 0..3 {
        s.app
            .notify(&s.tenant, &s.alice, "info", &format!("n{i}"))
            .await;
        assert_eq!(s.sub.next_event("n").await["row"]["title"], format!("n{i}"));
    }
    let after = Scrape::of(&s.app).await;
    for histogram in [
        "pgherald_delivery_lag_seconds",
        "pgherald_batch_events",
        "pgherald_stage_authorize_seconds",
        "pgherald_stage_write_seconds",
    ] {
        let count = format!("{histogram}_count");
        let sum = format!("{histogram}_sum");
        let inf = format!("{histogram}_bucket");
        assert!(
            after.get(&count, "") > before.get(&count, ""),
            "{count}: {}",
            after.text
        );
        assert!(after.get(&sum, "") > before.get(&sum, ""), "{sum}");
        assert_eq!(after.get(&inf, "le=\"+Inf\""), after.get(&count, ""));
        // Buckets are cumulative.
        let buckets: Vec<f64> = after
            .samples
            .iter()
            .filter(|(n, _, _)| *n == inf)
            .map(|(_, _, v)| *v)
            .collect();
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{inf}: {buckets:?}"
        );
    }
    // Four live deliveries in all, each with its lag; none catch-up.
    assert_eq!(after.get("pgherald_delivery_lag_seconds_count", ""), 4.0);
    // A delivery is not older than the test.
    assert!(after.get("pgherald_delivery_lag_seconds_sum", "") < 60.0);
}

#[tokio::test]
async fn the_subscriptions_per_table_follow_subscriptions_opening_and_closing() {
    let s = scene().await;
    let per_table = |m: &Scrape, table: &str| {
        m.get(
            "pgherald_table_subscriptions",
            &format!("table=\"public.{table}\""),
        )
    };
    let scrape = Scrape::of(&s.app).await;
    assert_eq!(per_table(&scrape, "notifications"), 1.0);
    assert_eq!(per_table(&scrape, "documents"), 0.0);

    let mut other = Subscriber::connect(&s.app, &s.alice, "alice", Protocol::Legacy).await;
    other
        .start("d", "subscription { documents { op } }", json!({}))
        .await;
    s.app.wait_for_subscriptions(2).await;
    let scrape = Scrape::of(&s.app).await;
    assert_eq!(per_table(&scrape, "notifications"), 1.0);
    assert_eq!(per_table(&scrape, "documents"), 1.0);
    assert_eq!(scrape.get("pgherald_subscriptions", ""), 2.0);

    drop(s.sub);
    s.app.wait_for_subscriptions(1).await;
    let scrape = Scrape::of(&s.app).await;
    assert_eq!(per_table(&scrape, "notifications"), 0.0);
    assert_eq!(per_table(&scrape, "documents"), 1.0);
}

#[tokio::test]
async fn the_outbox_gauges_show_its_size_and_the_listeners_lag_and_reconnects_are_counted() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let first = scrape_until(&app, "the outbox gauges", |m| {
        m.value("pgherald_outbox_lag_seconds", "") == Some(0.0)
    })
    .await;
    let empty_bytes = first.get("pgherald_outbox_bytes", "");
    assert!(empty_bytes > 0.0, "indexes take pages even when empty");
    assert_eq!(first.get("pgherald_listener_reconnects_total", ""), 0.0);
    assert_eq!(first.get("pgherald_outbox_scrape_errors_total", ""), 0.0);

    app.keep_listener_out().await;
    app.sql(&format!(
        "insert into notifications (tenant_id, user_id, kind, title)
         select '{tenant}', '{alice}', 'info', repeat('x', 1000) from generate_series(1, 2000);
         analyze herald.events"
    ))
    .await;
    let behind = scrape_until(&app, "a lag while the listener is out", |m| {
        m.value("pgherald_outbox_lag_seconds", "")
            .is_some_and(|lag| lag > 0.0)
    })
    .await;
    assert!(behind.get("pgherald_outbox_bytes", "") > empty_bytes + 1_000_000.0);
    let rows = behind.get("pgherald_outbox_rows_estimate", "");
    assert!((1_000.0..=4_000.0).contains(&rows), "rows estimate {rows}");
    assert_eq!(behind.get("pgherald_listener_connected", ""), 0.0);

    app.let_listener_in().await;
    let caught_up = scrape_until(&app, "no lag once the listener is back", |m| {
        m.value("pgherald_outbox_lag_seconds", "") == Some(0.0)
    })
    .await;
    assert_eq!(caught_up.get("pgherald_listener_reconnects_total", ""), 1.0);
    assert_eq!(caught_up.get("pgherald_listener_connects_total", ""), 2.0);
    assert_eq!(
        caught_up.get("pgherald_outbox_scrape_errors_total", ""),
        0.0
    );
}
