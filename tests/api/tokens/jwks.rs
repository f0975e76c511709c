//! Keys from a JWKS URL: served by a local HTTP server on 127.0.0.1 whose
//! key set the tests rotate. Keys are generated per test (EC P-256 and
//! Ed25519 with ring) or read from the RSA fixture; nothing leaves the host.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64_STD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pgherald::{Application, Config, JwtKey};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};
use tokio::sync::watch;
use warp::Filter;

use tokio::time::Instant;

use super::{assert_accepted, assert_refused, now, until_expired};
use crate::helpers::{TestApp, WAIT, app_url_for, fresh_database, spawn_app_with};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A private key, its public JWK, and its `kid`.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    /// The RSA fixture key (ring cannot generate RSA keys).
    fn rsa(kid: &str) -> SigningKey {
        let pem = std::fs::read_to_string(format!("{FIXTURES}/rs256-private.pem")).unwrap();
        let der = B64_STD
            .decode(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let pair = signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": B64.encode(&public.n), "e": B64.encode(&public.e),
            }),
        }
    }

    /// A fresh EC P-256 key (ES256).
    fn ec(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // Uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid,
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
            }),
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    fn ed(kid: &str) -> SigningKey {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": B64.encode(pair.public_key().as_ref()),
            }),
        }
    }

    /// A token for `sub` (role `app_user`, valid 10 minutes) signed by this
    /// key, its header naming `kid` (`None`: no `kid`).
    fn token_with_kid(&self, sub: &str, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        let claims = json!({"sub": sub, "role": "app_user", "exp": now() + 600});
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    /// A token for `sub` naming this key's `kid`.
    fn token(&self, sub: &str) -> String {
        self.token_with_kid(sub, Some(&self.kid))
    }
}

/// What the server answers.
enum Serving {
    Document(Value),
    Status(u16),
}

/// A JWKS endpoint on 127.0.0.1 whose document the test changes.
struct JwksServer {
    url: String,
    serving: Arc<Mutex<Serving>>,
    hits: watch::Receiver<usize>,
}

impl JwksServer {
    async fn start(keys: &[&SigningKey]) -> JwksServer {
        let serving = Arc::new(Mutex::new(Serving::Document(document(keys))));
        let (hits_tx, hits) = watch::channel(0usize);
        let state = serving.clone();
        let route = warp::path!(".well-known" / "jwks.json").map(move || {
            hits_tx.send_modify(|n| *n += 1);
            match &*state.lock().unwrap() {
                Serving::Document(doc) => {
                    warp::reply::with_status(warp::reply::json(doc), warp::http::StatusCode::OK)
                }
                Serving::Status(code) => warp::reply::with_status(
                    warp::reply::json(&json!({"error": "unavailable"})),
                    warp::http::StatusCode::from_u16(*code).unwrap(),
                ),
            }
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(tcp).run());
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            serving,
            hits,
        }
    }

    /// Serves `keys` from now on (rotation).
    fn serve(&self, keys: &[&SigningKey]) {
        *self.serving.lock().unwrap() = Serving::Document(document(keys));
    }

    /// Serves `doc` from now on.
    fn serve_raw(&self, doc: Value) {
        *self.serving.lock().unwrap() = Serving::Document(doc);
    }

    /// Answers with HTTP `code` from now on.
    fn fail_with(&self, code: u16) {
        *self.serving.lock().unwrap() = Serving::Status(code);
    }

    /// Requests served so far.
    fn hits(&self) -> usize {
        *self.hits.borrow()
    }

    /// Waits (bounded) until `n` requests have arrived in all.
    async fn wait_for_hits(&self, n: usize) {
        let mut hits = self.hits.clone();
        tokio::time::timeout(WAIT, hits.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {n} JWKS requests"))
            .unwrap();
    }
}

fn document(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// An instance verifying tokens against `server`; `tweak` sets its timing.
async fn app_on(server: &JwksServer, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let url = server.url.clone();
    spawn_app_with(move |c| {
        c.jwt = JwtKey::Jwks(url);
        tweak(c);
    })
    .await
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn after_a_rotation_the_new_keys_are_accepted_and_the_removed_one_refused() {
    let (k1, k2, k3) = (
        SigningKey::rsa("k1"),
        SigningKey::ec("k2"),
        SigningKey::ed("k3"),
    );
    let server = JwksServer::start(&[&k1]).await;
    // Every unknown kid may refetch; no periodic refresh during the test.
    let app = app_on(&server, |c| {
        c.jwks_min_refetch = Duration::ZERO;
        c.jwks_refresh = HOUR;
    })
    .await;
    assert_accepted(&app, &k1.token("u"), "RS256 key k1, served at start-up").await;
    // Before the rotation, k2 is unknown even after the refetch it causes.
    assert_refused(&app, &k2.token("u"), "k2 before it is published").await;

    server.serve(&[&k2, &k3]);
    assert_accepted(&app, &k2.token("u"), "ES256 key k2 after the rotation").await;
    assert_accepted(&app, &k3.token("u"), "EdDSA key k3 after the rotation").await;
    assert_refused(&app, &k1.token("u"), "k1, removed by the rotation").await;

    // A kid is no credential: k2's kid on a token another key signed.
    let impostor = SigningKey::ec("k2");
    assert_refused(&app, &impostor.token("u"), "another key claiming kid k2").await;
    // A token without kid is tried against the keys of its algorithm.
    assert_accepted(&app, &k3.token_with_kid("u", None), "EdDSA without kid").await;
    assert_refused(
        &app,
        &impostor.token_with_kid("u", None),
        "an unknown key without kid",
    )
    .await;
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let k1 = SigningKey::ec("k1");
    let server = JwksServer::start(&[&k1]).await;
    let app = app_on(&server, |c| {
        c.jwks_min_refetch = HOUR;
        c.jwks_refresh = HOUR;
    })
    .await;
    assert_eq!(server.hits(), 1, "the start-up fetch");
    for i in 0..10 {
        let made_up = SigningKey::ec(&format!("made-up-{i}"));
        assert_refused(&app, &made_up.token("u"), "a made-up kid").await;
    }
    assert_eq!(
        server.hits(),
        1,
        "unknown kids within the interval must not refetch"
    );
    assert_accepted(&app, &k1.token("u"), "the known key").await;

    // With a short interval, the next unknown kid after it refetches once.
    let server = JwksServer::start(&[&k1]).await;
    let app = app_on(&server, |c| {
        c.jwks_min_refetch = Duration::from_secs(1);
        c.jwks_refresh = HOUR;
    })
    .await;
    let fetched = Instant::now();
    let k2 = SigningKey::ec("k2");
    server.serve(&[&k1, &k2]);
    until_expired(fetched, Duration::from_secs(1)).await;
    assert_accepted(
        &app,
        &k2.token("u"),
        "k2 once the refetch interval has passed",
    )
    .await;
    assert_eq!(server.hits(), 2, "one refetch");
}

#[tokio::test]
async fn the_set_is_refreshed_periodically() {
    let (k1, k2) = (SigningKey::rsa("k1"), SigningKey::ec("k2"));
    let server = JwksServer::start(&[&k1]).await;
    // Unknown kids may not refetch: only the periodic refresh can teach
    // the instance about the rotation.
    let app = app_on(&server, |c| {
        c.jwks_min_refetch = HOUR;
        c.jwks_refresh = Duration::from_millis(300);
    })
    .await;
    assert_accepted(&app, &k1.token("u"), "k1").await;
    server.serve(&[&k2]);
    // A refresh starts only after the one before it has finished: two more
    // requests mean one refresh has fetched and applied the new set.
    let seen = server.hits();
    server.wait_for_hits(seen + 2).await;
    assert_accepted(&app, &k2.token("u"), "k2 after a periodic refresh").await;
    assert_refused(&app, &k1.token("u"), "k1 after the refresh removed it").await;
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    let k1 = SigningKey::ec("k1");
    let server = JwksServer::start(&[&k1]).await;
    let app = app_on(&server, |c| {
        c.jwks_min_refetch = HOUR;
        c.jwks_refresh = Duration::from_millis(200);
    })
    .await;
    server.fail_with(500);
    // The third request starts after the second (a failed one) has finished.
    let seen = server.hits();
    server.wait_for_hits(seen + 2).await;
    assert_accepted(&app, &k1.token("u"), "k1 while the JWKS answers 500").await;

    server.serve_raw(json!({"keys": []}));
    let seen = server.hits();
    server.wait_for_hits(seen + 2).await;
    assert_accepted(&app, &k1.token("u"), "k1 while the JWKS is empty").await;

    server.serve_raw(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}));
    let seen = server.hits();
    server.wait_for_hits(seen + 2).await;
    assert_accepted(&app, &k1.token("u"), "k1 while the JWKS has only a secret").await;
}

/// Starts an instance with `jwt` and returns its start-up error.
async fn start_up_error(jwt: JwtKey) -> String {
    let db = fresh_database().await;
    let mut config = Config::new(app_url_for(&db), jwt);
    config.listen = "127.0.0.1:0".parse().unwrap();
    match Application::build(config).await {
        Ok(app) => {
            app.shutdown().await;
            panic!("start-up must fail");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn start_up_fails_clearly_when_the_first_fetch_fails() {
    let k1 = SigningKey::ec("k1");
    let server = JwksServer::start(&[&k1]).await;
    server.fail_with(503);
    let e = start_up_error(JwtKey::Jwks(server.url.clone())).await;
    assert!(
        e.contains("JWKS") && e.contains(&server.url) && e.contains("503"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e:?}");

    server.serve_raw(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
    let e = start_up_error(JwtKey::Jwks(server.url.clone())).await;
    assert!(e.contains("no usable signing key"), "{e}");

    // Nothing listens on a port just released.
    let closed = {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tcp.local_addr().unwrap()
    };
    let url = format!("http://{closed}/jwks.json");
    let e = start_up_error(JwtKey::Jwks(url.clone())).await;
    assert!(e.contains("JWKS") && e.contains(&url), "{e}");
    assert!(!e.contains('\n'), "one line: {e:?}");
}
