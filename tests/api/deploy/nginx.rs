//! nginx in front of the instances, configured by deploy/nginx.conf itself:
//! the file's `server` lines in `upstream pgherald` and its `listen` line are
//! replaced by the test's addresses; every proxy setting is the file's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::helpers::child_log::ChildLog;

use super::{ScratchDir, repo_file};

/// The nginx binary, if installed (scripts/prereq-nginx.sh installs it).
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file())
}

/// deploy/nginx.conf with the upstream's servers replaced by `upstreams`
/// (each keeping the parameters of the file's first server line) and the
/// server listening on `listen`. Panics when the file no longer has the
/// shape this relies on, so that a change to it is noticed here.
pub fn site_config(conf: &str, upstreams: &[SocketAddr], listen: SocketAddr) -> String {
    let mut out = String::new();
    let mut in_upstream = false;
    let mut servers_written = false;
    let mut listens = 0;
    for line in conf.lines() {
        let code = line.split('#').next().unwrap_or_default().trim();
        if code.starts_with("upstream pgherald") {
            in_upstream = true;
        } else if in_upstream && code == "}" {
            in_upstream = false;
        }
        if in_upstream && code.starts_with("server ") {
            if !servers_written {
                // `server host:port params;`: keep the params.
                let params = code
                    .trim_end_matches(';')
                    .split_whitespace()
                    .skip(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                for addr in upstreams {
                    out.push_str(&format!("    server {addr} {params};\n"));
                }
                servers_written = true;
            }
            continue;
        }
        if code.starts_with("listen ") {
            out.push_str(&format!("    listen {listen};\n"));
            listens += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        servers_written,
        "deploy/nginx.conf has no `server` line in `upstream pgherald`"
    );
    assert_eq!(
        listens, 1,
        "deploy/nginx.conf should have one `listen` line"
    );
    out
}

/// The whole configuration around the site: everything in `dir`, in the
/// foreground, as the current user.
fn main_config(dir: &std::path::Path) -> String {
    let d = dir.display();
    // One process (no master, no workers): nothing to drop privileges to, so
    // it runs as whoever runs the test, root included, and killing it leaves
    // no worker behind.
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr notice;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/client_body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    )
}

/// A running nginx; killed (and its directory removed) when dropped.
pub struct Nginx {
    _child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: ScratchDir,
    log: ChildLog,
}

impl Nginx {
    /// Starts `binary` with deploy/nginx.conf in front of `upstreams`, on a
    /// free port, and waits (bounded) until it answers `/healthz` through
    /// the upstream.
    pub async fn start(binary: &std::path::Path, upstreams: &[SocketAddr]) -> Nginx {
        let conf =
            std::fs::read_to_string(repo_file("deploy/nginx.conf")).expect("deploy/nginx.conf");
        // The free port is found by binding it and letting go; another
        // process may take it in between, so a failed start tries again.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = ScratchDir::new("nginx");
            let addr = free_port();
            std::fs::write(
                dir.path().join("site.conf"),
                site_config(&conf, upstreams, addr),
            )
            .unwrap();
            std::fs::write(dir.path().join("nginx.conf"), main_config(dir.path())).unwrap();
            let mut child = Command::new(binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg("stderr")
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("nginx runs");
            let log = ChildLog::read(child.stderr.take().expect("piped"));
            match started(&log, addr).await {
                Ok(()) => {
                    return Nginx {
                        _child: child,
                        addr,
                        dir,
                        log,
                    };
                }
                Err(why) => failures.push(format!("{why}\n{}", log.text())),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    /// nginx's error and access logs so far (for failure messages).
    pub fn error_log(&self) -> String {
        let access =
            std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        format!("{}\n{access}", self.log.text())
    }
}

/// A port that was free a moment ago.
fn free_port() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    socket.local_addr().unwrap()
}

/// Waits (bounded) until nginx has started, which it says: it logs the
/// process's limits (`getrlimit(RLIMIT_NOFILE)`) once its configuration is
/// loaded and its listening sockets are open; then `/healthz` must answer
/// through the upstream.
async fn started(log: &ChildLog, addr: SocketAddr) -> Result<(), String> {
    log.line("its start", |l| l.contains("getrlimit(RLIMIT_NOFILE)"))
        .await?;
    let url = format!("http://{addr}/healthz");
    match reqwest::get(&url).await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url} answered {}", r.status())),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

#[test]
fn the_site_keeps_every_proxy_setting_and_takes_the_tests_addresses() {
    let conf = std::fs::read_to_string(repo_file("deploy/nginx.conf")).unwrap();
    let upstreams: Vec<SocketAddr> = vec![
        "127.0.0.1:1001".parse().unwrap(),
        "127.0.0.1:1002".parse().unwrap(),
    ];
    let site = site_config(&conf, &upstreams, "127.0.0.1:9999".parse().unwrap());
    assert!(
        site.contains("server 127.0.0.1:1001 max_fails=1 fail_timeout=5s;"),
        "{site}"
    );
    assert!(
        site.contains("server 127.0.0.1:1002 max_fails=1 fail_timeout=5s;"),
        "{site}"
    );
    assert!(site.contains("listen 127.0.0.1:9999;"), "{site}");
    assert!(!site.contains("pgherald-1"), "{site}");
    for setting in [
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_read_timeout 1h;",
        "zone pgherald",
    ] {
        assert!(site.contains(setting), "{setting} missing:\n{site}");
    }
}
