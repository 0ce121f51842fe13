//! JWT verification in two layers: the JWS signature (compact serialization only) and then the
//! claims.
//!
//! Flow: [`verify_signature`] splits the token, decodes the protected header strictly (base64url
//! without padding, a JSON object), takes `alg` only if the policy allows it, refuses `crit`
//! extensions, and picks keys by `kid` and by family (`keys.rs`; a key without a kid serves any
//! kid). Keys embedded in the token (`jwk`, `jku`, `x5u`, `x5c`) are ignored. It returns the
//! decoded payload; [`verify`] also says whether the token's key is unknown (a refetch may help). [`check_claims`] then parses the
//! payload as a JSON object and applies `exp`/`nbf` with leeway, `iss`, `aud` and the required
//! claims. The wycheproof vectors (whose payload is not a claims set) test the first layer alone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::{parse_alg, KeySet};
use crate::config::auth::JwtRules;

/// Longest token we look at.
pub const MAX_TOKEN: usize = 16 * 1024;

/// Why a token was refused. `reason()` is the `error_description` sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Missing,
    Malformed,
    AlgorithmNotAllowed,
    Crit,
    UnknownKey,
    BadSignature,
    NotAnObject,
    Expired,
    NotYetValid,
    BadIssuer,
    BadAudience,
    MissingClaim,
    BadClaim,
    UnknownApiKey,
    Revoked,
}

impl Reject {
    pub fn reason(self) -> &'static str {
        match self {
            Reject::Missing => "missing credentials",
            Reject::Malformed => "malformed token",
            Reject::AlgorithmNotAllowed => "algorithm not allowed",
            Reject::Crit => "unsupported critical header",
            Reject::UnknownKey => "unknown signing key",
            Reject::BadSignature => "invalid signature",
            Reject::NotAnObject => "claims are not a JSON object",
            Reject::Expired => "token expired",
            Reject::NotYetValid => "token not yet valid",
            Reject::BadIssuer => "issuer not accepted",
            Reject::BadAudience => "audience not accepted",
            Reject::MissingClaim => "required claim missing",
            Reject::BadClaim => "malformed claim",
            Reject::UnknownApiKey => "unknown API key",
            Reject::Revoked => "token not active",
        }
    }
}

/// A token whose signature verified.
#[derive(Debug)]
pub struct Signed {
    pub alg: Algorithm,
    pub payload: Vec<u8>,
}

/// Header fields we read.
struct JoseHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn header(b64: &str, allowed: &[Algorithm]) -> Result<JoseHeader, Reject> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| Reject::Malformed)?;
    let v: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| Reject::Malformed)?;
    if v.contains_key("crit") {
        return Err(Reject::Crit);
    }
    let alg = v
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Reject::Malformed)?;
    let alg = parse_alg(alg).ok_or(Reject::AlgorithmNotAllowed)?;
    if !allowed.contains(&alg) {
        return Err(Reject::AlgorithmNotAllowed);
    }
    let kid = match v.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Reject::Malformed),
    };
    Ok(JoseHeader { alg, kid })
}

/// Why [`verify`] refused a token, and whether fresher keys might accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unverified {
    pub reject: Reject,
    /// No key of the sets carries the token's kid (or, without a kid, no key fits its alg): a key
    /// set fetched again (JWKS) may hold its key.
    pub key_unknown: bool,
}

impl From<Reject> for Unverified {
    fn from(reject: Reject) -> Self {
        Unverified {
            reject,
            key_unknown: false,
        }
    }
}

/// Verifies a compact JWS against `sets` (searched in order). `Err(UnknownKey)` means no key may
/// verify the token (a JWKS refresh may help).
pub fn verify_signature(
    token: &str,
    allowed: &[Algorithm],
    sets: &[&KeySet],
) -> Result<Signed, Reject> {
    verify(token, allowed, sets).map_err(|u| u.reject)
}

/// [`verify_signature`], saying also whether the token's key is unknown to `sets`.
pub fn verify(token: &str, allowed: &[Algorithm], sets: &[&KeySet]) -> Result<Signed, Unverified> {
    if token.is_empty() {
        return Err(Reject::Missing.into());
    }
    if token.len() > MAX_TOKEN {
        return Err(Reject::Malformed.into());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed.into());
    };
    let head = header(h, allowed)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Reject::Malformed)?;
    if URL_SAFE_NO_PAD.decode(sig).is_err() {
        return Err(Reject::Malformed.into());
    }
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let mut any_key = false;
    for set in sets {
        for key in set.candidates(head.alg, head.kid.as_deref()) {
            any_key = true;
            if jsonwebtoken::crypto::verify(sig, message, &key.decoding, head.alg) == Ok(true) {
                return Ok(Signed {
                    alg: head.alg,
                    payload,
                });
            }
        }
    }
    let key_unknown = match head.kid.as_deref() {
        Some(kid) => !sets.iter().any(|s| s.has_kid(kid)),
        None => !any_key,
    };
    Err(Unverified {
        reject: if any_key {
            Reject::BadSignature
        } else {
            Reject::UnknownKey
        },
        key_unknown,
    })
}

/// A NumericDate claim (seconds; fractions allowed).
fn numeric(v: &Value) -> Result<f64, Reject> {
    v.as_f64().filter(|f| f.is_finite()).ok_or(Reject::BadClaim)
}

/// Parses and checks the claims of a verified token; `now` is Unix seconds.
pub fn check_claims(
    payload: &[u8],
    rules: &JwtRules,
    now: u64,
) -> Result<Map<String, Value>, Reject> {
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| Reject::NotAnObject)?;
    check_claim_map(&claims, rules, now)?;
    Ok(claims)
}

/// The checks of [`check_claims`] on an already parsed claims set.
pub fn check_claim_map(
    claims: &Map<String, Value>,
    rules: &JwtRules,
    now: u64,
) -> Result<(), Reject> {
    let now = now as f64;
    let leeway = rules.leeway.as_secs_f64();
    for c in &rules.required_claims {
        if !claims.contains_key(c) {
            return Err(Reject::MissingClaim);
        }
    }
    if let Some(exp) = claims.get("exp") {
        if now > numeric(exp)? + leeway {
            return Err(Reject::Expired);
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        if now + leeway < numeric(nbf)? {
            return Err(Reject::NotYetValid);
        }
    }
    if !rules.issuers.is_empty() {
        let iss = claims.get("iss").and_then(Value::as_str);
        if !iss.is_some_and(|i| rules.issuers.iter().any(|x| x == i)) {
            return Err(Reject::BadIssuer);
        }
    }
    if !rules.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => rules.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| rules.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(Reject::BadAudience);
        }
    }
    Ok(())
}

/// `exp` as whole Unix seconds, if present and sane.
pub fn exp_of(claims: &Map<String, Value>) -> Option<u64> {
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::Key;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use std::time::Duration;

    fn rules() -> JwtRules {
        JwtRules {
            algorithms: vec![Algorithm::HS256],
            static_keys: KeySet::default(),
            jwks: None,
            issuers: vec!["idp".into()],
            audiences: vec!["api".into()],
            leeway: Duration::from_secs(30),
            required_claims: vec!["exp".into(), "sub".into()],
        }
    }

    fn token(claims: serde_json::Value, alg: Algorithm, kid: Option<&str>) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_owned);
        encode(&h, &claims, &EncodingKey::from_secret(b"k1")).unwrap()
    }

    #[test]
    fn claims_rules() {
        let r = rules();
        let now = 1_000_000u64;
        let ok = serde_json::json!({"sub":"u","exp":now+10,"iss":"idp","aud":["x","api"]});
        let check = |v: serde_json::Value| check_claims(v.to_string().as_bytes(), &r, now);
        assert!(check(ok.clone()).is_ok());
        let mut e = ok.clone();
        e["exp"] = (now - 31).into();
        assert_eq!(check(e.clone()), Err(Reject::Expired));
        e["exp"] = (now - 29).into();
        assert!(check(e).is_ok(), "within leeway");
        let mut n = ok.clone();
        n["nbf"] = (now + 31).into();
        assert_eq!(check(n), Err(Reject::NotYetValid));
        let mut i = ok.clone();
        i["iss"] = "evil".into();
        assert_eq!(check(i), Err(Reject::BadIssuer));
        let mut a = ok.clone();
        a["aud"] = "other".into();
        assert_eq!(check(a), Err(Reject::BadAudience));
        let mut s = ok.clone();
        s.as_object_mut().unwrap().remove("sub");
        assert_eq!(check(s), Err(Reject::MissingClaim));
        let mut x = ok;
        x["exp"] = "soon".into();
        assert_eq!(check(x), Err(Reject::BadClaim));
        assert_eq!(check_claims(b"\"foo\"", &r, now), Err(Reject::NotAnObject));
    }

    #[test]
    fn signature_layer() {
        let set = KeySet {
            keys: vec![Key::secret(b"k1", Some("a".into()))],
        };
        let t = token(serde_json::json!({"x":1}), Algorithm::HS256, Some("a"));
        let hs = [Algorithm::HS256];
        assert!(verify_signature(&t, &hs, &[&set]).is_ok());
        // alg outside the policy
        assert_eq!(
            verify_signature(&t, &[Algorithm::RS256], &[&set]).unwrap_err(),
            Reject::AlgorithmNotAllowed
        );
        // unknown kid
        let t2 = token(serde_json::json!({"x":1}), Algorithm::HS256, Some("b"));
        assert_eq!(
            verify(&t2, &hs, &[&set]).unwrap_err(),
            Unverified {
                reject: Reject::UnknownKey,
                key_unknown: true
            }
        );
        // a key without a kid (secret_env, PEM files) verifies tokens with any kid
        let kidless = KeySet {
            keys: vec![Key::secret(b"k1", None)],
        };
        assert!(verify_signature(&t2, &hs, &[&kidless]).is_ok());
        assert!(verify_signature(&t, &hs, &[&set, &kidless]).is_ok());
        // ... but only for its own family, and a wrong signature is still wrong
        let t3 = token(serde_json::json!({"x":1}), Algorithm::HS384, Some("b"));
        let other = KeySet {
            keys: vec![Key::secret(b"other", None)],
        };
        assert_eq!(
            verify(&t3, &[Algorithm::HS384], &[&other]).unwrap_err(),
            Unverified {
                reject: Reject::BadSignature,
                key_unknown: true
            },
            "kid b is in no set: fresher keys may know it"
        );
        // tampered payload
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(br#"{"x":2}"#);
        parts[1] = &other;
        assert_eq!(
            verify_signature(&parts.join("."), &hs, &[&set]).unwrap_err(),
            Reject::BadSignature
        );
        // alg none
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"x":1}"#)
        );
        assert_eq!(
            verify_signature(&none, &hs, &[&set]).unwrap_err(),
            Reject::AlgorithmNotAllowed
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA"] {
            assert!(verify_signature(bad, &hs, &[&set]).is_err(), "{bad}");
        }
    }
}
