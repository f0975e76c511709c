//! Throwaway Postgres clusters of a test's own, for what the shared cluster
//! must not see: server settings (TLS), and being stopped and started again.
//! Each lives in a folder under the temp folder, named with the test
//! process's id so that a later run removes what a killed one left.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A private Postgres cluster on 127.0.0.1, stopped and deleted on drop.
pub struct Cluster {
    /// Its folder (data directory in `data/`, log in `log`).
    pub dir: PathBuf,
    bin: PathBuf,
    /// Its port.
    pub port: u16,
}

impl Cluster {
    /// Starts a new cluster named `name`; `configure` gets its folder (it may
    /// write files there) and returns lines for postgresql.conf.
    pub fn start(name: &str, configure: impl FnOnce(&Path) -> String) -> Cluster {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        remove_leftovers();
        let dir = std::env::temp_dir().join(format!(
            "pgherald-cluster-{}-{name}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            dir: dir.clone(),
            bin: pg_bindir(),
            port: 0,
        };
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nlog_min_messages = warning\n",
            dir.display()
        );
        conf.push_str(&configure(&dir));
        if is_root() {
            run(
                "chown",
                Command::new("chown").arg("-R").arg("postgres:").arg(&dir),
            );
        }
        run(
            "initdb",
            as_pg(&cluster.bin.join("initdb"))
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
                .arg("--no-sync"),
        );
        // postgresql.conf stays owned by postgres: appending keeps the owner.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("data/postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        // The port is free when picked but might not be by the time the
        // server binds it: try a few.
        for attempt in 1.. {
            cluster.port = free_port();
            let out = cluster.pg_ctl_start();
            if out.status.success() {
                break;
            }
            if attempt == 3 {
                panic!("pg_ctl start failed: {}\n{}", describe(&out), cluster.log());
            }
        }
        cluster
    }

    /// Key/value connection string for `postgres` on this cluster, plus `extra`.
    pub fn url(&self, extra: &str) -> String {
        format!(
            "host=localhost port={} user=postgres dbname=postgres {extra}",
            self.port
        )
    }

    /// Stops the server (fast: sessions are ended, open transactions rolled back).
    pub fn stop(&self) {
        run(
            "pg_ctl stop",
            as_pg(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "fast", "-w", "-t", "30", "stop"]),
        );
    }

    /// Starts the stopped server again, on its port.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            describe(&out),
            self.log()
        );
    }

    fn pg_ctl_start(&self) -> Output {
        as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "-o"])
            .arg(format!("-p {}", self.port))
            .arg("start")
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_and_remove(&self.bin, &self.dir);
    }
}

fn stop_and_remove(bin: &Path, dir: &Path) {
    if dir.join("data/postmaster.pid").exists() {
        let _ = as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Clusters of test processes that died without dropping theirs.
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pgherald-cluster-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            stop_and_remove(&pg_bindir(), &entry.path());
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` as the `postgres` OS user when we are root (initdb and pg_ctl
/// refuse to run as root), as ourselves otherwise.
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// The server binaries, found as scripts/pg.sh finds them.
fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return dir.into();
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL server binaries (set PG_BINDIR)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A finished command's status and output, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", describe(&out));
}
