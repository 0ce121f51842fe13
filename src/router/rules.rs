//! Per-route predicates, the precedence order, and the naive [`LinearRouter`].
//!
//! Owns everything that decides *whether one route matches one request* and *which of two matching
//! routes wins*, independent of any index structure:
//!
//! - [`normalize_host`] (port / trailing-dot stripping), [`prefix_matches`], [`Seg`] + [`template_matches`];
//! - [`MethodSet`]: a route's method list as a bitmask of the standard methods plus a short list of
//!   extension methods (GET implies HEAD); [`ReqMethod`] classifies the request method once per lookup;
//! - [`Cond`]: the post-path conditions (headers, methods) the compiled table checks per candidate;
//! - [`precedence_order`]: route indices sorted most-specific-first. Its position is a route's *rank*;
//!   the answer to a lookup is always the fully matching route of lowest rank;
//! - [`LinearRouter`]: scans every route in rank order. It is the benchmark baseline, the reference
//!   the property test compares [`super::Router`] against, and the slow path that builds the `Allow`
//!   value of a 405 (an error path, so it may allocate).
//!
//! Performance: `LinearRouter::lookup` is O(routes) per request; it exists to be beaten.

use std::collections::BTreeSet;

use super::{HeaderSource, Match};
use crate::config::{HostMatch, PathMatch, RouteConfig, TemplateSegment};

/// Strips the port (`host:8080`, `[::1]:8080`) and one trailing dot (`example.com.`) from a raw Host
/// value. Case is left alone; callers compare case-insensitively.
#[inline]
pub(crate) fn normalize_host(raw: &[u8]) -> &[u8] {
    let h = if raw.first() == Some(&b'[') {
        match raw.iter().position(|&b| b == b']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.iter().position(|&b| b == b':') {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    match h.split_last() {
        Some((b'.', rest)) if !rest.is_empty() => rest,
        _ => h,
    }
}

/// `Prefix(p)` semantics: `p` itself, or `p` followed by a `/`, or anything under `p` when `p` ends in `/`.
#[inline]
pub(crate) fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.last() == Some(&b'/')
            || path[prefix.len()] == b'/')
}

/// A compiled template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Lit(Box<[u8]>),
    Param,
    /// Only ever last (see [`template_segs`]).
    Catch,
}

/// Compiles a template. An empty template is treated as `/` (one empty literal segment); a catch-all
/// that is not last (validation rejects it) is treated as a single-segment `{param}`.
pub(crate) fn template_segs(segs: &[TemplateSegment]) -> Vec<Seg> {
    if segs.is_empty() {
        return vec![Seg::Lit(Box::default())];
    }
    let last = segs.len() - 1;
    segs.iter()
        .enumerate()
        .map(|(i, s)| match s {
            TemplateSegment::Literal(l) => Seg::Lit(l.as_bytes().into()),
            TemplateSegment::Param(_) => Seg::Param,
            TemplateSegment::CatchAll(_) if i == last => Seg::Catch,
            TemplateSegment::CatchAll(_) => Seg::Param,
        })
        .collect()
}

/// Splits `rest` at its first `/`: (segment, remainder after the slash if there was one).
#[inline]
pub(crate) fn split_segment(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

/// Reference template matcher (the compiled trie must agree with it).
pub(crate) fn template_matches(segs: &[Seg], path: &[u8]) -> bool {
    let mut rest = match path.strip_prefix(b"/") {
        Some(r) => Some(r),
        None => return false,
    };
    for seg in segs {
        let Some(r) = rest else { return false };
        if *seg == Seg::Catch {
            return !r.is_empty();
        }
        let (s, next) = split_segment(r);
        let ok = match seg {
            Seg::Lit(l) => s == &l[..],
            _ => !s.is_empty(),
        };
        if !ok {
            return false;
        }
        rest = next;
    }
    rest.is_none()
}

const STANDARD_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT", b"TRACE",
];
const GET_BIT: u16 = 1;
const HEAD_BIT: u16 = 2;

/// The request method, classified once per lookup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReqMethod<'a> {
    /// Bit of a standard method, 0 for an extension method.
    bit: u16,
    raw: &'a [u8],
}

impl<'a> ReqMethod<'a> {
    #[inline]
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        let bit = match raw {
            b"GET" => 1,
            b"HEAD" => 1 << 1,
            b"POST" => 1 << 2,
            b"PUT" => 1 << 3,
            b"DELETE" => 1 << 4,
            b"PATCH" => 1 << 5,
            b"OPTIONS" => 1 << 6,
            b"CONNECT" => 1 << 7,
            b"TRACE" => 1 << 8,
            _ => 0,
        };
        ReqMethod { bit, raw }
    }
}

/// A route's allowed methods. Methods are case-sensitive tokens (RFC 9110); GET implies HEAD.
#[derive(Debug, Clone)]
pub(crate) struct MethodSet {
    any: bool,
    mask: u16,
    other: Box<[Box<[u8]>]>,
}

impl MethodSet {
    pub(crate) fn new(methods: Option<&[String]>) -> Self {
        let Some(list) = methods else {
            return MethodSet {
                any: true,
                mask: 0,
                other: Box::default(),
            };
        };
        let mut mask = 0;
        let mut other = Vec::new();
        for m in list {
            let rm = ReqMethod::new(m.as_bytes());
            if rm.bit == 0 {
                other.push(m.as_bytes().into());
            }
            mask |= rm.bit;
        }
        if mask & GET_BIT != 0 {
            mask |= HEAD_BIT;
        }
        MethodSet {
            any: false,
            mask,
            other: other.into(),
        }
    }

    #[inline]
    pub(crate) fn allows(&self, m: ReqMethod<'_>) -> bool {
        self.any
            || if m.bit != 0 {
                self.mask & m.bit != 0
            } else {
                self.other.iter().any(|o| **o == *m.raw)
            }
    }

    /// Adds this set's method names to an `Allow` union.
    fn add_names(&self, out: &mut BTreeSet<String>) {
        for (i, name) in STANDARD_METHODS.iter().enumerate() {
            if self.mask & (1 << i) != 0 {
                out.insert(String::from_utf8_lossy(name).into_owned());
            }
        }
        for o in self.other.iter() {
            out.insert(String::from_utf8_lossy(o).into_owned());
        }
    }
}

/// One header condition: (lower-case name, exact value).
type HeaderCond = (Box<[u8]>, Box<[u8]>);

/// The conditions checked after host and path: headers, then method.
#[derive(Debug, Clone)]
pub(crate) struct Cond {
    /// Index into the routes slice given to `new`.
    pub(crate) index: usize,
    pub(crate) methods: MethodSet,
    headers: Box<[HeaderCond]>,
}

impl Cond {
    pub(crate) fn new(index: usize, r: &RouteConfig) -> Self {
        Cond {
            index,
            methods: MethodSet::new(r.methods.as_deref()),
            headers: r
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_ascii_lowercase().into_bytes().into(),
                        v.as_bytes().into(),
                    )
                })
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn headers_ok(&self, h: &impl HeaderSource) -> bool {
        self.headers
            .iter()
            .all(|(n, v)| h.header(n) == Some(&v[..]))
    }
}

/// Sort key, smaller = more specific: host class, longer suffix, path kind, longer literal, more
/// segments, more header conditions, method list before any-method. Config order breaks ties
/// (the sort is stable).
fn precedence_key(r: &RouteConfig) -> [usize; 7] {
    let inv = |n: usize| usize::MAX - n;
    let (host_class, host_len) = match &r.host {
        Some(HostMatch::Exact(_)) => (0, 0),
        Some(HostMatch::Suffix(s)) => (1, inv(s.len())),
        None => (2, 0),
    };
    let (kind, lit, segs) = match &r.path {
        PathMatch::Exact(p) => (0, inv(p.len()), 0),
        PathMatch::Template(t) => {
            let lits = t
                .iter()
                .filter(|s| matches!(s, TemplateSegment::Literal(_)))
                .count();
            (1, inv(lits), inv(t.len()))
        }
        PathMatch::Prefix(p) => (2, inv(p.len()), 0),
    };
    let methods = usize::from(r.methods.is_none());
    [
        host_class,
        host_len,
        kind,
        lit,
        segs,
        inv(r.headers.len()),
        methods,
    ]
}

/// Route indices, most specific first.
pub(crate) fn precedence_order(routes: &[RouteConfig]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..routes.len()).collect();
    order.sort_by_key(|&i| precedence_key(&routes[i]));
    order
}

#[derive(Debug, Clone)]
enum PathCond {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Template(Vec<Seg>),
}

#[derive(Debug, Clone)]
struct LinearRoute {
    host: Option<HostMatch>,
    path: PathCond,
    cond: Cond,
}

impl LinearRoute {
    fn host_path_match(&self, host: &[u8], path: &[u8]) -> bool {
        let host_ok = match &self.host {
            None => true,
            Some(HostMatch::Exact(e)) => host.eq_ignore_ascii_case(e.as_bytes()),
            Some(HostMatch::Suffix(s)) => {
                host.len() > s.len()
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        };
        host_ok
            && match &self.path {
                PathCond::Exact(p) => path == &p[..],
                PathCond::Prefix(p) => prefix_matches(p, path),
                PathCond::Template(t) => template_matches(t, path),
            }
    }
}

/// The naive router: every route checked in precedence order, first full match wins.
///
/// Same semantics and API as [`super::Router`]; O(routes) per lookup. Used as the benchmark
/// baseline, as the test reference, and by `Router` to build a 405's `Allow` value.
#[derive(Debug, Clone)]
pub struct LinearRouter {
    routes: Vec<LinearRoute>,
}

impl LinearRouter {
    pub fn new(routes: &[RouteConfig]) -> LinearRouter {
        let routes = precedence_order(routes)
            .into_iter()
            .map(|i| {
                let r = &routes[i];
                LinearRoute {
                    host: r.host.clone(),
                    path: match &r.path {
                        PathMatch::Exact(p) => PathCond::Exact(p.as_bytes().into()),
                        PathMatch::Prefix(p) => PathCond::Prefix(p.as_bytes().into()),
                        PathMatch::Template(t) => PathCond::Template(template_segs(t)),
                    },
                    cond: Cond::new(i, r),
                }
            })
            .collect();
        LinearRouter { routes }
    }

    /// Same contract as [`super::Router::lookup`].
    pub fn lookup(
        &self,
        host: &[u8],
        method: &[u8],
        path: &[u8],
        headers: &impl HeaderSource,
    ) -> Match {
        let host = normalize_host(host);
        let m = ReqMethod::new(method);
        let mut method_miss = false;
        for r in &self.routes {
            if r.host_path_match(host, path) && r.cond.headers_ok(headers) {
                if r.cond.methods.allows(m) {
                    return Match::Route(r.cond.index);
                }
                method_miss = true;
            }
        }
        if method_miss {
            self.not_allowed(host, path, headers)
        } else {
            Match::NotFound
        }
    }

    /// The 405 answer: union of the methods of every route matching host + path + headers, sorted and
    /// joined with ", " (HEAD added when GET is present). `NotFound` when no such route exists.
    pub(crate) fn not_allowed(
        &self,
        host: &[u8],
        path: &[u8],
        headers: &impl HeaderSource,
    ) -> Match {
        let mut names = BTreeSet::new();
        let mut any = false;
        for r in &self.routes {
            if r.host_path_match(host, path) && r.cond.headers_ok(headers) {
                any = true;
                r.cond.methods.add_names(&mut names);
            }
        }
        if !any {
            return Match::NotFound;
        }
        Match::MethodNotAllowed(names.into_iter().collect::<Vec<_>>().join(", "))
    }
}
