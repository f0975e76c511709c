//! Token verification: the signature against the configured key (a secret,
//! a PEM public key, or a JWKS), then the claims as identity providers mean
//! them: `exp` required, `nbf` honoured, both with a leeway for clock skew;
//! `aud` and `iss` when configured; claims Postgres' jsonb can hold; the role
//! at the configured [`RoleClaim`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::claims::{contains_nul, numeric_date};
use super::jwks::{Jwks, JwksOptions};
use super::{AuthError, Caller, DEFAULT_ROLE, RoleClaim};
use crate::config::{Config, JwtKey};

/// Largest accepted leeway. Beyond clock skew a leeway only extends tokens'
/// lifetime; it also keeps `now - leeway` meaningful.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);

/// 9999-12-31T23:59:59Z: a caller's expiry is capped there, so that the time
/// a connection closes stays a representable instant.
const LATEST_EXPIRY: i64 = 253_402_300_799;

/// What a token must satisfy besides its signature.
#[derive(Clone, Debug)]
pub struct TokenRules {
    /// Clock skew allowed between the token's issuer and this server: a token
    /// is accepted until `exp` plus the leeway, and from `nbf` minus it.
    pub leeway: Duration,
    /// Required `aud` (one of the token's audiences must be it); `None`:
    /// `aud` is not checked.
    pub audience: Option<String>,
    /// Required `iss`; `None`: `iss` is not checked.
    pub issuer: Option<String>,
    /// Where the role is in the claims.
    pub role_claim: RoleClaim,
}

impl Default for TokenRules {
    fn default() -> Self {
        TokenRules {
            leeway: Duration::from_secs(30),
            audience: None,
            issuer: None,
            role_claim: RoleClaim::default(),
        }
    }
}

/// A key or setting that could not be used. The message is one line and
/// names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl KeyError {
    pub(super) fn new(message: String) -> KeyError {
        KeyError(message)
    }
}

#[derive(Clone)]
enum Keys {
    /// One key, one algorithm.
    Static { key: DecodingKey, alg: Algorithm },
    /// Keys by `kid`, fetched from a URL.
    Jwks(Arc<Jwks>),
}

/// How tokens are verified.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    rules: TokenRules,
    encoding: Option<EncodingKey>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static { alg, .. } => format!("{alg:?}"),
            Keys::Jwks(jwks) => format!("{jwks:?}"),
        };
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("rules", &self.rules)
            .finish()
    }
}

impl Verifier {
    /// HS256 with a shared secret, default rules.
    pub fn hs256(secret: &[u8]) -> Verifier {
        Verifier {
            keys: Keys::Static {
                key: DecodingKey::from_secret(secret),
                alg: Algorithm::HS256,
            },
            rules: TokenRules::default(),
            encoding: Some(EncodingKey::from_secret(secret)),
        }
    }

    /// RS256 or ES256 with a PEM public key (the kind is detected), default rules.
    pub fn public_key_pem(pem: &[u8]) -> Result<Verifier, KeyError> {
        let (key, alg) = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => {
                let key = DecodingKey::from_ec_pem(pem).map_err(|e| {
                    KeyError(format!(
                        "JWT key: not an RSA or EC public key in PEM form: {e}"
                    ))
                })?;
                (key, Algorithm::ES256)
            }
        };
        Ok(Verifier {
            keys: Keys::Static { key, alg },
            rules: TokenRules::default(),
            encoding: None,
        })
    }

    /// Keys from a JWKS URL, default rules. Fails when the first fetch fails.
    pub async fn jwks(url: &str, options: JwksOptions) -> Result<Verifier, KeyError> {
        Ok(Verifier {
            keys: Keys::Jwks(Jwks::connect(url, options).await?),
            rules: TokenRules::default(),
            encoding: None,
        })
    }

    /// The verifier `config` describes: its key source and token rules.
    pub async fn from_config(config: &Config) -> Result<Verifier, KeyError> {
        let verifier = match &config.jwt {
            JwtKey::Secret(s) if s.is_empty() => {
                return Err(KeyError("HERALD_JWT_SECRET is empty".into()));
            }
            JwtKey::Secret(s) => Verifier::hs256(s.as_bytes()),
            JwtKey::PublicKeyFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
                Verifier::public_key_pem(&pem)?
            }
            JwtKey::Jwks(url) => {
                let options = JwksOptions {
                    refresh: config.jwks_refresh,
                    min_refetch: config.jwks_min_refetch,
                    ..JwksOptions::default()
                };
                Verifier::jwks(url, options).await?
            }
        };
        verifier.with_rules(TokenRules {
            leeway: config.jwt_leeway,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
            role_claim: config.jwt_role_claim.clone(),
        })
    }

    /// The same keys with other rules. Empty `audience` or `issuer` means
    /// unset (as an empty environment variable would).
    pub fn with_rules(mut self, mut rules: TokenRules) -> Result<Verifier, KeyError> {
        if rules.leeway > MAX_LEEWAY {
            return Err(KeyError(format!(
                "HERALD_JWT_LEEWAY is {}s; at most {}s (1d) is accepted",
                rules.leeway.as_secs(),
                MAX_LEEWAY.as_secs()
            )));
        }
        rules.audience = rules.audience.filter(|a| !a.is_empty());
        rules.issuer = rules.issuer.filter(|i| !i.is_empty());
        self.rules = rules;
        Ok(self)
    }

    /// The rules tokens are checked against.
    pub fn rules(&self) -> &TokenRules {
        &self.rules
    }

    /// The task that refreshes a JWKS periodically, if keys come from one.
    pub fn refresher(
        &self,
        shutdown: CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks.clone().refresh_periodically(shutdown)),
            Keys::Static { .. } => None,
        }
    }

    /// Verifies `token` and returns its caller. The role is not yet checked
    /// against the database; see [`crate::db::roles`].
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let claims = match &self.keys {
            Keys::Static { key, alg } => {
                if header.alg != *alg {
                    return Err(AuthError::Invalid);
                }
                self.decode(token, key, *alg).map_err(|e| refusal(&e))?
            }
            Keys::Jwks(jwks) => {
                let (set, found) = jwks.candidates(header.kid.as_deref(), header.alg).await?;
                let mut verified = None;
                for i in found {
                    let k = &set.keys[i];
                    match self.decode(token, &k.key, k.alg) {
                        Ok(claims) => {
                            verified = Some(claims);
                            break;
                        }
                        // Another key of the same algorithm may have signed it.
                        Err(e) if signature_mismatch(&e) => continue,
                        Err(e) => return Err(refusal(&e)),
                    }
                }
                verified.ok_or(AuthError::Invalid)?
            }
        };
        self.caller(claims)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Value, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Value>(token, key, &self.validation(alg)).map(|data| data.claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.rules.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        // The library checks `aud` and `iss` only when present: configured
        // ones must be present too.
        let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
        match &self.rules.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.rules.issuer {
            v.set_issuer(&[iss]);
            required.insert("iss".into());
        }
        v.required_spec_claims = required;
        v
    }

    /// The caller of verified `claims`, after the checks the library does not make.
    fn caller(&self, claims: Value) -> Result<Caller, AuthError> {
        if !claims.is_object() {
            return Err(AuthError::Invalid);
        }
        // The library ignores an `nbf` that is not a NumericDate; a token
        // meant to start later must not pass for one valid now.
        if claims.get("nbf").is_some() && numeric_date(&claims, "nbf").is_none() {
            return Err(AuthError::MissingClaim("nbf"));
        }
        if contains_nul(&claims) {
            return Err(AuthError::NulInClaims);
        }
        let exp = numeric_date(&claims, "exp").ok_or(AuthError::MissingClaim("exp"))?;
        let leeway = i64::try_from(self.rules.leeway.as_secs()).unwrap_or(i64::MAX);
        let until = exp.saturating_add(leeway).min(LATEST_EXPIRY);
        let role = match self.rules.role_claim.find(&claims) {
            None | Some(Value::Null) => DEFAULT_ROLE.to_owned(),
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(other) => return Err(AuthError::RoleNotAllowed(other.to_string())),
        };
        Ok(Caller::new(role, claims, Some(until)))
    }

    /// Mints an HS256 token (development use: `pgherald token`), with the
    /// role at the configured role claim and the configured `aud` and `iss`.
    pub fn mint(&self, sub: &str, role: &str, ttl: Duration) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            KeyError("minting needs HERALD_JWT_SECRET (a public key cannot sign)".into())
        })?;
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "sub": sub,
            "iat": now,
            "exp": now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        });
        if let Some(aud) = &self.rules.audience {
            claims["aud"] = json!(aud);
        }
        if let Some(iss) = &self.rules.issuer {
            claims["iss"] = json!(iss);
        }
        self.rules.role_claim.insert(&mut claims, role);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| KeyError(e.to_string()))
    }
}

/// Whether `e` says only that this key did not make the signature.
fn signature_mismatch(e: &jsonwebtoken::errors::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::Crypto(_)
    )
}

fn refusal(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => AuthError::MissingClaim("exp"),
            "aud" => AuthError::MissingClaim("aud"),
            "iss" => AuthError::MissingClaim("iss"),
            "nbf" => AuthError::MissingClaim("nbf"),
            _ => AuthError::Invalid,
        },
        _ => AuthError::Invalid,
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
