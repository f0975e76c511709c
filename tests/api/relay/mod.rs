//! Relay mode: tables whose capture trigger only writes the outbox, woken by
//! the one instance elected relay. The listener's safety read is made an
//! hour long, so that only a NOTIFY can wake it: a delivery proves a wake-up
//! was sent. `wake_ups`: who sends them, for which commits, and how soon;
//! `election`: re-election after the relay's backend is terminated, on the
//! same instance or another; `modes`: switching modes, and default mode
//! needing no relay.

mod election;
mod modes;
mod wake_ups;

use std::sync::atomic::Ordering;
use std::time::Duration;

use pgherald::Config;
use pgherald::events::relay::{RELAY_LOCK_KEY, RelayStatus};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Notification;

use crate::helpers::{TestApp, WAIT, WsClient};

const HOUR: Duration = Duration::from_secs(3600);

const NOTIFICATIONS: &str = "subscription { notifications(ops: [INSERT]) { row { title } } }";

/// No safety read: only a NOTIFY wakes the listener. Candidates retry often.
fn woken_only_by_notify(c: &mut Config) {
    c.listener.safety_interval = HOUR;
    c.relay.retry_interval = Duration::from_millis(50);
}

/// Waits (bounded) until `condition` holds for `app`'s relay, re-checking
/// on each of its changes (elections, losses, polls).
async fn wait_for_relay(app: &TestApp, what: &str, condition: impl Fn(&RelayStatus) -> bool) {
    let relay = &app.app.state().relay;
    let mut changes = relay.changes();
    let changed = async {
        while !condition(relay) {
            let _ = changes.changed().await;
        }
    };
    tokio::time::timeout(WAIT, changed)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// Waits until `app` is the relay and has seen `tables` tables in relay mode.
async fn wait_until_relaying(app: &TestApp, tables: u64) {
    wait_for_relay(
        app,
        &format!("the relay, with {tables} relay-mode tables"),
        |r| r.is_active() && r.relay_tables.load(Ordering::Relaxed) == tables,
    )
    .await;
}

/// The backend holding the relay lock of the test's database.
async fn relay_backend(app: &TestApp) -> i32 {
    app.admin
        .query_one(
            "select l.pid from pg_locks l
              where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                and l.classid = ($1::bigint >> 32)::oid and l.objid = ($1::bigint & 4294967295)::oid
                and l.database = (select oid from pg_database where datname = current_database())",
            &[&RELAY_LOCK_KEY],
        )
        .await
        .unwrap_or_else(|e| panic!("one backend holds the relay lock: {e:?}"))
        .get(0)
}

async fn backend_pid(app: &TestApp) -> i32 {
    app.admin
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The senders (backend pids) of the wake-ups `heard` received so far: a
/// marker NOTIFY follows them, since notifications arrive in commit order.
async fn wake_ups(app: &TestApp, heard: &mut UnboundedReceiver<Notification>) -> Vec<i32> {
    app.sql("notify herald, 'marker'").await;
    let mut senders = Vec::new();
    loop {
        let n = tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("the marker within the timeout")
            .expect("the LISTEN connection open");
        if n.payload() == "marker" {
            return senders;
        }
        senders.push(n.process_id());
    }
}

/// The function the row trigger of `table` calls.
async fn capture_function(app: &TestApp, table: &str) -> String {
    let def: String = app
        .admin
        .query_one(
            "select pg_get_triggerdef(oid) from pg_trigger
              where tgrelid = $1::text::regclass and tgname = 'herald_capture'",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    def.split(" FUNCTION ").nth(1).unwrap_or(&def).to_owned()
}

async fn is_relay_mode(app: &TestApp, table: &str) -> bool {
    app.admin
        .query_one(
            "select relay from herald.tracked where relid = $1::text::regclass",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

async fn subscribe(app: &TestApp, user: &str) -> WsClient {
    let mut ws = app.transport_as(user).await;
    ws.subscribe("n", NOTIFICATIONS, json!({})).await;
    ws
}

async fn next_title(ws: &mut WsClient) -> String {
    let msg = ws.next_data().await;
    msg["payload"]["data"]["notifications"]["row"]["title"]
        .as_str()
        .unwrap_or_else(|| panic!("a notification, got {msg}"))
        .to_owned()
}
