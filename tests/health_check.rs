//! `[upstream.health_check]` through real sockets: one prober per process takes an endpoint
//! whose probe fails out of every worker's rotation and brings it back when it passes again;
//! HTTP probes (path, Host, expected statuses), TCP probes, probes over HTTP/2 (h2c) and over TLS
//! with ALPN; the panic threshold keeps a sole unhealthy endpoint in use; metrics show verdicts,
//! probe results and changes. Both drivers.

mod common;
use common::h2up::*;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The value of `name{upstream="..",endpoint="..."<rest>}`.
fn endpoint_metric(gw: &Gateway, name: &str, up: &str, ep: SocketAddr, rest: &str) -> Option<f64> {
    let prefix = format!("{name}{{upstream=\"{up}\",endpoint=\"{ep}\"{rest}}} ");
    let m = gw.metrics();
    let line = m.lines().find(|l| l.starts_with(&prefix))?;
    line[prefix.len()..].trim().parse().ok()
}

fn healthy(gw: &Gateway, up: &str, ep: SocketAddr) -> Option<f64> {
    endpoint_metric(gw, "coregate_upstream_endpoint_healthy", up, ep, "")
}

fn wait_healthy(gw: &Gateway, up: &str, ep: SocketAddr, want: f64, what: &str) {
    let ok = wait_until(deadline(secs(5)), || healthy(gw, up, ep) == Some(want));
    assert!(ok, "{what}: {ep} never became {want}\n{}", gw.metrics());
}

/// An upstream answering `body` to requests and 200/503 to `/healthz` as `sick` says.
fn probed(name: &'static str, sick: Arc<AtomicBool>) -> Upstream {
    Upstream::start(
        name,
        false,
        Arc::new(move |r: &Recorded| match r.target.as_str() {
            "/healthz" if sick.load(Ordering::SeqCst) => MockResponse::new(503, "sick"),
            "/healthz" => MockResponse::new(200, "ok"),
            _ => MockResponse::new(200, name),
        }),
    )
}

#[test]
fn failing_probes_take_an_endpoint_out_of_every_worker_and_passing_ones_bring_it_back() {
    let sick = Arc::new(AtomicBool::new(false));
    let a = probed("A", sick.clone());
    let b = probed("B", Arc::new(AtomicBool::new(false)));
    let hc = "[upstream.health_check]\npath = \"/healthz\"\nhost = \"probe.internal\"\ninterval = \"100ms\"\njitter = \"10ms\"\n\
              healthy_threshold = 2\nunhealthy_threshold = 3";
    let cfg = config(
        "",
        &(upstream_toml("u", &[a.addr, b.addr], hc)
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        sick.store(false, Ordering::SeqCst);
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "2"]);
        let probes = a.wait_requests(1, secs(5));
        let p = &probes[0];
        assert_eq!((p.method.as_str(), p.target.as_str()), ("GET", "/healthz"));
        assert_eq!(p.header("host").as_deref(), Some("probe.internal"));
        assert_eq!(
            p.header("user-agent").as_deref(),
            Some("coregate-health-check")
        );
        wait_healthy(&gw, "u", a.addr, 1.0, driver);

        // one prober for the process, not one per worker: ~10 probes a second at 100 ms
        a.clear();
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1000));
        let n = a
            .requests()
            .iter()
            .filter(|r| r.target == "/healthz")
            .count();
        // one per 100 ms (two probers, one per worker, would make twice that); late probes on a
        // busy machine only lower the count
        let most = t.elapsed().as_millis() as usize * 3 / 200 + 1;
        assert!(
            (3..=most).contains(&n),
            "[{driver}] {n} probes in {:?}",
            t.elapsed()
        );

        sick.store(true, Ordering::SeqCst);
        let t = Instant::now();
        wait_healthy(&gw, "u", a.addr, 0.0, driver);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "[{driver}] three failed probes"
        );
        a.clear();
        for i in 0..20 {
            // new connections spread over both workers
            let r = get(gw.addr, &format!("/x/{i}"), "api.test");
            assert_eq!((r.status, r.body_str().as_str()), (200, "B"), "[{driver}]");
        }
        assert!(
            a.requests().iter().all(|r| r.target == "/healthz"),
            "[{driver}]"
        );
        let changes = |to: &str| {
            endpoint_metric(
                &gw,
                "coregate_upstream_health_changes_total",
                "u",
                a.addr,
                &format!(",to=\"{to}\""),
            )
        };
        assert_eq!(changes("unhealthy"), Some(1.0), "[{driver}]");
        let failed = endpoint_metric(
            &gw,
            "coregate_upstream_health_checks_total",
            "u",
            a.addr,
            ",result=\"failed\"",
        );
        assert!(failed >= Some(3.0), "[{driver}] {failed:?}");

        sick.store(false, Ordering::SeqCst);
        wait_healthy(&gw, "u", a.addr, 1.0, driver);
        assert_eq!(changes("healthy"), Some(1.0), "[{driver}]");
        let mut c = Client::connect(gw.addr);
        let bodies: Vec<String> = (0..6).map(|_| c.get("/y", "api.test").body_str()).collect();
        assert!(
            bodies.iter().any(|b| b == "A"),
            "[{driver}] back in rotation: {bodies:?}"
        );
    });
}

#[test]
fn tcp_probes_and_the_panic_threshold() {
    let live = Upstream::fixed("live", 200, "live");
    let dead = closed_port();
    let sick = Arc::new(AtomicBool::new(true));
    let solo = probed("solo", sick.clone());
    let cfg = config(
        "",
        &(upstream_toml(
            "pair",
            &[dead, live.addr],
            "retries = 0\nmax_fails = 0\n[upstream.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\nunhealthy_threshold = 3",
        ) + &upstream_toml(
            "solo",
            &[solo.addr],
            "[upstream.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nunhealthy_threshold = 1",
        ) + &route_toml("pair", "pair", "path_prefix = \"/pair\"")
            + &route_toml("solo", "solo", "path_prefix = \"/solo\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        wait_healthy(&gw, "pair", dead, 0.0, driver);
        wait_until(deadline(secs(5)), || {
            endpoint_metric(
                &gw,
                "coregate_upstream_health_checks_total",
                "pair",
                live.addr,
                ",result=\"ok\"",
            ) >= Some(1.0)
        });
        assert_eq!(healthy(&gw, "pair", live.addr), Some(1.0), "[{driver}]");
        let mut c = Client::connect(gw.addr);
        for _ in 0..10 {
            // passive health is off and retries are 0: only the prober keeps the dead one out
            let r = c.get("/pair", "api.test");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "live"),
                "[{driver}]"
            );
        }
        // the sole endpoint fails its probe, but below the panic threshold every endpoint serves
        wait_healthy(&gw, "solo", solo.addr, 0.0, driver);
        let r = c.get("/solo", "api.test");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "solo"),
            "[{driver}]"
        );
        let panics = gw
            .metrics()
            .lines()
            .find(|l| l.starts_with("coregate_upstream_panic_picks_total{upstream=\"solo\"}"))
            .map(|l| l.to_owned());
        assert_eq!(
            panics.as_deref(),
            Some("coregate_upstream_panic_picks_total{upstream=\"solo\"} 1"),
            "[{driver}]"
        );
        let logs = gw.stderr_text();
        assert!(
            logs.contains(&format!(
                "upstream pair endpoint {dead} is unhealthy: connect failed"
            )),
            "[{driver}] {logs}"
        );
    });
}

#[test]
fn probes_speak_h2c_to_http2_upstreams() {
    let h2 = H2Upstream::start(
        100,
        Arc::new(|_, s: &SeenStream| match s.uri.ends_with("/healthz") {
            true => Answer::Respond(204, vec![], vec![], None),
            false => Answer::Respond(200, vec![], b"app".to_vec(), None),
        }),
    );
    let cfg = config(
        "",
        &(upstream_toml(
            "h",
            &[h2.addr],
            "protocol = \"http2\"\n[upstream.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"",
        ) + &route_toml("all", "h", "path_prefix = \"/\"")),
    );
    let gw = Gateway::start_with_args(&cfg, "epoll", &["--workers", "1"]);
    let ok = wait_until(deadline(secs(5)), || {
        endpoint_metric(
            &gw,
            "coregate_upstream_health_checks_total",
            "h",
            h2.addr,
            ",result=\"ok\"",
        ) >= Some(2.0)
    });
    assert!(ok, "{}", gw.metrics());
    let probe = h2
        .seen()
        .into_iter()
        .find(|s| s.uri.ends_with("/healthz"))
        .unwrap();
    assert_eq!(probe.uri, format!("http://{}/healthz", h2.addr));
    assert_eq!(
        probe.header("user-agent").as_deref(),
        Some("coregate-health-check")
    );
    assert_eq!(get(gw.addr, "/x", "api.test").body_str(), "app");
}

#[test]
fn probes_run_over_tls_with_the_upstreams_alpn() {
    use common::tls::*;
    // the upstream: a second gateway whose TLS listener speaks only h2, in front of a mock
    let sick = Arc::new(AtomicBool::new(false));
    let app = probed("app", sick.clone());
    let (_inner, inner_addr, _ca, tls) = h2_only_tls_gateway(app.addr);
    let outer_cfg = |protocol: &str| {
        config(
            "",
            &(upstream_toml(
                "in",
                &[inner_addr],
                &format!("protocol = \"{protocol}\"\n{tls}\n[upstream.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nunhealthy_threshold = 1"),
            ) + &route_toml("all", "in", "path_prefix = \"/\"")),
        )
    };
    for_each_driver(|driver| {
        app.clear();
        let gw = Gateway::start_with_args(&outer_cfg("auto"), driver, &["--workers", "1"]);
        let seen = app.wait_requests(2, secs(5));
        assert!(seen.iter().all(|r| r.target == "/healthz"), "[{driver}]");
        assert_eq!(
            seen[0].header("user-agent").as_deref(),
            Some("coregate-health-check")
        );
        assert_eq!(
            seen[0].header("host").as_deref(),
            Some("inner.test"),
            "[{driver}] the TLS name"
        );
        sick.store(true, Ordering::SeqCst);
        wait_healthy(&gw, "in", inner_addr, 0.0, driver);
        sick.store(false, Ordering::SeqCst);
        wait_healthy(&gw, "in", inner_addr, 1.0, driver);
        // `http1` offers only http/1.1 by ALPN: the h2-only listener refuses the handshake
        let gw1 = Gateway::start_with_args(&outer_cfg("http1"), driver, &["--workers", "1"]);
        wait_healthy(&gw1, "in", inner_addr, 0.0, driver);
        let line = gw1.wait_log("is unhealthy: TLS handshake failed");
        assert!(line.contains(&inner_addr.to_string()), "[{driver}] {line}");
    });
}

#[test]
fn slow_start_ramps_an_endpoint_that_passed_its_probes_again() {
    let sick = Arc::new(AtomicBool::new(false));
    let a = probed("A", sick.clone());
    let b = probed("B", Arc::new(AtomicBool::new(false)));
    let cfg = config(
        "",
        &(upstream_toml(
            "u",
            &[a.addr, b.addr],
            "slow_start = \"60s\"\n[upstream.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 3",
        ) + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        sick.store(false, Ordering::SeqCst);
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        let share_of_a = |c: &mut Client| {
            (0..100)
                .filter(|_| c.get("/x", "api.test").body_str() == "A")
                .count()
        };
        let before = share_of_a(&mut c);
        assert_eq!(before, 50, "[{driver}] healthy from the start: no ramp");
        sick.store(true, Ordering::SeqCst);
        wait_healthy(&gw, "u", a.addr, 0.0, driver);
        sick.store(false, Ordering::SeqCst);
        wait_healthy(&gw, "u", a.addr, 1.0, driver);
        // weighted like 0.1 against B's 1 at first: about 9 in 100
        let after = share_of_a(&mut c);
        assert!(
            (1..=25).contains(&after),
            "[{driver}] A got {after} of 100 right after it came back"
        );
    });
}
