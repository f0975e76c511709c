//! Unit tests of [`super`].

use serde_json::json;

use super::*;

const SECRET: &[u8] = b"s3cret";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn verifier(rules: TokenRules) -> Verifier {
    Verifier::hs256(SECRET).with_rules(rules).unwrap()
}

async fn check(rules: TokenRules, claims: Value) -> Result<Caller, AuthError> {
    verifier(rules).verify(&sign(claims)).await
}

fn leeway(secs: u64) -> TokenRules {
    TokenRules {
        leeway: Duration::from_secs(secs),
        ..TokenRules::default()
    }
}

#[tokio::test]
async fn minted_tokens_verify_and_tampered_ones_do_not() {
    let v = Verifier::hs256(SECRET);
    let token = v.mint("u1", "app_user", Duration::from_secs(60)).unwrap();
    let caller = v.verify(&token).await.unwrap();
    assert_eq!(caller.sub(), Some("u1"));
    assert_eq!(caller.role, "app_user");
    assert_eq!(
        Verifier::hs256(b"other").verify(&token).await,
        Err(AuthError::Invalid)
    );
    assert_eq!(v.verify("garbage").await, Err(AuthError::Invalid));
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let t = now();
    for claims in [
        json!({"sub": "u", "iat": t}),
        json!({"sub": "u", "exp": null}),
        json!({"sub": "u", "exp": format!("{}", t + 60)}),
        json!({"sub": "u", "exp": -5}),
    ] {
        assert_eq!(
            check(TokenRules::default(), claims.clone()).await,
            Err(AuthError::MissingClaim("exp")),
            "{claims}"
        );
    }
    assert!(
        check(TokenRules::default(), json!({"sub": "u", "exp": t + 60}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn expiry_has_a_leeway_and_the_caller_expires_after_it() {
    let t = now();
    // 10 s past exp: inside a 30 s leeway, outside a 5 s one.
    let claims = json!({"sub": "u", "exp": t - 10});
    let caller = check(leeway(30), claims.clone()).await.unwrap();
    assert_eq!(caller.exp, Some(t - 10 + 30));
    assert_eq!(
        check(leeway(5), claims.clone()).await,
        Err(AuthError::Expired)
    );
    assert_eq!(
        check(leeway(0), json!({"sub": "u", "exp": t - 2})).await,
        Err(AuthError::Expired)
    );
    // The default is 30 s.
    assert!(check(TokenRules::default(), claims).await.is_ok());
    assert_eq!(
        check(TokenRules::default(), json!({"sub": "u", "exp": t - 40})).await,
        Err(AuthError::Expired)
    );
    // A far-future exp is capped to a representable instant.
    let far = check(leeway(30), json!({"sub": "u", "exp": 1e19})).await;
    assert_eq!(far.unwrap().exp, Some(LATEST_EXPIRY));
}

#[tokio::test]
async fn nbf_in_the_future_is_refused_beyond_the_leeway() {
    let t = now();
    assert_eq!(
        check(
            leeway(5),
            json!({"sub": "u", "exp": t + 600, "nbf": t + 60})
        )
        .await,
        Err(AuthError::NotYetValid)
    );
    assert!(
        check(leeway(5), json!({"sub": "u", "exp": t + 600, "nbf": t + 3}))
            .await
            .is_ok()
    );
    assert!(
        check(leeway(0), json!({"sub": "u", "exp": t + 600, "nbf": t - 1}))
            .await
            .is_ok()
    );
    // An nbf that is not a date cannot be honoured, so it is refused.
    assert_eq!(
        check(
            leeway(5),
            json!({"sub": "u", "exp": t + 600, "nbf": "tomorrow"})
        )
        .await,
        Err(AuthError::MissingClaim("nbf"))
    );
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let t = now();
    let rules = TokenRules {
        audience: Some("herald".into()),
        issuer: Some("https://idp.example".into()),
        ..TokenRules::default()
    };
    let good = json!({"sub": "u", "exp": t + 60, "aud": "herald", "iss": "https://idp.example"});
    assert!(check(rules.clone(), good.clone()).await.is_ok());
    let list = json!({"sub": "u", "exp": t + 60, "aud": ["other", "herald"], "iss": "https://idp.example"});
    assert!(check(rules.clone(), list).await.is_ok());
    for (claims, err) in [
        (
            json!({"sub": "u", "exp": t + 60, "aud": "other", "iss": "https://idp.example"}),
            AuthError::WrongAudience,
        ),
        (
            json!({"sub": "u", "exp": t + 60, "aud": "herald", "iss": "https://evil.example"}),
            AuthError::WrongIssuer,
        ),
        (
            json!({"sub": "u", "exp": t + 60, "iss": "https://idp.example"}),
            AuthError::MissingClaim("aud"),
        ),
        (
            json!({"sub": "u", "exp": t + 60, "aud": "herald"}),
            AuthError::MissingClaim("iss"),
        ),
    ] {
        assert_eq!(
            check(rules.clone(), claims.clone()).await,
            Err(err),
            "{claims}"
        );
    }
    // Unconfigured, neither is checked.
    let any = json!({"sub": "u", "exp": t + 60, "aud": "other", "iss": "whoever"});
    assert!(check(TokenRules::default(), any).await.is_ok());
}

#[tokio::test]
async fn the_role_is_read_at_the_configured_pointer() {
    let t = now();
    let rules = TokenRules {
        role_claim: "/app_metadata/role".parse().unwrap(),
        ..TokenRules::default()
    };
    let nested =
        json!({"sub": "u", "exp": t + 60, "role": "top", "app_metadata": {"role": "anon"}});
    assert_eq!(check(rules.clone(), nested).await.unwrap().role, "anon");
    // Absent at the pointer: the default role, whatever `role` says.
    let top = json!({"sub": "u", "exp": t + 60, "role": "top"});
    assert_eq!(check(rules.clone(), top).await.unwrap().role, DEFAULT_ROLE);
    let not_text = json!({"sub": "u", "exp": t + 60, "app_metadata": {"role": 5}});
    assert_eq!(
        check(rules.clone(), not_text).await,
        Err(AuthError::RoleNotAllowed("5".into()))
    );
    // Minting puts the role where verification reads it.
    let v = verifier(rules);
    let minted = v.mint("u", "anon", Duration::from_secs(60)).unwrap();
    assert_eq!(v.verify(&minted).await.unwrap().role, "anon");
}

#[tokio::test]
async fn claims_with_a_nul_anywhere_are_refused() {
    let t = now();
    for claims in [
        json!({"sub": "u\u{0}", "exp": t + 60}),
        json!({"sub": "u", "exp": t + 60, "a": {"b": ["ok", "x\u{0}"]}}),
        json!({"sub": "u", "exp": t + 60, "a": {"k\u{0}": 1}}),
    ] {
        assert_eq!(
            check(TokenRules::default(), claims.clone()).await,
            Err(AuthError::NulInClaims),
            "{claims}"
        );
    }
    let msg = AuthError::NulInClaims.to_string();
    assert!(!msg.contains('\n') && msg.contains("NUL"), "{msg}");
}

#[tokio::test]
async fn a_token_of_another_algorithm_is_refused() {
    let t = now();
    let mut header = Header::new(Algorithm::HS384);
    header.typ = Some("JWT".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "u", "exp": t + 60}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(
        Verifier::hs256(SECRET).verify(&token).await,
        Err(AuthError::Invalid)
    );
}

#[test]
fn a_leeway_beyond_a_day_is_refused() {
    let err = Verifier::hs256(SECRET)
        .with_rules(leeway(2 * 86400))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HERALD_JWT_LEEWAY"), "{err}");
}
