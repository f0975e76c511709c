//! Authentication: JWT verification, where tokens are found, and minting of
//! development tokens. The result is a [`Caller`]: the database role and the
//! claims under which every query, mutation and event check runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Role assumed when a token names none.
pub const DEFAULT_ROLE: &str = "app_user";

/// Who is asking: a database role plus the JWT claims, exactly what policies see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Database role to assume.
    pub role: String,
    /// The full claims object; becomes `request.jwt.claims`.
    pub claims: Arc<Value>,
    /// The token's expiry (seconds since the epoch), if any.
    pub exp: Option<i64>,
    /// Role and claims as one string, computed once: the hub groups
    /// subscribers by it for every event.
    key: Arc<str>,
}

impl Caller {
    /// A caller assuming `role` with `claims`.
    pub fn new(role: String, claims: Value, exp: Option<i64>) -> Caller {
        let key = format!("{role}\u{0}{claims}").into();
        Caller {
            role,
            claims: Arc::new(claims),
            exp,
            key,
        }
    }

    /// The `sub` claim.
    pub fn sub(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// Identity of the security context: callers with equal keys see the same rows.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The caller for connections without a token, when an anonymous role is configured.
    pub fn anonymous(role: &str) -> Caller {
        let mut claims = Map::new();
        claims.insert("role".into(), Value::String(role.to_owned()));
        Caller::new(role.to_owned(), Value::Object(claims), None)
    }
}

/// Why a token was refused. Messages are safe to show clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No token, and no anonymous role configured.
    #[error("missing authorization token")]
    Missing,
    /// Bad signature, malformed, wrong algorithm.
    #[error("invalid token")]
    Invalid,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// The role claim is not a string or not a role the service may assume.
    #[error("role {0:?} is not allowed")]
    RoleNotAllowed(String),
}

/// How tokens are verified.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    encoding: Option<EncodingKey>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

/// A key that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("JWT key: {0}")]
pub struct KeyError(String);

impl Verifier {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Verifier {
        Verifier {
            key: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            encoding: Some(EncodingKey::from_secret(secret)),
        }
    }

    /// RS256 or ES256 with a PEM public key (the kind is detected).
    pub fn public_key_pem(pem: &[u8]) -> Result<Verifier, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Verifier {
                key,
                validation: validation(Algorithm::RS256),
                encoding: None,
            });
        }
        let key = DecodingKey::from_ec_pem(pem)
            .map_err(|e| KeyError(format!("not an RSA or EC public key in PEM form: {e}")))?;
        Ok(Verifier {
            key,
            validation: validation(Algorithm::ES256),
            encoding: None,
        })
    }

    /// Verifies `token` and returns its caller. The role is not yet checked
    /// against the database; see [`crate::db::roles`].
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            },
        )?;
        let claims = data.claims;
        if !claims.is_object() {
            return Err(AuthError::Invalid);
        }
        let role = match claims.get("role") {
            None | Some(Value::Null) => DEFAULT_ROLE.to_owned(),
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(other) => return Err(AuthError::RoleNotAllowed(other.to_string())),
        };
        let exp = claims.get("exp").and_then(Value::as_i64);
        Ok(Caller::new(role, claims, exp))
    }

    /// Mints an HS256 token (development use: `pgherald token`).
    pub fn mint(&self, sub: &str, role: &str, ttl: Duration) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            KeyError("minting needs HERALD_JWT_SECRET (a public key cannot sign)".into())
        })?;
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": sub,
            "role": role,
            "iat": now,
            "exp": now + ttl.as_secs() as i64,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| KeyError(e.to_string()))
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = 0;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    v
}

/// The token in a `connection_init` payload: `authorization`,
/// `Authorization`, or `headers.Authorization`, with or without `Bearer `.
pub fn token_from_init_payload(payload: &Value) -> Option<String> {
    let direct = ["authorization", "Authorization"]
        .iter()
        .find_map(|k| payload.get(*k));
    let nested = payload.get("headers").and_then(|h| {
        ["Authorization", "authorization"]
            .iter()
            .find_map(|k| h.get(*k))
    });
    direct.or(nested).and_then(Value::as_str).and_then(bearer)
}

/// The token in an `Authorization` header value.
pub fn bearer(value: &str) -> Option<String> {
    let value = value.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The `JWT` cookie in a `Cookie` header value.
pub fn token_from_cookie(header: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "JWT")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tokens_are_found_in_every_documented_place() {
        for payload in [
            json!({"authorization": "Bearer abc"}),
            json!({"Authorization": "Bearer abc"}),
            json!({"headers": {"Authorization": "Bearer abc"}}),
            json!({"authorization": "abc"}),
        ] {
            assert_eq!(token_from_init_payload(&payload).as_deref(), Some("abc"));
        }
        assert_eq!(token_from_init_payload(&json!({})), None);
        assert_eq!(token_from_cookie("a=1; JWT=xyz").as_deref(), Some("xyz"));
        assert_eq!(token_from_cookie("a=1"), None);
    }

    #[test]
    fn minted_tokens_verify_and_tampered_ones_do_not() {
        let v = Verifier::hs256(b"s3cret");
        let token = v.mint("u1", "app_user", Duration::from_secs(60)).unwrap();
        let caller = v.verify(&token).unwrap();
        assert_eq!(caller.sub(), Some("u1"));
        assert_eq!(caller.role, "app_user");
        assert_eq!(
            Verifier::hs256(b"other").verify(&token),
            Err(AuthError::Invalid)
        );
        assert_eq!(v.verify("garbage"), Err(AuthError::Invalid));
    }
}
