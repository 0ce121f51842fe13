//! Metrics after known traffic: `/metrics` is parsed with a real Prometheus text parser
//! (`prometheus-parse`) and checked for exact counts — requests by route and status class
//! (unmatched requests under `route=""`), body bytes both ways, upstream responses, connect errors
//! and retries, pool hits and misses, histogram buckets, `_count` and `_sum`, and the p50..p99.9
//! gauges from the merged per-core hdrhistograms (a 40 ms upstream puts the route's upstream p50 at
//! ≥ 40 ms and nothing in the 25 ms bucket). `/stats` must say the same in JSON. A second test
//! scrapes repeatedly while coregate-load drives traffic across both workers: every scrape answers
//! from every worker, and the final request count equals what the load generator completed.

mod common;
use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use std::time::Duration;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text")
}

/// The sample of `metric` whose labels include every (name, value) of `labels`.
fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

fn num(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match &find(s, metric, labels)
        .unwrap_or_else(|| panic!("no sample {metric}{labels:?}"))
        .value
    {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{metric}{labels:?} is not a number: {other:?}"),
    }
}

/// (le, cumulative count) of a histogram series.
fn buckets(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    match &find(s, metric, labels)
        .unwrap_or_else(|| panic!("no histogram {metric}{labels:?}"))
        .value
    {
        Value::Histogram(h) => h.iter().map(|b| (b.less_than, b.count)).collect(),
        other => panic!("{metric} is not a histogram: {other:?}"),
    }
}

fn metrics_config(ok: &Upstream, slow: &Upstream) -> String {
    let dead = closed_port();
    config(
        "",
        &(upstream_toml("ok", &[ok.addr], "")
            + &upstream_toml("slow", &[slow.addr], "")
            + &upstream_toml("dead", &[dead], "retries = 1\nmax_fails = 1000")
            + &route_toml("ok", "ok", "path_prefix = \"/ok\"")
            + &route_toml("slow", "slow", "path_prefix = \"/slow\"")
            + &route_toml("dead", "dead", "path_prefix = \"/dead\"")),
    )
}

#[test]
fn exact_counts_after_known_traffic() {
    for_each_driver(|driver| {
        let ok = Upstream::fixed("ok", 200, "hello");
        let slow = Upstream::slow("slow", 40, "zzz");
        let gw = Gateway::start(&metrics_config(&ok, &slow), driver);

        // one keep-alive connection: 10 GETs + 2 POSTs of 7 bytes to /ok, 3 to a dead upstream,
        // 2 that match no route, 3 to the slow upstream
        let mut c = Client::connect(gw.addr);
        for _ in 0..10 {
            assert_eq!(c.get("/ok", "m.test").status, 200, "[{driver}]");
        }
        for _ in 0..2 {
            let r = c.request(&req("POST", "/ok/p", "m.test", &[], b"1234567"));
            assert_eq!(r.status, 200, "[{driver}]");
        }
        for _ in 0..3 {
            assert_eq!(c.get("/dead", "m.test").status, 502, "[{driver}]");
        }
        for _ in 0..2 {
            assert_eq!(c.get("/nowhere", "m.test").status, 404, "[{driver}]");
        }
        let mut c2 = Client::connect(gw.addr);
        for _ in 0..3 {
            assert_eq!(c2.get("/slow", "m.test").body_str(), "zzz", "[{driver}]");
        }

        let text = gw.metrics();
        let s = parse(&text);
        let rq = "coregate_requests_total";
        assert_eq!(num(&s, rq, &[("route", "ok"), ("class", "2xx")]), 12.0);
        assert_eq!(num(&s, rq, &[("route", "ok"), ("class", "5xx")]), 0.0);
        assert_eq!(num(&s, rq, &[("route", "dead"), ("class", "5xx")]), 3.0);
        assert_eq!(num(&s, rq, &[("route", ""), ("class", "4xx")]), 2.0);
        assert_eq!(num(&s, rq, &[("route", "slow"), ("class", "2xx")]), 3.0);
        assert_eq!(
            num(&s, "coregate_request_body_bytes_total", &[("route", "ok")]),
            14.0
        );
        assert_eq!(
            num(&s, "coregate_response_body_bytes_total", &[("route", "ok")]),
            60.0
        );
        // upstream side
        let up = |m: &str, u: &str| num(&s, m, &[("upstream", u)]);
        assert_eq!(
            num(
                &s,
                "coregate_upstream_requests_total",
                &[("upstream", "ok"), ("class", "2xx")]
            ),
            12.0
        );
        let (hits, misses) = (
            up("coregate_upstream_pool_hits_total", "ok"),
            up("coregate_upstream_pool_misses_total", "ok"),
        );
        assert_eq!(hits + misses, 12.0, "every attempt is a hit or a miss");
        assert!(misses >= 1.0 && hits >= 10.0, "hits {hits} misses {misses}");
        assert!(up("coregate_upstream_open_connections", "ok") >= 1.0);
        assert_eq!(
            num(
                &s,
                "coregate_upstream_errors_total",
                &[("upstream", "dead"), ("kind", "connect")]
            ),
            6.0,
            "3 requests x 2 attempts"
        );
        assert_eq!(up("coregate_upstream_retries_total", "dead"), 3.0);
        assert_eq!(up("coregate_upstream_retries_total", "ok"), 0.0);
        assert!(up("coregate_upstream_sent_bytes_total", "ok") > 12.0 * 40.0);
        assert!(up("coregate_upstream_received_bytes_total", "ok") > 60.0);
        assert_eq!(num(&s, "coregate_accepted_connections_total", &[]), 2.0);

        // histograms: cumulative, +Inf = _count = requests
        let h = buckets(&s, "coregate_request_duration_seconds", &[("route", "ok")]);
        assert!(h.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {h:?}");
        assert_eq!(h.last().unwrap(), &(f64::INFINITY, 12.0));
        assert_eq!(
            num(
                &s,
                "coregate_request_duration_seconds_count",
                &[("route", "ok")]
            ),
            12.0
        );
        let slow_up = buckets(
            &s,
            "coregate_route_upstream_duration_seconds",
            &[("route", "slow")],
        );
        let at = |le: f64| slow_up.iter().find(|b| b.0 == le).unwrap().1;
        assert_eq!(at(0.025), 0.0, "a 40 ms upstream: {slow_up:?}");
        assert_eq!(at(f64::INFINITY), 3.0);
        let sum = num(
            &s,
            "coregate_route_upstream_duration_seconds_sum",
            &[("route", "slow")],
        );
        assert!((0.12..5.0).contains(&sum), "sum {sum}");
        // percentiles from the merged hdrhistograms
        let q = |name: &str, label: (&str, &str), q: &str| num(&s, name, &[label, ("quantile", q)]);
        let p50 = q(
            "coregate_route_upstream_duration_quantile_seconds",
            ("route", "slow"),
            "0.5",
        );
        assert!(p50 >= 0.039, "p50 {p50}");
        let name = "coregate_request_duration_quantile_seconds";
        let (a, b, c99, d) = (
            q(name, ("route", "ok"), "0.5"),
            q(name, ("route", "ok"), "0.95"),
            q(name, ("route", "ok"), "0.99"),
            q(name, ("route", "ok"), "0.999"),
        );
        assert!(
            a > 0.0 && a <= b && b <= c99 && c99 <= d,
            "{a} {b} {c99} {d}"
        );
        assert_eq!(num(&s, "coregate_scrape_missing_workers", &[]), 0.0);
        assert!(find(&s, "coregate_scrape_worker_seconds", &[("worker", "1")]).is_some());
        assert_eq!(num(&s, "coregate_config_generation", &[]), 1.0);

        // /stats: the same numbers as JSON
        let stats = gw.admin_get("/stats").json();
        let route = stats["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "ok")
            .unwrap();
        assert_eq!(route["requests"]["2xx"], 12, "[{driver}] {stats}");
        assert_eq!(route["latency_us"]["count"], 12);
        assert_eq!(route["bytes_in"], 14);
        let dead = stats["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "dead")
            .unwrap();
        assert_eq!(dead["errors"]["connect"], 6);
        assert_eq!(stats["unmatched"]["requests"]["4xx"], 2);
        assert_eq!(stats["workers_answered"], 2);
    });
}

#[test]
fn scrapes_during_load_see_every_worker() {
    let ok = Upstream::fixed("ok", 200, "hello");
    let slow = Upstream::slow("slow", 40, "zzz");
    let gw = Gateway::start(&metrics_config(&ok, &slow), "auto");
    let url = format!("http://{}/ok", gw.addr);
    let total = 3000u64;
    let load = std::thread::spawn(move || {
        let args = coregate_load::load::LoadArgs::from_args([
            "-c",
            "8",
            "-t",
            "1",
            "--requests",
            &total.to_string(),
            "-d",
            "60s",
            "--quiet",
            &url,
        ])
        .unwrap();
        coregate_load::load::execute(&args).unwrap()
    });
    let mut scrapes = 0;
    while !load.is_finished() {
        let s = parse(&gw.metrics());
        assert_eq!(num(&s, "coregate_scrape_missing_workers", &[]), 0.0);
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = load.join().unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.status.get(&200), Some(&r.requests));
    let s = parse(&gw.metrics());
    let served = num(
        &s,
        "coregate_requests_total",
        &[("route", "ok"), ("class", "2xx")],
    );
    // the generator stops counting at `total`; up to one request per connection may still finish
    assert!(
        served >= r.requests as f64 && served <= (r.requests + 8) as f64,
        "gateway counted {served}, generator {} (scrapes during load: {scrapes})",
        r.requests
    );
    let hist = num(
        &s,
        "coregate_request_duration_seconds_count",
        &[("route", "ok")],
    );
    assert_eq!(hist, served);
}

/// An upstream that sends a head promising 100 bytes, then 5, then closes: the client gets the
/// truncated response (connection closed), and the failure after the head still counts as a
/// `reset` of that upstream.
#[test]
fn upstream_cut_mid_body_counts_a_reset() {
    for_each_driver(|driver| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort");
            }
        });
        let cfg = config(
            "",
            &(upstream_toml("cut", &[addr], "") + &route_toml("cut", "cut", "path_prefix = \"/\"")),
        );
        let gw = Gateway::start(&cfg, driver);
        // the head and whatever part of the body arrives, then the connection must close
        let mut c = std::net::TcpStream::connect(gw.addr).unwrap();
        c.set_read_timeout(Some(secs(5))).unwrap();
        std::io::Write::write_all(&mut c, &req("GET", "/x", "m.test", &[], b"")).unwrap();
        let mut got = Vec::new();
        let end = std::io::Read::read_to_end(&mut c, &mut got);
        assert!(
            end.is_ok()
                || end
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "[{driver}] a truncated response must close the connection: {end:?}"
        );
        assert!(got.starts_with(b"HTTP/1.1 200"), "[{driver}] {got:?}");
        let s = parse(&gw.metrics());
        let reset = num(
            &s,
            "coregate_upstream_errors_total",
            &[("upstream", "cut"), ("kind", "reset")],
        );
        assert_eq!(reset, 1.0, "[{driver}]");
    });
}
