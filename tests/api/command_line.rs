//! The `pgherald` binary's command line and the private cluster's script, run
//! as a user runs them: every setting is documented by `--help` and in the
//! README's table, invalid settings are refused one line each, and a second
//! checkout's cluster finds a free port.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pgherald(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgherald"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("pgherald runs")
}

/// The `NAME` of every `[env: NAME=...]` in a `--help` text.
fn env_names(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap().to_owned())
        .collect()
}

/// The variables named in the first column of the README's configuration table.
fn readme_variables() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    table
        .lines()
        .skip_while(|l| !l.starts_with("| variable"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_setting_of_serve_and_migrate_is_in_their_help_and_in_the_readme_table() {
    let mut documented = BTreeSet::new();
    for command in ["serve", "migrate"] {
        let out = pgherald(&[command, "--help"], &[]);
        assert!(out.status.success(), "{command} --help: {out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        documented.extend(env_names(&help));
    }
    // The limits and timings every deployment asks about, by name.
    for name in [
        "HERALD_MAX_CONNECTIONS",
        "HERALD_MAX_CONNECTIONS_PER_IP",
        "HERALD_MAX_OPERATIONS",
        "HERALD_MAX_MESSAGE_BYTES",
        "HERALD_SUBSCRIPTION_QUEUE",
        "HERALD_WRITE_TIMEOUT",
        "HERALD_QUERY_TIMEOUT",
        "HERALD_POOL_SIZE",
        "HERALD_INTERNAL_POOL_SIZE",
        "HERALD_RETENTION",
        "HERALD_PRUNE_INTERVAL",
        "HERALD_LISTENER_HEARTBEAT",
        "HERALD_LISTENER_DATABASE_URL",
    ] {
        assert!(documented.contains(name), "{name} is not a flag's variable");
    }
    let mut table = readme_variables();
    // Read by the logging and tracing setup, not by a flag.
    for name in ["RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
        assert!(table.remove(name), "{name} is in the table");
    }
    let missing: Vec<_> = documented.difference(&table).collect();
    let unknown: Vec<_> = table.difference(&documented).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "not in the README's table: {missing:?}; in the table but no flag reads it: {unknown:?}"
    );
}

#[test]
fn serve_refuses_invalid_settings_with_one_line_for_each_before_connecting() {
    let out = pgherald(
        &["serve"],
        &[
            // Nothing listens there: the settings are checked before any connection.
            (
                "DATABASE_URL",
                "postgres://herald_authenticator@127.0.0.1:1/none",
            ),
            ("HERALD_JWT_SECRET", "a-secret"),
            ("HERALD_POOL_SIZE", "0"),
            ("HERALD_PRUNE_INTERVAL", "0s"),
            ("HERALD_LISTENER_HEARTBEAT", "0ms"),
            ("HERALD_MAX_CONNECTIONS", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    for name in [
        "HERALD_POOL_SIZE",
        "HERALD_PRUNE_INTERVAL",
        "HERALD_LISTENER_HEARTBEAT",
        "HERALD_MAX_CONNECTIONS",
    ] {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("error: {name} must")))
                .count(),
            1,
            "one line for {name} in:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), 4, "nothing but the four errors:\n{stderr}");

    let out = pgherald(
        &["serve"],
        &[
            (
                "DATABASE_URL",
                "postgres://herald_authenticator@127.0.0.1:1/none",
            ),
            ("HERALD_JWT_SECRET", "a-secret"),
            ("HERALD_RETENTION", "forever"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().next().unwrap_or("").contains("'forever'") && stderr.contains("--retention"),
        "{stderr}"
    );
}

/// `scripts/pg.sh` copied into a checkout of its own under the temp folder;
/// its cluster is destroyed on drop.
struct Checkout(PathBuf);

impl Checkout {
    fn new() -> Checkout {
        let dir = std::env::temp_dir().join(format!("pgherald-checkout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh");
        std::fs::copy(&script, dir.join("scripts/pg.sh")).unwrap();
        // The postgres OS user (when we are root) must reach the folder.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Checkout(dir)
    }

    fn pg(&self, command: &str, port: Option<u16>) -> Output {
        let mut cmd = Command::new(self.0.join("scripts/pg.sh"));
        cmd.arg(command).env_remove("PGHERALD_PG_PORT");
        if let Some(port) = port {
            cmd.env("PGHERALD_PG_PORT", port.to_string());
        }
        cmd.output().expect("pg.sh runs")
    }

    fn remember_port(&self, port: u16) {
        std::fs::create_dir_all(self.0.join(".pg")).unwrap();
        std::fs::write(self.0.join(".pg/port"), format!("{port}\n")).unwrap();
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = self.pg("destroy", None);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_checkout_whose_cluster_port_is_taken_says_so_in_one_line_and_moves_to_a_free_port() {
    // Another checkout's cluster, as far as this one can tell: something on its port.
    // Below Linux's ephemeral range (32768 and up): ports other tests take
    // with port 0 then never land just above it, where the script moves to.
    let taken = (20_000..32_000)
        .step_by(97)
        .find_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
        .expect("a free port below the ephemeral range");
    let port = taken.local_addr().unwrap().port();
    let checkout = Checkout::new();

    // Named explicitly, a taken port is an error that says what to do.
    let out = checkout.pg("start", Some(port));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("port {port}")) && stderr.contains("PGHERALD_PG_PORT"),
        "{stderr}"
    );

    // Not named (the default, here the remembered one), it moves on and says so.
    checkout.remember_port(port);
    let out = checkout.pg("start", None);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let moved: Vec<&str> = stderr.lines().filter(|l| l.contains("is taken")).collect();
    assert_eq!(moved.len(), 1, "{stderr}");
    assert!(
        moved[0].contains(&format!("port {port} is taken")),
        "{stderr}"
    );
    let now: u16 = String::from_utf8(checkout.pg("port", None).stdout)
        .unwrap()
        .trim()
        .parse()
        .expect("pg.sh port prints a number");
    assert_ne!(now, port);
    assert!(moved[0].contains(&format!("using {now}")), "{stderr}");
    // The cluster really is there, and the next start finds it again.
    std::net::TcpStream::connect(("127.0.0.1", now)).expect("the cluster listens");
    let again = checkout.pg("start", None);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8(again.stderr)
            .unwrap()
            .contains(&format!("running on 127.0.0.1:{now}"))
    );
}
