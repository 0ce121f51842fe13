//! The aggregate target through real sockets: one request fans out to several upstreams in
//! parallel (total time near the slowest part, not the sum), documents merge byte-exact under
//! their keys or into the root, a slow optional part is cut at its timeout and reported in
//! `errors` while the rest is served, a failing required part fails the request (502, or 504 when
//! it timed out) naming the part, and part paths render from path parameters, query and headers.
//! Both drivers.

mod common;
use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

fn json(body: &str) -> MockResponse {
    MockResponse::new(200, body.to_string()).header("content-type", "application/json")
}

/// Three services: users (fast), orders (200 ms), recs (slow: 2 s, or 500 on /recs/fail).
fn services() -> (Upstream, Upstream, Upstream) {
    let users = Upstream::start(
        "users",
        false,
        Arc::new(|r: &Recorded| match r.target.as_str() {
            "/users/42" => json(r#"{ "id": 42, "name": "Ada",  "n": 12345678901234567890123 }"#),
            "/users/404" => MockResponse::new(404, "no"),
            _ => json("{}"),
        }),
    );
    let orders = Upstream::start(
        "orders",
        false,
        Arc::new(|r: &Recorded| {
            let lang = r.header("accept-language").unwrap_or_default();
            json(&format!(r#"[{{"q":"{}","lang":"{lang}"}}]"#, r.target)).delay_ms(200)
        }),
    );
    let recs = Upstream::start(
        "recs",
        false,
        Arc::new(|r: &Recorded| match r.target.as_str() {
            "/recs/fail" => MockResponse::new(500, "<html>oops</html>"),
            _ => json(r#"{"top":[1,2]}"#).delay_ms(2000),
        }),
    );
    (users, orders, recs)
}

fn gateway_config(users: &Upstream, orders: &Upstream, recs: &Upstream) -> String {
    let ups = upstream_toml("users", &[users.addr], "")
        + &upstream_toml("orders", &[orders.addr], "")
        + &upstream_toml("recs", &[recs.addr], "");
    let routes = r#"[[route]]
name = "dashboard"
path_template = "/api/dashboard/{id}"
aggregate = [
  { key = "profile", upstream = "users", path = "/users/{id}" },
  { key = "orders", upstream = "orders", path = "/orders?user={id}&page={query.page}", headers = ["accept-language"], required = false, timeout = "1s" },
  { key = "recs", upstream = "recs", path = "/recs/{id}", required = false, timeout = "300ms" },
]

[[route]]
name = "strict"
path_template = "/api/strict/{id}"
aggregate_timeout = "400ms"
aggregate = [
  { key = "profile", upstream = "users", path = "/users/{id}" },
  { key = "recs", upstream = "recs", path = "/recs/{id}" },
]

[[route]]
name = "feed"
path_template = "/api/feed/{id}"
aggregate = [
  { key = "mine", upstream = "orders", path = "/orders?user={id}", append = "items" },
  { key = "profile", upstream = "users", path = "/users/{id}", append = "items", cache_ttl = "60s" },
]

[[route]]
name = "flat"
path_template = "/api/flat/{id}"
aggregate = [
  { key = "profile", upstream = "users", path = "/users/{id}", merge = "root" },
  { key = "orders", upstream = "orders", path = "/orders?user={id}" },
]
"#;
    config("", &(ups + routes))
}

#[test]
fn parts_run_in_parallel_and_merge() {
    let (users, orders, recs) = services();
    let cfg = gateway_config(&users, &orders, &recs);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let t = Instant::now();
        let r = c.request(&req(
            "GET",
            "/api/dashboard/42?page=2",
            "a.test",
            &[("accept-language", "fr")],
            b"",
        ));
        let took = t.elapsed();
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        // byte-exact: each part's document as its upstream wrote it
        assert_eq!(
            r.body_str(),
            r#"{"profile":{ "id": 42, "name": "Ada",  "n": 12345678901234567890123 },"orders":[{"q":"/orders?user=42&page=2","lang":"fr"}],"recs":null,"errors":[{"part":"recs","error":"timeout"}]}"#,
            "[{driver}]"
        );
        // the slow optional part was cut at 300 ms; orders (200 ms) ran alongside it
        assert!(took.as_millis() < 1500, "[{driver}] took {took:?}");
        assert!(took.as_millis() >= 290, "[{driver}] took {took:?}");

        // the root merge, and parallelism: users (0) + orders (200 ms) ≈ 200 ms, not the sum
        let t = Instant::now();
        let r = c.get("/api/flat/42", "a.test");
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let v: Value = r.json();
        assert_eq!(v["id"], 42);
        assert_eq!(v["orders"][0]["q"], "/orders?user=42");
        assert!(t.elapsed().as_millis() < 1000, "[{driver}]");

        // a required part that fails: 502 naming it, nothing merged
        let r = c.get("/api/flat/404", "a.test");
        assert_eq!(r.status, 502, "[{driver}] {}", r.body_str());
        let v: Value = r.json();
        assert_eq!(v["parts"][0]["part"], "profile", "[{driver}] {v}");
        assert_eq!(v["parts"][0]["status"], 404, "[{driver}] {v}");

        // a required part past the route's deadline: 504
        let t = Instant::now();
        let r = c.get("/api/strict/42", "a.test");
        assert_eq!(r.status, 504, "[{driver}] {}", r.body_str());
        assert!(
            t.elapsed().as_millis() < 1500,
            "[{driver}] deadline respected"
        );
        let v: Value = r.json();
        assert_eq!(v["parts"][0]["part"], "recs", "[{driver}] {v}");

        // an optional part answering 500 HTML: null and its status in errors
        // (and a placeholder with no value: no ?page, so no orders call at all)
        let r = c.get("/api/dashboard/fail", "a.test");
        assert_eq!(r.status, 200, "[{driver}]");
        assert_eq!(
            r.body_str(),
            r#"{"profile":{},"orders":null,"recs":null,"errors":[{"part":"orders","error":"missing_value"},{"part":"recs","status":500,"error":"bad_status"}]}"#,
            "[{driver}]"
        );
    });
}

#[test]
fn a_hostile_path_parameter_stays_inside_its_segment() {
    let (users, orders, recs) = services();
    let cfg = gateway_config(&users, &orders, &recs);
    let gw = Gateway::start(&cfg, "epoll");
    let mut c = Client::connect(gw.addr);
    // (an encoded slash never gets this far: the path normaliser refuses it)
    let r = c.get("/api/flat/a%3Fx=1%23y%20z", "a.test");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen: Vec<String> = users.requests().iter().map(|r| r.target.clone()).collect();
    assert!(
        seen.contains(&"/users/a%3Fx=1%23y%20z".to_string()),
        "{seen:?}"
    );
}

#[test]
fn parts_append_to_one_array_and_cached_parts_skip_the_upstream() {
    let (users, orders, recs) = services();
    let cfg = gateway_config(&users, &orders, &recs);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        users.clear();
        let mut c = Client::connect(gw.addr);
        for _ in 0..3 {
            let r = c.get("/api/feed/42", "a.test");
            assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
            assert_eq!(
                r.body_str(),
                r#"{"items":[{"q":"/orders?user=42","lang":""},{ "id": 42, "name": "Ada",  "n": 12345678901234567890123 }]}"#,
                "[{driver}]"
            );
        }
        // the profile part came from the worker's cache after the first call
        let calls = users
            .requests()
            .iter()
            .filter(|r| r.target == "/users/42")
            .count();
        assert_eq!(calls, 1, "[{driver}]");
    });
}
