//! Route bulkheads (`max_concurrent`) and fallbacks through real sockets: a route whose
//! upstream holds its answers fills up, and the next request gets 503 with `Retry-After` at once
//! (the limit holds across both workers) while another route is unaffected; freed slots admit
//! again. A route with a `fallback` answers with it, marked `x-fallback`, when full and when its
//! upstream's circuit breaker is open. Both drivers.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn held(gw_addr: std::net::SocketAddr, path: &'static str) -> std::thread::JoinHandle<Response> {
    std::thread::spawn(move || Client::connect(gw_addr).get(path, "a.test"))
}

#[test]
fn a_full_route_refuses_at_once_and_others_are_unaffected() {
    for_each_driver(|driver| {
        let (up, gate) = Upstream::gated("held");
        let other = Upstream::fixed("other", 200, "other ok");
        let cfg = config(
            "",
            &(upstream_toml("held", &[up.addr], "")
                + &upstream_toml("other", &[other.addr], "")
                + &route_toml(
                    "limited",
                    "held",
                    "path_prefix = \"/limited\"\nmax_concurrent = 2",
                )
                + &route_toml("free", "other", "path_prefix = \"/free\"")),
        );
        // two workers: the limit is the whole process's
        let gw = Gateway::start(&cfg, driver);
        let a = held(gw.addr, "/limited/1");
        let b = held(gw.addr, "/limited/2");
        assert_eq!(
            up.wait_requests(2, secs(5)).len(),
            2,
            "[{driver}] both admitted"
        );
        for i in 0..4 {
            let t = Instant::now();
            let r = Client::connect(gw.addr).get("/limited/x", "a.test");
            assert_eq!(r.status, 503, "[{driver}] request {i} past the limit");
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
            assert!(
                r.body_str().contains("concurrency limit"),
                "{}",
                r.body_str()
            );
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "[{driver}] refused at once"
            );
        }
        assert_eq!(
            up.request_count(),
            2,
            "[{driver}] refused requests never reach the upstream"
        );
        let r = Client::connect(gw.addr).get("/free/y", "a.test");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "other ok"),
            "[{driver}]"
        );
        gate.release();
        assert_eq!(a.join().unwrap().status, 200);
        assert_eq!(b.join().unwrap().status, 200);
        let r = Client::connect(gw.addr).get("/limited/again", "a.test");
        assert_eq!(r.status, 200, "[{driver}] freed slots admit again");
    });
}

#[test]
fn fallbacks_answer_for_a_full_route_and_an_open_breaker() {
    for_each_driver(|driver| {
        let (up, gate) = Upstream::gated("held");
        let down = Upstream::fixed("down", 503, "down");
        let fb = "fallback = { status = 200, body = \"{\\\"items\\\": []}\", content_type = \"application/json\" }";
        let cfg = config(
            "",
            &(upstream_toml("held", &[up.addr], "")
                + &upstream_toml(
                    "down",
                    &[down.addr],
                    "[upstream.circuit_breaker]\nmin_calls = 2\nwindow_calls = 2\nopen_for = \"30s\"\nfailure_statuses = [503]",
                )
                + &route_toml("limited", "held", &format!("path_prefix = \"/limited\"\nmax_concurrent = 1\n{fb}"))
                + &route_toml("broken", "down", &format!("path_prefix = \"/broken\"\n{fb}"))),
        );
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let a = held(gw.addr, "/limited/1");
        assert_eq!(up.wait_requests(1, secs(5)).len(), 1);
        let r = Client::connect(gw.addr).get("/limited/2", "a.test");
        assert_eq!(r.status, 200, "[{driver}] the fallback's status");
        assert_eq!(r.body_str(), "{\"items\": []}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            r.header("x-fallback").as_deref(),
            Some("busy"),
            "[{driver}]"
        );
        gate.release();
        assert_eq!(a.join().unwrap().body_str(), "gated");

        let mut c = Client::connect(gw.addr);
        for _ in 0..2 {
            assert_eq!(
                c.get("/broken/x", "a.test").body_str(),
                "down",
                "[{driver}] the upstream's 503"
            );
        }
        let r = c.get("/broken/x", "a.test");
        assert_eq!(
            r.header("x-fallback").as_deref(),
            Some("circuit_open"),
            "[{driver}]"
        );
        assert_eq!(r.body_str(), "{\"items\": []}");
        assert_eq!(down.request_count(), 2, "[{driver}]");
        // the connection stays usable after a fallback
        assert_eq!(
            c.get("/broken/y", "a.test").header("x-fallback").as_deref(),
            Some("circuit_open")
        );
    });
}
