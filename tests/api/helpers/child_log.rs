//! A child process's stderr, read to its end by a task of its own (a full
//! pipe would block the process): every line kept, for failure messages and
//! for tests to wait on, so that they wait for what a process says rather
//! than poll it.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStderr;
use tokio::sync::watch;

use super::WAIT;

/// The lines a child wrote to stderr so far.
pub struct ChildLog {
    lines: Arc<Mutex<Vec<String>>>,
    /// Bumped on every line; closed at EOF.
    seen: watch::Receiver<usize>,
}

impl ChildLog {
    /// Starts reading `stderr`.
    pub fn read(stderr: ChildStderr) -> ChildLog {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = watch::channel(0);
        let kept = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let n = {
                    let mut lines = kept.lock().unwrap();
                    lines.push(line);
                    lines.len()
                };
                tx.send_replace(n);
            }
        });
        ChildLog { lines, seen }
    }

    /// Waits (bounded) for a line that `matches`; returns it, or why not
    /// (the process closed stderr, i.e. exited, or the time ran out).
    pub async fn line(&self, what: &str, matches: impl Fn(&str) -> bool) -> Result<String, String> {
        let mut seen = self.seen.clone();
        let found = async {
            loop {
                // Marked before looking: a line after the look wakes us.
                seen.borrow_and_update();
                if let Some(line) = self.lines.lock().unwrap().iter().find(|l| matches(l)) {
                    return Ok(line.clone());
                }
                if seen.changed().await.is_err() {
                    return Err(format!("exited without logging {what}"));
                }
            }
        };
        tokio::time::timeout(WAIT, found)
            .await
            .unwrap_or_else(|_| Err(format!("logged no {what} within {WAIT:?}")))
    }

    /// [`ChildLog::line`], panicking with the log when it does not come.
    pub async fn wait_for_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        match self.line(what, matches).await {
            Ok(line) => line,
            Err(why) => panic!("{why}:\n{}", self.text()),
        }
    }

    /// How many lines so far `match`.
    pub fn count(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| matches(l))
            .count()
    }

    /// A receiver whose `changed()` resolves at each line from now on
    /// (an error at EOF).
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        let mut seen = self.seen.clone();
        seen.borrow_and_update();
        seen
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every line so far, as one text.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits (bounded) until the process closed stderr.
    pub async fn until_eof(&self) {
        let mut seen = self.seen.clone();
        let _ = tokio::time::timeout(WAIT, async { while seen.changed().await.is_ok() {} }).await;
    }
}
