//! Gateway-scoped rate limits and quotas through real sockets, under both drivers, with two
//! workers sharing each budget:
//! - a bucket admits exactly its burst, then 429 with the JSON error, `Retry-After` and the IETF
//!   `RateLimit-Policy` / `RateLimit` fields; the upstream never sees refused requests;
//! - route `cost` overrides, composite keys (separate buckets per key), tiers from API-key
//!   consumers (and the "default" tier), request quotas and byte quotas (`qu="content-bytes"`);
//! - a quota window rolls over at the UTC minute;
//! - accuracy: load at well over the limit on many connections across two workers admits
//!   r·t + B within a generous bound (the exact figure is measured by
//!   `benches/e2e/ratelimit_accuracy.sh`);
//! - metrics count allowed and limited requests per policy.

mod common;
use common::*;

use std::time::Duration;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn gw_config(up: &Upstream, limits: &str, routes: &str) -> String {
    config(
        "",
        &format!("{}{limits}\n{routes}", upstream_toml("u", &[up.addr], "")),
    )
}

fn send(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(gw.addr).request(&req("GET", path, "rl.test", headers, b""))
}

/// The integer parameter `p` of the item named `name` in a RateLimit field.
fn param(field: &str, name: &str, p: &str) -> Option<u64> {
    let item = field
        .split(", ")
        .find(|i| i.starts_with(&format!("\"{name}\"")))?;
    item.split(';')
        .find_map(|kv| kv.strip_prefix(&format!("{p}=")))
        .and_then(|v| v.parse().ok())
}

#[test]
fn bucket_admits_its_burst_then_429_with_headers() {
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = gw_config(
        &up,
        "[[rate_limit]]\nname = \"per_ip\"\nkey = \"client_ip\"\nrate = \"2/min\"\nburst = 3\n",
        &route_toml("r", "u", "rate_limits = [\"per_ip\"]"),
    );
    for_each_driver(|d| {
        let before = up.requests().len();
        let gw = Gateway::start(&cfg, d);
        for i in 0..3u64 {
            // fresh connections: the two workers share the budget
            let r = send(&gw, "/a", &[]);
            assert_eq!(r.status, 200, "[{d}] request {i}");
            let policy = r.header("ratelimit-policy").expect("policy field");
            assert_eq!(
                policy, "\"per_ip\";q=3;w=90",
                "[{d}] burst 3, refilled in 90 s"
            );
            let state = r.header("ratelimit").expect("ratelimit field");
            assert_eq!(param(&state, "per_ip", "r"), Some(2 - i), "[{d}] {state}");
            let t = param(&state, "per_ip", "t").unwrap();
            assert!(
                // (a few seconds of refill may pass on a busy machine)
                (30 * (i + 1) - 5..=30 * (i + 1)).contains(&t),
                "[{d}] {state}"
            );
            assert!(!r.has("retry-after"));
        }
        let r = send(&gw, "/a", &[]);
        assert_error_json(&r, 429);
        assert_eq!(r.json()["error"], "rate limit exceeded");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(
            (28..=30).contains(&retry),
            "[{d}] one token in 30 s: {retry}"
        );
        let state = r.header("ratelimit").unwrap();
        assert_eq!(param(&state, "per_ip", "r"), Some(0));
        assert!(r.has("ratelimit-policy"));
        assert_eq!(
            up.requests().len() - before,
            3,
            "[{d}] refused never reach upstream"
        );
        // refusals are cheap to repeat and stay refused
        for _ in 0..5 {
            assert_eq!(send(&gw, "/a", &[]).status, 429);
        }
        let m = gw.metrics();
        assert!(
            m.contains(
                "coregate_ratelimit_allowed_total{kind=\"rate_limit\",policy=\"per_ip\"} 3\n"
            ),
            "{m}"
        );
        assert!(m.contains(
            "coregate_ratelimit_limited_total{kind=\"rate_limit\",policy=\"per_ip\"} 6\n"
        ));
    });
}

#[test]
fn keys_cost_and_keep_alive() {
    let up = Upstream::fixed("u", 200, "ok");
    let limits = "[[rate_limit]]\nname = \"per_app\"\nkey = [\"header:x-app\", \"route\"]\n\
                  rate = \"1/h\"\nburst = 5\n";
    let routes = format!(
        "{}{}",
        route_toml(
            "cheap",
            "u",
            "path_prefix = \"/cheap\"\nrate_limits = [\"per_app\"]"
        ),
        route_toml(
            "dear",
            "u",
            "path_prefix = \"/dear\"\nrate_limits = [\"per_app\"]\ncost = 2"
        ),
    );
    let cfg = gw_config(&up, limits, &routes);
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        // cost 2 against burst 5: two requests, then 1 token is not enough
        let mut c = Client::connect(gw.addr);
        for i in 0..2 {
            let r = c.request(&req("GET", "/dear", "h", &[("x-app", "a")], b""));
            assert_eq!(r.status, 200, "[{d}] dear {i}");
        }
        let r = c.request(&req("GET", "/dear", "h", &[("x-app", "a")], b""));
        assert_eq!(r.status, 429, "[{d}] one token left, cost 2");
        // the 429 kept the connection; the route is part of the key, so /cheap has its own bucket
        let r = c.request(&req("GET", "/cheap", "h", &[("x-app", "a")], b""));
        assert_eq!(r.status, 200, "[{d}] other route, other bucket");
        // other header value, other bucket; a missing header is one shared (empty) key
        for app in ["b", "c"] {
            let r = send(&gw, "/dear", &[("x-app", app)]);
            assert_eq!(r.status, 200, "[{d}] app {app}");
        }
        for i in 0..2 {
            assert_eq!(send(&gw, "/dear", &[]).status, 200, "[{d}] no header {i}");
        }
        assert_eq!(send(&gw, "/dear", &[]).status, 429);
    });
}

#[test]
fn tiers_follow_the_consumer() {
    let up = Upstream::fixed("u", 200, "ok");
    let keys = format!(
        "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\nkeys = [\n\
         {{ sha256 = \"{}\", consumer = \"alice\", tier = \"free\" }},\n\
         {{ sha256 = \"{}\", consumer = \"bob\", tier = \"free\" }},\n\
         {{ sha256 = \"{}\", consumer = \"carol\", tier = \"gold\" }},\n\
         {{ sha256 = \"{}\", consumer = \"dave\" }},\n]\n",
        hex(&coregate::auth::apikey::digest(b"key-alice")),
        hex(&coregate::auth::apikey::digest(b"key-bob")),
        hex(&coregate::auth::apikey::digest(b"key-carol")),
        hex(&coregate::auth::apikey::digest(b"key-dave")),
    );
    let limits = format!(
        "{keys}\
         [[rate_limit]]\nname = \"free_rate\"\nkey = \"consumer\"\nrate = \"1/h\"\nburst = 2\n\
         [[rate_limit]]\nname = \"gold_rate\"\nkey = \"consumer\"\nrate = \"1/h\"\nburst = 6\n\
         [[quota]]\nname = \"default_daily\"\nkey = \"consumer\"\nlimit = \"1/day\"\n\
         [tier.free]\nrate_limits = [\"free_rate\"]\n\
         [tier.gold]\nrate_limits = [\"gold_rate\"]\n\
         [tier.default]\nquotas = [\"default_daily\"]\n"
    );
    let cfg = gw_config(&up, &limits, &route_toml("r", "u", "auth = \"keys\""));
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        let call = |key: &str| send(&gw, "/x", &[("x-api-key", key)]);
        for who in ["key-alice", "key-bob"] {
            for i in 0..2 {
                let r = call(who);
                assert_eq!(r.status, 200, "[{d}] {who} {i}");
                assert!(r
                    .header("ratelimit-policy")
                    .unwrap()
                    .starts_with("\"free_rate\";q=2"));
            }
            assert_eq!(call(who).status, 429, "[{d}] {who}: own bucket, spent");
        }
        for i in 0..6 {
            assert_eq!(call("key-carol").status, 200, "[{d}] gold {i}");
        }
        assert_eq!(call("key-carol").status, 429);
        // no tier: the "default" tier's quota
        let r = call("key-dave");
        assert_eq!(r.status, 200, "[{d}]");
        let policy = r.header("ratelimit-policy").unwrap();
        assert_eq!(policy, "\"default_daily\";q=1;w=86400");
        let r = call("key-dave");
        assert_error_json(&r, 429);
        assert_eq!(r.json()["error"], "quota exceeded");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(retry <= 86_400, "until the UTC day ends");
        assert_eq!(call("nope").status, 401, "auth still comes first");
    });
}

/// `[tier.default]` is the tier of every caller without one, anonymous callers (routes without
/// auth) included; a route without limits of its own gets it too.
#[test]
fn default_tier_applies_to_anonymous_callers() {
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = gw_config(
        &up,
        "[[rate_limit]]\nname = \"anon\"\nkey = \"client_ip\"\nrate = \"1/h\"\nburst = 2\n\
         [tier.default]\nrate_limits = [\"anon\"]\n",
        &route_toml("public", "u", "path_prefix = \"/\""),
    );
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        for i in 0..2 {
            let r = send(&gw, "/p", &[]);
            assert_eq!(r.status, 200, "[{d}] {i}");
            assert_eq!(
                r.header("ratelimit-policy").as_deref(),
                Some("\"anon\";q=2;w=7200"),
                "[{d}] the default tier's policy"
            );
        }
        let r = send(&gw, "/p", &[]);
        assert_error_json(&r, 429);
        assert_eq!(r.json()["error"], "rate limit exceeded", "[{d}]");
    });
}

#[test]
fn byte_quota_counts_response_bodies() {
    let body = "x".repeat(1500);
    let up = Upstream::fixed("u", 200, &body);
    let cfg = gw_config(
        &up,
        "[[quota]]\nname = \"bytes\"\nkey = \"client_ip\"\nlimit = \"2KB/hour\"\n",
        &route_toml("r", "u", "quotas = [\"bytes\"]"),
    );
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        // one keep-alive connection: each response is charged before the next request is read
        let mut c = Client::connect(gw.addr);
        let r = c.get("/f", "h");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("ratelimit-policy").unwrap(),
            "\"bytes\";q=2000;w=3600;qu=\"content-bytes\""
        );
        let r = c.get("/f", "h");
        assert_eq!(
            r.status, 200,
            "[{d}] 1500 of 2000 bytes used: still admitted"
        );
        let state = r.header("ratelimit").unwrap();
        assert_eq!(param(&state, "bytes", "r"), Some(500), "[{d}] {state}");
        let r = c.get("/f", "h");
        assert_eq!(r.status, 429, "[{d}] 3000 bytes used");
        // another connection (maybe the other worker) sees the same count
        assert_eq!(send(&gw, "/f", &[]).status, 429);
    });
}

/// Seconds until the next UTC minute starts.
fn secs_to_next_minute() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    60 - now % 60
}

#[test]
fn quota_window_rolls_over_at_the_utc_minute() {
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = gw_config(
        &up,
        "[[quota]]\nname = \"per_min\"\nkey = \"global\"\nlimit = \"3/minute\"\n",
        &route_toml("r", "u", "quotas = [\"per_min\"]"),
    );
    // both drivers exhaust their window, then one wait covers the rollover of both; the bursts
    // start only with 10 s or more of the minute left (checked once the gateways are up: a
    // start on a busy machine must not eat the margin)
    let mut gws = Vec::new();
    for_each_driver(|d| gws.push((d.to_string(), Gateway::start(&cfg, d))));
    if secs_to_next_minute() < 10 {
        std::thread::sleep(Duration::from_secs(secs_to_next_minute()));
    }
    let mut windows = Vec::new();
    for (d, gw) in &gws {
        let mut first = None;
        for i in 0..3 {
            let r = send(gw, "/q", &[]);
            assert_eq!(r.status, 200, "[{d}] {i}");
            first.get_or_insert(r);
        }
        let first = first.unwrap();
        assert_eq!(
            first.header("ratelimit-policy").unwrap(),
            "\"per_min\";q=3;w=60"
        );
        let t = param(&first.header("ratelimit").unwrap(), "per_min", "t").unwrap();
        assert!(
            (1..=60).contains(&t),
            "[{d}] reset at the minute's end: {t}"
        );
        let r = send(gw, "/q", &[]);
        assert_eq!(r.status, 429, "[{d}]");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        windows.push(retry);
        assert!(retry <= 60);
    }
    let within = Duration::from_secs(secs_to_next_minute() + 5);
    for (d, gw) in &gws {
        let mut last = 0;
        let ok = wait_until(deadline(within), || {
            last = send(gw, "/q", &[]).status;
            last == 200
        });
        assert!(ok, "[{d}] new window never opened (last {last})");
        assert_eq!(
            send(gw, "/q", &[]).status,
            200,
            "[{d}] fresh window: 3 again"
        );
    }
}

#[test]
fn two_workers_admit_the_configured_rate() {
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = gw_config(
        &up,
        "[[rate_limit]]\nname = \"global\"\nkey = \"global\"\nrate = \"300/s\"\nburst = 150\n",
        &route_toml("r", "u", "rate_limits = [\"global\"]"),
    );
    for_each_driver(|d| {
        let gw = Gateway::start(&cfg, d);
        // burst: half a second of rate, so a scheduling stall on a busy CI box (tokens that
        // overflow a full bucket are lost) does not show as under-admission
        let Flood { ok, limited, secs } = flood(&[gw.addr], 16, "/", Duration::from_secs(3));
        let expected = 300.0 * secs + 150.0;
        let err = (ok as f64 - expected) / expected;
        eprintln!(
            "[{d}] admitted {ok} refused {limited} in {secs:.2} s: expected {expected:.0}, error {:+.2}%",
            err * 100.0
        );
        assert!(limited > 2 * ok, "[{d}] the load was not over 3x the limit");
        // generous bound for a 2-core CI box; benches/e2e/ratelimit_accuracy.sh has the exact figure
        assert!(
            err.abs() < 0.10,
            "[{d}] admitted {ok}, expected {expected:.0}"
        );
        assert!(
            ok as f64 <= expected + 2.0 * 150.0 * 1.25,
            "[{d}] never above r·t + 1.25·B"
        );
    });
}
