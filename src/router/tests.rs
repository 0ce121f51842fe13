//! Table tests for the router: one section per matching / precedence rule, plus `rewrite_target`.
//!
//! Every lookup goes through [`check`], which asks both the compiled [`Router`] and the
//! [`LinearRouter`] and asserts they agree before comparing with the expected answer.

use super::*;
use crate::config::{PrefixRewrite, TemplateSegment};

/// Test headers: (lower-case name, value) pairs.
pub(super) struct Hdrs(pub(super) Vec<(String, String)>);

impl HeaderSource for Hdrs {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, v)| v.as_bytes())
    }
}

fn hdrs(list: &[(&str, &str)]) -> Hdrs {
    Hdrs(
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

pub(super) fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

pub(super) fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

/// `"/a/{id}/{*rest}"` -> template segments.
pub(super) fn tmpl(t: &str) -> PathMatch {
    let segs = t[1..]
        .split('/')
        .map(|s| {
            if let Some(n) = s.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                TemplateSegment::CatchAll(n.into())
            } else if let Some(n) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                TemplateSegment::Param(n.into())
            } else {
                TemplateSegment::Literal(s.into())
            }
        })
        .collect();
    PathMatch::Template(segs)
}

/// `host`: "" = none, "*.x" = suffix ".x", else exact.
pub(super) fn route(host: &str, path: PathMatch) -> RouteConfig {
    RouteConfig {
        name: String::new(),
        host: match host {
            "" => None,
            h if h.starts_with("*.") => Some(HostMatch::Suffix(h[1..].into())),
            h => Some(HostMatch::Exact(h.into())),
        },
        path,
        methods: None,
        headers: Vec::new(),
        upstream: 0,
        rewrite: None,
        host_rewrite: None,
        max_body: 0,
        auth: None,
        require: None,
        rate_limits: Vec::new(),
        quotas: Vec::new(),
        cost: None,
        require_client_cert: false,
        client_cert_sans: Vec::new(),
        response_fields: None,
        websocket: false,
        upgrades: Vec::new(),
        tunnel_idle_timeout: std::time::Duration::from_secs(300),
        bulkhead: None,
        pools: Vec::new(),
        allow_ips: None,
        deny_ips: None,
        fallback: None,
        waf: None,
        validation: None,
        request_headers: None,
        response_headers: None,
        cache: None,
        aggregate: None,
        body: None,
    }
}

fn with_methods(mut r: RouteConfig, m: &[&str]) -> RouteConfig {
    r.methods = Some(m.iter().map(|s| s.to_string()).collect());
    r
}

fn with_header(mut r: RouteConfig, n: &str, v: &str) -> RouteConfig {
    r.headers.push((n.into(), v.into()));
    r
}

fn check_h(routes: &[RouteConfig], host: &str, method: &str, path: &str, h: &Hdrs) -> Match {
    let (hb, mb, pb) = (host.as_bytes(), method.as_bytes(), path.as_bytes());
    let got = Router::new(routes).lookup(hb, mb, pb, h);
    let linear = LinearRouter::new(routes).lookup(hb, mb, pb, h);
    assert_eq!(got, linear, "router vs linear for {host} {method} {path}");
    got
}

fn check(routes: &[RouteConfig], host: &str, method: &str, path: &str) -> Match {
    check_h(routes, host, method, path, &hdrs(&[]))
}

use Match::{MethodNotAllowed as NotAllowed, NotFound, Route};

#[test]
fn host_normalisation() {
    let routes = [
        route("api.example.com", prefix("/")),
        route("[::1]", prefix("/")),
    ];
    for h in [
        "api.example.com",
        "Api.Example.COM:8080",
        "api.example.com.",
        "API.example.com.:443",
    ] {
        assert_eq!(check(&routes, h, "GET", "/x"), Route(0), "{h}");
    }
    for h in ["[::1]:8080", "[::1]"] {
        assert_eq!(check(&routes, h, "GET", "/x"), Route(1), "{h}");
    }
    for h in [
        "",
        "example.com",
        "api.example.co",
        "xapi.example.com",
        "[::2]:80",
    ] {
        assert_eq!(check(&routes, h, "GET", "/x"), NotFound, "{h}");
    }
    // No-host routes match any host, including an absent one.
    let any = [route("", prefix("/"))];
    assert_eq!(check(&any, "", "GET", "/"), Route(0));
    assert_eq!(check(&any, "Whatever:1", "GET", "/"), Route(0));
}

#[test]
fn long_mixed_case_hosts() {
    let long = format!("{}.example.com", "a".repeat(300));
    let routes = [
        route(&long, exact("/")),
        route("*.example.com", exact("/s")),
        route("", exact("/d")),
    ];
    let upper = long.to_ascii_uppercase();
    assert_eq!(check(&routes, &format!("{upper}:80"), "GET", "/"), Route(0));
    assert_eq!(check(&routes, &upper, "GET", "/s"), Route(1));
    assert_eq!(check(&routes, &upper, "GET", "/d"), Route(2));
    assert_eq!(check(&routes, &upper, "GET", "/x"), NotFound);
}

#[test]
fn suffix_hosts() {
    let routes = [
        route("*.example.com", prefix("/")),
        route("*.b.example.com", prefix("/")),
    ];
    assert_eq!(check(&routes, "a.example.com", "GET", "/"), Route(0));
    assert_eq!(check(&routes, "A.B.C.Example.Com:1", "GET", "/"), Route(0));
    // Longer suffix first, regardless of config order.
    assert_eq!(check(&routes, "a.b.example.com", "GET", "/"), Route(1));
    assert_eq!(check(&routes, "b.example.com", "GET", "/"), Route(0));
    assert_eq!(check(&routes, "example.com", "GET", "/"), NotFound);
    assert_eq!(check(&routes, ".example.com", "GET", "/"), NotFound); // must be longer than the suffix
    assert_eq!(check(&routes, "..example.com", "GET", "/"), Route(0));
    assert_eq!(check(&routes, "aexample.com", "GET", "/"), NotFound);
}

#[test]
fn host_precedence_exact_then_suffix_then_none() {
    let routes = [
        route("", prefix("/")),
        route("*.example.com", prefix("/")),
        route("a.example.com", prefix("/")),
    ];
    assert_eq!(check(&routes, "a.example.com", "GET", "/x"), Route(2));
    assert_eq!(check(&routes, "b.example.com", "GET", "/x"), Route(1));
    assert_eq!(check(&routes, "other.org", "GET", "/x"), Route(0));
    // Host beats path specificity: an exact path on no host loses to a prefix on the exact host.
    let routes = [route("", exact("/x")), route("a.example.com", prefix("/"))];
    assert_eq!(check(&routes, "a.example.com", "GET", "/x"), Route(1));
}

#[test]
fn fall_through_between_host_buckets() {
    let routes = [
        route("a.example.com", exact("/only")),
        route("*.example.com", prefix("/wild")),
        route("", prefix("/")),
        with_methods(route("a.example.com", exact("/get")), &["GET"]),
        with_header(route("*.example.com", exact("/h")), "x-k", "1"),
    ];
    assert_eq!(check(&routes, "a.example.com", "GET", "/only"), Route(0));
    assert_eq!(check(&routes, "a.example.com", "GET", "/wild/x"), Route(1));
    assert_eq!(check(&routes, "a.example.com", "GET", "/other"), Route(2));
    // Method or header mismatch in a specific bucket also falls through to a full match below.
    assert_eq!(check(&routes, "a.example.com", "POST", "/get"), Route(2));
    assert_eq!(check(&routes, "a.example.com", "GET", "/get"), Route(3));
    assert_eq!(check(&routes, "a.example.com", "GET", "/h"), Route(2));
    let h = hdrs(&[("x-k", "1")]);
    assert_eq!(check_h(&routes, "a.example.com", "GET", "/h", &h), Route(4));
}

#[test]
fn exact_and_prefix_paths() {
    let routes = [
        route("", exact("/api")),
        route("", prefix("/api/users")),
        route("", prefix("/static/")),
    ];
    assert_eq!(check(&routes, "", "GET", "/api"), Route(0));
    assert_eq!(check(&routes, "", "GET", "/api/"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/API"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/api/users"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/api/users/"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/api/users/7/x"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/api/usersX"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/static/a.css"), Route(2));
    assert_eq!(check(&routes, "", "GET", "/static/"), Route(2));
    assert_eq!(check(&routes, "", "GET", "/static"), NotFound);
    // Raw bytes: no percent-decoding.
    assert_eq!(check(&routes, "", "GET", "/api%2Fusers"), NotFound);
    let root = [route("", prefix("/"))];
    assert_eq!(check(&root, "", "GET", "/"), Route(0));
    assert_eq!(check(&root, "", "GET", "/anything/at/all"), Route(0));
    assert_eq!(check(&root, "", "OPTIONS", "*"), NotFound);
}

#[test]
fn path_kind_and_length_precedence() {
    let routes = [
        route("", prefix("/")),
        route("", prefix("/api")),
        route("", prefix("/api/users")),
        route("", tmpl("/api/{x}")),
        route("", tmpl("/api/users")),
        route("", tmpl("/{a}/{b}/{c}")),
        route("", tmpl("/api/{x}/{y}")),
        route("", exact("/api/users")),
    ];
    assert_eq!(check(&routes, "", "GET", "/api/users"), Route(7)); // exact > template
    assert_eq!(check(&routes, "", "GET", "/api/orders"), Route(3)); // template > prefix
    assert_eq!(check(&routes, "", "GET", "/api/users/7"), Route(6)); // more literals
    assert_eq!(check(&routes, "", "GET", "/x/y/z"), Route(5));
    assert_eq!(check(&routes, "", "GET", "/api/users/7/8"), Route(2)); // longest prefix
    assert_eq!(check(&routes, "", "GET", "/api/a/b/c"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/x"), Route(0));
    // Same literal count: more segments wins.
    let routes = [route("", tmpl("/a/{*rest}")), route("", tmpl("/a/{x}/{y}"))];
    assert_eq!(check(&routes, "", "GET", "/a/1/2"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/a/1/2/3"), Route(0));
}

#[test]
fn template_edge_cases() {
    let routes = [
        route("", tmpl("/users/{id}")),
        route("", tmpl("/files/{*rest}")),
        route("", tmpl("/a//b")),
    ];
    assert_eq!(check(&routes, "", "GET", "/users/7"), Route(0));
    assert_eq!(check(&routes, "", "GET", "/users/"), NotFound); // empty segment
    assert_eq!(check(&routes, "", "GET", "/users"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/users/7/"), NotFound); // trailing slash
    assert_eq!(check(&routes, "", "GET", "/users/7/x"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/users/a%2Fb"), Route(0));
    assert_eq!(check(&routes, "", "GET", "users/7"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/files/a"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/files/a/b/c/"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/files//"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/files/"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/files"), NotFound);
    assert_eq!(check(&routes, "", "GET", "/a//b"), Route(2));
    assert_eq!(check(&routes, "", "GET", "/a/b"), NotFound);
    let root = [
        route("", tmpl("/{*all}")),
        route("", PathMatch::Template(Vec::new())),
    ];
    assert_eq!(check(&root, "", "GET", "/x/y"), Route(0));
    assert_eq!(check(&root, "", "GET", "/"), Route(1)); // empty template = "/"
                                                        // Only counts matter, not where the literals sit: equal counts fall back to config order.
    let routes = [route("", tmpl("/{a}/x")), route("", tmpl("/v1/{b}"))];
    assert_eq!(check(&routes, "", "GET", "/v1/x"), Route(0)); // tie on counts -> config order
    assert_eq!(check(&routes, "", "GET", "/v1/y"), Route(1));
    assert_eq!(check(&routes, "", "GET", "/v2/x"), Route(0));
}

#[test]
fn header_conditions() {
    let routes = [
        route("", prefix("/")),
        with_header(route("", prefix("/")), "x-env", "canary"),
        with_header(
            with_header(route("", prefix("/")), "x-env", "canary"),
            "x-user",
            "7",
        ),
    ];
    assert_eq!(check(&routes, "", "GET", "/"), Route(0));
    assert_eq!(
        check_h(&routes, "", "GET", "/", &hdrs(&[("x-env", "canary")])),
        Route(1)
    );
    assert_eq!(
        check_h(&routes, "", "GET", "/", &hdrs(&[("x-env", "Canary")])),
        Route(0)
    );
    let both = hdrs(&[("x-user", "7"), ("x-env", "canary")]);
    assert_eq!(check_h(&routes, "", "GET", "/", &both), Route(2));
    // Path specificity beats header conditions.
    let routes = [
        with_header(route("", prefix("/")), "x-env", "canary"),
        route("", prefix("/a")),
    ];
    assert_eq!(
        check_h(&routes, "", "GET", "/a", &hdrs(&[("x-env", "canary")])),
        Route(1)
    );
}

#[test]
fn methods_and_ties() {
    let routes = [
        route("", exact("/m")),
        with_methods(route("", exact("/m")), &["POST"]),
        route("", exact("/m")),
    ];
    assert_eq!(check(&routes, "", "POST", "/m"), Route(1)); // method list first
    assert_eq!(check(&routes, "", "GET", "/m"), Route(0)); // tie -> config order
    assert_eq!(check(&routes, "", "post", "/m"), Route(0)); // methods are case-sensitive
                                                            // Headers outrank methods.
    let routes = [
        with_methods(route("", exact("/m")), &["GET"]),
        with_header(route("", exact("/m")), "x", "1"),
    ];
    assert_eq!(
        check_h(&routes, "", "GET", "/m", &hdrs(&[("x", "1")])),
        Route(1)
    );
    // GET implies HEAD; extension methods work.
    let routes = [with_methods(route("", exact("/g")), &["GET", "PURGE"])];
    assert_eq!(check(&routes, "", "HEAD", "/g"), Route(0));
    assert_eq!(check(&routes, "", "PURGE", "/g"), Route(0));
    assert_eq!(
        check(&routes, "", "PURG", "/g"),
        NotAllowed("GET, HEAD, PURGE".into())
    );
}

#[test]
fn method_not_allowed_union() {
    let routes = [
        with_methods(route("", exact("/r")), &["POST", "GET"]),
        with_methods(route("", tmpl("/{x}")), &["PUT"]),
        with_methods(route("a.com", prefix("/")), &["DELETE"]),
        with_methods(with_header(route("", exact("/r")), "x-k", "1"), &["PATCH"]),
        with_methods(route("", exact("/p")), &["POST"]),
    ];
    assert_eq!(
        check(&routes, "", "OPTIONS", "/r"),
        NotAllowed("GET, HEAD, POST, PUT".into())
    );
    assert_eq!(
        check(&routes, "a.com", "OPTIONS", "/r"),
        NotAllowed("DELETE, GET, HEAD, POST, PUT".into())
    );
    let h = hdrs(&[("x-k", "1")]);
    let all = "GET, HEAD, PATCH, POST, PUT";
    assert_eq!(
        check_h(&routes, "", "OPTIONS", "/r", &h),
        NotAllowed(all.into())
    );
    assert_eq!(
        check(&routes, "", "GET", "/p"),
        NotAllowed("POST, PUT".into())
    );
    assert_eq!(
        check(&routes, "", "HEAD", "/p"),
        NotAllowed("POST, PUT".into())
    );
    assert_eq!(check(&routes, "", "GET", "/none/here"), NotFound);
    // A header-conditioned route whose headers are absent does not make a 405.
    let routes = [with_methods(
        with_header(route("", exact("/h")), "x-k", "1"),
        &["POST"],
    )];
    assert_eq!(check(&routes, "", "GET", "/h"), NotFound);
}

#[test]
fn empty_router() {
    assert_eq!(check(&[], "a.com", "GET", "/"), NotFound);
}

fn rw(rewrite: Option<(&str, &str)>, pq: &str) -> String {
    let rewrite = rewrite.map(|(from, to)| PrefixRewrite {
        from: from.into(),
        to: to.into(),
    });
    let mut out = b"GET ".to_vec();
    rewrite_target(rewrite.as_ref(), pq.as_bytes(), &mut out);
    String::from_utf8(out)
        .unwrap()
        .strip_prefix("GET ")
        .unwrap()
        .to_string()
}

#[test]
fn rewrite_target_cases() {
    assert_eq!(rw(None, "/api/users?x=1"), "/api/users?x=1");
    let strip = Some(("/api", ""));
    assert_eq!(rw(strip, "/api/users?x=1"), "/users?x=1");
    assert_eq!(rw(strip, "/api"), "/");
    assert_eq!(rw(strip, "/api?x"), "/?x");
    assert_eq!(rw(strip, "/api/"), "/");
    assert_eq!(rw(strip, "/apix/users"), "/apix/users"); // not on a boundary: unchanged
    assert_eq!(rw(strip, "/other?api"), "/other?api");
    let v2 = Some(("/api", "/v2"));
    assert_eq!(rw(v2, "/api/users"), "/v2/users");
    assert_eq!(rw(v2, "/api"), "/v2");
    assert_eq!(rw(v2, "/api?q=/api"), "/v2?q=/api");
    assert_eq!(rw(Some(("/api", "/v2/")), "/api/users"), "/v2/users");
    assert_eq!(rw(Some(("/api", "v2")), "/api/users"), "/v2/users");
    assert_eq!(rw(Some(("/api", "/")), "/api/users"), "/users");
    assert_eq!(rw(Some(("/api", "/")), "/api"), "/");
    let dir = Some(("/static/", ""));
    assert_eq!(rw(dir, "/static/a.css?v=1"), "/a.css?v=1");
    assert_eq!(rw(dir, "/static/"), "/");
    assert_eq!(
        rw(Some(("/static/", "/assets")), "/static/a/b"),
        "/assets/a/b"
    );
    assert_eq!(rw(Some(("/", "/base")), "/x"), "/base/x");
}

#[test]
fn template_params_line_up_with_the_path() {
    use crate::config::TemplateSegment as S;
    let t = [
        S::Literal("api".into()),
        S::Param("id".into()),
        S::Literal("files".into()),
        S::CatchAll("rest".into()),
    ];
    let p = b"/api/42/files/a/b.txt";
    assert_eq!(super::template_param(&t, p, "id"), Some(&b"42"[..]));
    assert_eq!(super::template_param(&t, p, "rest"), Some(&b"a/b.txt"[..]));
    assert_eq!(super::template_param(&t, p, "nope"), None);
    assert_eq!(super::template_param(&t, b"/api", "id"), Some(&b""[..]));
    assert_eq!(super::template_param(&t, b"no-slash", "id"), None);
}
