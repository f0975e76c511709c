//! @pgherald/client (clients/js) against running instances: resuming by
//! cursor across a restart, a token's expiry and a graceful shutdown, the
//! Apollo and urql recipes, its types, and its refusals. The Rust side writes
//! the rows (some while the client is disconnected) and checks what the
//! client's scripts (clients/js/test) print.

mod package;
mod recipes;
mod resume;

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Client;

use crate::helpers::{NodeScript, WAIT};

/// The package, relative to the repository.
const PACKAGE: &str = "clients/js";

/// Longest a reconnect may take: the client's backoff plus an instance's start.
const RECONNECT: Duration = Duration::from_secs(30);

/// The caller's new notifications; the client adds `cursor` and `after`.
const INSERTS: &str = "subscription { notifications(ops: [INSERT]) { op row { title } } }";

/// Starts `script` of clients/js/test subscribed to `INSERTS` on `urls`
/// (walked round) with `token` (`ask`: the script asks for each one), and
/// the further environment `env`.
fn start(script: &str, urls: &[&str], token: &str, env: &[(&str, String)]) -> NodeScript {
    let mut all = vec![
        ("URLS", urls.join(" ")),
        ("TOKEN", token.to_owned()),
        ("QUERY", INSERTS.to_owned()),
    ];
    all.extend(env.iter().cloned());
    NodeScript::spawn(PACKAGE, &format!("test/{script}"), &all)
}

/// Reads the script's events until one named `kind`, within `timeout`, and
/// returns it. Connection events on the way are skipped; a change or an
/// error on the way fails the test (each must be accounted for).
async fn until(script: &mut NodeScript, kind: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = script.next_event(left).await;
        if event["event"] == kind {
            return event;
        }
        assert!(
            !matches!(event["event"].as_str(), Some("next" | "error" | "complete")),
            "waiting for {kind}, got {event}"
        );
    }
}

/// The next `n` changes' titles (connection events skipped), each an
/// `INSERT` of `notifications`; `timeout` bounds the first, `WAIT` the rest.
async fn titles(script: &mut NodeScript, n: usize, timeout: Duration) -> Vec<String> {
    let mut titles = Vec::new();
    for i in 0..n {
        let event = until(script, "next", if i == 0 { timeout } else { WAIT }).await;
        let change = &event["data"]["data"]["notifications"];
        assert_eq!(change["op"], "INSERT", "{event}");
        titles.push(change["row"]["title"].as_str().expect("a title").to_owned());
    }
    titles
}

/// Inserts one notification per title for `user` in `tenant`, as the owner.
async fn notify(admin: &Client, tenant: &str, user: &str, titles: &[&str]) {
    for title in titles {
        admin
            .execute(
                "insert into notifications (tenant_id, user_id, kind, title) values ($1::text::uuid, $2::text::uuid, 'x', $3)",
                &[&tenant, &user, title],
            )
            .await
            .unwrap();
    }
}
