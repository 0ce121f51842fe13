//! Keys and tokens that live outside the config, through real servers, under both drivers:
//! - JWKS over HTTP (a local server whose document changes): fetched at start, an unknown `kid`
//!   triggers an early (rate-limited) refresh that the request waits for (many requests, one
//!   fetch), a failed refresh keeps the last good set, a removed key stops verifying new tokens, a
//!   key server down at start answers 503 until its keys load.
//! - Phantom tokens in a real Redis: the opaque token is exchanged for the JWT sent upstream in
//!   `Authorization`, identity headers come from its claims, deleting the key revokes it within the
//!   cache TTL, Redis down -> 503 for uncached tokens while cached ones keep working.
//! - Phantom tokens through an RFC 7662 introspection endpoint (client credentials, form body).

// The mock servers share state with the test thread through Mutex; the lint guards the
// gateway's request path, not test code.
#![allow(clippy::disallowed_types)]

mod common;
use common::jwt::*;
use common::redis::RedisServer;
use common::*;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

fn get(gw: &Gateway, path: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    Client::connect(gw.addr).request(&req(
        "GET",
        path,
        "t.test",
        &[("Authorization", &auth)],
        b"",
    ))
}

/// Polls until `path` with `token` answers `status` (or the deadline passes).
fn eventually(gw: &Gateway, path: &str, token: &str, status: u16, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    let mut last = 0;
    wait_until(deadline, || {
        last = get(gw, path, token).status;
        last == status
    });
    last
}

#[allow(clippy::disallowed_types)]
type Doc = Arc<Mutex<(u16, String)>>;

fn jwks_server(doc: &Doc) -> Upstream {
    let doc = doc.clone();
    Upstream::start(
        "jwks",
        false,
        Arc::new(move |_r: &Recorded| {
            let (status, body) = doc.lock().unwrap().clone();
            MockResponse::new(status, body).header("content-type", "application/json")
        }),
    )
}

#[test]
fn jwks_rotation_refresh_and_failures() {
    let rec = Upstream::recording("rec");
    let doc: Doc = Arc::new(Mutex::new((200, rsa_jwks(&[("a", "rsa")]))));
    let idp = jwks_server(&doc);
    let cfg = config(
        "",
        &(format!(
            "[[auth]]\nname = \"j\"\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
             jwks_url = \"http://{}/jwks.json\"\njwks_refresh = \"1h\"\njwks_min_refresh = \"200ms\"\n\n",
            idp.addr
        ) + &upstream_toml("u", &[rec.addr], "")
            + &route_toml("r", "u", "path_prefix = \"/\"\nauth = \"j\"")),
    );
    for_each_driver(|d| {
        *doc.lock().unwrap() = (200, rsa_jwks(&[("a", "rsa")]));
        let gw = Gateway::start(&cfg, d);
        let ta = mint(Algorithm::RS256, "rsa", Some("a"), claims("u1", json!({})));
        assert_eq!(
            get(&gw, "/x", &ta).status,
            200,
            "[{d}] key from the initial fetch"
        );

        // a new key appears; the first token with its kid triggers a refresh
        *doc.lock().unwrap() = (200, rsa_jwks(&[("a", "rsa"), ("b", "rsa2")]));
        let tb = mint(Algorithm::RS256, "rsa2", Some("b"), claims("u2", json!({})));
        assert_eq!(
            eventually(&gw, "/x", &tb, 200, secs(10)),
            200,
            "[{d}] rotated in"
        );

        // the IdP fails: the last good set stays
        *doc.lock().unwrap() = (500, "oops".into());
        let tc = mint(Algorithm::RS256, "rsa", Some("c"), claims("u3", json!({})));
        assert_eq!(get(&gw, "/x", &tc).status, 401, "[{d}] unknown kid c");
        std::thread::sleep(Duration::from_millis(300)); // let the failed refresh happen
        let tb2 = mint(Algorithm::RS256, "rsa2", Some("b"), claims("u4", json!({})));
        assert_eq!(get(&gw, "/x", &tb2).status, 200, "[{d}] last good set kept");

        // key a is withdrawn: new tokens signed with it stop verifying after a refresh
        *doc.lock().unwrap() = (200, rsa_jwks(&[("b", "rsa2"), ("c", "rsa")]));
        assert_eq!(
            eventually(&gw, "/x", &tc, 200, secs(10)),
            200,
            "[{d}] kid c now known"
        );
        let ta2 = mint(Algorithm::RS256, "rsa", Some("a"), claims("u5", json!({})));
        assert_eq!(get(&gw, "/x", &ta2).status, 401, "[{d}] withdrawn kid a");
        assert!(
            idp.request_count() < 40,
            "[{d}] refreshes are rate-limited: {}",
            idp.request_count()
        );
    });
}

fn jwks_cfg(idp: &Upstream, rec: &Upstream, min_refresh: &str) -> String {
    config(
        "",
        &(format!(
            "[[auth]]\nname = \"j\"\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
             jwks_url = \"http://{}/jwks.json\"\njwks_refresh = \"1h\"\njwks_min_refresh = \"{min_refresh}\"\n\n",
            idp.addr
        ) + &upstream_toml("u", &[rec.addr], "")
            + &route_toml("r", "u", "path_prefix = \"/\"\nauth = \"j\"")),
    )
}

/// A JWKS server whose answers take `delay_ms`, so requests pile up while a fetch is in flight.
fn slow_jwks_server(doc: &Doc, delay_ms: u64) -> Upstream {
    let doc = doc.clone();
    Upstream::start(
        "jwks",
        false,
        Arc::new(move |_r: &Recorded| {
            let (status, body) = doc.lock().unwrap().clone();
            MockResponse::new(status, body)
                .header("content-type", "application/json")
                .delay_ms(delay_ms)
        }),
    )
}

#[test]
fn new_kid_waits_for_one_shared_refetch() {
    let rec = Upstream::recording("rec");
    let doc: Doc = Arc::new(Mutex::new((200, rsa_jwks(&[("a", "rsa")]))));
    let idp = slow_jwks_server(&doc, 100);
    // min_refresh 1h: the start-up fetch does not count, so exactly one early fetch is allowed
    let cfg = jwks_cfg(&idp, &rec, "1h");
    for_each_driver(|d| {
        *doc.lock().unwrap() = (200, rsa_jwks(&[("a", "rsa")]));
        let gw = Gateway::start(&cfg, d);
        let fetches = idp.request_count();
        // the IdP rotates in key b; tokens with kid b arrive at once, concurrently
        *doc.lock().unwrap() = (200, rsa_jwks(&[("a", "rsa"), ("b", "rsa2")]));
        let addr = gw.addr;
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let t = mint(
                    Algorithm::RS256,
                    "rsa2",
                    Some("b"),
                    claims(&format!("n{i}"), json!({})),
                );
                std::thread::spawn(move || {
                    let auth = format!("Bearer {t}");
                    Client::connect(addr).request(&req(
                        "GET",
                        "/x",
                        "t.test",
                        &[("Authorization", &auth)],
                        b"",
                    ))
                })
            })
            .collect();
        for c in clients {
            let r = c.join().unwrap();
            assert_eq!(r.status, 200, "[{d}] first try, no 401: {}", r.body_str());
        }
        assert_eq!(
            idp.request_count(),
            fetches + 1,
            "[{d}] one refetch for all the waiting requests"
        );
        // a kid the IdP does not have: no fetch is due (min_refresh), so no wait, a 401
        let tz = mint(Algorithm::RS256, "rsa2", Some("z"), claims("z", json!({})));
        let r = get(&gw, "/x", &tz);
        assert_eq!(r.status, 401, "[{d}]");
        assert_eq!(r.json()["error"], "unknown signing key");
        assert_eq!(idp.request_count(), fetches + 1, "[{d}] rate-limited");
    });
}

#[test]
fn jwks_down_at_start_is_unavailable_until_loaded() {
    let rec = Upstream::recording("rec");
    let doc: Doc = Arc::new(Mutex::new((503, "starting".into())));
    let idp = jwks_server(&doc);
    let cfg = jwks_cfg(&idp, &rec, "100ms");
    for_each_driver(|d| {
        *doc.lock().unwrap() = (503, "starting".into());
        let gw = Gateway::start(&cfg, d);
        let before = rec.request_count();
        let t = mint(Algorithm::RS256, "rsa", Some("a"), claims("u", json!({})));
        let r = get(&gw, "/x", &t);
        assert_eq!(
            r.status,
            503,
            "[{d}] not 401 unknown signing key: {}",
            r.body_str()
        );
        assert_eq!(r.json()["error"], "authentication backend unavailable");
        assert!(!r.has("www-authenticate"), "[{d}]");
        // a token that no key could ever accept is still a 401
        let r = get(&gw, "/x", "not-a-jwt");
        assert_eq!(r.status, 401, "[{d}]");
        assert_eq!(r.json()["error"], "malformed token");
        assert_eq!(
            rec.request_count(),
            before,
            "[{d}] nothing reached the upstream"
        );
        // the key server comes up: the next refetch loads the keys
        *doc.lock().unwrap() = (200, rsa_jwks(&[("a", "rsa")]));
        assert_eq!(
            eventually(&gw, "/x", &t, 200, secs(10)),
            200,
            "[{d}] loaded"
        );
        // once loaded, an unknown key is a 401 again (the last good set stays if it goes down)
        *doc.lock().unwrap() = (503, "down again".into());
        let other = mint(Algorithm::RS256, "rsa2", Some("q"), claims("u", json!({})));
        let r = get(&gw, "/x", &other);
        assert_eq!(r.status, 401, "[{d}] {}", r.body_str());
        assert_eq!(get(&gw, "/x", &t).status, 200, "[{d}] last good set kept");
    });
}

fn phantom_cfg(redis: &RedisServer, up: &Upstream, cache_ttl: &str) -> String {
    let rsa = key_path("rsa.pub").display().to_string();
    config(
        "",
        &(format!(
            r#"
[[auth]]
name = "idp"
type = "jwt"
algorithms = ["RS256"]
public_key_files = ["{rsa}"]

[[auth]]
name = "phantom"
type = "phantom"
redis = "{}"
key_prefix = "pt:"
verify = "idp"
cache_ttl = "{cache_ttl}"
negative_ttl = "100ms"
timeout = "500ms"
"#,
            redis.addr
        ) + &upstream_toml("u", &[up.addr], "")
            + &route_toml("r", "u", "path_prefix = \"/\"\nauth = \"phantom\"")),
    )
}

#[test]
fn phantom_tokens_in_redis() {
    let mut redis = RedisServer::start();
    let rec = Upstream::recording("rec");
    // cache_ttl 3s: the outage step below must find opaque-2 still cached after Redis is killed
    let cfg = phantom_cfg(&redis, &rec, "3s");
    for_each_driver(|d| {
        // one worker: verdict caches are per core, and the outage check needs the cached one
        let gw = Gateway::start_with_args(&cfg, d, &["--workers", "1"]);
        let jwt = mint(
            Algorithm::RS256,
            "rsa",
            None,
            claims("dora", json!({"roles": ["ops"]})),
        );
        redis.cmd(&["SET", "pt:opaque-1", &jwt]);
        let r = get(&gw, "/p", "opaque-1");
        assert_eq!(r.status, 200, "[{d}] {}", r.body_str());
        let seen = rec.requests().pop().unwrap();
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {jwt}")),
            "[{d}]"
        );
        assert_eq!(seen.header("x-user-id").as_deref(), Some("dora"));
        assert_eq!(seen.header("x-user-roles").as_deref(), Some("ops"));

        let r = get(&gw, "/p", "unknown-token");
        assert_eq!(r.status, 401, "[{d}]");
        assert!(r
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("token not active"));

        // a stored JWT that fails verification is refused
        let forged = mint(Algorithm::RS256, "rsa2", None, claims("eve", json!({})));
        redis.cmd(&["SET", "pt:forged", &forged]);
        assert_eq!(get(&gw, "/p", "forged").status, 401, "[{d}]");

        // revocation: deleting the key stops the token within the cache TTL
        redis.cmd(&["DEL", "pt:opaque-1"]);
        assert_eq!(
            eventually(&gw, "/p", "opaque-1", 401, secs(10)),
            401,
            "[{d}] revoked"
        );

        // outage: cached tokens keep working, uncached ones get 503
        redis.cmd(&["SET", "pt:opaque-2", &jwt]);
        assert_eq!(get(&gw, "/p", "opaque-2").status, 200, "[{d}]");
        redis.stop();
        assert_eq!(
            get(&gw, "/p", "opaque-2").status,
            200,
            "[{d}] cached during outage"
        );
        let r = get(&gw, "/p", "opaque-3");
        assert_eq!(r.status, 503, "[{d}] {}", r.body_str());
        assert_eq!(r.json()["error"], "authentication backend unavailable");
        gw.wait_log("auth backend unavailable");
        redis.restart();
        redis.cmd(&["SET", "pt:opaque-3", &jwt]);
        assert_eq!(
            eventually(&gw, "/p", "opaque-3", 200, secs(10)),
            200,
            "[{d}] recovered"
        );
    });
}

#[test]
fn phantom_tokens_by_introspection() {
    std::env::set_var("CG_TEST_INTROSPECT_SECRET", "cl-secret");
    let rec = Upstream::recording("rec");
    let jwt = mint(
        Algorithm::RS256,
        "rsa",
        None,
        claims("ivy", json!({"scope": "read write"})),
    );
    let jwt2 = jwt.clone();
    let expected_auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "gw:cl-secret")
    );
    #[allow(clippy::disallowed_types)]
    let down = Arc::new(Mutex::new(false));
    let down2 = down.clone();
    let idp = Upstream::start(
        "introspect",
        true,
        Arc::new(move |r: &Recorded| {
            if *down2.lock().unwrap() {
                return MockResponse::new(500, "down");
            }
            if r.method != "POST" || r.header("authorization").as_deref() != Some(&expected_auth) {
                return MockResponse::new(401, "bad client");
            }
            let body = r.body_str();
            if body.contains("token=good-token") {
                MockResponse::new(200, jwt2.clone()).header("content-type", "application/jwt")
            } else if body.contains("token=claims-only") {
                MockResponse::new(200, r#"{"active":true,"sub":"svc","scope":"read"}"#)
                    .header("content-type", "application/json")
            } else {
                MockResponse::new(200, r#"{"active":false}"#)
                    .header("content-type", "application/json")
            }
        }),
    );
    let cfg = config(
        "",
        &(format!(
            "[[auth]]\nname = \"ph\"\ntype = \"phantom\"\nintrospection_url = \"http://{}/introspect\"\n\
             client_id = \"gw\"\nclient_secret_env = \"CG_TEST_INTROSPECT_SECRET\"\ncache_ttl = \"50ms\"\n\
             negative_ttl = \"50ms\"\ntimeout = \"1s\"\n\n",
            idp.addr
        ) + &upstream_toml("u", &[rec.addr], "")
            + &route_toml("r", "u", "path_prefix = \"/\"\nauth = \"ph\"\nrequire_scopes = [\"read\"]")),
    );
    for_each_driver(|d| {
        *down.lock().unwrap() = false;
        let gw = Gateway::start(&cfg, d);
        assert_eq!(get(&gw, "/i", "good-token").status, 200, "[{d}]");
        let seen = rec.requests().pop().unwrap();
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {jwt}")),
            "[{d}]"
        );
        assert_eq!(seen.header("x-user-roles").as_deref(), Some("read,write"));
        let call = idp.requests().pop().unwrap();
        assert_eq!(
            call.header("content-type").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert!(call.body_str().contains("token_type_hint=access_token"));

        assert_eq!(get(&gw, "/i", "claims-only").status, 200, "[{d}]");
        let seen = rec.requests().pop().unwrap();
        assert!(
            !seen.has("authorization"),
            "[{d}] no JWT to forward: the opaque token is dropped"
        );
        assert_eq!(seen.header("x-user-id").as_deref(), Some("svc"));

        assert_eq!(get(&gw, "/i", "revoked").status, 401, "[{d}]");
        *down.lock().unwrap() = true;
        std::thread::sleep(Duration::from_millis(100)); // cache entries (50 ms) expire
        assert_eq!(
            get(&gw, "/i", "good-token").status,
            503,
            "[{d}] endpoint failing"
        );
    });
}
