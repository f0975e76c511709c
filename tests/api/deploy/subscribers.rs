//! Many real `graphql-ws` clients in one node process
//! (tests/clients/subscribe-many.mjs): one WebSocket per token, their events
//! as JSON lines tagged with the client's index, sorted here per client.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The node process and the events read so far, per client.
pub struct Subscribers {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    pending: Vec<VecDeque<Value>>,
}

impl Subscribers {
    /// One client per token, each subscribing to `query` at `url`.
    pub fn spawn(url: &str, tokens: &[String], query: &str) -> Subscribers {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
        assert!(
            std::path::Path::new(dir).join("node_modules").exists(),
            "npm clients missing: run `make test` (it runs npm ci in tests/clients)"
        );
        let mut child = Command::new("node")
            .arg("subscribe-many.mjs")
            .current_dir(dir)
            .env("URL", url)
            .env("TOKENS", serde_json::to_string(tokens).unwrap())
            .env("QUERY", query)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Subscribers {
            child,
            lines,
            pending: vec![VecDeque::new(); tokens.len()],
        }
    }

    /// Client `client`'s next event, within `timeout` (None: none came).
    pub async fn next_event(&mut self, client: usize, timeout: Duration) -> Option<Value> {
        let read = async {
            loop {
                if let Some(event) = self.pending[client].pop_front() {
                    return event;
                }
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("client output readable")
                    .expect("the node clients still running");
                let event: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
                let from = event["client"].as_u64().expect("a client index") as usize;
                self.pending[from].push_back(event);
            }
        };
        tokio::time::timeout(timeout, read).await.ok()
    }

    /// Stops the node process.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
