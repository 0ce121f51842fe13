//! Graceful shutdown: on SIGTERM the gateway stops accepting (new connections refused), closes
//! idle keep-alive connections, lets a request in flight on a slow upstream finish with its full
//! 200 response and `Connection: close`, then exits 0; SIGINT on an idle gateway exits 0; and
//! `--drain-timeout` bounds how long a stuck request can hold the exit. The in-flight request is
//! held by a gate the test releases, so no step depends on timing.

mod common;
use common::*;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// An upstream whose `/slow` waits for the gate, then one more second; other paths answer at once.
fn slow_gated() -> (Upstream, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let up = Upstream::start(
        "slow",
        true,
        Arc::new(move |r: &Recorded| {
            if r.target == "/slow" {
                g.wait();
                MockResponse::new(200, "slow body complete").delay_ms(1000)
            } else {
                MockResponse::new(200, "quick")
            }
        }),
    );
    (up, gate)
}

fn drain_config(up: &Upstream) -> String {
    config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

fn refused(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn sigterm_drains_in_flight_request() {
    for_each_driver(|driver| {
        let (up, gate) = slow_gated();
        let mut gw = Gateway::start(&drain_config(&up), driver);

        let mut idle = Client::connect(gw.addr);
        assert_eq!(
            idle.get("/quick", "d.test").body_str(),
            "quick",
            "[{driver}]"
        );
        let mut inflight = Client::connect(gw.addr);
        inflight.send(&req("GET", "/slow", "d.test", &[], b""));
        assert!(
            wait_until(deadline(secs(10)), || up
                .requests()
                .iter()
                .any(|r| r.target == "/slow")),
            "[{driver}] the slow request never reached the upstream"
        );

        gw.signal(libc::SIGTERM);
        assert!(
            wait_until(deadline(secs(10)), || refused(gw.addr)),
            "[{driver}] still accepting connections 10 s after SIGTERM"
        );
        assert!(
            gw.running(),
            "[{driver}] gateway exited with a request in flight"
        );
        assert_eq!(
            idle.closed_within(secs(10)),
            CloseOutcome::Closed,
            "[{driver}] idle keep-alive connection not closed on drain"
        );

        gate.release();
        let r = inflight
            .try_read_response("GET", None)
            .unwrap_or_else(|e| panic!("[{driver}] in-flight request lost: {e}"));
        assert_eq!(
            (r.status, r.body_str()),
            (200, "slow body complete".to_string()),
            "[{driver}] in-flight response"
        );
        assert!(
            has_token(&r.header_all("connection"), "close"),
            "[{driver}] draining response must say Connection: close"
        );
        assert_eq!(
            inflight.closed_within(secs(10)),
            CloseOutcome::Closed,
            "[{driver}] connection closed after the drained response"
        );

        let status = gw.wait_exit(deadline(secs(15)));
        assert_eq!(
            status.code(),
            Some(0),
            "[{driver}] exit status after drain: {status:?}"
        );
    });
}

#[test]
fn sigint_on_idle_gateway_exits_zero() {
    let up = Upstream::recording("rec");
    let cfg = drain_config(&up);
    for_each_driver(|driver| {
        let mut gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        assert_eq!(c.get("/x", "d.test").status, 200);
        gw.signal(libc::SIGINT);
        assert_eq!(
            c.closed_within(secs(10)),
            CloseOutcome::Closed,
            "[{driver}] idle connection not closed on SIGINT"
        );
        let status = gw.wait_exit(deadline(secs(15)));
        assert_eq!(status.code(), Some(0), "[{driver}] exit status: {status:?}");
    });
}

#[test]
fn drain_timeout_bounds_a_stuck_request() {
    for_each_driver(|driver| {
        let (up, gate) = slow_gated();
        let mut gw =
            Gateway::start_with_args(&drain_config(&up), driver, &["--drain-timeout", "500ms"]);
        let mut stuck = Client::connect(gw.addr);
        stuck.send(&req("GET", "/slow", "d.test", &[], b""));
        assert!(
            wait_until(deadline(secs(10)), || up.request_count() == 1),
            "[{driver}] the stuck request never reached the upstream"
        );
        gw.signal(libc::SIGTERM);
        // The gate stays shut: only the drain timeout can end this.
        let status = gw.wait_exit(deadline(secs(20)));
        eprintln!("[{driver}] exit after drain timeout: {status:?}");
        assert!(
            status.code().is_some(),
            "[{driver}] gateway died by a signal instead of exiting: {status:?}"
        );
        match stuck.try_read_response("GET", None) {
            Ok(r) => assert_ne!(
                r.status, 200,
                "[{driver}] a stuck request cannot have completed"
            ),
            Err(e) => {
                eprintln!("[{driver}] stuck request ended with {e} (expected: connection closed)")
            }
        }
        gate.release();
    });
}

/// Graceful shutdown under load: coregate-load keeps 16 connections busy on a 20 ms upstream when
/// SIGTERM arrives. Every request that reached the upstream comes back to the generator as a
/// complete 200 (none cut off, no 5xx), and the gateway exits 0. Requests sent after the drain
/// began on a connection the gateway was closing never reached the upstream and are not counted.
#[test]
fn sigterm_under_load_completes_every_accepted_request() {
    for_each_driver(|driver| {
        let up = Upstream::slow("s", 20, "done");
        let mut gw = Gateway::start(&drain_config(&up), driver);
        let url = format!("http://{}/work", gw.addr);
        let load = std::thread::spawn(move || {
            let args = coregate_load::load::LoadArgs::from_args([
                "-c",
                "16",
                "-t",
                "1",
                "-d",
                "3s",
                "--timeout",
                "2s",
                "--quiet",
                &url,
            ])
            .unwrap();
            coregate_load::load::execute(&args).unwrap()
        });
        assert!(wait_until(deadline(secs(10)), || up.request_count() > 100));
        gw.signal(libc::SIGTERM);
        assert!(
            gw.wait_exit(deadline(secs(15))).success(),
            "[{driver}] exit status"
        );
        let reached = up.request_count() as u64;
        let r = load.join().unwrap();
        assert_eq!(
            r.status.get(&200).copied().unwrap_or(0),
            r.requests,
            "[{driver}] only 200s: {:?}",
            r.status
        );
        assert_eq!(
            r.requests, reached,
            "[{driver}] every request the upstream saw completed to the client (errors after the drain: {:?})",
            r.errors
        );
    });
}
