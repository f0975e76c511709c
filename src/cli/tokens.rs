//! Flags about tokens: the verification key, the claims a token must carry,
//! how tokens are checked over time (`serve`), and `token`, which mints one.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{RoleClaim, TokenRules, Verifier};
use crate::config::{JwtKey, parse_duration};

/// Where JWT verification keys come from.
#[derive(clap::Args)]
pub struct KeyArgs {
    /// HS256 secret for JWTs.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM public key (RS256/ES256) instead of a secret.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY_FILE")]
    jwt_public_key_file: Option<PathBuf>,
    /// JWKS URL of an identity provider (keys by `kid`, refreshed);
    /// wins over the public key and the secret.
    #[arg(long, env = "HERALD_JWKS_URL")]
    jwks_url: Option<String>,
}

impl KeyArgs {
    /// The key: the JWKS URL wins over the key file, which wins over the secret.
    pub fn key(&self) -> anyhow::Result<JwtKey> {
        match (&self.jwks_url, &self.jwt_public_key_file, &self.jwt_secret) {
            (Some(url), _, _) => Ok(JwtKey::Jwks(url.clone())),
            (None, Some(path), _) => Ok(JwtKey::PublicKeyFile(path.clone())),
            (None, None, Some(secret)) => Ok(JwtKey::Secret(secret.clone().into())),
            (None, None, None) => anyhow::bail!(
                "HERALD_JWT_SECRET (or HERALD_JWT_PUBLIC_KEY_FILE or HERALD_JWKS_URL) is required; `make run` sets a development secret"
            ),
        }
    }
}

/// What tokens carry: checked by `serve`, written by `token`.
#[derive(clap::Args)]
pub struct ClaimArgs {
    /// Required `aud` claim (unset: `aud` is not checked).
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim (unset: `iss` is not checked).
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Where the role is in the claims: a JSON pointer, e.g. /app_metadata/role
    /// (`~1` stands for `/` inside a name).
    #[arg(long, env = "HERALD_JWT_ROLE_CLAIM", default_value = "/role")]
    pub jwt_role_claim: RoleClaim,
}

impl ClaimArgs {
    /// The rules minted tokens are written for.
    fn rules(&self) -> TokenRules {
        TokenRules {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            role_claim: self.jwt_role_claim.clone(),
            ..TokenRules::default()
        }
    }
}

/// How `serve` checks tokens over time.
#[derive(clap::Args)]
pub struct TokenCheckArgs {
    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "HERALD_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
    /// How often the JWKS is fetched again.
    #[arg(long, env = "HERALD_JWKS_REFRESH", default_value = "10m", value_parser = parse_duration)]
    pub jwks_refresh: Duration,
    /// How long a token role found assumable is trusted before it is checked
    /// again (a revoked grant is refused once this has passed).
    #[arg(long, env = "HERALD_ROLE_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub role_cache_ttl: Duration,
}

/// `pgherald token`: a development JWT.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// User id (the `sub` claim).
    #[arg(long)]
    sub: String,
    /// Database role to assume.
    #[arg(long, default_value = "app_user")]
    role: String,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    claims: ClaimArgs,
}

impl TokenArgs {
    /// The signed token (HS256 only: a public key cannot sign).
    pub fn mint(&self) -> anyhow::Result<String> {
        let JwtKey::Secret(secret) = self.key.key()? else {
            anyhow::bail!(
                "`pgherald token` signs with HERALD_JWT_SECRET; a public key cannot sign"
            );
        };
        let verifier = Verifier::hs256(secret.as_bytes()).with_rules(self.claims.rules())?;
        Ok(verifier.mint(&self.sub, &self.role, self.ttl)?)
    }
}
