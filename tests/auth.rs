//! Edge authentication through real sockets, under both drivers: JWT policies (HS256 from an env
//! secret, RS256/ES256/EdDSA from PEM files) with exp/nbf/leeway/iss/aud checks, 401s carrying
//! `WWW-Authenticate` and never reaching the upstream, identity headers as the upstream sees them
//! (client-sent copies stripped on every route), roles -> 403, token from a cookie or a query
//! parameter, `forward_token = false` (the credential's header, cookie or query parameter never
//! reaches the upstream), the HS/RS key-confusion attack, API keys, and RFC 6750 challenges (no
//! error code without credentials).

mod common;
use common::jwt::*;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const SECRET: &str = "s3cret-for-hs256-tests";

fn cfg(up: &Upstream) -> String {
    // SAFETY (edition 2021: safe fn): set before any gateway child is spawned; every test sets
    // the same values.
    std::env::set_var("CG_TEST_JWT_SECRET", SECRET);
    std::env::set_var("CG_TEST_API_KEY", "key-from-env-123");
    let rsa = key_path("rsa.pub").display().to_string();
    let ec = key_path("ec.pub").display().to_string();
    let ed = key_path("ed.pub").display().to_string();
    let auth = format!(
        r#"
[[auth]]
name = "hs"
type = "jwt"
algorithms = ["HS256"]
secret_env = "CG_TEST_JWT_SECRET"
leeway = "30s"

[[auth]]
name = "rs"
type = "jwt"
algorithms = ["RS256", "ES256", "EdDSA"]
public_key_files = ["{rsa}", "{ec}", "{ed}"]
issuer = "https://idp.test"
audience = ["api"]
claims_to_headers = {{ sub = "X-User-Id", roles = "X-User-Roles", email = "X-User-Email" }}

[[auth]]
name = "mixed"
type = "jwt"
algorithms = ["HS256", "RS256"]
public_key_files = ["{rsa}"]

[[auth]]
name = "sources"
type = "jwt"
algorithms = ["HS256"]
secret_env = "CG_TEST_JWT_SECRET"
token_cookie = "session"
token_query = "access_token"
forward_token = false

[[auth]]
name = "keys"
type = "api_key"
keys = [
  {{ key_env = "CG_TEST_API_KEY", consumer = "acme", tenant = "t-acme", tier = "premium" }},
  {{ sha256 = "{}", consumer = "beta", tier = "free" }},
]
token_query = "api_key"

[[auth]]
name = "hidden_keys"
type = "api_key"
keys = [{{ key_env = "CG_TEST_API_KEY", consumer = "acme" }}]
token_query = "api_key"
forward_token = false
"#,
        hex(&coregate::auth::apikey::digest(b"literal-key-456"))
    );
    let routes = [
        route_toml("hs", "u", "path_prefix = \"/hs\"\nauth = \"hs\""),
        route_toml("rs", "u", "path_prefix = \"/rs\"\nauth = \"rs\""),
        route_toml(
            "admin",
            "u",
            "path_prefix = \"/admin\"\nauth = \"rs\"\nrequire_roles = [\"admin\"]",
        ),
        route_toml("mixed", "u", "path_prefix = \"/mixed\"\nauth = \"mixed\""),
        route_toml("sources", "u", "path_prefix = \"/src\"\nauth = \"sources\""),
        route_toml("keys", "u", "path_prefix = \"/keys\"\nauth = \"keys\""),
        route_toml(
            "hidden_keys",
            "u",
            "path_prefix = \"/hkeys\"\nauth = \"hidden_keys\"",
        ),
        route_toml("open", "u", "path_prefix = \"/open\""),
    ]
    .concat();
    config("", &(auth + &upstream_toml("u", &[up.addr], "") + &routes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(gw.addr).request(&req("GET", path, "api.test", headers, b""))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// 401 with the reason in WWW-Authenticate and the JSON body.
fn assert_401(r: &Response, reason: &str, ctx: &str) {
    assert_eq!(r.status, 401, "{ctx}: {}", r.body_str());
    let wa = r.header("www-authenticate").unwrap_or_default();
    assert!(wa.contains("error=\"invalid_token\""), "{ctx}: {wa}");
    assert!(
        wa.contains(&format!("error_description=\"{reason}\"")),
        "{ctx}: {wa}"
    );
    assert_eq!(r.json()["error"], reason, "{ctx}");
}

#[test]
fn jwt_policies_seen_by_client_and_upstream() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        let before = rec.request_count();
        let hs = mint(
            Algorithm::HS256,
            SECRET,
            None,
            claims("alice", json!({"roles": ["dev"]})),
        );
        let r = get(
            &gw,
            "/hs/a",
            &[
                ("Authorization", &bearer(&hs)),
                ("X-User-Id", "mallory"),
                ("x-consumer-id", "forged"),
            ],
        );
        assert_eq!(r.status, 200, "[{d}] {}", r.body_str());
        let seen = rec.wait_requests(before + 1, secs(5)).pop().unwrap();
        assert_eq!(
            seen.header_all("x-user-id"),
            vec!["alice"],
            "[{d}] forged id stripped"
        );
        assert_eq!(seen.header("x-user-roles").as_deref(), Some("dev"), "[{d}]");
        assert!(!seen.has("x-consumer-id"), "[{d}] forged consumer stripped");
        assert_eq!(
            seen.header("authorization"),
            Some(bearer(&hs)),
            "[{d}] forwarded"
        );

        // identity headers are stripped on routes without auth too
        let r = get(
            &gw,
            "/open",
            &[("X-User-Id", "mallory"), ("X-Tenant-Id", "t")],
        );
        assert_eq!(r.status, 200, "[{d}]");
        let seen = rec.wait_requests(before + 2, secs(5)).pop().unwrap();
        assert!(!seen.has("x-user-id") && !seen.has("x-tenant-id"), "[{d}]");

        // 401s never reach the upstream
        let count = rec.request_count();
        assert_401_no_credentials(&get(&gw, "/hs/a", &[]), "Bearer", d);
        let old = mint(
            Algorithm::HS256,
            SECRET,
            None,
            json!({"sub": "a", "exp": now() - 31}),
        );
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", &bearer(&old))]),
            "token expired",
            d,
        );
        let grace = mint(
            Algorithm::HS256,
            SECRET,
            None,
            json!({"sub": "a", "exp": now() - 5}),
        );
        assert_eq!(
            get(&gw, "/hs/a", &[("Authorization", &bearer(&grace))]).status,
            200,
            "[{d}] leeway"
        );
        let early = mint(
            Algorithm::HS256,
            SECRET,
            None,
            claims("a", json!({"nbf": now() + 300})),
        );
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", &bearer(&early))]),
            "token not yet valid",
            d,
        );
        let noexp = mint(Algorithm::HS256, SECRET, None, json!({"sub": "a"}));
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", &bearer(&noexp))]),
            "required claim missing",
            d,
        );
        let wrong = mint(
            Algorithm::HS256,
            "other-secret",
            None,
            claims("a", json!({})),
        );
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", &bearer(&wrong))]),
            "invalid signature",
            d,
        );
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", "Bearer a.b")]),
            "malformed token",
            d,
        );
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(&claims("a", json!({})).to_string())
        );
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", &bearer(&none))]),
            "algorithm not allowed",
            d,
        );
        assert_eq!(
            rec.request_count(),
            count + 1,
            "[{d}] only the leeway request went through"
        );
    });
}

/// 401 for a request without credentials: a bare challenge, no error code (RFC 6750 §3.1).
fn assert_401_no_credentials(r: &Response, scheme: &str, ctx: &str) {
    assert_eq!(r.status, 401, "{ctx}: {}", r.body_str());
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(format!("{scheme} realm=\"coregate\"").as_str()),
        "{ctx}"
    );
    assert_eq!(r.json()["error"], "missing credentials", "{ctx}");
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn asymmetric_keys_issuer_audience_roles() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        let good = |extra: serde_json::Value| {
            let mut c = json!({"iss": "https://idp.test", "aud": "api", "email": "b@x.test"});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            claims("bob", c)
        };
        for (alg, key) in [
            (Algorithm::RS256, "rsa"),
            (Algorithm::ES256, "ec"),
            (Algorithm::EdDSA, "ed"),
        ] {
            let t = mint(alg, key, None, good(json!({})));
            let r = get(&gw, "/rs/x", &[("Authorization", &bearer(&t))]);
            assert_eq!(r.status, 200, "[{d}] {alg:?}: {}", r.body_str());
            let seen = rec.requests().pop().unwrap();
            assert_eq!(
                seen.header("x-user-email").as_deref(),
                Some("b@x.test"),
                "[{d}]"
            );
        }
        let other = mint(Algorithm::RS256, "rsa2", None, good(json!({})));
        assert_401(
            &get(&gw, "/rs/x", &[("Authorization", &bearer(&other))]),
            "invalid signature",
            d,
        );
        let t = mint(
            Algorithm::RS256,
            "rsa",
            None,
            claims("bob", json!({"iss": "https://evil.test", "aud": "api"})),
        );
        assert_401(
            &get(&gw, "/rs/x", &[("Authorization", &bearer(&t))]),
            "issuer not accepted",
            d,
        );
        let t = mint(
            Algorithm::RS256,
            "rsa",
            None,
            claims("bob", json!({"iss": "https://idp.test", "aud": ["web"]})),
        );
        assert_401(
            &get(&gw, "/rs/x", &[("Authorization", &bearer(&t))]),
            "audience not accepted",
            d,
        );
        // HS256 is not allowed on this policy at all
        let hs = mint(Algorithm::HS256, SECRET, None, good(json!({})));
        assert_401(
            &get(&gw, "/rs/x", &[("Authorization", &bearer(&hs))]),
            "algorithm not allowed",
            d,
        );

        // roles: 403 without admin, 200 with it
        let dev = mint(
            Algorithm::RS256,
            "rsa",
            None,
            good(json!({"roles": ["dev"]})),
        );
        let r = get(&gw, "/admin", &[("Authorization", &bearer(&dev))]);
        assert_eq!(r.status, 403, "[{d}] {}", r.body_str());
        assert!(r
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("insufficient_scope"));
        let admin = mint(
            Algorithm::RS256,
            "rsa",
            None,
            good(json!({"roles": ["dev", "admin"]})),
        );
        assert_eq!(
            get(&gw, "/admin", &[("Authorization", &bearer(&admin))]).status,
            200,
            "[{d}]"
        );
    });
}

#[test]
fn key_confusion_cookie_query_and_stripped_token() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        // HS256 signed with the RSA public key's PEM as the secret: the classic confusion attack
        let pem = String::from_utf8(key_bytes("rsa.pub")).unwrap();
        let t = mint(Algorithm::HS256, &pem, None, claims("eve", json!({})));
        assert_401(
            &get(&gw, "/mixed", &[("Authorization", &bearer(&t))]),
            "unknown signing key",
            d,
        );
        let ok = mint(Algorithm::RS256, "rsa", None, claims("eve", json!({})));
        assert_eq!(
            get(&gw, "/mixed", &[("Authorization", &bearer(&ok))]).status,
            200,
            "[{d}]"
        );

        let t = mint(Algorithm::HS256, SECRET, None, claims("carol", json!({})));
        let cookie = format!("theme=dark; session={t}");
        let r = get(&gw, "/src", &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "[{d}] cookie: {}", r.body_str());
        let r = get(&gw, &format!("/src?x=1&access_token={t}"), &[]);
        assert_eq!(r.status, 200, "[{d}] query");
        let r = get(&gw, "/src", &[("Authorization", &bearer(&t))]);
        assert_eq!(r.status, 200, "[{d}] header");
        let seen = rec.requests().pop().unwrap();
        assert!(
            !seen.has("authorization"),
            "[{d}] forward_token = false strips it"
        );
        assert_eq!(seen.header("x-user-id").as_deref(), Some("carol"));
    });
}

#[test]
fn api_keys_map_to_consumers() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        let r = get(
            &gw,
            "/keys",
            &[("X-API-Key", "key-from-env-123"), ("X-Tenant-Id", "forged")],
        );
        assert_eq!(r.status, 200, "[{d}] {}", r.body_str());
        let seen = rec.requests().pop().unwrap();
        assert_eq!(seen.header("x-consumer-id").as_deref(), Some("acme"));
        assert_eq!(seen.header_all("x-tenant-id"), vec!["t-acme"], "[{d}]");
        assert_eq!(seen.header("x-consumer-tier").as_deref(), Some("premium"));
        let r = get(&gw, "/keys?api_key=literal-key-456", &[]);
        assert_eq!(r.status, 200, "[{d}] query");
        let seen = rec.requests().pop().unwrap();
        assert_eq!(seen.header("x-consumer-id").as_deref(), Some("beta"));
        assert!(!seen.has("x-tenant-id"));
        let r = get(&gw, "/keys", &[("X-API-Key", "nope")]);
        assert_eq!(r.status, 401, "[{d}]");
        let wa = r.header("www-authenticate").unwrap_or_default();
        assert!(
            wa.starts_with("ApiKey") && wa.contains("unknown API key"),
            "[{d}] {wa}"
        );
    });
}

#[test]
fn bad_auth_config_names_key_and_position() {
    let cfg = config(
        "",
        r#"
[[auth]]
name = "x"
type = "jwt"
algorithms = ["HS256", "none"]
secret_env = "CG_TEST_DOES_NOT_EXIST"
public_key_files = ["/nonexistent/key.pem"]

[[auth]]
name = "k"
type = "api_key"
keys = [{ sha256 = "abc" }]

[[upstream]]
name = "u"
endpoints = ["127.0.0.1:9"]

[[route]]
path = "/"
upstream = "u"
auth = "missing"
require_roles = ["admin"]
"#,
    );
    let path = write_temp(&cfg, "toml");
    let (status, _out, err) = run_cli(&["check", "--config", path.to_str().unwrap()], secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    for needle in [
        "auth[0].algorithms[1]: unsupported algorithm \"none\"",
        "auth[0].secret_env: environment variable CG_TEST_DOES_NOT_EXIST is not set",
        "auth[0].public_key_files[0]: cannot read /nonexistent/key.pem",
        "auth[1].keys[0].sha256: expected 64 hex digits",
        "auth[1].keys[0].consumer: missing",
        "route[0].auth: no auth policy named \"missing\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("CG_TEST_JWT_SECRET"), "{err}");
}

#[test]
fn unforwarded_credentials_leave_cookie_and_query() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        let t = mint(Algorithm::HS256, SECRET, None, claims("carol", json!({})));
        let last = || rec.requests().pop().unwrap();

        // the session cookie is cut out; the others stay, in order
        let cookie = format!("theme=dark; session={t}; lang=en");
        let r = get(&gw, "/src/c", &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "[{d}] {}", r.body_str());
        let seen = last();
        assert_eq!(
            seen.header_all("cookie"),
            vec!["theme=dark; lang=en"],
            "[{d}]"
        );
        assert_eq!(seen.header("x-user-id").as_deref(), Some("carol"));
        // several Cookie fields: each rewritten, one left empty is dropped
        let session = format!("session={t}");
        let r = get(
            &gw,
            "/src/c",
            &[("Cookie", &session), ("Cookie", "a=1; b=2")],
        );
        assert_eq!(r.status, 200, "[{d}]");
        assert_eq!(last().header_all("cookie"), vec!["a=1; b=2"], "[{d}]");
        // nothing left: no Cookie header at all
        assert_eq!(get(&gw, "/src/c", &[("Cookie", &session)]).status, 200);
        assert!(!last().has("cookie"), "[{d}] empty Cookie dropped");

        // the query parameter goes (every occurrence); the rest of the query is kept byte for byte
        let path = format!("/src/q?x=1&access_token={t}&y=%20z+w&&access_token=again");
        assert_eq!(get(&gw, &path, &[]).status, 200, "[{d}] query");
        assert_eq!(last().target, "/src/q?x=1&y=%20z+w&", "[{d}]");
        assert_eq!(
            get(&gw, &format!("/src/q?access_token={t}"), &[]).status,
            200
        );
        assert_eq!(last().target, "/src/q", "[{d}] empty query dropped");
        // a token from the header: cookies and query of the request are left alone
        let r = get(
            &gw,
            "/src/h?access_token=x",
            &[("Authorization", &bearer(&t)), ("Cookie", "session=x")],
        );
        assert_eq!(r.status, 200, "[{d}]");
        let seen = last();
        assert!(!seen.has("authorization"), "[{d}]");
        assert_eq!(
            seen.target, "/src/h",
            "[{d}] credential parameter still removed"
        );
        assert!(!seen.has("cookie"), "[{d}] credential cookie still removed");

        // API keys read from the query: removed when not forwarded, kept when forwarded
        let r = get(&gw, "/hkeys/l?api_key=key-from-env-123&page=2", &[]);
        assert_eq!(r.status, 200, "[{d}] {}", r.body_str());
        let seen = last();
        assert_eq!(seen.target, "/hkeys/l?page=2", "[{d}]");
        assert_eq!(seen.header("x-consumer-id").as_deref(), Some("acme"));
        assert_eq!(
            get(&gw, "/keys/l?api_key=literal-key-456&page=2", &[]).status,
            200
        );
        assert_eq!(
            last().target,
            "/keys/l?api_key=literal-key-456&page=2",
            "[{d}]"
        );
        // routes without auth never touch a query or cookie of that name
        let r = get(&gw, "/open?access_token=1", &[("Cookie", "session=1")]);
        assert_eq!(r.status, 200, "[{d}]");
        let seen = last();
        assert_eq!(seen.target, "/open?access_token=1");
        assert_eq!(seen.header("cookie").as_deref(), Some("session=1"));
    });
}

#[test]
fn challenges_carry_an_error_code_only_for_presented_credentials() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        assert_401_no_credentials(&get(&gw, "/hs/a", &[]), "Bearer", d);
        // another scheme is no Bearer credential either
        assert_401_no_credentials(
            &get(&gw, "/hs/a", &[("Authorization", "Basic dXNlcjpwdw==")]),
            "Bearer",
            d,
        );
        assert_401_no_credentials(&get(&gw, "/keys", &[]), "ApiKey", d);
        // a credential was presented: error="invalid_token" with the reason
        assert_401(
            &get(&gw, "/hs/a", &[("Authorization", "Bearer a.b")]),
            "malformed token",
            d,
        );
        let r = get(&gw, "/keys", &[("X-API-Key", "nope")]);
        let wa = r.header("www-authenticate").unwrap_or_default();
        assert_eq!(
            wa, "ApiKey realm=\"coregate\", error=\"invalid_token\", error_description=\"unknown API key\"",
            "[{d}]"
        );
    });
}

#[test]
fn tokens_with_a_kid_verify_against_keys_without_one() {
    let rec = Upstream::recording("rec");
    let cfg = cfg(&rec);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        // secret_env and public_key_files carry no kid; identity providers put one in every token
        let hs = mint(
            Algorithm::HS256,
            SECRET,
            Some("idp-2024"),
            claims("kim", json!({})),
        );
        let r = get(&gw, "/hs/k", &[("Authorization", &bearer(&hs))]);
        assert_eq!(r.status, 200, "[{d}] HS256 with kid: {}", r.body_str());
        assert_eq!(
            rec.requests().pop().unwrap().header("x-user-id").as_deref(),
            Some("kim")
        );
        let good = json!({"iss": "https://idp.test", "aud": "api"});
        for (alg, key) in [
            (Algorithm::RS256, "rsa"),
            (Algorithm::ES256, "ec"),
            (Algorithm::EdDSA, "ed"),
        ] {
            let t = mint(alg, key, Some("k-7"), claims("kim", good.clone()));
            let r = get(&gw, "/rs/k", &[("Authorization", &bearer(&t))]);
            assert_eq!(r.status, 200, "[{d}] {alg:?} with kid: {}", r.body_str());
        }
        // still bound by family and signature: a wrong key with a kid fails as before
        let other = mint(Algorithm::RS256, "rsa2", Some("k-7"), claims("kim", good));
        assert_401(
            &get(&gw, "/rs/k", &[("Authorization", &bearer(&other))]),
            "invalid signature",
            d,
        );
        // the confusion attack with a kid: HS256 signed with the RSA public key finds no HMAC key
        let pem = String::from_utf8(key_bytes("rsa.pub")).unwrap();
        let t = mint(
            Algorithm::HS256,
            &pem,
            Some("k-7"),
            claims("eve", json!({})),
        );
        assert_401(
            &get(&gw, "/mixed", &[("Authorization", &bearer(&t))]),
            "unknown signing key",
            d,
        );
    });
}
