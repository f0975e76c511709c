//! Configuration the contract names: public-key JWTs and the anonymous role.

use serde_json::json;

use crate::helpers::{Frame, WsClient, bearer_init, spawn_app_with, token_with};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn signed(alg: jsonwebtoken::Algorithm, private_pem: &str, sub: &str) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/{private_pem}")).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &json!({"sub": sub, "role": "app_user", "exp": now + 600}),
        &key,
    )
    .unwrap()
}

async fn init_result(url: &str, token: &str) -> Frame {
    let mut ws = WsClient::transport(url).await;
    ws.send(bearer_init(token)).await;
    ws.next().await
}

#[tokio::test]
async fn with_a_public_key_file_tokens_signed_by_its_private_key_are_accepted_and_others_refused() {
    for (alg, public, private) in [
        (
            jsonwebtoken::Algorithm::ES256,
            "es256-public.pem",
            "es256-private.pem",
        ),
        (
            jsonwebtoken::Algorithm::RS256,
            "rs256-public.pem",
            "rs256-private.pem",
        ),
    ] {
        let app = spawn_app_with(|c| {
            c.jwt = pgherald::JwtKey::PublicKeyFile(format!("{FIXTURES}/{public}").into());
        })
        .await;
        let tenant = app.tenant("Acme").await;
        let alice = app.user("alice@acme.test", &[&tenant]).await;

        let ok = init_result(&app.ws_url, &signed(alg, private, &alice)).await;
        assert_eq!(
            ok,
            Frame::Json(json!({"type": "connection_ack"})),
            "{alg:?}"
        );
        // An HS256 token (any secret) must not pass as the public key's algorithm.
        let hs = init_result(&app.ws_url, &token_with(&alice, "app_user", 600)).await;
        assert!(matches!(hs, Frame::Close(4403, _)), "{alg:?}: {hs:?}");
        // The other key type's token neither.
        let other = match alg {
            jsonwebtoken::Algorithm::ES256 => {
                signed(jsonwebtoken::Algorithm::RS256, "rs256-private.pem", &alice)
            }
            _ => signed(jsonwebtoken::Algorithm::ES256, "es256-private.pem", &alice),
        };
        let refused = init_result(&app.ws_url, &other).await;
        assert!(
            matches!(refused, Frame::Close(4403, _)),
            "{alg:?}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn with_an_anonymous_role_tokenless_connections_are_accepted_but_see_nothing_private() {
    let app = spawn_app_with(|c| c.anon_role = Some("anon".into())).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;

    let mut anon = WsClient::transport(&app.ws_url).await;
    anon.init_with(json!({"type": "connection_init"})).await;
    anon.subscribe(
        "n",
        "subscription { changes(table: \"notifications\") { row } }",
        json!({}),
    )
    .await;
    // The anonymous role may select nothing of notifications: not even the
    // fact that rows change is its business.
    let refused = anon.next_json().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let mut alice_ws = app.transport_as(&alice).await;
    alice_ws
        .subscribe(
            "n",
            "subscription { changes(table: \"notifications\") { row } }",
            json!({}),
        )
        .await;
    app.wait_for_subscriptions(1).await;

    app.sql(&format!(
        "insert into notifications (tenant_id, user_id, title) values ('{tenant}', '{alice}', 'private')"
    ))
    .await;
    // Alice's copy proves the event was dispatched; the anonymous subscriber
    // (no privileges on notifications) must not have received it.
    assert_eq!(
        alice_ws.next_data().await["payload"]["data"]["changes"]["row"]["title"],
        "private"
    );
    let ping = json!({"type": "ping", "payload": {"n": 1}});
    anon.send(ping).await;
    let next = anon.next_json().await;
    assert_eq!(next["type"], "pong", "anonymous subscriber got {next}");

    // Without an anonymous role configured, the same init is refused.
    let strict = spawn_app_with(|_| {}).await;
    let mut ws = WsClient::transport(&strict.ws_url).await;
    ws.send(json!({"type": "connection_init"})).await;
    assert!(matches!(ws.next().await, Frame::Close(4403, _)));
}
