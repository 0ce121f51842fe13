//! Replays every wycheproof JWS vector (`tests/vectors/jwt/`, 401 cases, vendored with their
//! Apache-2.0 licence file).
//!
//! Signature layer: each group's key (public JWK, or the private one for HMAC groups) is loaded as
//! a JWKS, every algorithm we support is allowed (the most permissive policy, so key binding alone
//! must stop confusion attacks), and each `valid` token verifies while each `invalid` one is
//! refused. The two `valid` vectors signed with ES512 (P-521), an algorithm outside our supported
//! set, are counted and must be refused with an unknown-key verdict, never accepted.
//!
//! Four vectors of the `base64` group contradict themselves and RFC 7515, and are pinned by id:
//! tc 367 and 370 are labelled invalid but are byte-identical to the valid tc 357 (their
//! padding/whitespace mutation is missing from this copy), so they verify; tc 372 and 373 are
//! labelled valid but carry a `?` inside a base64url segment, which strict RFC 7515 decoding
//! refuses (we never repair tokens).
//!
//! Gateway: one JWT policy and route per group; every `invalid` token gets 401 and none reaches the
//! upstream.

mod common;
use common::*;

use coregate::auth::jwt::{verify_signature, Reject};
use coregate::auth::keys::{parse_alg, KeySet};
use serde_json::Value;

fn vectors() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/jwt/wycheproof_json_web_signature_test.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn group_key(g: &Value) -> &Value {
    g.get("public").or_else(|| g.get("private")).unwrap()
}

/// The group's key as a one-key JWKS (private members dropped, as a JWKS would have them).
fn jwks(key: &Value) -> String {
    let mut k = key.clone();
    if k["kty"] != "oct" {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            k.as_object_mut().unwrap().remove(private);
        }
    }
    serde_json::json!({ "keys": [k] }).to_string()
}

/// A token as text: compact as is, JSON serialization as compact JSON.
fn token_text(t: &Value) -> String {
    match &t["jws"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Labelled invalid, but the same bytes as valid tc 357.
const IDENTICAL_TO_VALID: [u64; 2] = [367, 370];
/// Labelled valid, but not base64url (a `?` inside a segment).
const STRICT_BASE64: [u64; 2] = [372, 373];

const ALL: &str = "HS256,HS384,HS512,RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA";

#[test]
fn signature_layer_accepts_valid_and_refuses_invalid() {
    let v = vectors();
    let algs: Vec<_> = ALL.split(',').map(|a| parse_alg(a).unwrap()).collect();
    let (mut valid, mut invalid, mut unsupported, mut pinned) = (0, 0, 0, 0);
    for g in v["testGroups"].as_array().unwrap() {
        let (set, _skipped) = KeySet::from_jwks(jwks(group_key(g)).as_bytes()).unwrap();
        for t in g["tests"].as_array().unwrap() {
            let id = &t["tcId"];
            let tok = token_text(t);
            let got = verify_signature(&tok, &algs, &[&set]);
            let es512 = group_key(g)["crv"] == "P-521";
            let tc = id.as_u64().unwrap();
            if IDENTICAL_TO_VALID.contains(&tc) {
                assert!(got.is_ok(), "tc {id}: same bytes as valid tc 357");
                pinned += 1;
                continue;
            }
            if STRICT_BASE64.contains(&tc) {
                assert_eq!(got.unwrap_err(), Reject::Malformed, "tc {id}");
                pinned += 1;
                continue;
            }
            match t["result"].as_str().unwrap() {
                "valid" if es512 => {
                    unsupported += 1;
                    assert!(
                        got.is_err(),
                        "tc {id}: ES512 is not supported, must not pass"
                    );
                }
                "valid" => {
                    valid += 1;
                    assert!(
                        got.is_ok(),
                        "tc {id} ({}) valid but refused: {got:?}",
                        t["comment"]
                    );
                }
                _ => {
                    invalid += 1;
                    assert!(
                        got.is_err(),
                        "tc {id} ({}) invalid but accepted",
                        t["comment"]
                    );
                }
            }
        }
    }
    assert_eq!((valid, invalid, unsupported, pinned), (42, 353, 2, 4));
}

#[test]
fn gateway_answers_401_to_every_invalid_vector() {
    let v = vectors();
    let rec = Upstream::recording("rec");
    let mut auth = String::new();
    let mut routes = String::new();
    let mut cases = Vec::new();
    for (i, g) in v["testGroups"].as_array().unwrap().iter().enumerate() {
        let doc = jwks(group_key(g));
        let file = write_temp(&doc, "json");
        let algs: Vec<String> = ALL.split(',').map(|a| format!("\"{a}\"")).collect();
        auth.push_str(&format!(
            "[[auth]]\nname = \"g{i}\"\ntype = \"jwt\"\nalgorithms = [{}]\njwks_file = \"{}\"\n\n",
            algs.join(", "),
            file.display()
        ));
        // a group whose only key is unusable (encryption keys) has no keys: give it a dummy
        // secret source so the policy is valid; the vectors still must fail
        let (set, _) = KeySet::from_jwks(doc.as_bytes()).unwrap();
        if set.keys.is_empty() {
            std::env::set_var("CG_TEST_VECTOR_DUMMY", "unrelated-dummy-secret");
            auth.push_str("secret_env = \"CG_TEST_VECTOR_DUMMY\"\n\n");
        }
        routes.push_str(&route_toml(
            &format!("g{i}"),
            "u",
            &format!("path = \"/g{i}\"\nauth = \"g{i}\""),
        ));
        for t in g["tests"].as_array().unwrap() {
            let tc = t["tcId"].as_u64().unwrap();
            if t["result"] == "invalid" && !IDENTICAL_TO_VALID.contains(&tc) {
                cases.push((i, t["tcId"].clone(), token_text(t)));
            }
        }
    }
    let cfg = config("", &(auth + &upstream_toml("u", &[rec.addr], "") + &routes));
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        let mut c = Client::connect(gw.addr);
        for (g, id, tok) in &cases {
            // tokens with characters a header cannot carry are refused by the parser (400)
            let ok_header = tok.bytes().all(|b| (0x21..0x7f).contains(&b));
            let auth = format!("Bearer {tok}");
            let raw = req(
                "GET",
                &format!("/g{g}"),
                "v.test",
                &[("Authorization", &auth)],
                b"",
            );
            if !ok_header {
                let r = Client::connect(gw.addr).request(&raw);
                assert!(
                    r.status == 400 || r.status == 401,
                    "[{d}] tc {id}: {}",
                    r.status
                );
                continue;
            }
            let r = c.request(&raw);
            assert_eq!(r.status, 401, "[{d}] tc {id}: {}", r.body_str());
        }
        assert_eq!(
            rec.request_count(),
            0,
            "[{d}] an invalid token reached the upstream"
        );
    });
}
