//! `pgherald serve` as a child process on a fresh database, with JSON logs
//! on stderr: the logs and traces tests watch the real binary, since both
//! are set up once per process.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::helpers::child_log::ChildLog;
use crate::helpers::{SECRET, admin_url_for, app_url_for, connect, fresh_database};

/// A running `pgherald serve`.
pub struct Served {
    child: Child,
    /// `http://…`.
    pub http_url: String,
    /// `ws://…/graphql`.
    pub ws_url: String,
    /// Owner connection to its database.
    pub admin: Client,
    /// Its stderr.
    log: ChildLog,
}

/// Starts `pgherald serve` with JSON logs and `env`, on a fresh database;
/// returns once its listener is connected.
pub async fn serve(env: &[(&str, &str)]) -> Served {
    let db = fresh_database().await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgherald"));
    for (var, _) in std::env::vars() {
        if var.starts_with("OTEL_") || var.starts_with("HERALD_") || var == "RUST_LOG" {
            command.env_remove(var);
        }
    }
    command
        .arg("serve")
        .env("DATABASE_URL", app_url_for(&db))
        .env("HERALD_JWT_SECRET", SECRET)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("pgherald starts");
    let log = ChildLog::read(child.stderr.take().unwrap());
    let mut served = Served {
        child,
        http_url: String::new(),
        ws_url: String::new(),
        admin: connect(&admin_url_for(&db)).await,
        log,
    };
    let line = served
        .wait_for_line("the address served on", |l| {
            l.contains("\"message\":\"pgherald serving\"")
        })
        .await;
    // The stream starts when the listener first connects: what commits
    // before is not news.
    served
        .wait_for_line("the listener connected", |l| {
            l.contains("\"message\":\"listener connected\"")
        })
        .await;
    let json: Value = serde_json::from_str(&line).unwrap();
    let addr = json["fields"]["addr"].as_str().unwrap().to_owned();
    served.http_url = format!("http://{addr}");
    served.ws_url = format!("ws://{addr}/graphql");
    served
}

impl Served {
    /// Waits (bounded) for a stderr line that `matches`; returns it.
    pub async fn wait_for_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        self.log.wait_for_line(what, matches).await
    }

    /// Stops it with SIGTERM (a clean shutdown, which flushes traces);
    /// returns every line it wrote to stderr.
    pub async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("pgherald stops on SIGTERM")
            .unwrap();
        assert!(exit.success(), "{exit}");
        // Until EOF: every line read.
        self.log.until_eof().await;
        self.log.lines()
    }
}
