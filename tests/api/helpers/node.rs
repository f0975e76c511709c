//! The real npm clients (tests/clients/subscribe.mjs), graphql-js
//! (tests/clients/schema.mjs) and the scripts of our own npm packages
//! (clients/js/test), driven as child processes.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The directory of the npm scripts, once `npm ci` has installed their packages.
fn clients_dir() -> &'static str {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    assert!(
        std::path::Path::new(dir).join("node_modules").exists(),
        "npm clients missing: run `make test` (it runs npm ci in tests/clients)"
    );
    dir
}

/// Runs the script `script` of tests/clients with the environment `env` to
/// completion (bounded by `timeout`); returns the JSON line it prints.
pub async fn run_script(script: &str, env: &[(&str, String)], timeout: Duration) -> Value {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .current_dir(clients_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {timeout:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{script} printed {stdout:?} ({}): {e}", output.status))
}

/// A real npm client (tests/clients/subscribe.mjs) printing events as JSON lines.
pub struct NodeClient {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl NodeClient {
    /// Starts the client for `query`; `protocol` is "transport" or "legacy".
    pub fn spawn(
        url: &str,
        token: &str,
        protocol: &str,
        query: &str,
        variables: Value,
    ) -> NodeClient {
        let dir = clients_dir();
        let mut child = tokio::process::Command::new("node")
            .arg("subscribe.mjs")
            .current_dir(dir)
            .env("URL", url)
            .env("TOKEN", token)
            .env("PROTOCOL", protocol)
            .env("QUERY", query)
            .env("VARIABLES", variables.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        NodeClient { child, lines }
    }

    /// Next event line, within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Value {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .expect("a client event within the timeout")
            .expect("client output readable")
            .expect("client still running");
        serde_json::from_str(&line).unwrap()
    }

    /// Stops the client.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A node script of one of the repository's npm packages (say
/// clients/js/test/subscribe.mjs) that prints JSON lines and reads the
/// test's answers, one per line, on stdin.
pub struct NodeScript {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: tokio::process::ChildStdin,
}

impl NodeScript {
    /// Starts `node <script>` in the package directory `package` (relative
    /// to the repository) with the environment `env`.
    pub fn spawn(package: &str, script: &str, env: &[(&str, String)]) -> NodeScript {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(package);
        assert!(
            dir.join("node_modules").exists(),
            "{package}: npm packages missing: run `make test` (it runs npm ci there)"
        );
        let mut command = tokio::process::Command::new("node");
        command
            .arg(script)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        NodeScript {
            child,
            lines,
            stdin,
        }
    }

    /// The next line the script prints, as JSON, within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Value {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line from the script within {timeout:?}"))
            .expect("script output readable")
            .expect("script still running");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("script printed {line:?}: {e}"))
    }

    /// Writes `line` to the script's stdin.
    pub async fn answer(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("script reads stdin");
        self.stdin.flush().await.expect("script reads stdin");
    }

    /// Stops the script.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
