//! The response cache's shared tier in a real Redis, across two gateway processes (two nodes):
//! an entry one node filled is a hit on the other without an upstream call (its Age counting the
//! time it spent in Redis), and a purge through one node's admin API empties Redis and, through
//! the purge log, the other node's own store. Both drivers.

mod common;
use common::redis::RedisServer;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn two_nodes_share_entries_and_purges() {
    let redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let up = Upstream::start(
        "origin",
        false,
        Arc::new(move |r: &Recorded| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            MockResponse::new(200, format!("{{\"n\":{n},\"t\":\"{}\"}}", r.target))
                .header("content-type", "application/json")
                .header("cache-tag", "products, home")
        }),
    );
    let cfg = config(
        "",
        &(format!(
            "[redis]\naddr = \"{}\"\ntimeout = \"2s\"\nkey_prefix = \"cg-test:\"\n\n",
            redis.addr
        ) + &upstream_toml("origin", &[up.addr], "")
            + &route_toml(
                "popular",
                "origin",
                "path_prefix = \"/\"\ncache = { ttl = \"60s\", shared = \"redis\" }",
            )),
    );
    for_each_driver(|driver| {
        redis.cmd(&["FLUSHALL"]);
        let a = Gateway::start(&cfg, driver);
        let b = Gateway::start(&cfg, driver);
        let before = calls.load(Ordering::SeqCst);
        let first = get(a.addr, "/products/popular", "a.test");
        assert_eq!(
            first.header("x-cache").as_deref(),
            Some("MISS"),
            "[{driver}]"
        );
        // the fill reaches Redis in the background
        let stored = wait_until(deadline(secs(5)), || {
            redis
                .cmd(&["KEYS", "cg-test:cache:*"])
                .contains("/products/popular")
        });
        assert!(stored, "[{driver}] {}", redis.cmd(&["KEYS", "*"]));
        let other = get(b.addr, "/products/popular", "a.test");
        assert_eq!(
            other.header("x-cache").as_deref(),
            Some("HIT"),
            "[{driver}]"
        );
        assert_eq!(other.body, first.body, "[{driver}] the same document");
        assert!(other.header("age").is_some());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 1,
            "[{driver}] one upstream call"
        );

        let entries = |gw: &Gateway| gw.metric("coregate_cache_entries");
        assert_eq!(entries(&b), Some(1), "[{driver}] B keeps its own copy");

        // purge by tag through node A: Redis, and node B's own store through the purge log
        let r = a.admin_post("/cache/purge?tag=products");
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let gone = wait_until(deadline(secs(10)), || {
            let k = redis.cmd(&["KEYS", "cg-test:cache:*"]);
            !k.contains("/products/popular") && entries(&b) == Some(0)
        });
        assert!(
            gone,
            "[{driver}] purged on the other node: {:?}",
            entries(&b)
        );
        let r = get(b.addr, "/products/popular", "a.test");
        assert_eq!(r.header("x-cache").as_deref(), Some("MISS"), "[{driver}]");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 2,
            "[{driver}] refilled once"
        );
    });
}
