//! GraphQL over HTTP to the spec: graphql-http's own server audits
//! (tests/audit/audit.mjs) run against an instance, as its anonymous role so
//! that requests without a token can query.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

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

/// What the audits leave to the server, as docs/api.md states it.
#[tokio::test]
async fn graphql_over_http_refuses_what_it_cannot_speak_and_keeps_its_status_codes_per_media_type()
{
    let app = spawn_app().await;
    let url = format!("{}/graphql", app.http_url);
    let token = app.token("alice");
    let client = reqwest::Client::new();
    let post = |accept: &'static str, content_type: &'static str, body: String| {
        client
            .post(&url)
            .bearer_auth(&token)
            .header("accept", accept)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let query = |q: &str| json!({ "query": q }).to_string();
    let content_type =
        |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_owned();

    // Neither media type acceptable: 406, said in application/json.
    let r = post("text/html", "application/json", query("{ cursor }"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(content_type(&r).starts_with("application/json"));
    // A body that is not declared JSON (what an HTML form of another site
    // could send) is not read: 415.
    for declared in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json; charset=latin1",
    ] {
        let r = post("application/json", declared, query("{ cursor }"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{declared}");
    }
    // A body over HERALD_MAX_MESSAGE_BYTES (256 KiB by default) is not read.
    let big = query(&format!("{{ cursor }} # {}", "x".repeat(300 * 1024)));
    let r = post(GRAPHQL_RESPONSE, "application/json", big)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A subscription over HTTP cannot run: a request error, 400 with
    // graphql-response+json, 200 with errors and no data with application/json.
    let subscription = query("subscription { notifications { op } }");
    let r = post(GRAPHQL_RESPONSE, "application/json", subscription.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(content_type(&r).starts_with(GRAPHQL_RESPONSE));
    let r = post("application/json", "application/json", subscription)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(content_type(&r).starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert!(body.get("data").is_none(), "{body}");
    // A refused token is 401 whatever the media type, in that media type.
    let r = client
        .post(&url)
        .bearer_auth("garbage")
        .header("accept", GRAPHQL_RESPONSE)
        .json(&json!({"query": "{ cursor }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(content_type(&r).starts_with(GRAPHQL_RESPONSE));
    // The recommended Accept of a spec client gets the new type.
    let r = post(
        "application/graphql-response+json, application/json;q=0.9",
        "application/json",
        query("{ cursor }"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(content_type(&r).starts_with(GRAPHQL_RESPONSE));
    let body: Value = r.json().await.unwrap();
    assert!(body["data"]["cursor"].is_string(), "{body}");
}
