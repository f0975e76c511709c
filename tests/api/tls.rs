//! TLS to Postgres: `sslmode` and `sslrootcert` against a throwaway cluster
//! with `ssl = on` and a CA and server certificate (SAN `localhost`,
//! `127.0.0.1`) made at test time, plus a second CA the server does not use.
//! The cluster is started once per test process and shared by the tests
//! running in it; the last one out stops and removes it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pgherald::db::pool;
use pgherald::db::tls::Connector;
use pgherald::{Application, Config, JwtKey};

/// A host name that resolves nowhere; with `hostaddr=127.0.0.1` it is the
/// name the certificate is checked against, and the certificate does not have it.
const NOT_IN_SAN: &str = "pgherald-not-in-san.invalid";

/// PEM files made for one cluster.
struct Certs {
    ca: PathBuf,
    wrong_ca: PathBuf,
}

/// A private Postgres cluster on 127.0.0.1, stopped and deleted on drop.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    certs: Option<Certs>,
}

impl Cluster {
    /// Starts a cluster; with `tls`, `ssl = on` with fresh certificates.
    fn start(tls: bool) -> Cluster {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        remove_leftovers();
        let dir = std::env::temp_dir().join(format!(
            "pgherald-tls-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Cluster {
            dir: dir.clone(),
            bin: pg_bindir(),
            port: 0,
            certs: None,
        };
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nlog_min_messages = warning\n",
            dir.display()
        );
        if tls {
            cluster.certs = Some(write_certs(&dir));
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
                dir.display()
            ));
        }
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
            let out = as_pg(&cluster.bin.join("pg_ctl"))
                .arg("-D")
                .arg(dir.join("data"))
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-t", "30", "-o"])
                .arg(format!("-p {}", cluster.port))
                .arg("start")
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            if attempt == 3 {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                panic!("pg_ctl start failed: {}\n{log}", describe(&out));
            }
        }
        cluster
    }

    /// Key/value connection string for `postgres` on this cluster, plus `extra`.
    fn url(&self, extra: &str) -> String {
        format!(
            "host=localhost port={} user=postgres dbname=postgres {extra}",
            self.port
        )
    }

    fn certs(&self) -> &Certs {
        self.certs.as_ref().expect("a TLS cluster")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_and_remove(&self.bin, &self.dir);
    }
}

/// The shared TLS cluster, started by the first test that needs it.
fn tls_cluster() -> Arc<Cluster> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(Cluster::start(true));
    *shared = Arc::downgrade(&cluster);
    cluster
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
            .strip_prefix("pgherald-tls-")
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

/// A CA, a server certificate it signs (SAN localhost and 127.0.0.1, in
/// `server.crt`/`server.key`), and another CA, all written to `dir`.
fn write_certs(dir: &Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("pgherald test CA");
    let (wrong_cert, _) = ca("some other CA");
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("wrong-ca.crt"), wrong_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
    let key_file = dir.join("server.key");
    std::fs::write(&key_file, server_key.serialize_pem()).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    Certs {
        ca: dir.join("ca.crt"),
        wrong_ca: dir.join("wrong-ca.crt"),
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

fn describe(out: &Output) -> String {
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

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Connects through pgherald's connector; whether the session uses TLS.
async fn ssl_in_use(url: &str) -> Result<bool, String> {
    let connector = Connector::from_url(url).map_err(|e| chain(&e))?;
    let (client, connection) = connector.connect().await.map_err(|e| chain(&e))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| chain(&e))?;
    Ok(row.get(0))
}

async fn connects_with_tls(url: &str) {
    assert_eq!(ssl_in_use(url).await, Ok(true), "{url}");
}

async fn refused(url: &str) -> String {
    match ssl_in_use(url).await {
        Ok(ssl) => panic!("{url}: connected (ssl = {ssl}), expected a failure"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn require_and_prefer_encrypt_and_disable_does_not() {
    let pg = tls_cluster();
    connects_with_tls(&pg.url("sslmode=require")).await;
    // No sslmode is libpq's default, prefer: TLS when the server offers it.
    connects_with_tls(&pg.url("")).await;
    assert_eq!(ssl_in_use(&pg.url("sslmode=disable")).await, Ok(false));
    // URL form.
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    connects_with_tls(&format!("{url}?sslmode=require")).await;
    assert_eq!(
        ssl_in_use(&format!("{url}?application_name=t&sslmode=disable")).await,
        Ok(false)
    );
}

#[tokio::test]
async fn verify_full_accepts_the_server_certificate_for_its_names() {
    let pg = tls_cluster();
    let ca = pg.certs().ca.display().to_string();
    connects_with_tls(&pg.url(&format!("sslmode=verify-full sslrootcert='{ca}'"))).await;
    // By IP address (IP SAN), in URL form with a percent-encoded path.
    let encoded: String = ca
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    connects_with_tls(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={encoded}",
        pg.port
    ))
    .await;
}

#[tokio::test]
async fn a_root_that_did_not_sign_the_server_certificate_is_refused() {
    let pg = tls_cluster();
    let wrong = pg.certs().wrong_ca.display().to_string();
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        // With sslrootcert, libpq checks the chain in every mode that uses TLS.
        let e = refused(&pg.url(&format!("sslmode={mode} sslrootcert='{wrong}'"))).await;
        assert!(e.contains("certificate"), "{mode}: {e}");
    }
    // Without sslrootcert, verify-* trusts the system's roots, which do not
    // include the test CA (or there are none: also a refusal).
    let e = refused(&pg.url("sslmode=verify-full")).await;
    assert!(e.contains("certificate"), "{e}");
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let pg = tls_cluster();
    let ca = pg.certs().ca.display().to_string();
    // Reach the server at 127.0.0.1 under a name its certificate lacks.
    let url = |mode: &str| {
        format!(
            "host={NOT_IN_SAN} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
             sslmode={mode} sslrootcert='{ca}'",
            pg.port
        )
    };
    let e = refused(&url("verify-full")).await;
    assert!(e.contains("certificate not valid for name"), "{e}");
    connects_with_tls(&url("verify-ca")).await;
    connects_with_tls(&url("require")).await;
}

#[tokio::test]
async fn require_fails_against_a_server_without_tls() {
    let pg = Cluster::start(false);
    let e = refused(&pg.url("sslmode=require")).await;
    assert!(e.contains("server does not support TLS"), "{e}");
    let e = refused(&pg.url("sslmode=verify-full")).await;
    assert!(e.contains("server does not support TLS"), "{e}");
    // prefer falls back to plain.
    assert_eq!(ssl_in_use(&pg.url("")).await, Ok(false));
}

/// `pgherald migrate` with a TLS admin URL, then the query pool and the
/// listener of a running instance, all with verify-full.
#[tokio::test]
async fn migrate_pool_and_listener_connect_over_tls() {
    let pg = tls_cluster();
    let ca = pg.certs().ca.display().to_string();
    let tls = format!("sslmode=verify-full sslrootcert='{ca}'");
    let admin_url = pg.url(&tls);
    let app_url = format!(
        "host=localhost port={} user=herald_authenticator dbname=postgres {tls}",
        pg.port
    );

    let out = pgherald_command()
        .arg("migrate")
        .env("HERALD_ADMIN_DATABASE_URL", &admin_url)
        .env("DATABASE_URL", &app_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "migrate: {}", describe(&out));

    let pool = pool::build(&app_url, 2).unwrap();
    let client = pool.get().await.unwrap();
    let ssl: bool = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "pooled connection without TLS");
    drop(client);

    let mut config = Config::new(app_url, JwtKey::Secret("tls-test-secret".into()));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.pool_size = 2;
    let app = Application::build(config).await.expect("app starts");
    let mut changes = app.state().listener.changes();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !app.state().listener.is_connected() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("listener connects");

    let (admin, connection) = Connector::from_url(&admin_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    tokio::spawn(connection);
    let sessions: Vec<(String, bool)> = admin
        .query(
            "select a.application_name, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
              where a.usename = 'herald_authenticator' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        sessions.contains(&("pgherald-listener".into(), true)),
        "{sessions:?}"
    );
    assert!(sessions.iter().all(|(_, ssl)| *ssl), "{sessions:?}");
    app.shutdown().await;
}

/// Bad TLS settings stop `pgherald migrate` and `pgherald serve` at start-up,
/// before connecting, with a line naming the problem.
#[tokio::test]
async fn bad_tls_settings_stop_serve_and_migrate_at_start_up() {
    /// Deletes the file when the test ends, passed or not.
    struct TempFile(PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let junk = TempFile(
        std::env::temp_dir().join(format!("pgherald-tls-junk-{}.crt", std::process::id())),
    );
    std::fs::write(&junk.0, "not a certificate\n").unwrap();
    let junk_path = junk.0.display().to_string();
    let cases = [
        (
            "host=localhost sslmode=verify_full".to_owned(),
            "unknown sslmode \"verify_full\"".to_owned(),
        ),
        (
            "postgres://localhost/db?sslmode=verify-ca&sslrootcert=/nonexistent/root.crt".into(),
            "sslrootcert /nonexistent/root.crt: No such file or directory".into(),
        ),
        (
            format!("host=localhost sslmode=verify-full sslrootcert={junk_path}"),
            format!("sslrootcert {junk_path}: no PEM certificates in the file"),
        ),
    ];
    for (url, expected) in &cases {
        for command in ["migrate", "serve"] {
            let out = run_pgherald(command, url).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{command} {url}: {}", describe(&out));
            assert!(
                stderr.lines().any(|line| line.contains(expected.as_str())),
                "{command} {url}: {stderr}"
            );
        }
    }
}

/// A certificate refused at start-up stops `pgherald serve` and `pgherald
/// migrate`, saying why.
#[tokio::test]
async fn a_refused_certificate_stops_serve_and_migrate_with_the_reason() {
    let pg = tls_cluster();
    let wrong = pg.certs().wrong_ca.display().to_string();
    let url = pg.url(&format!("sslmode=verify-full sslrootcert='{wrong}'"));
    for command in ["migrate", "serve"] {
        let out = run_pgherald(command, &url).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command}: {}", describe(&out));
        assert!(
            stderr.contains("TLS") && stderr.contains("invalid peer certificate: UnknownIssuer"),
            "{command}: {stderr}"
        );
    }
}

/// Runs `pgherald <command>` with `url` as both database URLs; it must exit
/// within 20 s.
async fn run_pgherald(command: &str, url: &str) -> Output {
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::from(pgherald_command())
            .arg(command)
            .env("DATABASE_URL", url)
            .env("HERALD_ADMIN_DATABASE_URL", url)
            .env("HERALD_JWT_SECRET", "tls-test-secret")
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("pgherald {command}: still running"))
    .unwrap()
}

fn pgherald_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgherald"));
    for var in [
        "DATABASE_URL",
        "HERALD_ADMIN_DATABASE_URL",
        "HERALD_ANON_ROLE",
        "HERALD_MIGRATE_DEMO",
        "HERALD_JWT_PUBLIC_KEY_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}
