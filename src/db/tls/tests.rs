//! Parsing of the TLS parameters and the errors they give.

use super::*;

fn split(url: &str) -> (String, SslParams) {
    take_ssl_params(url).unwrap()
}

fn params(mode: Option<&str>, rootcert: Option<&str>) -> SslParams {
    SslParams {
        mode: mode.map(str::to_owned),
        rootcert: rootcert.map(str::to_owned),
    }
}

#[test]
fn url_parameters_are_taken_out() {
    assert_eq!(
        split(
            "postgres://u:p@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fa%20b.pem"
        ),
        (
            "postgres://u:p@h:5/db?application_name=x".into(),
            params(Some("verify-full"), Some("/a b.pem"))
        )
    );
    assert_eq!(
        split("postgresql://h/db?sslmode=require"),
        ("postgresql://h/db".into(), params(Some("require"), None))
    );
    assert_eq!(
        split("postgres://h/db"),
        ("postgres://h/db".into(), params(None, None))
    );
    // A '?' in the (unencoded) password is not the query string.
    assert_eq!(
        split("postgres://u:p?sslmode=x@h/db?sslmode=disable"),
        (
            "postgres://u:p?sslmode=x@h/db".into(),
            params(Some("disable"), None)
        )
    );
    // Last one wins, as in libpq.
    assert_eq!(
        split("postgres://h/db?sslmode=disable&sslmode=require").1,
        params(Some("require"), None)
    );
}

#[test]
fn key_value_parameters_are_taken_out() {
    assert_eq!(
        split("host=h sslmode = verify-ca  user=u sslrootcert='/x y/ca.pem' password='a\\'b c'"),
        (
            "host=h user=u password='a\\'b c'".into(),
            params(Some("verify-ca"), Some("/x y/ca.pem"))
        )
    );
    assert_eq!(
        split("host=h dbname=d"),
        ("host=h dbname=d".into(), params(None, None))
    );
    // Unparsable tails are left for tokio-postgres to report.
    assert_eq!(split("host=h sslmode=require user").0, "host=h user");
}

#[test]
fn modes_map_to_tokio_postgres() {
    use tokio_postgres::config::SslMode as Tp;
    let mode = |url: &str| {
        let c = Connector::from_url(url).unwrap();
        (c.ssl_mode(), c.get_ssl_mode())
    };
    assert_eq!(mode("host=h"), (SslMode::Prefer, Tp::Prefer));
    assert_eq!(
        mode("host=h sslmode=disable"),
        (SslMode::Disable, Tp::Disable)
    );
    assert_eq!(
        mode("host=h sslmode=require"),
        (SslMode::Require, Tp::Require)
    );
    assert_eq!(
        mode("postgres://h/db?sslmode=verify-ca"),
        (SslMode::VerifyCa, Tp::Require)
    );
    assert_eq!(
        mode("postgres://h/db?sslmode=verify-full"),
        (SslMode::VerifyFull, Tp::Require)
    );
    assert_eq!(
        mode("host=/run/postgresql sslmode=require"),
        (SslMode::Require, Tp::Disable)
    );
}

#[test]
fn bad_settings_are_named() {
    let err = |url: &str| Connector::from_url(url).unwrap_err().to_string();
    assert_eq!(
        err("host=h sslmode=verify_full"),
        "unknown sslmode \"verify_full\" (expected disable, prefer, require, verify-ca or verify-full)"
    );
    assert!(err("host=h sslmode=allow").contains("not supported"));
    let missing = err("host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem");
    assert!(
        missing.starts_with("sslrootcert /nonexistent/ca.pem: No such file"),
        "{missing}"
    );
    let junk = std::env::temp_dir().join(format!("pgherald-tls-junk-{}.pem", std::process::id()));
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let no_pem = err(&format!("host=h sslrootcert={}", junk.display()));
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad_der = err(&format!("host=h sslrootcert={}", junk.display()));
    std::fs::remove_file(&junk).unwrap();
    assert!(no_pem.contains("no PEM certificates"), "{no_pem}");
    assert!(bad_der.contains("invalid certificate"), "{bad_der}");
    assert_eq!(
        err("host=h sslmode=require sslrootcert=system"),
        "sslmode=require may not be used with sslrootcert=system (use verify-full)"
    );
    assert!(err("postgres://h/db?sslmode=%zz").contains("percent-encoding"));
    // tokio-postgres's own complaints keep their cause.
    assert_eq!(
        err("host=h sslcert=/c.pem"),
        "invalid connection string: unknown option `sslcert`"
    );
    // Errors never echo the connection string (nor so its password).
    assert!(!err("postgres://u:secret@h/db?sslmode=nope").contains("secret"));
}
