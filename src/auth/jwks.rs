//! Verification keys from a JWKS URL, as identity providers publish them,
//! with rotation: keys are found by `kid`; the set is fetched again when a
//! token names a `kid` the set does not hold (at most once per
//! [`JwksOptions::min_refetch`]) and every [`JwksOptions::refresh`]. A failed
//! fetch keeps the last good set (and is logged); only the first fetch, at
//! start-up, must succeed.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::AuthError;
use super::verify::KeyError;

/// Largest JWKS document accepted (real ones are a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// Timing of a JWKS source.
#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// How often the set is fetched again, whatever the tokens say.
    pub refresh: Duration,
    /// Least time between two fetches caused by unknown `kid`s, so that
    /// tokens with made-up `kid`s cannot make pgherald hammer the provider.
    pub min_refetch: Duration,
    /// Time allowed for one fetch.
    pub timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            refresh: Duration::from_secs(600),
            min_refetch: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One verification key of the set.
pub(super) struct SetKey {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// The one algorithm it verifies.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys of one successful fetch.
pub(super) struct KeySet {
    pub keys: Vec<SetKey>,
}

impl KeySet {
    fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect()
    }
}

/// A JWKS URL and the last good key set fetched from it.
pub(super) struct Jwks {
    url: String,
    client: reqwest::Client,
    options: JwksOptions,
    keys: RwLock<Arc<KeySet>>,
    /// When the set was last fetched (or a fetch was attempted). Held across
    /// a fetch, so concurrent refetches collapse into one.
    last_fetch: tokio::sync::Mutex<Instant>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish()
    }
}

impl Jwks {
    /// Fetches the set from `url`; fails when that first fetch fails.
    pub async fn connect(url: &str, options: JwksOptions) -> Result<Arc<Jwks>, KeyError> {
        if options.refresh.is_zero() {
            return Err(KeyError::new(
                "HERALD_JWKS_REFRESH must be more than 0 seconds".into(),
            ));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| KeyError::new(format!("HERALD_JWKS_URL {url:?} is not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" => {
                let loopback = match parsed.host_str() {
                    Some("localhost") => true,
                    Some(host) => host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback()),
                    None => false,
                };
                if !loopback {
                    tracing::warn!(
                        url,
                        "HERALD_JWKS_URL is plain http: anyone on the path could substitute keys; use https"
                    );
                }
            }
            other => {
                return Err(KeyError::new(format!(
                    "HERALD_JWKS_URL {url:?}: scheme {other:?} is not http or https"
                )));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("pgherald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KeyError::new(format!("JWKS HTTP client: {}", one_line(&e))))?;
        let jwks = Jwks {
            url: url.to_owned(),
            client,
            options,
            keys: RwLock::new(Arc::new(KeySet { keys: Vec::new() })),
            last_fetch: tokio::sync::Mutex::new(Instant::now()),
        };
        let set = jwks
            .fetch()
            .await
            .map_err(|e| KeyError::new(format!("cannot fetch the JWKS from {url}: {e}")))?;
        tracing::info!(url, keys = ?set.kids(), "JWKS fetched");
        *jwks.keys.write().expect("jwks lock") = Arc::new(set);
        Ok(Arc::new(jwks))
    }

    /// The keys that may have signed a token whose header names `kid` and
    /// `alg`. An unknown `kid` makes the set be fetched again first (rate
    /// limited); a token without `kid` is tried against every key of its
    /// algorithm.
    pub async fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Arc<KeySet>, Vec<usize>), AuthError> {
        let set = self.current();
        let Some(kid) = kid else {
            let found: Vec<usize> = (0..set.keys.len())
                .filter(|&i| set.keys[i].alg == alg)
                .collect();
            return if found.is_empty() {
                Err(AuthError::UnknownKey)
            } else {
                Ok((set, found))
            };
        };
        let set = if set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
            set
        } else {
            self.refetch_for_unknown_kid().await;
            self.current()
        };
        let with_kid: Vec<usize> = (0..set.keys.len())
            .filter(|&i| set.keys[i].kid.as_deref() == Some(kid))
            .collect();
        if with_kid.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let found: Vec<usize> = with_kid
            .into_iter()
            .filter(|&i| set.keys[i].alg == alg)
            .collect();
        if found.is_empty() {
            // The key exists but is for another algorithm.
            return Err(AuthError::Invalid);
        }
        Ok((set, found))
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().expect("jwks lock").clone()
    }

    async fn refetch_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() < self.options.min_refetch {
            // Fetched recently (perhaps by a concurrent caller just now).
            return;
        }
        *last = Instant::now();
        self.update("a token names an unknown kid").await;
    }

    /// Fetches the set every [`JwksOptions::refresh`] until `shutdown`.
    pub async fn refresh_periodically(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self.options.refresh;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut last = self.last_fetch.lock().await;
            *last = Instant::now();
            self.update("periodic refresh").await;
        }
    }

    async fn update(&self, why: &str) {
        match self.fetch().await {
            Ok(set) => {
                let before = self.current().kids().join(",");
                let after = set.kids();
                if before != after.join(",") {
                    tracing::info!(url = %self.url, keys = ?after, why, "JWKS keys changed");
                }
                *self.keys.write().expect("jwks lock") = Arc::new(set);
            }
            Err(e) => tracing::warn!(
                url = %self.url,
                error = %e,
                why,
                "JWKS fetch failed; keeping the last good key set"
            ),
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| one_line(&e))?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(format!("document larger than {MAX_BODY} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| one_line(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(format!("document larger than {MAX_BODY} bytes"));
            }
        }
        parse_set(&body)
    }
}

/// The usable signing keys of a JWKS document. Keys that cannot be used
/// (encryption keys, symmetric keys, unsupported curves) are skipped and
/// logged; a document with none left is an error.
pub(super) fn parse_set(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| format!("not a JWK set ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in doc.keys.iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| format!("#{i}"), |k| format!("{k:?}"));
        match set_key(value) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(e) => skipped.push(format!("key {label}: {e}")),
        }
    }
    if keys.is_empty() {
        let mut e =
            "no usable signing key (RS256/384/512, PS256/384/512, ES256/384 or EdDSA)".to_owned();
        if !skipped.is_empty() {
            e.push_str(&format!(" ({})", skipped.join("; ")));
        }
        return Err(e);
    }
    if !skipped.is_empty() {
        tracing::warn!(skipped = %skipped.join("; "), "JWKS keys skipped");
    }
    Ok(KeySet { keys })
}

/// One JWK as a verification key; `None` for keys not meant for signatures.
fn set_key(value: &Value) -> Result<Option<SetKey>, String> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    match &jwk.common.public_key_use {
        Some(PublicKeyUse::Signature) | None => {}
        Some(_) => return Ok(None),
    }
    let declared = jwk.common.key_algorithm;
    use KeyAlgorithm as K;
    let alg = match (&jwk.algorithm, declared) {
        (AlgorithmParameters::RSA(_), None | Some(K::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::RSA(_), Some(K::RS384)) => Algorithm::RS384,
        (AlgorithmParameters::RSA(_), Some(K::RS512)) => Algorithm::RS512,
        (AlgorithmParameters::RSA(_), Some(K::PS256)) => Algorithm::PS256,
        (AlgorithmParameters::RSA(_), Some(K::PS384)) => Algorithm::PS384,
        (AlgorithmParameters::RSA(_), Some(K::PS512)) => Algorithm::PS512,
        (AlgorithmParameters::RSA(_), Some(K::RSA1_5 | K::RSA_OAEP | K::RSA_OAEP_256)) => {
            return Ok(None);
        }
        (AlgorithmParameters::EllipticCurve(p), None | Some(K::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::EllipticCurve(p), None | Some(K::ES384))
            if p.curve == EllipticCurve::P384 =>
        {
            Algorithm::ES384
        }
        (AlgorithmParameters::OctetKeyPair(p), None | Some(K::EdDSA))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            return Err("symmetric keys are not taken from a JWKS".into());
        }
        (_, alg) => {
            return Err(format!(
                "unsupported key type, curve or algorithm ({})",
                alg.map_or_else(|| "no alg".to_owned(), |a| a.to_string())
            ));
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Some(SetKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    }))
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text.replace('\n', "; ")
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
