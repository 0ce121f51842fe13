//! What an upstream's runtime keeps when a reload (or a DNS change, which switches generations
//! the same way) rebuilds it, as clients see it: an open circuit breaker stays open and an
//! ejected endpoint stays out while their own settings are unchanged, even though the endpoint
//! list moved; a changed breaker, or one whose upstream left, starts closed and leaves the
//! open-breakers gauge.
//! (Hash keys staying with their endpoints: tests/balance.rs.)

mod common;
use common::*;

fn post_reload(gw: &Gateway) {
    let r = gw.admin_post("/reload");
    assert_eq!(r.status, 200, "reload: {}", r.body_str());
}

#[test]
fn an_open_breaker_stays_open_when_a_reload_moves_the_endpoints() {
    let down = Upstream::fixed("down", 503, "down");
    let spare = Upstream::fixed("spare", 200, "spare");
    let cfg = |eps: &[std::net::SocketAddr], open_for: &str| {
        config(
            "",
            &(upstream_toml(
                "u",
                eps,
                &format!(
                    "retries = 0\nmax_fails = 0\n[upstream.circuit_breaker]\nmin_calls = 4\n\
                     window_calls = 4\nopen_for = \"{open_for}\"\nfailure_statuses = [503]"
                ),
            ) + &route_toml("all", "u", "path_prefix = \"/\"")),
        )
    };
    let open = "coregate_upstream_breaker_open{upstream=\"u\"}";
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg(&[down.addr], "30s"), driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        for _ in 0..4 {
            assert_eq!(c.get("/x", "a.test").body_str(), "down", "[{driver}]");
        }
        let tripped = |c: &mut Client| c.get("/x", "a.test").body_str().contains("circuit breaker");
        assert!(tripped(&mut c), "[{driver}] tripped after 4 failures");
        assert_eq!(gw.metric(open), Some(1), "[{driver}]");

        // an endpoint joins (as a DNS change would bring it): the breaker is the upstream's
        // and its settings did not change, so it stays open
        std::fs::write(&gw.config_path, cfg(&[down.addr, spare.addr], "30s")).unwrap();
        post_reload(&gw);
        let mut c = Client::connect(gw.addr);
        assert!(
            (0..4).all(|_| tripped(&mut c)),
            "[{driver}] the reload closed an open breaker"
        );
        assert_eq!(spare.request_count(), 0, "[{driver}]");
        assert_eq!(gw.metric(open), Some(1), "[{driver}]");

        // new breaker settings: a new breaker, closed, and the gauge says so
        std::fs::write(&gw.config_path, cfg(&[down.addr, spare.addr], "20s")).unwrap();
        post_reload(&gw);
        assert_eq!(gw.metric(open), Some(0), "[{driver}]");
        let mut c = Client::connect(gw.addr);
        assert!(
            !tripped(&mut c),
            "[{driver}] a changed breaker starts closed"
        );

        // tripped again, then the upstream leaves the config and comes back: a new breaker,
        // and the gauge does not count the one that left
        std::fs::write(&gw.config_path, cfg(&[down.addr], "20s")).unwrap();
        post_reload(&gw);
        let mut c = Client::connect(gw.addr);
        assert!(
            (0..6).any(|_| tripped(&mut c)),
            "[{driver}] never tripped again"
        );
        assert_eq!(gw.metric(open), Some(1), "[{driver}]");
        let elsewhere = config(
            "",
            &(upstream_toml("v", &[spare.addr], "")
                + &route_toml("all", "v", "path_prefix = \"/\"")),
        );
        std::fs::write(&gw.config_path, elsewhere).unwrap();
        post_reload(&gw);
        std::fs::write(&gw.config_path, cfg(&[down.addr], "20s")).unwrap();
        post_reload(&gw);
        assert_eq!(gw.metric(open), Some(0), "[{driver}]");
        let mut c = Client::connect(gw.addr);
        assert!(!tripped(&mut c), "[{driver}] the upstream came back closed");
    });
}

#[test]
fn an_ejected_endpoint_stays_out_when_a_reload_moves_the_endpoints() {
    let dead = closed_port();
    let live = Upstream::fixed("live", 200, "live");
    let other = Upstream::fixed("other", 200, "other");
    let cfg = |eps: &[std::net::SocketAddr]| {
        config(
            "",
            &(upstream_toml(
                "u",
                eps,
                "retries = 1\nmax_fails = 1\nfail_timeout = \"30s\"",
            ) + &route_toml("all", "u", "path_prefix = \"/\"")),
        )
    };
    let refused = "coregate_upstream_errors_total{upstream=\"u\",kind=\"connect\"}";
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg(&[dead, live.addr]), driver, &["--workers", "1"]);
        let mut c = Client::connect(gw.addr);
        // round robin meets the dead endpoint within two requests: refused, retried, ejected
        for _ in 0..2 {
            assert_eq!(c.get("/x", "a.test").body_str(), "live", "[{driver}]");
        }
        assert_eq!(gw.metric(refused), Some(1), "[{driver}]");

        // listed in another place, next to a new endpoint: still out for its fail_timeout
        std::fs::write(&gw.config_path, cfg(&[other.addr, live.addr, dead])).unwrap();
        post_reload(&gw);
        let mut c = Client::connect(gw.addr);
        for _ in 0..6 {
            let body = c.get("/x", "a.test").body_str();
            assert!(body == "live" || body == "other", "[{driver}] {body}");
        }
        assert_eq!(
            gw.metric(refused),
            Some(1),
            "[{driver}] the reload let the ejected endpoint back in"
        );
    });
}
