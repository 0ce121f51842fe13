//! `[upstream.retry]` through real sockets: responses with a retried status go to another
//! endpoint for idempotent requests and for requests with an `Idempotency-Key`, never for other
//! POSTs; a per-try timeout moves a request off a slow endpoint long before the whole request's
//! timeout; back-off spaces the tries; the retry budget keeps the extra load an always-failing
//! upstream sees to its share of the requests in flight. Both drivers.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn metric(gw: &Gateway, name: &str) -> f64 {
    let m = gw.metrics();
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{upstream=\"u\"}} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{m}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn post(c: &mut Client, key: Option<&str>) -> Response {
    let mut headers = vec![("content-length", "4")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    c.request(&req("POST", "/orders", "api.test", &headers, b"data"))
}

#[test]
fn retried_statuses_go_elsewhere_for_idempotent_and_keyed_requests_only() {
    let down = Upstream::fixed("down", 503, "down");
    let up = Upstream::fixed("up", 200, "up");
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[down.addr, up.addr],
            "retries = 1\n[upstream.retry]\non = [\"gateway-error\"]\nbackoff = \"1ms\"",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        down.clear();
        let mut c = Client::connect(gw.addr);
        for _ in 0..6 {
            let r = c.get("/items", "api.test");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "up"),
                "[{driver}] GET is retried"
            );
        }
        let gets = down.request_count();
        assert!(
            gets >= 3,
            "[{driver}] round robin: at least every other GET met the 503 first"
        );
        let plain: Vec<u16> = (0..6).map(|_| post(&mut c, None).status).collect();
        let posts = down.request_count() - gets;
        assert_eq!(
            plain.iter().filter(|&&s| s == 503).count(),
            posts,
            "[{driver}] a POST that met the 503 got it: {plain:?}"
        );
        assert!(posts > 0, "[{driver}]");
        for i in 0..6 {
            let r = post(&mut c, Some(&format!("order-{i}")));
            assert_eq!(r.status, 200, "[{driver}] a keyed POST is retried");
        }
        let seen = down.requests();
        let keyed = seen
            .iter()
            .filter(|r| r.header("idempotency-key").is_some())
            .count();
        assert!(keyed > 0, "[{driver}]");
        // every request the 503 met was retried, but the plain POSTs
        assert_eq!(
            metric(&gw, "coregate_upstream_retries_total") as usize,
            gets + keyed,
            "[{driver}]"
        );
    });
}

#[test]
fn a_per_try_timeout_moves_on_long_before_the_request_timeout() {
    // the slow endpoint takes 3 s: a per-try timeout that did not fire could not hide in the
    // 2 s bounds below, and a busy machine has room to be slow
    let slow = Upstream::slow("slow", 3000, "slow");
    let fast = Upstream::fixed("fast", 200, "fast");
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[slow.addr, fast.addr],
            "retries = 1\nmax_fails = 0\nresponse_timeout = \"5s\"\n[upstream.retry]\non = [\"timeout\"]\nper_try_timeout = \"150ms\"\nbackoff = \"100ms\"\nmax_backoff = \"100ms\"",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        let mut timed = Vec::new();
        for _ in 0..4 {
            let t = Instant::now();
            let r = c.get("/x", "api.test");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "fast"),
                "[{driver}]"
            );
            timed.push(t.elapsed());
        }
        // two GETs met the slow endpoint: 150 ms there, 50-100 ms back-off, then the fast one
        let slowest = *timed.iter().max().unwrap();
        assert!(
            slowest >= Duration::from_millis(190),
            "[{driver}] {timed:?}"
        );
        assert!(slowest < Duration::from_secs(2), "[{driver}] {timed:?}");
        // a POST is not retried: a try past its timeout is the answer (504), at 150 ms, not 5 s
        let mut c = Client::connect(gw.addr);
        let answers: Vec<(u16, Duration)> = (0..2)
            .map(|_| {
                let t = Instant::now();
                (post(&mut c, None).status, t.elapsed())
            })
            .collect();
        let (status, took) = *answers.iter().find(|(s, _)| *s != 200).unwrap();
        assert_eq!(status, 504, "[{driver}] {answers:?}");
        assert!(took < Duration::from_secs(2), "[{driver}] {answers:?}");
    });
}

#[test]
#[allow(clippy::disallowed_types)] // a Mutex in the mock upstream, not on a request path
fn the_retry_budget_holds_extra_load_to_its_share() {
    use std::sync::{Arc, Condvar, Mutex};
    const N: usize = 40;
    // always 503. A first try is held until all N of its round have arrived (10 s at most), so
    // every request fails its first try at the same moment with N in flight, however slowly the
    // client threads start; a retry answers after 200 ms, holding its budget while it runs.
    let firsts = Arc::new((
        Mutex::new(std::collections::HashSet::<String>::new()),
        Condvar::new(),
    ));
    let f = firsts.clone();
    let failing = Upstream::start(
        "failing",
        false,
        Arc::new(move |r| {
            let (seen, arrived) = &*f;
            let mut seen = seen.lock().unwrap();
            if !seen.insert(r.target.clone()) {
                return MockResponse::new(503, "no").delay_ms(200);
            }
            arrived.notify_all();
            let round = r
                .target
                .rsplit_once('/')
                .map_or("", |(round, _)| round)
                .to_string();
            let until = Instant::now() + Duration::from_secs(10);
            let of_round = |s: &std::collections::HashSet<String>| {
                s.iter()
                    .filter(|t| t.starts_with(&format!("{round}/")))
                    .count()
            };
            while of_round(&seen) < N && Instant::now() < until {
                seen = arrived
                    .wait_timeout(seen, until - Instant::now())
                    .unwrap()
                    .0;
            }
            MockResponse::new(503, "no")
        }),
    );
    let cfg = |percent: u32| {
        config(
            "",
            &(upstream_toml(
                "u",
                &[failing.addr],
                &format!("retries = 1\n[upstream.retry]\non = [\"gateway-error\"]\nbackoff = \"1ms\"\nbudget_percent = {percent}\nbudget_min = 1"),
            ) + &route_toml("all", "u", "path_prefix = \"/\"")),
        )
    };
    let burst = |gw: &Gateway, round: &str| {
        let addr = gw.addr;
        let threads: Vec<_> = (0..N)
            .map(|i| {
                let path = format!("/r/{round}/{i}");
                std::thread::spawn(move || get(addr, &path, "api.test").status)
            })
            .collect();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    };
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg(20), driver, &["--workers", "1"]);
        failing.clear();
        burst(&gw, &format!("{driver}-budget"));
        let seen = failing.request_count();
        // 40 first tries; retries in flight at most 20% of the 40 requests in flight
        assert!(
            (N + 1..=N + N / 5 + 4).contains(&seen),
            "[{driver}] the upstream saw {seen}"
        );
        let exhausted = metric(&gw, "coregate_upstream_retry_budget_exhausted_total");
        assert!(
            exhausted >= (N - N / 5 - 4) as f64,
            "[{driver}] {exhausted}"
        );
        // without a budget every request retries once: twice the load
        let gw = Gateway::start_with_args(&cfg(100), driver, &["--workers", "1"]);
        failing.clear();
        burst(&gw, &format!("{driver}-unbounded"));
        assert_eq!(failing.request_count(), 2 * N, "[{driver}]");
    });
}

#[test]
fn hedged_gets_take_the_first_answer_and_posts_are_never_hedged() {
    // the slow endpoint answers after 1 s, hedges go after 150 ms: far apart, so a busy machine
    // cannot blur which answer came first
    let slow = Upstream::slow("slow", 1000, "slow");
    let fast = Upstream::fixed("fast", 200, "fast");
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[slow.addr, fast.addr],
            "[upstream.retry]\nhedge_after = \"150ms\"",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        slow.clear();
        let mut c = Client::connect(gw.addr);
        for i in 0..6 {
            let t = Instant::now();
            let r = c.get(&format!("/items/{i}"), "api.test");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "fast"),
                "[{driver}]"
            );
            assert!(
                t.elapsed() < Duration::from_millis(800),
                "[{driver}] {:?}",
                t.elapsed()
            );
        }
        let hedged = slow.request_count() as f64;
        assert!(
            hedged >= 1.0,
            "[{driver}] some GETs went to the slow endpoint first"
        );
        assert_eq!(
            metric(&gw, "coregate_upstream_hedges_total"),
            hedged,
            "[{driver}]"
        );
        // a GET that went to the slow endpoint first was won by its hedge; one that went to the
        // fast endpoint is hedged only if the fast answer took over 150 ms, and then won by it
        let wins = metric(&gw, "coregate_upstream_hedge_wins_total");
        assert!(
            wins >= 1.0 && wins <= hedged,
            "[{driver}] {wins} hedge wins of {hedged}"
        );
        // a POST that meets the slow endpoint waits for it
        let times: Vec<(String, Duration)> = (0..2)
            .map(|_| {
                let t = Instant::now();
                (post(&mut c, None).body_str(), t.elapsed())
            })
            .collect();
        let (_, took) = times
            .iter()
            .find(|(b, _)| b == "slow")
            .expect("one POST met it");
        assert!(*took >= Duration::from_millis(980), "[{driver}] {times:?}");
        assert_eq!(
            metric(&gw, "coregate_upstream_hedges_total"),
            hedged,
            "[{driver}] no POST hedged"
        );
    });
}
