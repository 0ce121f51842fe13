//! Cluster-scoped limits through a real Redis, under both drivers:
//! - two gateway processes share one budget: flooded together at several times the limit, they
//!   admit r·t + B between them (not twice that);
//! - Redis outage: each node keeps serving on its local share, says so in a metric and one log
//!   line, and returns to the shared budget (logging once more) when Redis is back; quota usage
//!   counted during the outage is added to the Redis counter on recovery.

mod common;
use common::redis::RedisServer;
use common::*;

use std::time::Duration;

fn redis_section(redis: &RedisServer) -> String {
    format!(
        "[redis]\naddr = \"{}\"\ntimeout = \"2s\"\nkey_prefix = \"cg-test:\"\n",
        redis.addr
    )
}

fn gw_config(up: &Upstream, redis: &RedisServer, limits: &str, routes: &str) -> String {
    config(
        "",
        &format!(
            "{}{}{limits}\n{routes}",
            upstream_toml("u", &[up.addr], ""),
            redis_section(redis)
        ),
    )
}

fn send(gw: &Gateway, path: &str) -> u16 {
    Client::connect(gw.addr)
        .request(&req("GET", path, "c.test", &[], b""))
        .status
}

#[test]
fn two_gateways_share_one_budget() {
    let redis = RedisServer::start();
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = gw_config(
        &up,
        &redis,
        "[[rate_limit]]\nname = \"shared\"\nkey = \"global\"\nrate = \"200/s\"\nburst = 100\nscope = \"cluster\"\n",
        &route_toml("r", "u", "rate_limits = [\"shared\"]"),
    );
    for_each_driver(|d| {
        redis.cmd(&["FLUSHALL"]);
        let a = Gateway::start(&cfg, d);
        let b = Gateway::start(&cfg, d);
        // burst: half a second of rate (see ratelimit.rs: stalls lose tokens of a full bucket)
        let Flood { ok, limited, secs } = flood(&[a.addr, b.addr], 8, "/", Duration::from_secs(3));
        let expected = 200.0 * secs + 100.0;
        let err = (ok as f64 - expected) / expected;
        eprintln!(
            "[{d}] two gateways admitted {ok} refused {limited} in {secs:.2} s: expected {expected:.0}, error {:+.2}%",
            err * 100.0
        );
        assert!(limited > 2 * ok, "[{d}] the load was not over 3x the limit");
        assert!(
            err.abs() < 0.10,
            "[{d}] admitted {ok}, expected {expected:.0}"
        );
        let m = a.metrics();
        let leases: u64 = m
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "coregate_ratelimit_leases_total{kind=\"rate_limit\",policy=\"shared\"} ",
                )
            })
            .and_then(|v| v.parse().ok())
            .expect("lease counter");
        let allowed: u64 = m
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "coregate_ratelimit_allowed_total{kind=\"rate_limit\",policy=\"shared\"} ",
                )
            })
            .and_then(|v| v.parse().ok())
            .expect("allowed counter");
        eprintln!("[{d}] gateway a: {allowed} allowed with {leases} Redis leases");
        assert!(m.contains("coregate_ratelimit_redis_fallback 0\n"));
    });
}

#[test]
fn redis_outage_falls_back_to_the_local_share_and_recovers() {
    let mut redis = RedisServer::start();
    let up = Upstream::fixed("u", 200, "ok");
    let limits = "[[rate_limit]]\nname = \"c\"\nkey = \"client_ip\"\nrate = \"4/h\"\nburst = 4\n\
                  scope = \"cluster\"\nlocal_share = 0.5\n\
                  [[quota]]\nname = \"q\"\nkey = \"global\"\nlimit = \"60/day\"\nscope = \"cluster\"\n";
    let cfg = gw_config(
        &up,
        &redis,
        limits,
        &route_toml("r", "u", "rate_limits = [\"c\"]\nquotas = [\"q\"]"),
    );
    let mut first = true;
    for_each_driver(|d| {
        if !first {
            redis.restart();
        }
        first = false;
        redis.cmd(&["FLUSHALL"]);
        let gw = Gateway::start_with_args(&cfg, d, &["--workers", "1"]);
        assert_eq!(send(&gw, "/"), 200, "[{d}] via Redis");
        let day_key = redis.cmd(&["KEYS", "cg-test:q:q:*"]);
        assert!(
            day_key.ends_with(":global"),
            "[{d}] quota counter {day_key:?}"
        );
        let counted: u64 = redis.cmd(&["GET", &day_key]).parse().unwrap();
        assert!(counted >= 1, "[{d}] a lease was counted in Redis");

        redis.stop();
        // local share: half of burst 4 -> 2 requests, then 429; the gateway keeps answering
        let statuses: Vec<u16> = (0..4).map(|_| send(&gw, "/")).collect();
        assert_eq!(
            statuses,
            [200, 200, 429, 429],
            "[{d}] local share during the outage"
        );
        let m = gw.metrics();
        assert!(
            m.contains("coregate_ratelimit_redis_fallback 1\n"),
            "[{d}] {m}"
        );
        let log = gw.wait_log("unreachable");
        assert_eq!(
            log.matches("unreachable").count(),
            1,
            "[{d}] logged once: {log}"
        );

        redis.restart();
        let back = wait_until(deadline(Duration::from_secs(10)), || {
            gw.metrics()
                .contains("coregate_ratelimit_redis_fallback 0\n")
        });
        assert!(back, "[{d}] never left fallback");
        gw.wait_log("reachable again");
        // the two outage requests were added to the (new) Redis's day counter
        let reconciled = wait_until(deadline(Duration::from_secs(5)), || {
            redis.cmd(&["GET", &day_key]).parse::<u64>().ok() == Some(2)
        });
        assert!(
            reconciled,
            "[{d}] outage usage not reconciled: {}",
            redis.cmd(&["GET", &day_key])
        );
        // shared again: the restarted Redis has a fresh bucket for this client
        assert_eq!(send(&gw, "/"), 200, "[{d}] via Redis again");
        let keys = redis.cmd(&["KEYS", "cg-test:rl:c:*"]);
        assert!(keys.contains("ip=127.0.0.1"), "[{d}] {keys:?}");
        assert_eq!(gw.stderr_text().matches("unreachable").count(), 1);
    });
}
