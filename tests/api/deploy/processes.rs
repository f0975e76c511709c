//! `pgherald` as the deployment runs it: the binary (`migrate`, `serve`) in
//! child processes with only the environment they are given, killed when
//! dropped, their log kept for failure messages.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::child_log::ChildLog;

/// The binary under test.
const PGHERALD: &str = env!("CARGO_BIN_EXE_pgherald");

/// `pgherald` with exactly `env` (nothing inherited: the test runner's own
/// DATABASE_URL and HERALD_* variables must not leak in) and plain logs.
fn pgherald(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(PGHERALD);
    command
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        // The hub's debug lines say when a subscription is registered, which
        // tests wait for.
        .env("RUST_LOG", "pgherald=info,pgherald::events::hub=debug,warn")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `pgherald migrate` with `args` and `env` to completion; panics with
/// its output when it fails.
pub async fn migrate(args: &[&str], env: &[(&str, String)]) {
    let mut full = vec!["migrate"];
    full.extend_from_slice(args);
    let output = tokio::time::timeout(Duration::from_secs(60), pgherald(&full, env).output())
        .await
        .expect("pgherald migrate finishes within a minute")
        .expect("pgherald runs");
    assert!(
        output.status.success(),
        "pgherald migrate failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A `pgherald serve` process.
pub struct Instance {
    /// Killed on drop (`kill_on_drop`).
    _child: Child,
    /// The address it serves on, from its "pgherald serving" log line.
    pub addr: SocketAddr,
    log: ChildLog,
}

impl Instance {
    /// Starts `pgherald serve` with `env` (which should set HERALD_LISTEN to
    /// port 0) and waits until it logs the address it serves on.
    pub async fn serve(env: &[(&str, String)]) -> Instance {
        let mut child = pgherald(&["serve"], env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgherald runs");
        let log = ChildLog::read(child.stderr.take().expect("piped"));
        let line = log
            .wait_for_line("the address it serves on", |l| serving_addr(l).is_some())
            .await;
        Instance {
            _child: child,
            addr: serving_addr(&line).unwrap(),
            log,
        }
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// How many subscriptions it has registered so far (its debug log).
    pub fn registered(&self) -> usize {
        self.log.count(|l| l.contains("subscription registered"))
    }

    /// A receiver woken by each line it logs.
    pub fn log_lines(&self) -> tokio::sync::watch::Receiver<usize> {
        self.log.subscribe()
    }

    /// Its `http://` base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value of metric `name` on its `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url()))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    /// Waits (bounded) until its listener has connected (it logs so),
    /// which is when `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        self.log
            .wait_for_line("listener connected", |l| l.contains("listener connected"))
            .await;
    }
}

/// The address in `serve`'s start-up line
/// (`... pgherald serving addr=127.0.0.1:41234`).
fn serving_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("pgherald serving")?;
    let (_, addr) = rest.split_once("addr=")?;
    addr.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_serving_address_is_read_from_the_start_up_line() {
    let line =
        "2026-01-01T00:00:00.000000Z  INFO pgherald::app: pgherald serving addr=127.0.0.1:41234";
    assert_eq!(serving_addr(line), Some("127.0.0.1:41234".parse().unwrap()));
    assert_eq!(serving_addr("INFO listener connected"), None);
}
