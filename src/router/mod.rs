//! Request routing: picks the [`RouteConfig`] a request goes to, and rewrites its target.
//!
//! Owns [`Router`] (the compiled, immutable table each worker builds once from `Config::routes`),
//! [`Match`], the [`HeaderSource`] seam to the HTTP parser, [`rewrite_target`], and the naive
//! [`LinearRouter`] (benchmark baseline / test reference). Parts: `rules.rs` (per-route predicates and
//! the precedence order), `table.rs` (the per-host index), `slice_map.rs` (its byte-string hash map),
//! `tests.rs` (rule-by-rule tables) and `prop_tests.rs` (agreement with a reference matcher).
//!
//! # Matching semantics
//!
//! A route matches when its host, path, header and method conditions all hold.
//!
//! - **Host** — the raw `Host` value has its port stripped (`api.example.com:8080`, `[::1]:8080` ->
//!   `[::1]`) and one trailing dot removed, then is compared ASCII case-insensitively.
//!   `HostMatch::Exact(h)` needs equality; `HostMatch::Suffix(".example.com")` (from `*.example.com`)
//!   matches any host that *ends with* the suffix and is longer than it (`a.example.com`,
//!   `a.b.example.com`, not `example.com`). A route without a host matches every host, including an
//!   absent (empty) one.
//! - **Path** — matching is on the request path (no query string) *after* the connection driver
//!   normalised it (`normalize.rs`: unreserved escapes decoded, dot segments removed, slashes merged,
//!   encoded slashes per policy); the router itself compares bytes, so `/a%2Fb` (escaped slashes
//!   kept) is one segment and, with `merge_slashes = false`, `/a//b` has an empty segment.
//!   - `Exact(p)`: byte equality.
//!   - `Prefix(p)`: the path is `p`, or starts with `p` followed by `/` (`/api/users` matches
//!     `/api/users` and `/api/users/7`, not `/api/usersX`); a `p` ending in `/` matches every path
//!     starting with it.
//!   - `Template`: the path must start with `/`; its `/`-separated segments must line up one-to-one
//!     with the template's: a literal is byte-equal, a `{param}` is any *non-empty* segment. A trailing
//!     slash is an extra (empty) segment, so `/users/{id}` does not match `/users/7/`. A final `{*rest}`
//!     matches everything after its `/`, which must be non-empty (one or more segments):
//!     `/files/{*rest}` matches `/files/a` and `/files/a/b/`, not `/files` or `/files/`.
//! - **Headers** — every `(name, value)` condition must be present with exactly that value (bytes).
//! - **Methods** — `None` matches any method. Method tokens are case-sensitive; a list containing `GET`
//!   also accepts `HEAD` (and advertises it in `Allow`).
//!
//! # Precedence (most specific wins)
//!
//! 1. exact host > wildcard host (longer suffix first) > no host;
//! 2. path kind exact > template > prefix; within a kind the longer literal wins (prefix: longer
//!    prefix; template: more literal segments, then more segments);
//! 3. routes with header conditions before routes without (more conditions first);
//! 4. routes with a method list before any-method routes;
//! 5. config order.
//!
//! A more specific host whose routes do not match falls through to less specific hosts.
//!
//! # 405
//!
//! When no route matches but some route matches host + path + headers with a different method, the
//! answer is [`Match::MethodNotAllowed`] with the union of those routes' methods, sorted and joined by
//! `", "` (`HEAD` added when `GET` is present). Otherwise [`Match::NotFound`].
//!
//! # Flow and performance
//!
//! [`Router::new`] sorts routes by precedence (a route's position is its *rank*) and files each into a
//! host bucket: a map of exact hosts, a map of suffixes probed per distinct suffix length, and the
//! no-host bucket. [`Router::lookup`] strips the host's port, then asks the exact, suffix (longest
//! first) and default buckets in turn (host maps hash and compare case-insensitively, so the host is
//! never copied);
//! the first bucket with a full match answers. Route and NotFound outcomes never allocate; only a 405
//! does (it rescans with [`LinearRouter`] to build `Allow`).

mod normalize;
mod rules;
mod slice_map;
mod table;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

pub use normalize::{normalize, EscapedSlashes, PathError, PathPolicy};
pub use rules::LinearRouter;

use crate::config::{HostMatch, PathMatch, PrefixRewrite, RouteConfig};
use rules::{normalize_host, precedence_order, prefix_matches, template_segs, Cond, ReqMethod};
use slice_map::SliceMap;
use table::{Bucket, PathKey, Req};

/// Lets the router read request headers without knowing the parser. `name` is lower-case ASCII.
pub trait HeaderSource {
    fn header(&self, name: &[u8]) -> Option<&[u8]>;
}

/// The outcome of [`Router::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Index into the routes slice given to [`Router::new`].
    Route(usize),
    /// The `Allow` header value, e.g. `"GET, HEAD, POST"`.
    MethodNotAllowed(String),
    NotFound,
}

/// The compiled, immutable route table; built once per worker.
#[derive(Debug)]
pub struct Router {
    /// Post-path conditions, indexed by rank.
    conds: Vec<Cond>,
    /// Keyed case-insensitively.
    exact_hosts: SliceMap<Bucket, true>,
    /// Distinct suffix lengths, longest first.
    suffix_lens: Vec<usize>,
    suffixes: SliceMap<Bucket, true>,
    any_host: Bucket,
    /// Builds the `Allow` value of a 405 (error path).
    fallback: LinearRouter,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        assert!(routes.len() < u32::MAX as usize, "too many routes");
        let order = precedence_order(routes);
        let mut router = Router {
            conds: Vec::with_capacity(routes.len()),
            exact_hosts: SliceMap::default(),
            suffix_lens: Vec::new(),
            suffixes: SliceMap::default(),
            any_host: Bucket::new(),
            fallback: LinearRouter::new(routes),
        };
        for (rank, &i) in order.iter().enumerate() {
            let r = &routes[i];
            router.conds.push(Cond::new(i, r));
            let bucket = match &r.host {
                None => &mut router.any_host,
                Some(HostMatch::Exact(h)) => router
                    .exact_hosts
                    .get_or_insert_with(h.as_bytes(), Bucket::new),
                Some(HostMatch::Suffix(s)) => {
                    if !router.suffix_lens.contains(&s.len()) {
                        router.suffix_lens.push(s.len());
                    }
                    router
                        .suffixes
                        .get_or_insert_with(s.as_bytes(), Bucket::new)
                }
            };
            let segs;
            let key = match &r.path {
                PathMatch::Exact(p) => PathKey::Exact(p.as_bytes()),
                PathMatch::Prefix(p) => PathKey::Prefix(p.as_bytes()),
                PathMatch::Template(t) => {
                    segs = template_segs(t);
                    PathKey::Template(&segs)
                }
            };
            bucket.insert(key, rank as u32);
        }
        router.suffix_lens.sort_unstable_by(|a, b| b.cmp(a));
        router
    }

    /// Finds the route for a request. `host`: raw Host header value (may carry `:port`, any case; empty
    /// if absent); `method`: raw token; `path`: the request path without the query string.
    ///
    /// Never allocates unless the answer is [`Match::MethodNotAllowed`].
    pub fn lookup(
        &self,
        host: &[u8],
        method: &[u8],
        path: &[u8],
        headers: &impl HeaderSource,
    ) -> Match {
        let host = normalize_host(host);
        let mut req = Req {
            conds: &self.conds,
            method: ReqMethod::new(method),
            headers,
            method_miss: false,
        };
        if let Some(rank) = self.find(host, path, &mut req) {
            return Match::Route(self.conds[rank as usize].index);
        }
        if req.method_miss {
            self.fallback.not_allowed(host, path, headers)
        } else {
            Match::NotFound
        }
    }

    /// Asks the host buckets in precedence order; the first full match wins.
    #[inline]
    fn find<H: HeaderSource>(&self, host: &[u8], path: &[u8], req: &mut Req<'_, H>) -> Option<u32> {
        if let Some(b) = self.exact_hosts.get(host) {
            if let Some(r) = b.best(req, path) {
                return Some(r);
            }
        }
        for &l in &self.suffix_lens {
            if host.len() > l {
                if let Some(b) = self.suffixes.get(&host[host.len() - l..]) {
                    if let Some(r) = b.best(req, path) {
                        return Some(r);
                    }
                }
            }
        }
        if self.any_host.is_empty() {
            return None;
        }
        self.any_host.best(req, path)
    }
}

/// Appends the upstream request target to `out` (which is not cleared): `path_and_query` with the
/// route's prefix rewrite applied.
///
/// No rewrite, or a path that does not start with `from` on a segment boundary: copied unchanged.
/// Otherwise `from` is replaced by `to`, joined with the rest of the path by exactly one `/`:
/// from=`/api` to=`` turns `/api/users?x=1` into `/users?x=1`, `/api` into `/`, `/api?x` into `/?x`;
/// to=`/v2` turns `/api/users` into `/v2/users`. A rewritten target always starts with `/`.
pub fn rewrite_target(rewrite: Option<&PrefixRewrite>, path_and_query: &[u8], out: &mut Vec<u8>) {
    let q = path_and_query
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(path_and_query.len());
    let (path, query) = path_and_query.split_at(q);
    let Some(rw) = rewrite.filter(|rw| prefix_matches(rw.from.as_bytes(), path)) else {
        out.extend_from_slice(path_and_query);
        return;
    };
    let from = rw.from.as_bytes();
    // The rest of the path, starting with '/' unless empty ('/' restored when `from` consumed it).
    let rest = &path[from.len()..];
    let restored_slash = from.last() == Some(&b'/') && !rest.is_empty();
    let mut to = rw.to.as_bytes();
    if restored_slash || rest.first() == Some(&b'/') {
        while let Some(t) = to.strip_suffix(b"/") {
            to = t;
        }
    }
    let start = out.len();
    if to.first().is_some_and(|&b| b != b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(to);
    if restored_slash {
        out.push(b'/');
    }
    out.extend_from_slice(rest);
    if out.len() == start {
        out.push(b'/');
    }
    out.extend_from_slice(query);
}

/// The value of path parameter `name` in `path` (without the query), which matched `template`:
/// one segment for `{name}`, the rest of the path for `{*name}`; None when the template has no
/// such parameter or the path does not line up with it.
pub fn template_param<'p>(
    template: &[crate::config::TemplateSegment],
    path: &'p [u8],
    name: &str,
) -> Option<&'p [u8]> {
    use crate::config::TemplateSegment as S;
    let mut rest = path.strip_prefix(b"/")?;
    for seg in template {
        let end = memchr::memchr(b'/', rest).unwrap_or(rest.len());
        match seg {
            S::CatchAll(n) => return (n == name && !rest.is_empty()).then_some(rest),
            S::Param(n) if n == name => return Some(&rest[..end]),
            _ => {}
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    None
}
