//! Property-style test: the compiled [`Router`] and the [`LinearRouter`] agree with an independent,
//! spec-transcribed reference matcher over thousands of generated routes and requests.
//!
//! The generator draws from small alphabets (hosts, segments, methods, headers) so that overlapping
//! routes, ties, fall-through and 405s are common. Deterministic xorshift PRNG, no dependencies.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::tests::{exact, prefix, route, Hdrs};
use super::*;
use crate::config::TemplateSegment;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const SEGS: [&str; 4] = ["a", "b", "api", "v1"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "PURGE"];
const HEADERS: [(&str, &str); 3] = [("x-a", "1"), ("x-a", "2"), ("x-b", "1")];

fn gen_path_text(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        p.push_str(rng.pick(&SEGS));
    }
    if rng.chance(20) {
        p.push('/');
    }
    p
}

fn gen_route(rng: &mut Rng) -> RouteConfig {
    let host = match rng.below(6) {
        0 => "a.com",
        1 => "b.a.com",
        2 => "*.com",
        3 => "*.a.com",
        4 => "*.b.a.com",
        _ => "",
    };
    let path = match rng.below(3) {
        0 => exact(&gen_path_text(rng)),
        1 if rng.chance(15) => prefix("/"),
        1 => prefix(&gen_path_text(rng)),
        _ => {
            let n = 1 + rng.below(3);
            let mut t: Vec<TemplateSegment> = (0..n)
                .map(|_| match rng.chance(50) {
                    true => TemplateSegment::Literal(rng.pick(&SEGS).into()),
                    false => TemplateSegment::Param("p".into()),
                })
                .collect();
            if rng.chance(25) {
                t.push(TemplateSegment::CatchAll("rest".into()));
            }
            PathMatch::Template(t)
        }
    };
    let mut r = route(host, path);
    if rng.chance(60) {
        let ms: Vec<String> = METHODS
            .iter()
            .filter(|_| rng.chance(40))
            .map(|m| m.to_string())
            .collect();
        if !ms.is_empty() {
            r.methods = Some(ms);
        }
    }
    for _ in 0..rng.below(4).saturating_sub(1) {
        let (n, v) = HEADERS[rng.below(HEADERS.len())];
        r.headers.push((n.into(), v.into()));
    }
    r
}

struct Request {
    host: String,
    method: String,
    path: String,
    headers: Hdrs,
}

fn gen_request(rng: &mut Rng) -> Request {
    let host = rng.pick(&[
        "a.com",
        "A.com:8080",
        ".a.com",
        "b.a.com",
        "C.b.a.com.",
        "x.com",
        "com",
        "",
        "[::1]:80",
    ]);
    let method = rng.pick(&["GET", "HEAD", "POST", "PUT", "PURGE", "DELETE"]);
    let mut path = String::new();
    for _ in 0..rng.below(5) {
        path.push('/');
        path.push_str(rng.pick(&["a", "b", "api", "v1", "x", ""]));
    }
    if path.is_empty() || rng.chance(3) {
        path.insert(0, '/');
    }
    if rng.chance(2) {
        path.remove(0);
    }
    let mut headers = Vec::new();
    if rng.chance(50) {
        headers.push(("x-a".to_string(), rng.pick(&["1", "2"]).to_string()));
    }
    if rng.chance(50) {
        headers.push(("x-b".to_string(), "1".to_string()));
    }
    Request {
        host: host.into(),
        method: method.into(),
        path,
        headers: Hdrs(headers),
    }
}

// ---- The reference, transcribed from the module doc without sharing any router code. ----

fn ref_host(raw: &str) -> String {
    let h = raw.to_ascii_lowercase();
    let h = match (h.starts_with('['), h.find(']')) {
        (true, Some(i)) => h[..=i].to_string(),
        (true, None) => h,
        (false, _) => h.split(':').next().unwrap().to_string(),
    };
    match h.strip_suffix('.') {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => h,
    }
}

fn ref_host_ok(r: &RouteConfig, host: &str) -> bool {
    match &r.host {
        None => true,
        Some(HostMatch::Exact(e)) => host == e,
        Some(HostMatch::Suffix(s)) => host.len() > s.len() && host.ends_with(s.as_str()),
    }
}

fn ref_path_ok(r: &RouteConfig, path: &str) -> bool {
    match &r.path {
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => {
            path == p
                || (path.starts_with(p.as_str())
                    && (p.ends_with('/') || path[p.len()..].starts_with('/')))
        }
        PathMatch::Template(t) => {
            let Some(rest) = path.strip_prefix('/') else {
                return false;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            let seg_ok = |s: &TemplateSegment, part: &str| match s {
                TemplateSegment::Literal(l) => l == part,
                _ => !part.is_empty(),
            };
            match t.last() {
                Some(TemplateSegment::CatchAll(_)) => {
                    let n = t.len() - 1;
                    parts.len() > n
                        && t[..n].iter().zip(&parts).all(|(s, p)| seg_ok(s, p))
                        && !parts[n..].join("/").is_empty()
                }
                _ => parts.len() == t.len() && t.iter().zip(&parts).all(|(s, p)| seg_ok(s, p)),
            }
        }
    }
}

fn ref_headers_ok(r: &RouteConfig, h: &Hdrs) -> bool {
    r.headers.iter().all(|(n, v)| {
        h.0.iter()
            .find(|(hn, _)| hn == n)
            .is_some_and(|(_, hv)| hv == v)
    })
}

fn ref_method_ok(r: &RouteConfig, m: &str) -> bool {
    match &r.methods {
        None => true,
        Some(ms) => ms.iter().any(|x| x == m || (m == "HEAD" && x == "GET")),
    }
}

/// `Less` = `a` is more specific.
fn ref_cmp(a: &RouteConfig, b: &RouteConfig) -> Ordering {
    let host_rank = |r: &RouteConfig| match &r.host {
        Some(HostMatch::Exact(_)) => (0, 0),
        Some(HostMatch::Suffix(s)) => (1, -(s.len() as i64)),
        None => (2, 0),
    };
    let path_rank = |r: &RouteConfig| match &r.path {
        PathMatch::Exact(_) => (0, 0, 0),
        PathMatch::Template(t) => {
            let lits = t
                .iter()
                .filter(|s| matches!(s, TemplateSegment::Literal(_)))
                .count();
            (1, -(lits as i64), -(t.len() as i64))
        }
        PathMatch::Prefix(p) => (2, -(p.len() as i64), 0),
    };
    host_rank(a)
        .cmp(&host_rank(b))
        .then(path_rank(a).cmp(&path_rank(b)))
        .then(b.headers.len().cmp(&a.headers.len()))
        .then(a.methods.is_none().cmp(&b.methods.is_none()))
}

fn reference(routes: &[RouteConfig], req: &Request) -> Match {
    let host = ref_host(&req.host);
    let base = |r: &RouteConfig| {
        ref_host_ok(r, &host) && ref_path_ok(r, &req.path) && ref_headers_ok(r, &req.headers)
    };
    let best = (0..routes.len())
        .filter(|&i| base(&routes[i]) && ref_method_ok(&routes[i], &req.method))
        .min_by(|&i, &j| ref_cmp(&routes[i], &routes[j]).then(i.cmp(&j)));
    if let Some(i) = best {
        return Match::Route(i);
    }
    let mut allow = BTreeSet::new();
    let mut any = false;
    for r in routes.iter().filter(|r| base(r)) {
        any = true;
        for m in r.methods.iter().flatten() {
            allow.insert(m.clone());
            if m == "GET" {
                allow.insert("HEAD".to_string());
            }
        }
    }
    if any {
        Match::MethodNotAllowed(allow.into_iter().collect::<Vec<_>>().join(", "))
    } else {
        Match::NotFound
    }
}

fn agree(routes: &[RouteConfig], rng: &mut Rng, requests: usize) -> [usize; 3] {
    let router = Router::new(routes);
    let linear = LinearRouter::new(routes);
    let mut outcomes = [0; 3];
    for _ in 0..requests {
        let req = gen_request(rng);
        let (h, m, p) = (
            req.host.as_bytes(),
            req.method.as_bytes(),
            req.path.as_bytes(),
        );
        let want = reference(routes, &req);
        let got = router.lookup(h, m, p, &req.headers);
        assert_eq!(
            got, want,
            "router: {} {} {} {:?}\nroutes: {routes:#?}",
            req.host, req.method, req.path, req.headers.0
        );
        assert_eq!(linear.lookup(h, m, p, &req.headers), want, "linear");
        outcomes[match want {
            Match::Route(_) => 0,
            Match::MethodNotAllowed(_) => 1,
            Match::NotFound => 2,
        }] += 1;
    }
    outcomes
}

#[test]
fn compiled_agrees_with_reference_small_tables() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut totals = [0; 3];
    for _ in 0..300 {
        let n = 1 + rng.below(30);
        let routes: Vec<RouteConfig> = (0..n).map(|_| gen_route(&mut rng)).collect();
        let o = agree(&routes, &mut rng, 40);
        (0..3).for_each(|i| totals[i] += o[i]);
    }
    // The generator must exercise every outcome, or the test proves little.
    assert!(
        totals.iter().all(|&t| t > 500),
        "outcome mix too thin: {totals:?}"
    );
}

#[test]
fn compiled_agrees_with_reference_large_table() {
    let mut rng = Rng(42);
    let routes: Vec<RouteConfig> = (0..2000).map(|_| gen_route(&mut rng)).collect();
    agree(&routes, &mut rng, 3000);
}
