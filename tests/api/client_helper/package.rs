//! The package itself: its hand-written types compile against a usage file
//! (typed rows, Apollo's and urql's slots for a graphql-ws client), and a
//! subscription it cannot resume is refused with a clear error.

use std::time::Duration;

use super::{PACKAGE, start};
use crate::helpers::{WAIT, spawn_app};

#[tokio::test]
async fn the_types_give_typed_rows_refuse_unknown_fields_and_fit_apollo_and_urql() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PACKAGE);
    let run = tokio::process::Command::new("node")
        .args(["node_modules/typescript/bin/tsc", "-p", "test/types"])
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("tsc finishes")
        .expect("node runs");
    assert!(
        output.status.success(),
        "tsc -p test/types:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_subscription_the_client_cannot_resume_is_refused_before_anything_is_sent() {
    let app = spawn_app().await;
    let token = app.token("00000000-0000-0000-0000-000000000001");
    for (query, message) in [
        (
            "subscription { notifications { op } documents { op } }",
            "exactly one field",
        ),
        (
            "subscription { notifications { cursor: op } }",
            "\"cursor\" is taken",
        ),
        (
            "subscription($after: String) { notifications { op } }",
            "$after is declared but not passed",
        ),
    ] {
        let mut client = start(
            "subscribe.mjs",
            &[&app.ws_url],
            &token,
            &[("QUERY", query.to_owned())],
        );
        // The first event: nothing was opened or sent.
        let event = client.next_event(WAIT).await;
        assert_eq!(event["event"], "error", "{query}: {event}");
        let text = event["error"].as_str().unwrap_or_default();
        assert!(
            text.contains("HeraldClientError") && text.contains(message),
            "{query}: {event}"
        );
        client.kill().await;
    }
}
