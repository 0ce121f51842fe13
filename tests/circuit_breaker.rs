//! `[upstream.circuit_breaker]` through real sockets: an upstream that fails trips the breaker
//! once `min_calls` are in; while open the gateway answers 503 with `Retry-After` at once and the
//! upstream sees nothing; after `open_for` the half-open trials reach the upstream, a failed trial
//! re-opens it, and successful trials close it. Metrics follow every change. Outlier detection
//! ejects an endpoint after consecutive 5xx. One worker (the
//! breaker is per worker); both drivers.

mod common;
use common::redis::RedisServer;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn breaker_config(up: &Upstream) -> String {
    let breaker = "[upstream.circuit_breaker]\nfailure_rate = 0.5\nmin_calls = 4\nwindow = \"10s\"\n\
                   open_for = \"700ms\"\nhalf_open_calls = 2\nfailure_statuses = [500, 502, 503, 504]";
    config(
        "",
        &(upstream_toml("u", &[up.addr], breaker) + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let m = gw.metrics();
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{upstream=\"u\"}}")))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[test]
fn trips_fails_fast_and_recovers_through_half_open_trials() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let up = Upstream::start(
        "flaky",
        false,
        Arc::new(move |_| match h.load(Ordering::SeqCst) {
            true => MockResponse::new(200, "fine"),
            false => MockResponse::new(503, "down"),
        }),
    );
    for_each_driver(|driver| {
        healthy.store(false, Ordering::SeqCst);
        let gw = Gateway::start_with_args(&breaker_config(&up), driver, &["--workers", "1"]);
        up.clear();
        let mut c = Client::connect(gw.addr);
        for _ in 0..4 {
            let r = c.get("/x", "a.test");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (503, "down"),
                "[{driver}] the upstream's own 503"
            );
        }
        // 4 of 4 failed: open. The gateway answers; the upstream sees nothing more.
        let t = Instant::now();
        let r = c.get("/x", "a.test");
        assert_eq!(r.status, 503, "[{driver}]");
        assert!(
            r.body_str().contains("circuit breaker"),
            "[{driver}] {}",
            r.body_str()
        );
        assert_eq!(r.header("retry-after").as_deref(), Some("1"), "[{driver}]");
        assert!(t.elapsed() < Duration::from_secs(3), "[{driver}] at once");
        assert_eq!(
            up.request_count(),
            4,
            "[{driver}] an open breaker never calls the upstream"
        );
        assert_eq!(
            metric(&gw, "coregate_upstream_breaker_trips_total"),
            Some(1.0),
            "[{driver}]"
        );
        assert_eq!(
            metric(&gw, "coregate_upstream_breaker_open"),
            Some(1.0),
            "[{driver}]"
        );
        assert!(metric(&gw, "coregate_upstream_breaker_rejected_total") >= Some(1.0));

        // half-open after open_for: a failed trial opens it again (for open_for once more)
        std::thread::sleep(Duration::from_millis(750));
        let r = c.get("/x", "a.test");
        assert_eq!(
            r.body_str(),
            "down",
            "[{driver}] the trial reached the upstream"
        );
        assert_eq!(up.request_count(), 5);
        let r = c.get("/x", "a.test");
        assert!(
            r.body_str().contains("circuit breaker"),
            "[{driver}] re-opened"
        );
        assert_eq!(
            metric(&gw, "coregate_upstream_breaker_trips_total"),
            Some(2.0)
        );

        // the upstream recovers: two good trials close the breaker
        healthy.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(750));
        for _ in 0..2 {
            assert_eq!(c.get("/x", "a.test").body_str(), "fine", "[{driver}] trial");
        }
        for _ in 0..5 {
            assert_eq!(c.get("/x", "a.test").status, 200, "[{driver}] closed again");
        }
        assert_eq!(
            metric(&gw, "coregate_upstream_breaker_open"),
            Some(0.0),
            "[{driver}]"
        );
        assert_eq!(up.request_count(), 5 + 2 + 5);
    });
}

#[test]
fn connect_failures_trip_without_listed_statuses() {
    // nothing listens: every call fails to connect, which always counts
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[closed_port()],
            "retries = 0\n[upstream.circuit_breaker]\nmin_calls = 3\nwindow_calls = 10\nopen_for = \"30s\"",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        for _ in 0..3 {
            assert_eq!(
                c.get("/x", "a.test").status,
                502,
                "[{driver}] connect refused"
            );
        }
        let r = c.get("/x", "a.test");
        assert_eq!(r.status, 503, "[{driver}] {}", r.body_str());
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((29..=30).contains(&wait), "[{driver}] retry-after {wait}");
    });
}

#[test]
fn consecutive_5xx_eject_the_failing_endpoint() {
    let bad = Upstream::fixed("bad", 500, "broken");
    let good = Upstream::fixed("good", 200, "fine");
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[bad.addr, good.addr],
            "max_ejection_percent = 50\n[upstream.outlier_detection]\nconsecutive_5xx = 2\nbase_ejection_time = \"30s\"",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        bad.clear();
        let mut c = Client::connect(gw.addr);
        let statuses: Vec<u16> = (0..12).map(|_| c.get("/x", "a.test").status).collect();
        // round robin: the bad endpoint answers twice, then is out for 30 s
        assert_eq!(bad.request_count(), 2, "[{driver}] {statuses:?}");
        assert_eq!(
            statuses.iter().filter(|&&s| s == 500).count(),
            2,
            "[{driver}]"
        );
        assert_eq!(
            metric(&gw, "coregate_upstream_ejections_total"),
            Some(1.0),
            "[{driver}]"
        );
    });
}

#[test]
fn cluster_scope_shares_a_trip_between_gateways_through_redis() {
    let redis = RedisServer::start();
    let up = Upstream::fixed("down", 503, "down");
    let cfg = config(
        "",
        &(format!("[redis]\naddr = \"{}\"\ntimeout = \"2s\"\nkey_prefix = \"cb-test:\"\n", redis.addr)
            + &upstream_toml(
                "u",
                &[up.addr],
                "[upstream.circuit_breaker]\nscope = \"cluster\"\nmin_calls = 4\nwindow_calls = 10\nopen_for = \"30s\"\nfailure_statuses = [503]",
            )
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        redis.cmd(&["DEL", "cb-test:breaker:u"]);
        let a = Gateway::start_with_args(&cfg, driver, &["--workers", "2"]);
        let b = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        up.clear();
        // four failures on one connection (one worker of gateway a) trip its breaker
        let mut c = Client::connect(a.addr);
        for _ in 0..4 {
            assert_eq!(c.get("/x", "a.test").body_str(), "down", "[{driver}]");
        }
        assert!(
            c.get("/x", "a.test").body_str().contains("circuit breaker"),
            "[{driver}]"
        );
        // ... and within a sync interval every worker of both gateways is open too
        let open = |gw: &Gateway, workers: f64| {
            wait_until(deadline(secs(3)), || {
                metric(gw, "coregate_upstream_breaker_open") == Some(workers)
            })
        };
        assert!(open(&a, 2.0), "[{driver}] {}", a.metrics());
        assert!(open(&b, 1.0), "[{driver}] {}", b.metrics());
        let ttl: i64 = redis
            .cmd(&["PTTL", "cb-test:breaker:u"])
            .trim()
            .parse()
            .unwrap();
        assert!(
            (25_000..=30_000).contains(&ttl),
            "[{driver}] the key lives as long as the trip: {ttl}"
        );
        for gw in [&a, &b] {
            for _ in 0..3 {
                let r = get(gw.addr, "/y", "a.test");
                assert_eq!(r.status, 503, "[{driver}]");
                assert!(
                    r.body_str().contains("circuit breaker"),
                    "[{driver}] {}",
                    r.body_str()
                );
            }
        }
        assert_eq!(
            up.request_count(),
            4,
            "[{driver}] only the calls that tripped it"
        );
    });
}

#[test]
fn cluster_scope_trips_per_worker_while_redis_is_down() {
    let up = Upstream::fixed("down", 503, "down");
    let cfg = config(
        "",
        &(format!("[redis]\naddr = \"{}\"\ntimeout = \"200ms\"\n", closed_port())
            + &upstream_toml(
                "u",
                &[up.addr],
                "[upstream.circuit_breaker]\nscope = \"cluster\"\nmin_calls = 3\nwindow_calls = 10\nfailure_statuses = [503]",
            )
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    let gw = Gateway::start_with_args(&cfg, "epoll", &["--workers", "1"]);
    let mut c = Client::connect(gw.addr);
    for _ in 0..3 {
        assert_eq!(c.get("/x", "a.test").body_str(), "down");
    }
    assert!(c.get("/x", "a.test").body_str().contains("circuit breaker"));
    let line = gw.wait_log("circuit breakers with scope = \"cluster\" trip per worker");
    assert!(line.contains("unreachable"), "{line}");
}

#[test]
fn consecutive_gateway_errors_eject_an_endpoint_that_keeps_refusing() {
    let good = Upstream::fixed("good", 200, "fine");
    let dead = closed_port();
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[dead, good.addr],
            "max_fails = 0\nmax_ejection_percent = 50\n[upstream.retry]\nbackoff = \"0s\"\n[upstream.outlier_detection]\nconsecutive_gateway_errors = 2\nbase_ejection_time = \"30s\"",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        for _ in 0..10 {
            // the refused connect is retried on the good endpoint
            assert_eq!(c.get("/x", "a.test").body_str(), "fine", "[{driver}]");
        }
        // passive health is off (max_fails = 0): only the outlier detector took it out, after 2
        assert_eq!(
            metric(&gw, "coregate_upstream_ejections_total"),
            Some(1.0),
            "[{driver}]"
        );
        assert_eq!(
            metric(&gw, "coregate_upstream_retries_total"),
            Some(2.0),
            "[{driver}]"
        );
    });
}

#[test]
fn a_5xx_rate_and_a_black_hole_both_trip_the_breaker() {
    // every other answer is a 503: half the window fails, above failure_rate 0.4
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    let flaky = Upstream::start(
        "half",
        false,
        Arc::new(move |_| match n2.fetch_add(1, Ordering::SeqCst) % 2 {
            0 => MockResponse::new(503, "no"),
            _ => MockResponse::new(200, "yes"),
        }),
    );
    // a black hole: accepts and reads, never answers
    let (hole, _never) = Upstream::gated("hole");
    let cfg = config(
        "",
        &(upstream_toml(
            "half",
            &[flaky.addr],
            "[upstream.circuit_breaker]\nfailure_rate = 0.4\nmin_calls = 10\nwindow_calls = 10\nopen_for = \"30s\"\nfailure_statuses = [\"5xx\"]",
        ) + &upstream_toml(
            "hole",
            &[hole.addr],
            "retries = 0\nmax_fails = 0\nresponse_timeout = \"200ms\"\n[upstream.circuit_breaker]\nmin_calls = 2\nwindow_calls = 2\nopen_for = \"30s\"",
        ) + &route_toml("half", "half", "path_prefix = \"/half\"")
            + &route_toml("hole", "hole", "path_prefix = \"/hole\"")),
    );
    for_each_driver(|driver| {
        n.store(0, Ordering::SeqCst);
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        let got: Vec<u16> = (0..10).map(|_| c.get("/half", "a.test").status).collect();
        assert_eq!(
            got.iter().filter(|&&s| s == 503).count(),
            5,
            "[{driver}] {got:?}"
        );
        let r = c.get("/half", "a.test");
        assert!(
            r.body_str().contains("circuit breaker"),
            "[{driver}] {}",
            r.body_str()
        );
        assert_eq!(n.load(Ordering::SeqCst), 10, "[{driver}]");
        for _ in 0..2 {
            let r = Client::connect(gw.addr).get("/hole", "a.test");
            assert_eq!(r.status, 504, "[{driver}] the black hole times out");
        }
        let r = Client::connect(gw.addr).get("/hole", "a.test");
        assert!(
            r.body_str().contains("circuit breaker"),
            "[{driver}] {}",
            r.body_str()
        );
        // refused by the open breaker, not another 200 ms wait at the hole
        let rejected = gw.metric("coregate_upstream_breaker_rejected_total{upstream=\"hole\"}");
        assert_eq!(rejected, Some(1), "[{driver}] fails fast");
    });
}
