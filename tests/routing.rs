//! Route selection through the real gateway: the precedence table (exact host > wildcard host >
//! no host; exact path > template > prefix with the longest prefix winning on a segment
//! boundary; header conditions first; method-restricted routes before any-method; config order
//! on ties), 404 and 405 with the `Allow` union, and the request the upstream sees after
//! `strip_prefix`, `rewrite_prefix` and `host_rewrite`.

mod common;
use common::*;
use std::collections::BTreeSet;

/// Routes in an order that differs from their precedence, so config order cannot pass for it.
const PRECEDENCE_ROUTES: &[(&str, &str)] = &[
    ("nohost", "path_prefix = \"/\""),
    ("wild", "host = \"*.example.com\"\npath_prefix = \"/\""),
    (
        "exacthost",
        "host = \"api.example.com\"\npath_prefix = \"/\"",
    ),
    ("p_short", "path_prefix = \"/p\""),
    ("p_long", "path_prefix = \"/p/users\""),
    ("template", "path_template = \"/p/users/{id}\""),
    ("exact", "path = \"/p/users/me\""),
    ("rest", "path_template = \"/files/{*rest}\""),
    ("h_plain", "path_prefix = \"/h\""),
    (
        "h_canary",
        "path_prefix = \"/h\"\nheaders = { \"x-canary\" = \"1\" }",
    ),
    ("m_any", "path_prefix = \"/m\""),
    ("m_post", "path_prefix = \"/m\"\nmethods = [\"POST\"]"),
    (
        "tie1",
        "path_prefix = \"/tie\"\nheaders = { \"x-a\" = \"1\" }",
    ),
    (
        "tie2",
        "path_prefix = \"/tie\"\nheaders = { \"x-b\" = \"1\" }",
    ),
    ("tie_none", "path_prefix = \"/tie\""),
];

/// (method, host, path, extra headers, upstream that must answer)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

const PRECEDENCE_CASES: &[Case] = &[
    // Host precedence.
    ("GET", "other.test", "/anything", &[], "nohost"),
    ("GET", "foo.example.com", "/x", &[], "wild"),
    ("GET", "api.example.com", "/x", &[], "exacthost"),
    ("GET", "API.Example.COM", "/x", &[], "exacthost"),
    ("GET", "api.example.com:8080", "/x", &[], "exacthost"),
    // Host decides before path specificity.
    ("GET", "api.example.com", "/p/users/me", &[], "exacthost"),
    ("GET", "foo.example.com", "/p/users/me", &[], "wild"),
    // Path precedence: exact > template > longest prefix > shorter prefix.
    ("GET", "plain.test", "/p/users/me", &[], "exact"),
    ("GET", "plain.test", "/p/users/me?x=1", &[], "exact"),
    ("GET", "plain.test", "/p/users/42", &[], "template"),
    ("GET", "plain.test", "/p/users/42/posts", &[], "p_long"),
    ("GET", "plain.test", "/p/users", &[], "p_long"),
    ("GET", "plain.test", "/p/users/", &[], "p_long"),
    ("GET", "plain.test", "/p/usersX", &[], "p_short"),
    ("GET", "plain.test", "/p/other", &[], "p_short"),
    ("GET", "plain.test", "/p", &[], "p_short"),
    ("GET", "plain.test", "/pX", &[], "nohost"),
    ("GET", "plain.test", "/files/a/b/c.txt", &[], "rest"),
    // Header conditions first.
    ("GET", "plain.test", "/h/x", &[], "h_plain"),
    (
        "GET",
        "plain.test",
        "/h/x",
        &[("x-canary", "1")],
        "h_canary",
    ),
    (
        "GET",
        "plain.test",
        "/h/x",
        &[("X-Canary", "1")],
        "h_canary",
    ),
    ("GET", "plain.test", "/h/x", &[("x-canary", "2")], "h_plain"),
    // Method-restricted routes before any-method ones.
    ("GET", "plain.test", "/m/x", &[], "m_any"),
    ("POST", "plain.test", "/m/x", &[], "m_post"),
    ("DELETE", "plain.test", "/m/x", &[], "m_any"),
    // Ties (equally specific routes that both match): config order.
    (
        "GET",
        "plain.test",
        "/tie/x",
        &[("x-a", "1"), ("x-b", "1")],
        "tie1",
    ),
    ("GET", "plain.test", "/tie/x", &[("x-b", "1")], "tie2"),
    ("GET", "plain.test", "/tie/x", &[], "tie_none"),
];

#[test]
fn precedence_table() {
    let ups: Vec<Upstream> = PRECEDENCE_ROUTES
        .iter()
        .map(|(n, _)| Upstream::fixed(n, 200, n))
        .collect();
    let mut body = String::new();
    for u in &ups {
        body += &upstream_toml(&u.name, &[u.addr], "");
    }
    for (name, keys) in PRECEDENCE_ROUTES {
        body += &route_toml(name, name, keys);
    }
    let cfg = config("", &body);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut failures = Vec::new();
        for (method, host, path, headers, want) in PRECEDENCE_CASES {
            let r = Client::connect(gw.addr).request(&req(method, path, host, headers, b""));
            let got = r
                .header("x-upstream")
                .unwrap_or_else(|| format!("<gateway {}>", r.status));
            if got != *want || r.status != 200 || r.body_str() != *want {
                failures.push(format!(
                    "{method} {path} Host: {host} {headers:?}: want {want}, got {got} (status {}, body {:?})",
                    r.status,
                    r.body_str()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "[{driver}] {} routing cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

fn allow_set(r: &Response) -> BTreeSet<String> {
    r.header_all("allow")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|m| m.trim().to_ascii_uppercase())
        .collect()
}

#[test]
fn not_found_and_method_not_allowed() {
    let up = Upstream::fixed("only", 200, "only");
    let body = upstream_toml("only", &[up.addr], "")
        + &route_toml("get", "only", "path = \"/only\"\nmethods = [\"GET\"]")
        + &route_toml("post", "only", "path = \"/only\"\nmethods = [\"POST\"]")
        + &route_toml("api", "only", "path_prefix = \"/api\"\nmethods = [\"PUT\"]")
        + &route_toml(
            "scoped",
            "only",
            "host = \"scoped.test\"\npath_prefix = \"/\"",
        );
    let cfg = config("", &body);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let send = |m: &str, path: &str, host: &str| {
            Client::connect(gw.addr).request(&req(m, path, host, &[], b""))
        };

        assert_eq!(send("GET", "/only", "t.test").status, 200);
        assert_eq!(send("POST", "/only", "t.test").status, 200);

        let r = send("DELETE", "/only", "t.test");
        assert_error_json(&r, 405);
        let allow = allow_set(&r);
        let required: BTreeSet<String> = ["GET", "POST"].iter().map(|s| s.to_string()).collect();
        assert!(
            allow.is_superset(&required) && allow.iter().all(|m| required.contains(m) || m == "HEAD"),
            "[{driver}] DELETE /only: Allow must be the union GET, POST (HEAD optional), got {allow:?}"
        );

        let r = send("GET", "/api/things", "t.test");
        assert_error_json(&r, 405);
        let allow = allow_set(&r);
        assert!(
            allow.contains("PUT") && !allow.contains("GET"),
            "[{driver}] GET /api/things: Allow {allow:?}"
        );
        assert_eq!(send("PUT", "/api/things", "t.test").status, 200);

        for path in ["/nothing", "/onlyX", "/only/sub", "/apix", "/"] {
            let r = send("GET", path, "t.test");
            assert_error_json(&r, 404);
            assert!(
                !r.has("x-upstream"),
                "[{driver}] GET {path}: 404 must not come from an upstream"
            );
        }
        // A host-scoped route does not serve other hosts.
        assert_eq!(send("GET", "/z", "scoped.test").status, 200);
        assert_error_json(&send("GET", "/z", "unscoped.test"), 404);
        assert_eq!(
            up.requests().len(),
            4,
            "[{driver}] only the four routed requests reach the upstream"
        );
        up.clear();
    });
}

/// (route keys, request path, request host, target the upstream must see, Host it must see)
const REWRITE_CASES: &[(&str, &str, &str, &str)] = &[
    ("/strip/a/b?q=1", "front.test", "/a/b?q=1", "front.test"),
    ("/strip", "front.test", "/", "front.test"),
    ("/stripX/keep", "front.test", "/stripX/keep", "front.test"),
    ("/old/x?y=2", "front.test", "/v2/x?y=2", "front.test"),
    ("/old", "front.test", "/v2", "front.test"),
    ("/hrw/z", "front.test", "/hrw/z", "users.internal"),
    ("/plain/k", "front.test", "/plain/k", "front.test"),
];

#[test]
fn rewrites_as_seen_by_upstream() {
    let rec = Upstream::recording("rec");
    let body = upstream_toml("rec", &[rec.addr], "")
        + &route_toml(
            "strip",
            "rec",
            "path_prefix = \"/strip\"\nstrip_prefix = \"/strip\"",
        )
        + &route_toml(
            "rewrite",
            "rec",
            "path_prefix = \"/old\"\nrewrite_prefix = { from = \"/old\", to = \"/v2\" }",
        )
        + &route_toml(
            "hrw",
            "rec",
            "path_prefix = \"/hrw\"\nhost_rewrite = \"users.internal\"",
        )
        + &route_toml("fallback", "rec", "path_prefix = \"/\"");
    let cfg = config("", &body);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut failures = Vec::new();
        for (path, host, want_target, want_host) in REWRITE_CASES {
            rec.clear();
            let r = Client::connect(gw.addr).request(&req("GET", path, host, &[], b""));
            if r.status != 200 {
                failures.push(format!(
                    "GET {path}: status {} body {:?}",
                    r.status,
                    r.body_str()
                ));
                continue;
            }
            let seen = rec.wait_requests(1, secs(5));
            let s = &seen[0];
            let got_host = s.header_all("host");
            if s.target != *want_target || got_host != [want_host.to_string()] {
                failures.push(format!(
                    "GET {path} Host {host}: upstream saw target {:?} Host {got_host:?}, want {want_target:?} Host {want_host:?}",
                    s.target
                ));
            }
            if s.header("x-forwarded-host").as_deref() != Some(*host) {
                failures.push(format!(
                    "GET {path}: X-Forwarded-Host {:?}, want {host:?}",
                    s.header("x-forwarded-host")
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "[{driver}] rewrite cases failed:\n{}",
            failures.join("\n")
        );
    });
}
