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
            // (a request let through would wait at the gated upstream until the end)
            assert!(
                t.elapsed() < Duration::from_secs(3),
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

fn bulkhead_metric(gw: &Gateway, name: &str, pool: &str) -> Option<f64> {
    let prefix = format!("{name}{{bulkhead=\"{pool}\"}} ");
    let m = gw.metrics();
    let line = m.lines().find(|l| l.starts_with(&prefix))?;
    line[prefix.len()..].trim().parse().ok()
}

#[test]
fn a_queue_holds_requests_for_a_freed_slot_within_its_timeout() {
    for_each_driver(|driver| {
        let (up, gate) = Upstream::gated("held");
        let (slow, slow_gate) = Upstream::gated("slow");
        let cfg = config(
            "",
            &(upstream_toml("held", &[up.addr], "")
                + &upstream_toml("slow", &[slow.addr], "")
                + &route_toml(
                    "queued",
                    "held",
                    "path_prefix = \"/q\"\nmax_concurrent = 1\nmax_queued = 1\nqueue_timeout = \"5s\"",
                )
                + &route_toml(
                    "short",
                    "slow",
                    "path_prefix = \"/s\"\nmax_concurrent = 1\nmax_queued = 1\nqueue_timeout = \"300ms\"",
                )),
        );
        // two workers: a slot freed on one is seen by a waiter on the other
        let gw = Gateway::start(&cfg, driver);
        let first = held(gw.addr, "/q/1");
        up.wait_requests(1, secs(5));
        let second = held(gw.addr, "/q/2");
        let queued = wait_until(deadline(secs(5)), || {
            bulkhead_metric(&gw, "coregate_bulkhead_queued", "route:queued") == Some(1.0)
        });
        assert!(queued, "[{driver}] {}", gw.metrics());
        // the queue is full: refused at once
        let t = Instant::now();
        let r = Client::connect(gw.addr).get("/q/3", "a.test");
        assert_eq!(r.status, 503, "[{driver}]");
        // (not after queue_timeout's 5 s)
        assert!(t.elapsed() < Duration::from_secs(3), "[{driver}]");
        assert_eq!(
            up.request_count(),
            1,
            "[{driver}] the queued request has not gone up yet"
        );
        gate.release();
        assert_eq!(first.join().unwrap().status, 200, "[{driver}]");
        assert_eq!(
            second.join().unwrap().status,
            200,
            "[{driver}] admitted from the queue"
        );
        assert_eq!(up.request_count(), 2);
        assert_eq!(
            bulkhead_metric(&gw, "coregate_bulkhead_rejected_total", "route:queued"),
            Some(1.0)
        );

        // a wait longer than queue_timeout ends in 503
        let hold = held(gw.addr, "/s/1");
        slow.wait_requests(1, secs(5));
        let t = Instant::now();
        let r = Client::connect(gw.addr).get("/s/2", "a.test");
        let waited = t.elapsed();
        assert_eq!(r.status, 503, "[{driver}]");
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(2000),
            "[{driver}] {waited:?}"
        );
        slow_gate.release();
        assert_eq!(hold.join().unwrap().status, 200);
    });
}

#[test]
fn shared_pools_reserve_capacity_and_the_upstream_caps_all_routes() {
    std::env::set_var("CG_BH_KEY_A", "bh-key-a");
    std::env::set_var("CG_BH_KEY_B", "bh-key-b");
    for_each_driver(|driver| {
        let (up, gate) = Upstream::gated("held");
        let cfg = config(
            "",
            &("[[auth]]\nname = \"keys\"\ntype = \"api_key\"\nkeys = [{ key_env = \"CG_BH_KEY_A\", consumer = \"a\" }, { key_env = \"CG_BH_KEY_B\", consumer = \"b\" }]\n\n\
               [[bulkhead]]\nname = \"standard\"\nmax_concurrent = 2\n\n\
               [[bulkhead]]\nname = \"critical\"\nmax_concurrent = 1\n\n\
               [[bulkhead]]\nname = \"per-consumer\"\nmax_concurrent = 1\nkey = \"consumer\"\n\n"
                .to_string()
                + &upstream_toml("held", &[up.addr], "max_concurrent = 5")
                + &route_toml("std", "held", "path_prefix = \"/std\"\nbulkheads = [\"standard\"]")
                + &route_toml("crit", "held", "path_prefix = \"/crit\"\nbulkheads = [\"critical\"]")
                + &route_toml("tenant", "held", "path_prefix = \"/t\"\nauth = \"keys\"\nbulkheads = [\"per-consumer\"]")
                + &route_toml("free", "held", "path_prefix = \"/free\"")),
        );
        let gw = Gateway::start(&cfg, driver);
        // a flood on the standard route: two in flight, the rest refused
        let std: Vec<_> = (0..2)
            .map(|i| held(gw.addr, ["/std/1", "/std/2"][i]))
            .collect();
        up.wait_requests(2, secs(5));
        for _ in 0..3 {
            assert_eq!(
                Client::connect(gw.addr).get("/std/x", "a.test").status,
                503,
                "[{driver}]"
            );
        }
        // the critical route's capacity is its own
        let crit = held(gw.addr, "/crit/1");
        up.wait_requests(3, secs(5));
        // one in flight per consumer: a's second request is refused, b still gets in
        let addr = gw.addr;
        let as_consumer = move |k: &'static str| {
            std::thread::spawn(move || {
                Client::connect(addr).request(&req(
                    "GET",
                    "/t/1",
                    "a.test",
                    &[("x-api-key", k)],
                    b"",
                ))
            })
        };
        let a1 = as_consumer("bh-key-a");
        up.wait_requests(4, secs(5));
        let r = Client::connect(addr).request(&req(
            "GET",
            "/t/2",
            "a.test",
            &[("x-api-key", "bh-key-a")],
            b"",
        ));
        assert_eq!(r.status, 503, "[{driver}] consumer a is at its limit");
        let b1 = as_consumer("bh-key-b");
        up.wait_requests(5, secs(5));
        // five in flight to the upstream: its own limit refuses every route now
        let r = Client::connect(addr).get("/free/x", "a.test");
        assert_eq!(r.status, 503, "[{driver}] the upstream's bulkhead");
        assert_eq!(
            bulkhead_metric(&gw, "coregate_bulkhead_in_flight", "upstream:held"),
            Some(5.0),
            "[{driver}]"
        );
        assert_eq!(
            up.request_count(),
            5,
            "[{driver}] refused requests never went up"
        );
        gate.release();
        for h in std.into_iter().chain([crit, a1, b1]) {
            assert_eq!(h.join().unwrap().status, 200, "[{driver}]");
        }
        assert_eq!(
            Client::connect(addr).get("/free/y", "a.test").status,
            200,
            "[{driver}]"
        );
    });
}

#[test]
fn adaptive_concurrency_sheds_when_latency_grows_with_load() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};
    // a saturated upstream: 3 requests at a time take 10 ms; past 3 in flight, a queue builds
    // (10 ms per 3 requests ahead). Latency 10 ms unloaded, 100 ms with all 30 clients in flight:
    // a ratio scheduling noise on a busy CI machine cannot flatten.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let late_peak = Arc::new(AtomicUsize::new(0));
    // in flight counts toward the peak from 700 ms into the surge (once the limit has adapted)
    let late_from: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let (f, p, l) = (in_flight.clone(), late_peak.clone(), late_from.clone());
    let up = Upstream::start(
        "queueing",
        false,
        Arc::new(move |_| {
            let n = f.fetch_add(1, Ordering::SeqCst) + 1;
            if l.get().is_some_and(|t| Instant::now() >= *t) {
                p.fetch_max(n, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_micros(10_000 * n.max(3) as u64 / 3));
            f.fetch_sub(1, Ordering::SeqCst);
            MockResponse::new(200, "ok")
        }),
    );
    // long_window 1000: the long-term latency accepts a lasting change over ~1000 windows
    // (minutes at this rate), so within this 2 s run the learnt 10 ms stays the reference
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[up.addr],
            "[upstream.adaptive_concurrency]\ninitial_limit = 30\nmin_limit = 2\nwindow = 10\n\
             smoothing = 0.5\nlong_window = 1000",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    let gw = Gateway::start_with_args(&cfg, "epoll", &["--workers", "1"]);
    let addr = gw.addr;
    // the unloaded latency first, as a gateway sees before a surge: three windows one at a time
    // (an unused limit does not grow)
    let mut c = Client::connect(addr);
    for _ in 0..30 {
        assert_eq!(c.get("/warm", "a.test").status, 200);
    }
    let surge = Instant::now();
    let until = surge + Duration::from_millis(2000);
    late_from.set(surge + Duration::from_millis(700)).unwrap();
    let threads: Vec<_> = (0..30)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut ok, mut shed) = (0, 0);
                let mut c = Client::connect(addr);
                while Instant::now() < until {
                    match c.get("/x", "a.test").status {
                        200 => ok += 1,
                        503 => {
                            shed += 1;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        s => panic!("status {s}"),
                    }
                }
                (ok, shed)
            })
        })
        .collect();
    let (ok, shed) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let m = gw.metrics();
    let limit: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("coregate_upstream_adaptive_limit{upstream=\"u\"} "))
        .unwrap()
        .parse()
        .unwrap();
    let peak = late_peak.load(Ordering::SeqCst);
    eprintln!("adaptive: served {ok}, shed {shed}, limit {limit}, late peak {peak}");
    assert!(ok > 0 && shed > 0, "served {ok}, shed {shed}");
    // 30 clients: without the limit all 30 would queue at the upstream
    assert!(limit < 20.0, "the limit came down from 30: {limit}");
    assert!(
        peak > 0 && peak < 20,
        "30 clients, but at most {peak} in flight at the upstream once adapted"
    );
}
