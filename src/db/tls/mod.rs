//! TLS to Postgres, with libpq's meaning of `sslmode` and `sslrootcert`.
//!
//! tokio-postgres understands only `sslmode=disable|prefer|require` and has no
//! root certificates, so [`Connector::from_url`] takes `sslmode` and
//! `sslrootcert` out of the connection string (URL query parameters or
//! `key=value` pairs), hands the rest to [`tokio_postgres::Config`], and turns
//! the two into a rustls client configuration. Every connection pgherald
//! opens (the query pool, the listener, `pgherald migrate`) is made through a
//! [`Connector`], so they all follow the same policy:
//!
//! | `sslmode` | TLS | certificate check |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | none; the chain if `sslrootcert` is given |
//! | `require` | always | none; the chain if `sslrootcert` is given |
//! | `verify-ca` | always | chain, against `sslrootcert` or the system roots |
//! | `verify-full` | always | chain and host name |
//!
//! `sslrootcert=system` means the system's roots and, as in libpq 16, makes
//! `verify-full` the default and the only mode allowed. Over Unix-domain
//! sockets TLS is not used, as in libpq.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use verify::NoHostCheck;

mod verify;

/// The stream of a connection made by a [`Connector`] when TLS is in use.
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// libpq's `sslmode` values that pgherald supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, else plain.
    Prefer,
    /// TLS; the certificate is only checked if `sslrootcert` is given.
    Require,
    /// TLS; the certificate chain is checked, the host name is not.
    VerifyCa,
    /// TLS; the certificate chain and the host name are checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, ConfigError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err(ConfigError::AllowUnsupported),
            other => Err(ConfigError::UnknownSslMode(other.to_owned())),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection string whose connection or TLS settings are unusable. The
/// message is one line and never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// tokio-postgres rejected the connection string (its error and causes).
    #[error("{0}")]
    Parse(String),
    /// A `%` escape that is not valid, or that decodes to invalid UTF-8.
    #[error("invalid percent-encoding in the value of {0}")]
    Encoding(String),
    /// `sslmode` is not one of the supported values.
    #[error("unknown sslmode {0:?} (expected disable, prefer, require, verify-ca or verify-full)")]
    UnknownSslMode(String),
    /// `sslmode=allow` (plain first, TLS if refused) cannot be done with tokio-postgres.
    #[error("sslmode=allow is not supported (use prefer or disable)")]
    AllowUnsupported,
    /// libpq refuses weak modes with `sslrootcert=system`, and so do we.
    #[error("sslmode={0} may not be used with sslrootcert=system (use verify-full)")]
    WeakModeWithSystemRoots(SslMode),
    /// The `sslrootcert` file cannot be used.
    #[error("sslrootcert {path}: {reason}")]
    RootCert {
        /// The file, as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The system's root certificates could not be loaded.
    #[error("no system root certificates could be loaded for sslmode={mode}: {reason}")]
    SystemRoots {
        /// The mode that needed them.
        mode: SslMode,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RootCert {
    /// No `sslrootcert`.
    Unset,
    /// `sslrootcert=system`.
    System,
    /// `sslrootcert=<file>`.
    File(PathBuf),
}

/// A parsed connection string: the [`tokio_postgres::Config`] (which it
/// dereferences to, so settings can be read and changed as usual) and the
/// TLS connector that implements its `sslmode` and `sslrootcert`.
///
/// Connect with [`Connector::connect`], or hand [`Connector::config`] and
/// [`Connector::make_tls_connect`] to a pool.
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    mode: SslMode,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres's Debug redacts the password.
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("sslmode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Parses a connection string, URL (`postgres://…?sslmode=verify-full`)
    /// or `key=value` form (`host=db sslmode=require sslrootcert=/ca.pem`).
    /// `sslmode` defaults to `prefer`, as in libpq. Reads `sslrootcert` now,
    /// so a missing or invalid file is an error here, not at first connect.
    pub fn from_url(url: &str) -> Result<Connector, ConfigError> {
        let (rest, ssl) = take_ssl_params(url)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
            let mut text = format!("{e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            ConfigError::Parse(text)
        })?;
        let root = match ssl.rootcert.as_deref() {
            None | Some("") => RootCert::Unset,
            Some("system") => RootCert::System,
            Some(path) => RootCert::File(PathBuf::from(path)),
        };
        let mode = match (ssl.mode.as_deref(), &root) {
            (None | Some(""), RootCert::System) => SslMode::VerifyFull,
            (None | Some(""), _) => SslMode::Prefer,
            (Some(value), _) => SslMode::parse(value)?,
        };
        if root == RootCert::System && mode != SslMode::VerifyFull {
            return Err(ConfigError::WeakModeWithSystemRoots(mode));
        }
        let tls = MakeRustlsConnect::new(client_config(mode, &root)?);

        let only_unix_sockets = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        config.ssl_mode(match mode {
            // libpq ignores sslmode over Unix-domain sockets, and Postgres
            // never offers TLS on them.
            _ if only_unix_sockets => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(Connector { config, mode, tls })
    }

    /// The `sslmode` in effect.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The tokio-postgres settings, without `sslmode`/`sslrootcert` (their
    /// `ssl_mode` is disable, prefer or require; the rest is in the TLS
    /// connector).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector to use with [`Connector::config`].
    pub fn make_tls_connect(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// Opens one connection. The caller drives the returned connection.
    pub async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, TlsStream>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

impl Deref for Connector {
    type Target = tokio_postgres::Config;

    fn deref(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl DerefMut for Connector {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }
}

/// `sslmode` and `sslrootcert` as written (decoded), last one wins.
#[derive(Debug, Default, PartialEq, Eq)]
struct SslParams {
    mode: Option<String>,
    rootcert: Option<String>,
}

impl SslParams {
    /// Records `key=value` if it is one of ours; returns whether it was.
    fn take(
        &mut self,
        key: &str,
        value: impl FnOnce() -> Result<String, ConfigError>,
    ) -> Result<bool, ConfigError> {
        match key {
            "sslmode" => self.mode = Some(value()?),
            "sslrootcert" => self.rootcert = Some(value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Splits the connection string into the part for tokio-postgres and the
/// TLS parameters it does not understand.
fn take_ssl_params(url: &str) -> Result<(String, SslParams), ConfigError> {
    let mut ssl = SslParams::default();
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(prefix) {
            // As tokio-postgres (and libpq) do: the credentials run to the
            // first '@', the query string starts at the next '?'.
            let from = rest.find('@').map_or(0, |at| at + 1);
            let Some(q) = rest[from..].find('?').map(|q| from + q) else {
                return Ok((url.to_owned(), ssl));
            };
            let mut kept = Vec::new();
            for pair in rest[q + 1..].split('&') {
                let ours = match pair.split_once('=') {
                    Some((key, value)) => match percent_decode(key) {
                        Some(key) => ssl.take(&key, || {
                            percent_decode(value).ok_or_else(|| ConfigError::Encoding(key.clone()))
                        })?,
                        None => false,
                    },
                    None => false,
                };
                if !ours {
                    kept.push(pair);
                }
            }
            let mut out = format!("{prefix}{}", &rest[..q]);
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
            return Ok((out, ssl));
        }
    }
    let mut kept = Vec::new();
    for param in conninfo_params(url) {
        let ours = match &param.key_value {
            Some((key, value)) => ssl.take(key, || Ok(value.clone()))?,
            None => false,
        };
        if !ours {
            kept.push(param.raw);
        }
    }
    Ok((kept.join(" "), ssl))
}

/// One `key = value` of a libpq key/value connection string: its text as
/// written, and (unless it is an unparsable tail, kept verbatim for
/// tokio-postgres to report) its key and unquoted value.
struct ConninfoParam<'a> {
    raw: &'a str,
    key_value: Option<(&'a str, String)>,
}

/// Tokenises a key/value connection string the way tokio-postgres's parser
/// does: whitespace-separated `key = value`, values single-quoted or bare,
/// with backslash escapes.
fn conninfo_params(s: &str) -> Vec<ConninfoParam<'_>> {
    type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;
    fn skip_ws(it: &mut Chars<'_>) {
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
    }
    /// One `key = value`, or `None` where tokio-postgres would fail or stop.
    fn param<'a>(s: &'a str, it: &mut Chars<'a>, start: usize) -> Option<(&'a str, String)> {
        while it
            .next_if(|&(_, c)| !c.is_whitespace() && c != '=')
            .is_some()
        {}
        let key = &s[start..it.peek().map_or(s.len(), |&(i, _)| i)];
        skip_ws(it);
        if key.is_empty() || it.next_if(|&(_, c)| c == '=').is_none() {
            return None;
        }
        skip_ws(it);
        let mut value = String::new();
        if it.next_if(|&(_, c)| c == '\'').is_some() {
            loop {
                match it.next()? {
                    (_, '\'') => break,
                    (_, '\\') => value.extend(it.next().map(|(_, c)| c)),
                    (_, c) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = it.next_if(|&(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next().map(|(_, c)| c));
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        Some((key, value))
    }

    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        skip_ws(&mut it);
        let Some(&(start, _)) = it.peek() else {
            return out;
        };
        match param(s, &mut it, start) {
            Some(key_value) => out.push(ConninfoParam {
                raw: &s[start..it.peek().map_or(s.len(), |&(i, _)| i)],
                key_value: Some(key_value),
            }),
            None => {
                // Left verbatim for tokio-postgres to reject (or stop at).
                out.push(ConninfoParam {
                    raw: &s[start..],
                    key_value: None,
                });
                return out;
            }
        }
    }
}

/// `%XX`-decodes `s`; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The rustls client configuration for `mode` and `root`.
fn client_config(mode: SslMode, root: &RootCert) -> Result<ClientConfig, ConfigError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let roots = match (root, mode) {
        (RootCert::File(path), _) => Some(read_root_file(path)?),
        (RootCert::System, _) | (RootCert::Unset, SslMode::VerifyCa | SslMode::VerifyFull) => {
            Some(system_roots(mode)?)
        }
        (RootCert::Unset, _) => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => {
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| ConfigError::Rustls(e.to_string()))?
        }
        (_, roots) => Arc::new(NoHostCheck { roots, algorithms }),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What libpq 17 sends; required by servers that accept direct TLS.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn read_root_file(path: &Path) -> Result<Arc<RootCertStore>, ConfigError> {
    let fail = |reason: String| ConfigError::RootCert {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not a PEM certificate file ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("invalid certificate ({e})")))?;
    }
    if roots.is_empty() {
        return Err(fail("no PEM certificates in the file".into()));
    }
    Ok(Arc::new(roots))
}

/// The platform's trusted roots, loaded once per process.
fn system_roots(mode: SslMode) -> Result<Arc<RootCertStore>, ConfigError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                Err(found.errors.first().map_or_else(
                    || "the system certificate store is empty (give sslrootcert)".to_owned(),
                    |e| format!("{e} (give sslrootcert)"),
                ))
            } else {
                Ok(Arc::new(roots))
            }
        })
        .clone()
        .map_err(|reason| ConfigError::SystemRoots { mode, reason })
}

#[cfg(test)]
mod tests;
