//! GraphQL over HTTP to the spec: graphql-http's own server audits
//! (tests/audit/audit.mjs) run against an instance, as its anonymous role so
//! that requests without a token can query.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::spawn_app_with;

/// How long the whole audit (61 requests, one at a time) may take.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs tests/audit/audit.mjs against `url`; one JSON object per audit.
async fn audit(url: &str) -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/audit");
    assert!(
        std::path::Path::new(dir).join("node_modules").exists(),
        "graphql-http missing: run `make test` (it runs npm ci in tests/audit)"
    );
    let output = tokio::process::Command::new("node")
        .arg("audit.mjs")
        .arg(url)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(AUDIT_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("the audit did not finish within {AUDIT_TIMEOUT:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "audit.mjs failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("audit.mjs printed {line:?}: {e}"))
        })
        .collect()
}

#[tokio::test]
async fn graphql_over_http_passes_every_audit_of_graphql_http() {
    let app = spawn_app_with(|c| c.anon_role = Some("anon".into())).await;
    let results = audit(&format!("{}/graphql", app.http_url)).await;
    // graphql-http 1.23 has 61 server audits: fewer means the script or the
    // package stopped running some of them.
    assert!(results.len() >= 61, "only {} audits ran", results.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r["status"] != "ok")
        .map(|r| {
            format!(
                "{} {} [{}]: {} (response: {})",
                r["id"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?"),
                r["status"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("?"),
                r["response"]
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} audits are not ok:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}
