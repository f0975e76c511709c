//! `HERALD_LOG_FORMAT=json`: every log line a JSON object, and none with a
//! token or a row, even with every pgherald log level on.

use serde_json::{Value, json};

use super::process::serve;
use crate::helpers::{WsClient, token_with};

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_never_show_a_token_or_a_row() {
    let served = serve(&[("RUST_LOG", "pgherald=trace,info")]).await;
    let tenant: String = served
        .admin
        .query_one(
            "insert into tenants (name) values ('Acme') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let alice: String = served
        .admin
        .query_one(
            "insert into users (email) values ('alice@acme.test') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    served
        .admin
        .execute(
            "insert into memberships (tenant_id, user_id) values ($1::text::uuid, $2::text::uuid)",
            &[&tenant, &alice],
        )
        .await
        .unwrap();
    let token = token_with(&alice, "app_user", 3600);
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let marker = "row-marker-7c1f09e2";

    let mut ws = WsClient::transport(&served.ws_url).await;
    ws.init(&token).await;
    ws.subscribe(
        "n",
        "subscription { notifications(ops: [INSERT]) { row { title body } } }",
        json!({}),
    )
    .await;
    served
        .wait_for_line("the subscription registered", |l| {
            l.contains("\"message\":\"subscription registered\"")
        })
        .await;
    served
        .admin
        .execute(
            "insert into notifications (tenant_id, user_id, kind, title, body)
             values ($1::text::uuid, $2::text::uuid, 'info', $3, $3)",
            &[&tenant, &alice, &marker],
        )
        .await
        .unwrap();
    let data = ws.next_json().await;
    assert_eq!(
        data["payload"]["data"]["notifications"]["row"]["title"],
        marker
    );

    // A query over HTTP with the token, and one with a refused token.
    let client = reqwest::Client::new();
    let query = json!({"query": "{ notifications(first: 5) { rows { title } } }"});
    let ok: Value = client
        .post(format!("{}/graphql", served.http_url))
        .bearer_auth(&token)
        .json(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ok.to_string().contains(marker), "{ok}");
    let forged = format!("{}.{}", token.rsplit_once('.').unwrap().0, "AAAA");
    let refused = client
        .post(format!("{}/graphql", served.http_url))
        .bearer_auth(&forged)
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    drop(ws);

    let lines = served.stop().await;
    assert!(lines.len() >= 5, "{lines:?}");
    let mut messages = Vec::new();
    for line in &lines {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        messages.push(
            object["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        for secret in [token.as_str(), forged.as_str(), signature.as_str(), marker] {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
    }
    // The session was logged (at debug and trace level), just not its secrets.
    for expected in [
        "pgherald serving",
        "listener connected",
        "page dispatched",
        "shutting down",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected:?} not in {messages:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_log_format_is_refused_with_the_accepted_ones() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgherald"))
        .args(["token", "--sub", "x"])
        .env("HERALD_LOG_FORMAT", "xml")
        .env("HERALD_JWT_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'xml'")
            && stderr.contains("text")
            && stderr.contains("json"),
        "{stderr}"
    );
}
