//! Token minting for auth tests: fixture keys in `tests/fixtures/keys/` (RSA 2048, EC P-256,
//! Ed25519, generated with openssl) and claims relative to now.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

pub fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `claims` with `alg` using the fixture key `key` (`"rsa"`, `"rsa2"`, `"ec"`, `"ed"`) or,
/// for HS*, the secret bytes given as `key`.
pub fn mint(alg: Algorithm, key: &str, kid: Option<&str>, claims: serde_json::Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    let k = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(key.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(&key_bytes(&format!("{key}.key"))).unwrap()
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&key_bytes(&format!("{key}.key"))).unwrap(),
        _ => EncodingKey::from_rsa_pem(&key_bytes(&format!("{key}.key"))).unwrap(),
    };
    encode(&h, &claims, &k).unwrap()
}

/// Standard claims valid for an hour, merged with `extra`.
pub fn claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({"sub": sub, "iat": now(), "exp": now() + 3600});
    if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    c
}

/// JWKS JSON for the fixture RSA public keys, each as (kid, fixture name); the moduli are stored
/// base64url in `<name>.n` (from `openssl rsa -noout -modulus`).
pub fn rsa_jwks(keys: &[(&str, &str)]) -> String {
    let entries: Vec<String> = keys
        .iter()
        .map(|(kid, name)| {
            let n = String::from_utf8(key_bytes(&format!("{name}.n"))).unwrap();
            format!(
                r#"{{"kty":"RSA","kid":"{kid}","use":"sig","alg":"RS256","n":"{}","e":"AQAB"}}"#,
                n.trim()
            )
        })
        .collect();
    format!(r#"{{"keys":[{}]}}"#, entries.join(","))
}
