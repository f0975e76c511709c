//! The demo page in a real browser: tests/browser/demo.mjs drives the
//! system's Chromium (playwright-core) through two pages of two panes each,
//! on the demo seed (examples/saas/seed.sql). Users subscribe, write through
//! the page under row-level security, and see each other's changes, or not.
//! Skips (saying why) only when Chromium is not installed:
//! scripts/prereq-chromium.sh installs it in `make test` when it can.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::spawn_app;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser scenario (each of its waits is bounded by 15 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

const ACME: &str = "10000000-0000-4000-8000-000000000001";
const ALICE: &str = "20000000-0000-4000-8000-000000000001";
const BOB: &str = "20000000-0000-4000-8000-000000000002";
const CAROL: &str = "20000000-0000-4000-8000-000000000003";
const DAVE: &str = "20000000-0000-4000-8000-000000000004";
const GLOBEX_DOC: &str = "40000000-0000-4000-8000-000000000002";

/// Runs tests/browser/demo.mjs; returns the JSON lines it printed.
async fn run_scenario(env: &[(&str, String)]) -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        Path::new(dir).join("node_modules/playwright-core").exists(),
        "playwright-core missing: run `make test` (it runs npm ci in tests/browser)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("demo.mjs")
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("node's output is readable") {
            eprintln!("browser: {line}");
            printed.push(
                serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|e| panic!("demo.mjs printed {line:?}: {e}")),
            );
        }
        child.wait().await.expect("node exits")
    };
    let status = tokio::time::timeout(SCENARIO_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("the browser scenario ran over {SCENARIO_TIMEOUT:?}"));
    let last = printed.last().cloned().unwrap_or_default();
    assert!(
        status.success() && last["ok"] == true,
        "the browser scenario failed ({status}): {}",
        serde_json::to_string_pretty(&last).unwrap()
    );
    printed
}

#[tokio::test]
async fn two_users_side_by_side_in_chromium_see_each_others_writes_only_as_rls_allows() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "SKIPPED: {CHROMIUM} is not installed (scripts/prereq-chromium.sh installs it in \
             `make test` when run as root or with password-less sudo)"
        );
        return;
    }
    let app = spawn_app().await;
    app.sql(include_str!("../../examples/saas/seed.sql")).await;
    app.wait_until_read_so_far().await;

    let steps = run_scenario(&[
        ("BASE", app.http_url.clone()),
        ("TOKEN_ALICE", app.token(ALICE)),
        ("TOKEN_BOB", app.token(BOB)),
        ("TOKEN_CAROL", app.token(CAROL)),
        ("TOKEN_DAVE", app.token(DAVE)),
        ("GLOBEX_DOC", GLOBEX_DOC.into()),
        ("ACME", ACME.into()),
        ("CHROMIUM", CHROMIUM.into()),
    ])
    .await;
    assert_eq!(steps.len(), 11, "every step ran: {steps:?}");

    // What the page did is what the database holds.
    let titles: Vec<String> = app
        .admin
        .query("select title from documents order by title", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        titles,
        [
            "Acme roadmap",
            "Alice's last",
            "Globex memo",
            "Globex plans"
        ],
        "created, edited and deleted through the page; the refused writes changed nothing"
    );
    let notes: Vec<(String, String, String, bool)> = app
        .admin
        .query(
            "select title, user_id::text, data ->> 'from', read_at is not null
               from notifications where kind = 'message' order by title",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        notes,
        [
            ("Hi Bob".into(), BOB.into(), ALICE.into(), true),
            ("Note to self".into(), ALICE.into(), ALICE.into(), false),
        ]
    );
}
