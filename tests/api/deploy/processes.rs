//! `pgherald` as the deployment runs it: the binary (`migrate`, `serve`) in
//! child processes with only the environment they are given, killed when
//! dropped, their log kept for failure messages.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::WAIT;

/// The binary under test.
const PGHERALD: &str = env!("CARGO_BIN_EXE_pgherald");

/// The most log text kept per process (its tail).
const LOG_KEPT: usize = 16 * 1024;

/// `pgherald` with exactly `env` (nothing inherited: the test runner's own
/// DATABASE_URL and HERALD_* variables must not leak in) and plain logs.
fn pgherald(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(PGHERALD);
    command
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "pgherald=info,warn")
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
    log: Arc<Mutex<String>>,
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
        let log = Arc::new(Mutex::new(String::new()));
        let (found, addr) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let kept = log.clone();
        // Reads the log to its end (a full pipe would block the server).
        tokio::spawn(async move {
            let mut found = Some(found);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = serving_addr(&line) {
                    if let Some(found) = found.take() {
                        let _ = found.send(addr);
                    }
                }
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
                if log.len() > LOG_KEPT {
                    let cut = log.len() - LOG_KEPT;
                    let cut = (cut..log.len()).find(|&i| log.is_char_boundary(i)).unwrap();
                    log.drain(..cut);
                }
            }
        });
        let addr = match tokio::time::timeout(WAIT, addr).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "pgherald serve did not start within {WAIT:?}:\n{}",
                log.lock().unwrap()
            ),
        };
        Instance {
            _child: child,
            addr,
            log,
        }
    }

    /// What it has logged (the tail).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
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

    /// Waits (bounded) until `/readyz` answers 200: database reachable and
    /// listener connected.
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url());
        let ready = async {
            loop {
                if reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(WAIT, ready).await.is_err() {
            panic!("{} not ready within {WAIT:?}:\n{}", self.addr, self.log());
        }
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
