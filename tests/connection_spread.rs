//! Load-aware connection spread (`runtime/spread.rs`): with `--connection-balance least-loaded`
//! (the default) a worker that is ahead of the least-loaded one hands new connections to it, so
//! 100 keep-alive connections end up split evenly over two workers whatever SO_REUSEPORT's hash
//! said, and every handed-off connection is served by its new worker (requests on it succeed, now
//! and later). With `kernel`, nothing is handed off.

mod common;
use common::*;
use std::sync::Arc;

/// `family{worker="N"}` for each of the gateway's workers, from one scrape.
fn per_worker(gw: &Gateway, metrics: &str, family: &str) -> Vec<u64> {
    (0..gw.workers)
        .map(|w| metric_value(metrics, &format!("{family}{{worker=\"{w}\"}}")).unwrap_or(0))
        .collect()
}

fn setup() -> (Upstream, String) {
    let up = Upstream::start(
        "spread",
        false,
        Arc::new(|r: &Recorded| MockResponse::new(200, format!("ok {}", r.target))),
    );
    let cfg = config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    (up, cfg)
}

/// Opens `n` connections one after another, each answering one request before the next opens.
fn open_sequentially(gw: &Gateway, n: usize, driver: &str) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = Client::connect(gw.addr);
            let r = c.get(&format!("/first/{i}"), "spread.test");
            assert_eq!(
                (r.status, r.body_str()),
                (200, format!("ok /first/{i}")),
                "[{driver}]"
            );
            c
        })
        .collect()
}

#[test]
fn least_loaded_spreads_keep_alive_connections_evenly() {
    let (_up, cfg) = setup();
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "2"]);
        let mut clients = open_sequentially(&gw, 100, driver);
        let m = gw.metrics();
        let open = per_worker(&gw, &m, "coregate_worker_open_connections");
        let handed = per_worker(&gw, &m, "coregate_worker_handed_off_connections_total");
        assert_eq!(open.iter().sum::<u64>(), 100, "[{driver}] {open:?}");
        // one at a time, counts are exact: a worker more than 1 + load/16 ahead hands off
        assert!(
            open[0].abs_diff(open[1]) <= 5,
            "[{driver}] open connections per worker {open:?} (handed off {handed:?})"
        );
        assert!(
            handed.iter().sum::<u64>() > 0,
            "[{driver}] SO_REUSEPORT's hash alone split 100 connections {open:?}: nothing was handed off"
        );
        // handed-off connections keep working on their new worker
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c.get(&format!("/again/{i}"), "spread.test");
            assert_eq!(
                (r.status, r.body_str()),
                (200, format!("ok /again/{i}")),
                "[{driver}]"
            );
        }
        drop(clients);
        let deadline = deadline(secs(5));
        assert!(
            wait_until(deadline, || {
                per_worker(&gw, &gw.metrics(), "coregate_worker_open_connections")
                    .iter()
                    .sum::<u64>()
                    == 0
            }),
            "[{driver}] closed connections still counted"
        );
    });
}

#[test]
fn kernel_balance_hands_nothing_off() {
    let (_up, cfg) = setup();
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(
            &cfg,
            driver,
            &["--workers", "2", "--connection-balance", "kernel"],
        );
        let _clients = open_sequentially(&gw, 40, driver);
        let m = gw.metrics();
        let handed = per_worker(&gw, &m, "coregate_worker_handed_off_connections_total");
        assert_eq!(handed.iter().sum::<u64>(), 0, "[{driver}] {handed:?}");
        let open = per_worker(&gw, &m, "coregate_worker_open_connections");
        assert_eq!(open.iter().sum::<u64>(), 40, "[{driver}] {open:?}");
    });
}
