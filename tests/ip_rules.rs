//! IP rules and the real client address through real sockets: route `allow_ips` / `deny_ips`
//! (403 before the upstream sees anything, deny winning), server-wide rules before routing,
//! `trusted_proxies` walking `X-Forwarded-For` from the right past trusted hops (the client found
//! is what the rules and the access log see; the upstream's X-Forwarded-For still appends the TCP
//! peer), and a spoofed header from an untrusted peer changing nothing. Both drivers.

mod common;
use common::*;

fn denied(gw: &Gateway, route: &str) -> Option<f64> {
    let prefix = format!("coregate_ip_denied_total{{route=\"{route}\"}} ");
    let m = gw.metrics();
    let line = m.lines().find(|l| l.starts_with(&prefix))?;
    line[prefix.len()..].trim().parse().ok()
}

fn with_xff(c: &mut Client, path: &str, xff: &str) -> Response {
    c.request(&req(
        "GET",
        path,
        "a.test",
        &[("x-forwarded-for", xff)],
        b"",
    ))
}

#[test]
fn route_rules_refuse_before_the_upstream() {
    let up = Upstream::recording("u");
    let cfg = config(
        "",
        &(upstream_toml("u", &[up.addr], "")
            + &route_toml(
                "denied",
                "u",
                "path_prefix = \"/a\"\ndeny_ips = [\"127.0.0.0/8\"]",
            )
            + &route_toml(
                "elsewhere",
                "u",
                "path_prefix = \"/b\"\nallow_ips = [\"10.0.0.0/8\", \"2001:db8::/32\"]",
            )
            + &route_toml(
                "local",
                "u",
                "path_prefix = \"/c\"\nallow_ips = [\"127.0.0.0/8\"]\ndeny_ips = [\"127.0.0.2\"]",
            )),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        for path in ["/a/1", "/b/1"] {
            let r = c.get(path, "a.test");
            assert_eq!(r.status, 403, "[{driver}] {path}");
            assert!(
                r.body_str().contains("client address not allowed"),
                "[{driver}] {}",
                r.body_str()
            );
            assert!(
                r.header("content-type").unwrap().contains("json"),
                "[{driver}]"
            );
        }
        assert_eq!(
            c.get("/c/1", "a.test").status,
            200,
            "[{driver}] 127.0.0.1 is allowed"
        );
        assert_eq!(
            up.request_count(),
            1,
            "[{driver}] refused requests never reached it"
        );
        assert_eq!(denied(&gw, "denied"), Some(1.0), "[{driver}]");
        assert_eq!(denied(&gw, "elsewhere"), Some(1.0), "[{driver}]");
        assert_eq!(denied(&gw, "local"), Some(0.0), "[{driver}]");
    });
}

#[test]
fn trusted_proxies_name_the_client_and_untrusted_peers_cannot() {
    let up = Upstream::recording("u");
    let log = temp_path("log");
    let rules = "path_prefix = \"/\"\ndeny_ips = [\"203.0.113.0/24\"]";
    let cfg = |trusted: &str| {
        config(
            &format!("trusted_proxies = [{trusted}]"),
            &(format!(
                "[access_log]\nsink = \"file\"\npath = \"{}\"\nflush_interval = \"20ms\"\n\n",
                log.display()
            ) + &upstream_toml("u", &[up.addr], "")
                + &route_toml("all", "u", rules)),
        )
    };
    for_each_driver(|driver| {
        // the gateway's peer (127.0.0.1) is a trusted proxy
        let gw = Gateway::start(&cfg("\"127.0.0.1\", \"10.0.0.0/8\""), driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        assert_eq!(
            with_xff(&mut c, "/1", "203.0.113.9").status,
            403,
            "[{driver}] the named client is denied"
        );
        // walked from the right past trusted hops: the client is 203.0.113.9 again
        assert_eq!(
            with_xff(&mut c, "/2", "198.51.100.1, 203.0.113.9, 10.1.1.1").status,
            403,
            "[{driver}]"
        );
        // a spoofed left part is never reached: the client is 198.51.100.7
        let r = with_xff(&mut c, "/3", "203.0.113.9, 198.51.100.7");
        assert_eq!(r.status, 200, "[{driver}]");
        let seen = up.wait_requests(1, secs(5));
        assert_eq!(
            seen[0].header("x-forwarded-for").as_deref(),
            Some("203.0.113.9, 198.51.100.7, 127.0.0.1"),
            "[{driver}] the upstream's header appends the TCP peer"
        );
        let logged = wait_until(deadline(secs(5)), || {
            std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains("\"client_ip\":\"198.51.100.7\""))
        });
        assert!(
            logged,
            "[{driver}] {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        drop(gw);

        // 127.0.0.1 is not trusted: its X-Forwarded-For is ignored, whatever it says
        let gw = Gateway::start(&cfg("\"10.0.0.0/8\""), driver);
        let mut c = Client::connect(gw.addr);
        assert_eq!(
            with_xff(&mut c, "/4", "203.0.113.9").status,
            200,
            "[{driver}] spoofed"
        );
    });
}

#[test]
fn server_rules_apply_before_routing() {
    let up = Upstream::recording("u");
    let cfg = config(
        "deny_ips = [\"127.0.0.0/8\", \"::1\"]",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/api\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        // even a path no route matches: refused before routing
        assert_eq!(c.get("/nowhere", "a.test").status, 403, "[{driver}]");
        assert_eq!(c.get("/api/x", "a.test").status, 403, "[{driver}]");
        assert_eq!(up.request_count(), 0);
        assert_eq!(denied(&gw, ""), Some(2.0), "[{driver}]");
    });
}

#[test]
fn listener_rules_apply_to_their_listener_only() {
    let up = Upstream::recording("u");
    let cfg = config(
        "",
        &("[[listener]]\nlisten = \"127.0.0.1:0\"\ndeny_ips = [\"127.0.0.0/8\", \"::1\"]\n\n"
            .to_string()
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        assert_eq!(
            get(gw.addr, "/x", "a.test").status,
            200,
            "[{driver}] [server] listen"
        );
        let r = get(common::tls::listener_addr(&gw, 0), "/x", "a.test");
        assert_error_json(&r, 403);
        assert!(
            r.body_str().contains("client address not allowed"),
            "[{driver}]"
        );
        assert_eq!(up.request_count(), 1, "[{driver}]");
        assert_eq!(denied(&gw, ""), Some(1.0), "[{driver}]");
    });
}
