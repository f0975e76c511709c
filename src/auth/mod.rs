//! Authentication: where tokens are found, how they are verified
//! ([`Verifier`]: signature, `exp`/`nbf`/`aud`/`iss`, claims Postgres can
//! hold), where their keys come from (a secret, a PEM public key, or a JWKS
//! URL with rotation), where the role claim is ([`RoleClaim`]), and minting of
//! development tokens. The result is a [`Caller`]: the database role and the
//! claims under which every query and event check runs. Whether the role may
//! be assumed is decided against the database by [`crate::db::roles`].

mod claims;
mod jwks;
mod role_claim;
mod verify;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use jwks::JwksOptions;
pub use role_claim::RoleClaim;
pub use verify::{KeyError, TokenRules, Verifier};

/// Role assumed when a token names none.
pub const DEFAULT_ROLE: &str = "app_user";

/// Who is asking: a database role plus the JWT claims, exactly what policies see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Database role to assume.
    pub role: String,
    /// The full claims object; becomes `request.jwt.claims`.
    pub claims: Arc<Value>,
    /// When the token stops being accepted (seconds since the epoch): its
    /// `exp` plus the configured leeway. Connections close then.
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

/// Why a token was refused. Messages are one line, safe to show clients, and
/// never contain the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No token, and no anonymous role configured.
    #[error("missing authorization token")]
    Missing,
    /// Bad signature, malformed, wrong algorithm.
    #[error("invalid token")]
    Invalid,
    /// Past `exp` (plus the leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf` (minus the leeway).
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    /// A claim that must be present is missing or not of its type (`exp`
    /// always; `aud` and `iss` when configured; `nbf` when present).
    #[error("token claim {0:?} is missing or malformed")]
    MissingClaim(&'static str),
    /// `aud` is not the configured audience.
    #[error("token audience not accepted")]
    WrongAudience,
    /// `iss` is not the configured issuer.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// The token's `kid` is in no key of the JWKS, even after a refetch.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// A string (or key) of the claims holds U+0000, which Postgres' jsonb
    /// (and so `request.jwt.claims`) cannot store.
    #[error("token claims contain a NUL character (\\u0000), which Postgres cannot store")]
    NulInClaims,
    /// The role claim is not a string or not a role the service may assume.
    #[error("role {0:?} is not allowed")]
    RoleNotAllowed(String),
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
}
