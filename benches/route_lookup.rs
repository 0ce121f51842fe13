//! Question: how long does a route lookup take with 10 and with 1,000 routes, and does the compiled
//! table (`Router`) beat a naive linear scan (`LinearRouter`, routes pre-sorted by precedence, first
//! full match wins)?
//!
//! Decision it backs: whether the proxy keeps the compiled per-worker table (and its extra code) or
//! could route with a plain scan, and whether routing can be ignored in the per-request budget at the
//! route counts we expect (target: well under 1 µs per lookup at 1,000 routes).
//!
//! Route sets are a realistic mix: exact hosts, wildcard hosts, host-less routes; exact paths,
//! prefixes, templates (with params and catch-alls); method lists and header conditions. Requests
//! cover an *early* hit (the most specific route: first in scan order), a *late* hit (falls through
//! to a host-less prefix near the end of the scan), a *miss* (404), and a *mixed* rotation over many
//! requests. Groups: `router/10`, `router/1000`, `linear/10`, `linear/1000`.
//!
//! Run: `cargo bench --bench route_lookup -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use coregate::config::{HostMatch, PathMatch, RouteConfig, TemplateSegment};
use coregate::router::{HeaderSource, LinearRouter, Match, Router};
use criterion::{criterion_group, criterion_main, Criterion};

struct Headers(Vec<(&'static [u8], &'static [u8])>);

impl HeaderSource for Headers {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

fn route(host: &str, path: PathMatch, methods: &[&str], headers: &[(&str, &str)]) -> RouteConfig {
    RouteConfig {
        name: String::new(),
        host: match host {
            "" => None,
            h if h.starts_with("*.") => Some(HostMatch::Suffix(h[1..].into())),
            h => Some(HostMatch::Exact(h.into())),
        },
        path,
        methods: (!methods.is_empty()).then(|| methods.iter().map(|m| m.to_string()).collect()),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
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

fn tmpl(t: &str) -> PathMatch {
    PathMatch::Template(
        t[1..]
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(n) if n.starts_with('*') => TemplateSegment::CatchAll(n[1..].into()),
                    Some(n) => TemplateSegment::Param(n.into()),
                    None => TemplateSegment::Literal(s.into()),
                },
            )
            .collect(),
    )
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

/// A small gateway: one API host, a wildcard, a few host-less routes.
fn ten_routes() -> Vec<RouteConfig> {
    vec![
        route("api.example.com", exact("/v1/users/me"), &["GET"], &[]),
        route(
            "api.example.com",
            tmpl("/v1/users/{id}"),
            &["GET", "PUT", "DELETE"],
            &[],
        ),
        route(
            "api.example.com",
            prefix("/v1/users"),
            &[],
            &[("x-canary", "1")],
        ),
        route("api.example.com", prefix("/v1/users"), &[], &[]),
        route(
            "api.example.com",
            tmpl("/v1/orders/{id}/items/{*rest}"),
            &[],
            &[],
        ),
        route(
            "api.example.com",
            prefix("/v1/orders"),
            &["GET", "POST"],
            &[],
        ),
        route("*.cdn.example.com", prefix("/static/"), &["GET"], &[]),
        route("", exact("/healthz"), &["GET"], &[]),
        route("", tmpl("/docs/{page}"), &["GET"], &[]),
        route("", prefix("/public"), &[], &[]),
    ]
}

/// A multi-tenant gateway: 60 tenant hosts x 15 routes, 5 wildcard hosts x 10, 50 host-less.
fn thousand_routes() -> Vec<RouteConfig> {
    let mut v = Vec::new();
    for t in 0..60 {
        let host = format!("tenant{t}.example.com");
        for s in 0..3 {
            v.push(route(
                &host,
                exact(&format!("/svc{s}/health")),
                &["GET"],
                &[],
            ));
            v.push(route(
                &host,
                tmpl(&format!("/svc{s}/items/{{id}}")),
                &["GET", "PUT"],
                &[],
            ));
            v.push(route(
                &host,
                tmpl(&format!("/svc{s}/items/{{id}}/{{*rest}}")),
                &[],
                &[],
            ));
            v.push(route(
                &host,
                prefix(&format!("/svc{s}/admin")),
                &[],
                &[("x-role", "admin")],
            ));
            v.push(route(&host, prefix(&format!("/svc{s}")), &[], &[]));
        }
    }
    for w in 0..5 {
        let host = format!("*.region{w}.example.com");
        for s in 0..10 {
            v.push(route(
                &host,
                prefix(&format!("/edge{s}/")),
                &["GET", "HEAD"],
                &[],
            ));
        }
    }
    for s in 0..50 {
        v.push(match s % 3 {
            0 => route("", exact(&format!("/global{s}/status")), &["GET"], &[]),
            1 => route("", tmpl(&format!("/global{s}/{{id}}")), &[], &[]),
            _ => route("", prefix(&format!("/global{s}")), &[], &[]),
        });
    }
    v
}

struct Req {
    host: &'static str,
    method: &'static str,
    path: String,
}

fn req(host: &'static str, method: &'static str, path: &str) -> Req {
    Req {
        host,
        method,
        path: path.into(),
    }
}

/// (name, request, expected outcome is a route?) for each route set.
fn cases(big: bool) -> Vec<(&'static str, Req, bool)> {
    if big {
        vec![
            (
                "early_hit",
                req("Tenant0.Example.com:443", "GET", "/svc0/health"),
                true,
            ),
            (
                "late_hit",
                req("tenant59.example.com", "GET", "/global47/a/b/c"),
                true,
            ),
            (
                "miss",
                req("unknown.example.org", "GET", "/nothing/here/at/all"),
                false,
            ),
        ]
    } else {
        vec![
            (
                "early_hit",
                req("api.example.com:443", "GET", "/v1/users/me"),
                true,
            ),
            (
                "late_hit",
                req("api.example.com", "GET", "/public/img/logo.png"),
                true,
            ),
            (
                "miss",
                req("api.example.com", "GET", "/nothing/here/at/all"),
                false,
            ),
        ]
    }
}

/// A rotation of varied requests (hits on every kind, fall-through, misses).
fn mixed(big: bool) -> Vec<Req> {
    let mut v = Vec::new();
    for i in 0..64 {
        v.push(if big {
            let t = i * 7 % 60;
            let host: &'static str = Box::leak(format!("tenant{t}.example.com").into_boxed_str());
            match i % 6 {
                0 => req(host, "GET", &format!("/svc{}/items/{i}", i % 3)),
                1 => req(host, "POST", &format!("/svc{}/items/{i}/x/y", i % 3)),
                2 => req(host, "GET", &format!("/svc{}/other/deep/path", i % 3)),
                3 => req(
                    "cache.region2.example.com",
                    "GET",
                    &format!("/edge{}/a.js", i % 10),
                ),
                4 => req(host, "GET", &format!("/global{}/status", i % 50)),
                _ => req(host, "GET", "/missing/route"),
            }
        } else {
            match i % 6 {
                0 => req("api.example.com", "GET", &format!("/v1/users/{i}")),
                1 => req(
                    "api.example.com",
                    "POST",
                    &format!("/v1/orders/{i}/items/a/b"),
                ),
                2 => req("img.cdn.example.com", "GET", "/static/app.js"),
                3 => req("localhost:8080", "GET", "/healthz"),
                4 => req("api.example.com", "GET", &format!("/docs/page{i}")),
                _ => req("api.example.com", "GET", "/missing/route"),
            }
        });
    }
    v
}

fn bench_set(c: &mut Criterion, big: bool) {
    let routes = if big { thousand_routes() } else { ten_routes() };
    let n = routes.len();
    let router = Router::new(&routes);
    let linear = LinearRouter::new(&routes);
    let headers = Headers(vec![(b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]);
    for (name, r, hit) in cases(big) {
        let (h, m, p) = (r.host.as_bytes(), r.method.as_bytes(), r.path.as_bytes());
        let want = router.lookup(h, m, p, &headers);
        assert_eq!(
            want,
            linear.lookup(h, m, p, &headers),
            "{name}: router and linear disagree"
        );
        assert_eq!(
            matches!(want, Match::Route(_)),
            hit,
            "{name}: unexpected outcome {want:?}"
        );
    }
    let reqs = mixed(big);
    for r in &reqs {
        let (h, m, p) = (r.host.as_bytes(), r.method.as_bytes(), r.path.as_bytes());
        assert_eq!(
            router.lookup(h, m, p, &headers),
            linear.lookup(h, m, p, &headers)
        );
    }

    for (label, linear_scan) in [("router", false), ("linear", true)] {
        let mut g = c.benchmark_group(format!("{label}/{n}"));
        let look = |r: &Req| {
            let (h, m, p) = (r.host.as_bytes(), r.method.as_bytes(), r.path.as_bytes());
            if linear_scan {
                linear.lookup(black_box(h), black_box(m), black_box(p), &headers)
            } else {
                router.lookup(black_box(h), black_box(m), black_box(p), &headers)
            }
        };
        for (name, r, _) in cases(big) {
            g.bench_function(name, |b| b.iter(|| black_box(look(&r))));
        }
        let mut i = 0;
        g.bench_function("mixed", |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(look(&reqs[i]))
            })
        });
        g.finish();
    }
}

fn route_lookup(c: &mut Criterion) {
    bench_set(c, false);
    bench_set(c, true);
}

criterion_group!(benches, route_lookup);
criterion_main!(benches);
