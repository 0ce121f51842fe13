//! Hot reload through the admin port and SIGHUP, as clients and upstreams see it:
//! - an invalid file is refused with every error (key path and line:column) in the 422 answer and
//!   the log, and the gateway keeps serving the old config; settings that need a restart are refused
//!   the same way;
//! - a valid file switches every worker: new routes answer (also on a keep-alive connection opened
//!   before the reload), `/config` shows the new config with its secrets redacted, the generation
//!   and reload counters move;
//! - a request in flight when its upstream is removed finishes on the old config, after which the
//!   removed upstream's pooled connections are closed;
//! - 20 reloads alternating between two upstreams while coregate-load drives traffic: zero failed
//!   requests, the route added by every other config appears and disappears, and the upstream
//!   removed by the last reload gets no new request and has its connections closed.

mod common;
use common::*;
use std::time::Duration;

fn post_reload(gw: &Gateway) -> Response {
    let mut c = Client::connect(gw.admin.expect("admin listener"));
    c.request(&req("POST", "/reload", "admin", &[], b""))
}

fn rewrite(gw: &Gateway, toml: &str) {
    std::fs::write(&gw.config_path, toml).unwrap();
}

fn generation(gw: &Gateway) -> u64 {
    gw.admin_get("/stats").json()["generation"]
        .as_u64()
        .unwrap()
}

fn one_route(up_name: &str, up: &Upstream, extra: &str) -> String {
    config(
        "",
        &(upstream_toml(up_name, &[up.addr], "")
            + &route_toml("main", up_name, "path_prefix = \"/\"")
            + extra),
    )
}

#[test]
fn reload_applies_valid_config_and_refuses_invalid() {
    std::env::set_var("CG_TEST_RELOAD_REDIS_PASSWORD", "hunter2-secret");
    for_each_driver(|driver| {
        let a = Upstream::fixed("a", 200, "A");
        let b = Upstream::fixed("b", 200, "B");
        let v1 = one_route("a", &a, "");
        let mut gw = Gateway::start(&v1, driver);
        let mut kept = Client::connect(gw.addr);
        assert_eq!(kept.get("/x", "r.test").body_str(), "A");

        // invalid: two errors, both reported with positions; still serving v1
        rewrite(
            &gw,
            &(v1.clone() + "[[route]]\nname = \"bad\"\nupstream = \"nope\"\npath_prefix = \"/b\"\ncolour = \"red\"\n"),
        );
        let r = post_reload(&gw);
        assert_eq!(r.status, 422, "[{driver}] {}", r.body_str());
        let body = r.body_str();
        assert!(body.contains("2 error(s)"), "{body}");
        assert!(body.contains("route[1].upstream"), "{body}");
        assert!(body.contains("route[1].colour: unknown key"), "{body}");
        assert!(body.contains(".toml:"), "positions: {body}");
        assert_eq!(kept.get("/x", "r.test").body_str(), "A");
        gw.wait_log("reload failed, still on generation 1");
        let m = gw.metrics();
        assert!(m.contains("coregate_config_reloads_total{result=\"error\"} 1\n"));
        assert!(m.contains("coregate_config_last_reload_successful 0\n"));
        assert_eq!(generation(&gw), 1);

        // a setting that needs a restart
        rewrite(
            &gw,
            &v1.replace(
                "[admin]\nlisten = \"127.0.0.1:0\"",
                "[admin]\nlisten = \"127.0.0.1:1\"",
            ),
        );
        let r = post_reload(&gw);
        assert_eq!(r.status, 422);
        assert!(r.body_str().contains("admin.listen"), "{}", r.body_str());

        // valid: a new upstream and route, a secret in the file
        let v2 = config(
            "",
            &(upstream_toml("a", &[a.addr], "")
                + &upstream_toml("b", &[b.addr], "")
                + &route_toml("main", "a", "path_prefix = \"/\"")
                + &route_toml("new", "b", "path_prefix = \"/new\"")
                + "[redis]\naddr = \"127.0.0.1:1\"\npassword_env = \"CG_TEST_RELOAD_REDIS_PASSWORD\"\n"),
        );
        rewrite(&gw, &v2);
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(r.body_str(), "reloaded: generation 2\n");
        assert_eq!(
            kept.get("/new/1", "r.test").body_str(),
            "B",
            "same connection"
        );
        assert_eq!(get(gw.addr, "/x", "r.test").body_str(), "A");
        let cfg = gw.admin_get("/config").body_str();
        assert!(cfg.contains("\"new\""), "{cfg}");
        assert!(!cfg.contains("hunter2"), "secret redacted: {cfg}");
        let m = gw.metrics();
        assert!(m.contains("coregate_config_reloads_total{result=\"ok\"} 1\n"));
        assert!(m.contains("coregate_config_generation 2\n"));
        // counters of routes carry across generations by name
        assert!(
            m.contains("coregate_requests_total{route=\"main\",class=\"2xx\"} 3\n"),
            "{m}"
        );

        // SIGHUP: main moves to b
        rewrite(
            &gw,
            &v2.replace(
                "name = \"main\"\nupstream = \"a\"",
                "name = \"main\"\nupstream = \"b\"",
            ),
        );
        gw.signal(libc::SIGHUP);
        assert!(
            wait_until(deadline(secs(10)), || generation(&gw) == 3),
            "[{driver}] SIGHUP reload"
        );
        assert_eq!(kept.get("/x", "r.test").body_str(), "B");
        gw.signal(libc::SIGTERM);
        assert!(gw.wait_exit(deadline(secs(10))).success());
    });
}

#[test]
fn in_flight_request_finishes_on_the_old_config() {
    for_each_driver(|driver| {
        let gate = std::sync::Arc::new(Gate::default());
        let g = gate.clone();
        let held = Upstream::start(
            "held",
            false,
            std::sync::Arc::new(move |r: &Recorded| {
                if r.target.ends_with("/slow") {
                    g.wait();
                }
                MockResponse::new(200, "held")
            }),
        );
        let other = Upstream::fixed("other", 200, "other");
        let v1 = config(
            "",
            &(upstream_toml("held", &[held.addr], "")
                + &upstream_toml("other", &[other.addr], "")
                + &route_toml("hold", "held", "path_prefix = \"/hold\"")
                + &route_toml("main", "other", "path_prefix = \"/\"")),
        );
        let gw = Gateway::start(&v1, driver);
        // one finished request leaves a pooled connection to `held`
        assert_eq!(get(gw.addr, "/hold/warm", "r.test").status, 200);
        let mut inflight = Client::connect(gw.addr);
        inflight.send(&req("GET", "/hold/slow", "r.test", &[], b""));
        assert!(wait_until(deadline(secs(5)), || held.request_count() == 2));

        rewrite(&gw, &one_route("other", &other, ""));
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(
            get(gw.addr, "/hold/new", "r.test").body_str(),
            "other",
            "[{driver}] new requests use the new routes"
        );
        gate.release();
        let resp = inflight.read_response();
        assert_eq!(resp.status, 200, "[{driver}] finished on the old config");
        assert_eq!(resp.header("x-upstream").as_deref(), Some("held"));
        assert!(
            wait_until(deadline(secs(5)), || held.open_connections() == 0),
            "[{driver}] the removed upstream's connections are closed: {} open",
            held.open_connections()
        );
        assert_eq!(held.request_count(), 2);
    });
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let a = Upstream::fixed("a", 200, "A");
    let b = Upstream::fixed("b", 200, "B");
    let with_a = one_route("u", &a, "");
    let with_b = config(
        "",
        &(upstream_toml("u", &[b.addr], "")
            + &route_toml("main", "u", "path_prefix = \"/\"")
            + &route_toml("new", "u", "path_prefix = \"/new\"")),
    );
    let gw = Gateway::start(&with_a, "auto");
    let url = format!("http://{}/load", gw.addr);
    let load = std::thread::spawn(move || {
        let args = coregate_load::load::LoadArgs::from_args([
            "-c", "8", "-t", "1", "-d", "15s", "--quiet", &url,
        ])
        .unwrap();
        coregate_load::load::execute(&args).unwrap()
    });
    let mut probe = Client::connect(gw.addr);
    // let traffic reach the first generation before switching
    assert!(wait_until(deadline(secs(5)), || a.request_count() > 100));
    for i in 1..=20u64 {
        let next = if i % 2 == 1 { &with_b } else { &with_a };
        rewrite(&gw, next);
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "reload {i}: {}", r.body_str());
        assert_eq!(r.body_str(), format!("reloaded: generation {}\n", i + 1));
        let new_route = probe.get("/new", "r.test");
        if i % 2 == 1 {
            assert_eq!(
                new_route.body_str(),
                "B",
                "reload {i}: the added route answers"
            );
        } else {
            assert_eq!(
                new_route.body_str(),
                "A",
                "reload {i}: the removed route is gone, `main` answers"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !load.is_finished(),
        "the load must still be running after the last reload (lengthen -d if this machine is slow)"
    );
    // the last reload removed `b`: no new request reaches it, its connections close
    assert!(
        wait_until(deadline(secs(5)), || b.open_connections() == 0),
        "{} connections to the removed upstream",
        b.open_connections()
    );
    let b_seen = b.request_count();
    let a_before = a.request_count();
    assert!(wait_until(deadline(secs(5)), || a.request_count() > a_before + 100));
    assert_eq!(
        b.request_count(),
        b_seen,
        "the removed upstream got new requests"
    );

    let r = load.join().unwrap();
    assert_eq!(r.errors.total(), 0, "failed requests: {:?}", r.errors);
    assert_eq!(
        r.status.get(&200),
        Some(&r.requests),
        "statuses: {:?}",
        r.status
    );
    assert!(r.requests > 1000, "only {} requests", r.requests);
    assert!(b_seen > 0, "b served the odd generations");
}

/// Pools survive reloads: an upstream whose config did not change keeps its pool whole, and one
/// whose settings changed adopts the idle connections to the endpoints it still has. Either way
/// the next request after the reload reuses the pooled connection (the upstream accepts no new
/// one).
#[test]
fn pooled_connections_carry_over_reloads() {
    for_each_driver(|driver| {
        let a = Upstream::fixed("a", 200, "A");
        let v1 = one_route("a", &a, "");
        let gw = Gateway::start_with_args(&v1, driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        assert_eq!(c.get("/1", "r.test").status, 200);
        assert_eq!(a.accepted(), 1);

        // unchanged upstream, a new route
        rewrite(
            &gw,
            &(v1.clone() + &route_toml("extra", "a", "path_prefix = \"/extra\"")),
        );
        assert_eq!(post_reload(&gw).status, 200);
        assert_eq!(c.get("/2", "r.test").status, 200);
        assert_eq!(a.accepted(), 1, "[{driver}] pool kept whole");

        // changed settings, same endpoint
        let v3 = v1.replace(
            &format!("endpoints = [\"{}\"]\n", a.addr),
            &format!("endpoints = [\"{}\"]\nretries = 2\n", a.addr),
        );
        assert_ne!(v3, v1);
        rewrite(&gw, &v3);
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(c.get("/3", "r.test").status, 200);
        assert_eq!(a.accepted(), 1, "[{driver}] idle connection adopted");
        assert!(gw
            .metrics()
            .contains("coregate_upstream_pool_hits_total{upstream=\"a\"} 2\n"));
    });
}

/// Threads named `name` in the gateway process.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Each reload rebuilds the auth state; a JWKS set whose URL did not change starts from the keys it
/// had (no fetch, so a key server that is down cannot leave a policy keyless), and the refresher
/// thread of a replaced set ends once the old generation is gone, so reloads leak no threads.
#[test]
fn reloads_do_not_leak_jwks_refreshers() {
    let doc = common::jwt::rsa_jwks(&[("a", "rsa")]);
    let idp = Upstream::start(
        "jwks",
        false,
        std::sync::Arc::new(move |_: &Recorded| {
            MockResponse::new(200, doc.clone()).header("content-type", "application/json")
        }),
    );
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = config(
        "",
        &(format!(
            "[[auth]]\nname = \"idp\"\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
             jwks_url = \"http://{}/jwks.json\"\njwks_refresh = \"1h\"\n\n",
            idp.addr
        ) + &upstream_toml("u", &[up.addr], "")
            + &route_toml("open", "u", "path_prefix = \"/\"")),
    );
    let gw = Gateway::start(&cfg, "auto");
    assert_eq!(threads_named(gw.pid, "coregate-jwks"), 1);
    for i in 0..5 {
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "reload {i}: {}", r.body_str());
        assert_eq!(get(gw.addr, "/x", "r.test").status, 200);
    }
    assert!(
        wait_until(deadline(secs(10)), || threads_named(
            gw.pid,
            "coregate-jwks"
        ) == 1),
        "{} JWKS refresher threads after 5 reloads",
        threads_named(gw.pid, "coregate-jwks")
    );
    assert_eq!(
        idp.request_count(),
        1,
        "reloads keep the keys of an unchanged JWKS URL instead of fetching again"
    );
}
