//! TLS to Postgres: `sslmode` and `sslrootcert` against a throwaway cluster
//! with `ssl = on` and a CA and server certificate (SAN `localhost`,
//! `127.0.0.1`) made at test time, plus a second CA the server does not use.
//! The TLS cluster is started once per test process and shared by the tests
//! running in it; the last one out stops and removes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pgherald::db::pool;
use pgherald::db::tls::Connector;
use pgherald::{Application, Config, JwtKey};

use crate::helpers::cluster::{Cluster, describe};

/// A host name that resolves nowhere; with `hostaddr=127.0.0.1` it is the
/// name the certificate is checked against, and the certificate does not have it.
const NOT_IN_SAN: &str = "pgherald-not-in-san.invalid";

/// PEM files made for one cluster.
struct Certs {
    ca: PathBuf,
    wrong_ca: PathBuf,
}

/// The shared TLS cluster (`ssl = on` with fresh certificates), started by
/// the first test that needs it.
struct TlsCluster {
    pg: Cluster,
    certs: Certs,
}

impl std::ops::Deref for TlsCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.pg
    }
}

impl TlsCluster {
    fn certs(&self) -> &Certs {
        &self.certs
    }
}

fn tls_cluster() -> Arc<TlsCluster> {
    static SHARED: Mutex<Weak<TlsCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let mut certs = None;
    let pg = Cluster::start("tls", |dir| {
        certs = Some(write_certs(dir));
        format!(
            "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
            dir.display()
        )
    });
    let cluster = Arc::new(TlsCluster {
        pg,
        certs: certs.expect("certificates written"),
    });
    *shared = Arc::downgrade(&cluster);
    cluster
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
    let pg = Cluster::start("plain", |_| String::new());
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
