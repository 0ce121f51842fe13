//! Verification keys: what each key may verify, and how keys are read from PEM files, secrets and
//! JWKS documents.
//!
//! A [`Key`] carries its family (HMAC, RSA, EC P-256, EC P-384, Ed25519), fixed by the key material
//! itself, never by a token: a token's `alg` must belong to the key's family, so an RSA public key can
//! never be used as an HMAC secret (the HS/RS confusion attack) and `none` is never an algorithm.
//! JWKS entries marked for encryption (`use: enc`, or `key_ops` without `verify`) and entries with
//! unsupported types or curves are skipped (and reported), not fatal: one odd key must not take the
//! whole set down.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Algorithm names accepted in `algorithms = [...]`, for error messages.
pub const ALG_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// Parses a JOSE `alg` name we support (`none` and unknown names are `None`).
pub fn parse_alg(s: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match s {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

/// What kind of key material this is; decides which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Hmac => matches!(alg, HS256 | HS384 | HS512),
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::P256 => alg == ES256,
            Family::P384 => alg == ES384,
            Family::Ed25519 => alg == EdDSA,
        }
    }
}

/// The signature scheme of an algorithm, hash aside. A JWK's `alg` pins its key to one scheme (an
/// RSA key published for PS512 never verifies RS256) and sets the weakest hash it accepts (PS512
/// key: no PS256, no downgrade), while a stronger hash of the same scheme passes (RFC 7520's
/// examples sign PS384 with a key labelled PS256; wycheproof counts those valid).
fn scheme(alg: Algorithm) -> u8 {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => 0,
        RS256 | RS384 | RS512 => 1,
        PS256 | PS384 | PS512 => 2,
        ES256 => 3,
        ES384 => 4,
        EdDSA => 5,
    }
}

fn hash_bits(alg: Algorithm) -> u16 {
    use Algorithm::*;
    match alg {
        HS256 | RS256 | PS256 | ES256 | EdDSA => 256,
        HS384 | RS384 | PS384 | ES384 => 384,
        HS512 | RS512 | PS512 => 512,
    }
}

/// One verification key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub family: Family,
    /// The JWK's own `alg`, if it had one.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

impl Key {
    /// May this key verify a token signed with `alg`?
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.family.allows(alg)
            && self
                .alg
                .is_none_or(|a| scheme(a) == scheme(alg) && hash_bits(alg) >= hash_bits(a))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, kid {:?})", self.family, self.kid)
    }
}

const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Key {
    /// An HMAC secret.
    pub fn secret(secret: &[u8], kid: Option<String>) -> Key {
        Key {
            kid,
            alg: None,
            family: Family::Hmac,
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A public key in PEM: `PUBLIC KEY` (SPKI: RSA, EC P-256/P-384, Ed25519) or `RSA PUBLIC KEY`.
    pub fn from_pem(pem: &[u8]) -> Result<Key, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file".to_string())?;
        let begin = text
            .find("-----BEGIN ")
            .ok_or_else(|| "not a PEM file (no BEGIN line)".to_string())?;
        let label_end = text[begin + 11..].find("-----").ok_or("not a PEM file")? + begin + 11;
        let label = &text[begin + 11..label_end];
        let body_start = label_end + 5;
        let end = text[body_start..]
            .find("-----END")
            .ok_or("not a PEM file (no END line)")?
            + body_start;
        let b64: String = text[body_start..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|_| "bad base64 in PEM body".to_string())?;
        let bad = |e: jsonwebtoken::errors::Error| format!("unusable key: {e}");
        let (family, decoding) = match label {
            "RSA PUBLIC KEY" => (Family::Rsa, DecodingKey::from_rsa_pem(pem).map_err(bad)?),
            "PUBLIC KEY" if contains(&der, RSA_OID) => {
                (Family::Rsa, DecodingKey::from_rsa_pem(pem).map_err(bad)?)
            }
            "PUBLIC KEY" if contains(&der, P256_OID) => {
                (Family::P256, DecodingKey::from_ec_pem(pem).map_err(bad)?)
            }
            "PUBLIC KEY" if contains(&der, P384_OID) => {
                (Family::P384, DecodingKey::from_ec_pem(pem).map_err(bad)?)
            }
            "PUBLIC KEY" if contains(&der, ED25519_OID) => {
                (Family::Ed25519, DecodingKey::from_ed_pem(pem).map_err(bad)?)
            }
            "PUBLIC KEY" => {
                return Err(
                    "unsupported public key type (expected RSA, EC P-256/P-384 or Ed25519)".into(),
                )
            }
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                return Err("this is a private key; give the public key".into())
            }
            other => {
                return Err(format!(
                    "unsupported PEM block \"{other}\" (expected PUBLIC KEY)"
                ))
            }
        };
        Ok(Key {
            kid: None,
            alg: None,
            family,
            decoding,
        })
    }

    /// One JWK object (RFC 7517). `Err` says why it is not a usable verification key.
    pub fn from_jwk(jwk: &Value) -> Result<Key, String> {
        let s = |name: &str| jwk.get(name).and_then(Value::as_str);
        if let Some(u) = jwk.get("use") {
            if u.as_str() != Some("sig") {
                return Err(format!("use {u} is not \"sig\""));
            }
        }
        if let Some(ops) = jwk.get("key_ops") {
            let verify = ops
                .as_array()
                .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
            if !verify {
                return Err("key_ops does not include \"verify\"".into());
            }
        }
        let b64 = |name: &str| -> Result<&str, String> {
            let v = s(name).ok_or_else(|| format!("missing \"{name}\""))?;
            URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| format!("\"{name}\" is not base64url"))?;
            Ok(v)
        };
        let bad = |e: jsonwebtoken::errors::Error| format!("unusable key: {e}");
        let (family, decoding) = match s("kty") {
            Some("RSA") => (
                Family::Rsa,
                DecodingKey::from_rsa_components(b64("n")?, b64("e")?).map_err(bad)?,
            ),
            Some("EC") => {
                let (family, len) = match s("crv") {
                    Some("P-256") => (Family::P256, 32),
                    Some("P-384") => (Family::P384, 48),
                    other => return Err(format!("unsupported curve {other:?}")),
                };
                let (x, y) = (b64("x")?, b64("y")?);
                let ok = |v: &str| URL_SAFE_NO_PAD.decode(v).is_ok_and(|d| d.len() == len);
                if !ok(x) || !ok(y) {
                    return Err("EC point has the wrong size for its curve".into());
                }
                (family, DecodingKey::from_ec_components(x, y).map_err(bad)?)
            }
            Some("OKP") => {
                if s("crv") != Some("Ed25519") {
                    return Err(format!("unsupported OKP curve {:?}", s("crv")));
                }
                (
                    Family::Ed25519,
                    DecodingKey::from_ed_components(b64("x")?).map_err(bad)?,
                )
            }
            Some("oct") => {
                let k = URL_SAFE_NO_PAD
                    .decode(b64("k")?)
                    .map_err(|_| "\"k\" is not base64url".to_string())?;
                if k.is_empty() {
                    return Err("empty secret".into());
                }
                (Family::Hmac, DecodingKey::from_secret(&k))
            }
            other => return Err(format!("unsupported kty {other:?}")),
        };
        let alg = match s("alg") {
            // The JWK's own alg must be of the key's family (RFC 7517 §4.4).
            Some(name) => match parse_alg(name).filter(|a| family.allows(*a)) {
                Some(a) => Some(a),
                None => {
                    return Err(format!(
                        "alg \"{name}\" is unsupported or does not fit the key"
                    ))
                }
            },
            None => None,
        };
        Ok(Key {
            kid: s("kid").map(str::to_owned),
            alg,
            family,
            decoding,
        })
    }
}

/// A set of keys (one JWKS, or a policy's static keys).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parses a JWKS document; returns the usable keys and a reason for each skipped entry.
    pub fn from_jwks(text: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWKS document (no \"keys\" array)")?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, k) in list.iter().enumerate() {
            match Key::from_jwk(k) {
                Ok(key) => keys.push(key),
                Err(m) => skipped.push(format!("keys[{i}]: {m}")),
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    /// Keys that may verify a token with this `alg` and `kid`, all of the right family (and JWK
    /// `alg`). With a kid: the keys carrying that kid, then the keys that carry none (a PEM file, a
    /// secret, a JWK without `kid`: most identity providers put a kid in every token, and such a
    /// key cannot say which kid it is); keys with another kid never. Without a kid: every key.
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        let exact = self
            .keys
            .iter()
            .filter(move |k| kid.is_some() && k.kid.as_deref() == kid && k.allows(alg));
        let rest = self
            .keys
            .iter()
            .filter(move |k| (kid.is_none() || k.kid.is_none()) && k.allows(alg));
        exact.chain(rest)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_bind_algorithms() {
        assert!(Family::Hmac.allows(Algorithm::HS384));
        assert!(!Family::Rsa.allows(Algorithm::HS256));
        assert!(!Family::P256.allows(Algorithm::ES384));
        assert!(Family::Rsa.allows(Algorithm::PS512));
        assert_eq!(parse_alg("none"), None);
        assert_eq!(parse_alg("HS256"), Some(Algorithm::HS256));
    }

    #[test]
    fn jwks_skips_unusable_entries() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"a"},
            {"kty":"oct","k":"c2VjcmV0","use":"enc"},
            {"kty":"EC","crv":"P-521","x":"AA","y":"AA"},
            {"kty":"oct","k":"c2VjcmV0","alg":"RS256"},
            {"kty":"oct","k":"c2VjcmV0","key_ops":["encrypt"]}
        ]}"#;
        let (set, skipped) = KeySet::from_jwks(doc).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(set.has_kid("a"));
        assert!(KeySet::from_jwks(b"{}").is_err());
        assert!(KeySet::from_jwks(b"nope").is_err());
    }

    #[test]
    fn keys_without_kid_serve_any_kid_of_their_family() {
        let hmac = Key::secret(b"s", None);
        let tagged = Key::secret(b"t", Some("a".into()));
        let (rsa, _) = KeySet::from_jwks(
            br#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
        )
        .unwrap();
        let mut keys = vec![hmac, tagged];
        keys.extend(rsa.keys);
        let set = KeySet { keys };
        let kids = |alg, kid| -> Vec<Option<String>> {
            set.candidates(alg, kid).map(|k| k.kid.clone()).collect()
        };
        // exact kid first, then the keys without one; never a key with another kid
        assert_eq!(kids(Algorithm::HS256, Some("a")), [Some("a".into()), None]);
        assert_eq!(kids(Algorithm::HS256, Some("zz")), [None]);
        assert_eq!(kids(Algorithm::HS256, None), [None, Some("a".into())]);
        // families still bind: an HMAC secret never serves an RS token, whatever its kid
        assert_eq!(kids(Algorithm::RS256, Some("zz")), [None]);
        assert_eq!(kids(Algorithm::RS256, Some("r")), [Some("r".into()), None]);
        assert!(kids(Algorithm::ES256, Some("a")).is_empty());
    }

    #[test]
    fn pem_rejects_private_and_garbage() {
        assert!(Key::from_pem(b"hello").is_err());
        let e = Key::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(e.contains("private"), "{e}");
    }
}
