//! Unit tests of [`super`].

use serde_json::json;

use super::*;

// A P-256 public key (x, y) and an Ed25519 one, from RFC 7515 A.3 and RFC 8037 A.2.
const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

#[test]
fn signing_keys_are_kept_and_others_skipped() {
    let doc = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "ec", "use": "sig"},
        {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"},
        {"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "enc", "use": "enc"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "XYZ", "kid": "odd"},
    ]});
    let set = parse_set(doc.to_string().as_bytes()).unwrap();
    let kinds: Vec<_> = set
        .keys
        .iter()
        .map(|k| (k.kid.clone().unwrap(), k.alg))
        .collect();
    assert_eq!(
        kinds,
        [
            ("ec".to_owned(), Algorithm::ES256),
            ("ed".to_owned(), Algorithm::EdDSA)
        ]
    );
}

#[test]
fn a_set_without_usable_keys_is_an_error_naming_why() {
    let doc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]});
    let err = parse_set(doc.to_string().as_bytes()).err().unwrap();
    assert!(err.contains("no usable signing key"), "{err}");
    assert!(err.contains("symmetric"), "{err}");
    assert!(parse_set(b"[]").is_err());
    assert!(parse_set(b"{\"keys\": []}").is_err());
}
