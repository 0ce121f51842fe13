//! The response cache on a route's request path: lookup, hit, fill, revalidation, stale answers
//! and coalescing (the engine is `crate::cache`: store, freshness).
//!
//! Owns [`prepare`] (the key, while the request view is at hand), [`serve`] (a cacheable GET or
//! HEAD from lookup to answer) and [`complete`] (what the upstream target does with a response it
//! collected for the cache). Data flow:
//!
//! ```text
//! prepare: key = path NUL route NUL host [NUL part]... (query, query:x, header:x, cookie:x,
//!          identity); request Cache-Control; authenticated?; client validators?
//! serve:   lookup (Vary variants) -> fresh: HIT (or 304 for the client's validators)
//!           -> stale within stale-while-revalidate: STALE + one background refresh
//!           -> stale / miss: wait for a concurrent miss of the same key (coalescing), else
//!              fetch through the upstream target into a buffer, conditional when the entry
//!              has validators
//! complete: 304 to our validators -> entry refreshed, served (REVALIDATED); 5xx with a stale
//!           entry inside stale-if-error -> STALE; else stored when storable -> MISS
//! ```
//! Failures that never reach a response (breaker open, bulkhead full, connect error, timeout)
//! also serve a stale entry inside its stale-if-error window ([`stale_on_error`]).
//!
//! Storable (RFC 9111 §3, shared cache): the route's statuses; not `no-store`, not `private`, no
//! `Set-Cookie`, not `Vary: *`; a response to an authenticated request (Authorization, or an
//! identity from the route's auth) only under a key with `identity`, or when the upstream marks
//! it `public` / `s-maxage` / `must-revalidate`, or the route says `share_authenticated`.
//! Freshness: `s-maxage`, `max-age`, `Expires` when the upstream states them, else the route's
//! `ttl`; stale windows from the upstream's directives, else the route's. Every answer says
//! `X-Cache` (HIT, STALE, REVALIDATED, MISS, BYPASS) and a stored response says its `Age`.

use std::rc::Rc;
use std::time::Instant;

use super::cache_fill::{raw_header, revalidated, store};
use super::sink::{Collected, Sink, Want};
use super::target::{self, Call};
use super::{ClientConn, Consumed, Outcome};
use crate::auth::identity::Identity;
use crate::auth::token::{cookie, query_param};
use crate::cache::freshness::{parse_http_date, request_accepts, CacheControl, Staleness};
use crate::cache::policy::{CachePolicy, KeyPart};
use crate::cache::{CachedEntry, Stored};
use crate::http::head::ResponseHead;
use crate::http::rewrite::{push_header, write_client_response, OutFraming};
use crate::http::view::RequestView;
use crate::metrics::CACHE_OUTCOMES;
use crate::runtime::worker::Generation;

/// What [`prepare`] learnt about a cacheable request.
pub(super) struct Lookup {
    /// HEAD: answered from a GET's entry, never filled.
    pub head_only: bool,
    /// Authorization sent, or an identity established.
    pub authed: bool,
    pub req_cc: CacheControl,
    /// The client sent its own validators (If-None-Match / If-Modified-Since).
    pub client_validators: bool,
}

/// An outcome's index in `RouteStats::cache`.
fn outcome(label: &str) -> usize {
    CACHE_OUTCOMES
        .iter()
        .position(|o| o.eq_ignore_ascii_case(label))
        .unwrap_or(0)
}

/// What a cached route does with a request.
pub(super) enum Prepared {
    /// A GET or HEAD: look it up ([`serve`]).
    Lookup(Lookup),
    /// An unsafe method: passes by; when it succeeds, the path's entries go ([`invalidate`];
    /// `key` holds the path).
    Unsafe,
    /// OPTIONS, TRACE: passes by.
    Other,
}

/// Builds the cache key of a GET or HEAD into `key` (see the module doc); `key` starts with
/// the path for every method.
pub(super) fn prepare(
    policy: &CachePolicy,
    route_name: &str,
    view: &RequestView<'_>,
    identity: Option<&Identity>,
    key: &mut Vec<u8>,
) -> Prepared {
    key.clear();
    key.extend_from_slice(view.path);
    let head_only = match view.method {
        b"GET" => false,
        b"HEAD" => true,
        b"OPTIONS" | b"TRACE" => return Prepared::Other,
        _ => return Prepared::Unsafe,
    };
    key.push(0);
    key.extend_from_slice(route_name.as_bytes());
    key.push(0);
    let host = view.host;
    let host = &host[..memchr::memrchr(b':', host)
        .filter(|_| !host.ends_with(b"]"))
        .unwrap_or(host.len())];
    key.extend(host.iter().map(u8::to_ascii_lowercase));
    let query = memchr::memchr(b'?', view.target).map(|q| &view.target[q + 1..]);
    for part in &policy.key {
        key.push(0);
        let value: Option<&[u8]> = match part {
            KeyPart::Query => Some(query.unwrap_or_default()),
            KeyPart::QueryParam(n) => query_param(view.target, n.as_bytes()),
            KeyPart::Header(n) => view.fields.get(n.as_bytes()),
            KeyPart::Cookie(n) => cookie(&view.fields, n.as_bytes()),
            KeyPart::Identity => identity
                .and_then(|i| i.subject.as_deref().or(i.consumer.as_deref()))
                .map(str::as_bytes),
        };
        // absent and empty differ: 1 = absent, 2 + value = present
        match value {
            None => key.push(1),
            Some(v) => {
                key.push(2);
                key.extend_from_slice(v);
            }
        }
    }
    let cc = view.fields.all(b"cache-control");
    let mut req_cc = CacheControl::parse(cc);
    if !view.fields.all(b"cache-control").any(|_| true)
        && view
            .fields
            .all(b"pragma")
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"no-cache"))
    {
        req_cc.no_cache = true;
    }
    Prepared::Lookup(Lookup {
        head_only,
        authed: identity.is_some() || view.fields.get(b"authorization").is_some(),
        req_cc,
        client_validators: view.fields.get(b"if-none-match").is_some()
            || view.fields.get(b"if-modified-since").is_some(),
    })
}

/// A response the cache may fill from: what the upstream target needs to know.
pub(super) struct Fill {
    pub policy: Rc<CachePolicy>,
    /// The stale entry this fetch may stand in for (304 to our validators, stale-if-error).
    pub stale: Option<CachedEntry>,
    /// We sent the entry's validators: a 304 refreshes it.
    pub conditional: bool,
    /// Unix seconds when the request went out.
    pub request_time: u64,
    pub authed: bool,
    /// Store what comes back (GET, no client validators).
    pub store: bool,
}

impl Fill {
    /// The stale entry, when it may answer for a failed upstream now.
    pub(super) fn stale_on_error(&self) -> Option<&CachedEntry> {
        let now = Instant::now();
        self.stale
            .as_ref()
            .filter(|e| e.fresh.get().usable_on_error(now))
    }
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves a cacheable GET or HEAD (see the module doc).
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve(
    gen: &Rc<Generation>,
    c: &mut ClientConn,
    resp: &mut ResponseHead,
    call: &Call<'_>,
    policy: &Rc<CachePolicy>,
    lk: Lookup,
    sink: &mut Sink<'_>,
) -> Outcome {
    let stats = &gen.routes[call.route];
    let now = Instant::now();
    let mut found = lookup(gen, c, now);
    if found.is_none() && policy.shared {
        found = super::cache_fill::from_shared(gen, c).await;
    }
    if let Some(e) = &found {
        let f = e.fresh.get();
        let accepts = request_accepts(&lk.req_cc, &f, now);
        match f.staleness(now) {
            Staleness::Fresh if accepts => {
                stats.cache[outcome("hit")].inc();
                return answer_entry(gen, c, call, e, "HIT", lk.head_only, Consumed::Head).await;
            }
            Staleness::Revalidate if accepts && !lk.req_cc.no_cache => {
                stats.cache[outcome("stale")].inc();
                if !e.refreshing.get() {
                    super::cache_fill::refresh_in_background(gen, c, call, e, policy);
                }
                return answer_entry(gen, c, call, e, "STALE", lk.head_only, Consumed::Head).await;
            }
            _ => {}
        }
    }
    if lk.head_only || lk.client_validators {
        // not filled from here: the client's own validators (or a HEAD) go to the upstream
        stats.cache[outcome("bypass")].inc();
        c.cache_label = "BYPASS";
        return target::upstream(gen, c, resp, call, sink).await;
    }
    // a concurrent miss of the same key on this worker: wait for its answer, then look again
    let mut leader = None;
    if policy.coalesce {
        let waiting = gen.cache.inflight.borrow().get(&c.cache_key[..]).cloned();
        match waiting {
            Some(done) => {
                let up = &gen.upstreams[call.upstream];
                let wait = monoio::time::timeout(up.cfg.response_timeout, done.wait());
                let _ = wait.await;
                if let Some(e) = lookup(gen, c, Instant::now()) {
                    let f = e.fresh.get();
                    if f.staleness(Instant::now()) == Staleness::Fresh {
                        stats.cache[outcome("coalesced")].inc();
                        return answer_entry(gen, c, call, &e, "HIT", false, Consumed::Head).await;
                    }
                }
            }
            None => leader = Some(Leader::new(gen, &c.cache_key)),
        }
    }
    // a fetch: conditional when the entry we have has validators
    let conditional = found
        .as_ref()
        .is_some_and(|e| validators(e, &mut c.req_lines));
    let fill = Fill {
        policy: policy.clone(),
        stale: found,
        conditional,
        request_time: unix_now(),
        authed: lk.authed,
        store: true,
    };
    c.cache_label = "MISS";
    // the request head, for the Vary values of what comes back (the buffer moves on)
    c.cache_req.clear();
    c.cache_req.extend_from_slice(&c.buf[..c.head.head_len]);
    let mut collected = Collected::new(policy.max_entry, Want::Cache(policy.clone()));
    collected.accept_304 = fill.conditional;
    collected.accept_5xx = fill.stale_on_error().is_some();
    let mut sink = Sink::Buffer(&mut collected);
    let call = Call {
        cache: Some(&fill),
        ..*call
    };
    let out = target::upstream(gen, c, resp, &call, &mut sink).await;
    stats.cache[outcome(c.cache_label)].inc();
    drop(leader);
    out
}

/// The entry for the request's key and Vary values.
pub(super) fn lookup(gen: &Generation, c: &ClientConn, now: Instant) -> Option<CachedEntry> {
    let (head, buf) = (&c.head, &c.buf);
    let header = |name: &[u8]| head.header(buf, name);
    gen.cache
        .store
        .borrow_mut()
        .as_mut()?
        .lookup(&c.cache_key, now, &header)
}

/// Appends the entry's validators to the upstream request's extra lines; true when it has any.
pub(super) fn validators(e: &CachedEntry, lines: &mut Vec<u8>) -> bool {
    let mut any = false;
    if let Some(etag) = e.value.header(b"etag") {
        push_header(lines, b"if-none-match", etag);
        any = true;
    }
    if let Some(lm) = e.value.header(b"last-modified") {
        push_header(lines, b"if-modified-since", lm);
        any = true;
    }
    any
}

/// The first request of a key to miss: others wait for it; signalled and removed when dropped.
struct Leader<'g> {
    gen: &'g Generation,
    key: Box<[u8]>,
    done: Rc<crate::runtime::drain::Drain>,
}

impl<'g> Leader<'g> {
    fn new(gen: &'g Generation, key: &[u8]) -> Self {
        let done = Rc::new(crate::runtime::drain::Drain::default());
        let key: Box<[u8]> = key.into();
        gen.cache
            .inflight
            .borrow_mut()
            .insert(key.clone(), done.clone());
        Leader { gen, key, done }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.gen.cache.inflight.borrow_mut().remove(&self.key);
        self.done.trigger();
    }
}

/// Answers from a stored entry (`label`: HIT, STALE, REVALIDATED), or 304 when the client's
/// validators match it.
async fn answer_entry(
    gen: &Generation,
    c: &mut ClientConn,
    call: &Call<'_>,
    e: &CachedEntry,
    label: &'static str,
    head_only: bool,
    consumed: Consumed,
) -> Outcome {
    let st = &e.value;
    // the client's validators, while its head is still in the buffer (keep_after takes it out;
    // after a failed exchange it is gone already, and the full answer goes)
    let not_modified = matches!(consumed, Consumed::Head) && client_matches(c, st);
    let keep = super::keep_after(gen, c, consumed);
    c.cache_label = label;
    super::response_phase(c, call.filters, Some((&st.resp, &st.head)));
    push_age(&mut c.extra, e.fresh.get().age(Instant::now()));
    let route = &gen.cfg.routes[call.route];
    let strip = route
        .response_headers
        .as_ref()
        .map_or(&[][..], |o| o.strip());
    c.out.clear();
    let len = st.body.len() as u64;
    if not_modified {
        write_not_modified(&mut c.out, st, call.rid, keep, &c.extra, strip);
    } else {
        let framing = OutFraming::Length(len);
        write_client_response(
            &mut c.out, &st.head, &st.resp, call.rid, keep, framing, &c.extra, strip,
        );
        if !head_only {
            c.out.extend_from_slice(&st.body);
        }
    }
    c.info.route = Some(call.route);
    c.info.status = if not_modified { 304 } else { st.resp.status };
    let sent = if head_only || not_modified {
        0
    } else {
        st.body.len()
    };
    super::send_answer(gen, c, sent, keep).await
}

fn push_age(extra: &mut Vec<u8>, age: u64) {
    push_header(extra, b"age", itoa::Buffer::new().format(age).as_bytes());
}

/// The client's `If-None-Match` names the entry's ETag (weak comparison, RFC 9110 §13.1.2), or
/// (without one) its `If-Modified-Since` is not before the entry's `Last-Modified`. The head is
/// still in the buffer (nothing of the request was consumed).
fn client_matches(c: &ClientConn, st: &Stored) -> bool {
    let (head, buf) = (&c.head, &c.buf);
    if let Some(inm) = head.header(buf, b"if-none-match") {
        let Some(etag) = st.header(b"etag") else {
            return false;
        };
        let etag = weak(etag);
        return inm.trim_ascii() == b"*" || inm.split(|&b| b == b',').any(|t| weak(t) == etag);
    }
    match (
        head.header(buf, b"if-modified-since"),
        st.header(b"last-modified"),
    ) {
        (Some(ims), Some(lm)) => match (parse_http_date(ims), parse_http_date(lm)) {
            (Some(ims), Some(lm)) => lm <= ims,
            _ => false,
        },
        _ => false,
    }
}

/// An entity tag without its weakness marker (weak comparison).
fn weak(t: &[u8]) -> &[u8] {
    let t = t.trim_ascii();
    t.strip_prefix(b"W/").unwrap_or(t)
}

/// A 304 for a stored response: the fields RFC 9110 §15.4.5 says a 304 carries.
fn write_not_modified(
    out: &mut Vec<u8>,
    st: &Stored,
    rid: &[u8],
    keep: bool,
    extra: &[u8],
    strip: &[Box<[u8]>],
) {
    out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
    for name in [
        &b"etag"[..],
        b"cache-control",
        b"expires",
        b"vary",
        b"date",
        b"content-location",
    ] {
        if let Some(v) = st
            .header(name)
            .filter(|_| !crate::transform::headers::stripped(strip, name))
        {
            push_header(out, name, v);
        }
    }
    push_header(out, b"x-request-id", rid);
    out.extend_from_slice(extra);
    out.extend_from_slice(match keep {
        true => b"connection: keep-alive\r\n\r\n",
        false => b"connection: close\r\n\r\n",
    });
}

/// What the upstream target does with a response it collected for the cache (see the module
/// doc): may swap in the stored entry; sets `c.cache_label` and the Age line.
pub(super) fn complete(gen: &Generation, c: &mut ClientConn, fill: &Fill, b: &mut Collected) {
    let now = Instant::now();
    let status = b.resp.status;
    if let (304, true, Some(e)) = (status, fill.conditional, &fill.stale) {
        // our validators matched: the entry is fresh again
        let stored = e.fresh.get();
        let f = revalidated(
            &fill.policy,
            stored,
            &b.head,
            &b.resp,
            fill.request_time,
            now,
        );
        e.fresh.set(f);
        swap_in(b, e);
        relabel(c, "REVALIDATED");
        push_age(&mut c.extra, f.age(now));
        return;
    }
    if status >= 500 {
        if let Some(e) = fill.stale_on_error() {
            swap_in(b, e);
            relabel(c, "STALE");
            push_age(&mut c.extra, e.fresh.get().age(now));
            return;
        }
    }
    if fill.store && fill.policy.statuses.contains(&status) {
        let head = &c.cache_req;
        let vary_src = |name: &[u8]| raw_header(head, name);
        store(
            gen,
            &fill.policy,
            &c.cache_key,
            fill,
            &b.head,
            &b.resp,
            &b.body,
            &vary_src,
            now,
        );
    }
}

/// Replaces the `X-Cache` line the response phase wrote (it comes last in `c.extra`).
fn relabel(c: &mut ClientConn, label: &'static str) {
    c.extra.truncate(c.cache_line_at);
    c.cache_label = label;
    super::push_cache_line(c);
}

/// Replaces a collected response with a stored one (head, body; a copy).
fn swap_in(b: &mut Collected, e: &CachedEntry) {
    b.head.clear();
    b.head.extend_from_slice(&e.value.head);
    b.resp = e.value.resp.clone();
    b.body.clear();
    b.body.extend_from_slice(&e.value.body);
    b.transformed = false;
}

/// A failed upstream call on a route with a stale entry inside stale-if-error: answers with it.
pub(super) async fn stale_on_error(
    gen: &Generation,
    c: &mut ClientConn,
    call: &Call<'_>,
    consumed: Consumed,
) -> Option<Outcome> {
    let e = call.cache?.stale_on_error()?.clone();
    Some(answer_entry(gen, c, call, &e, "STALE", false, consumed).await)
}

/// After a successful unsafe request (POST, PUT, PATCH, DELETE...) on a cached route, every
/// entry of its path goes (RFC 9111 §4.4).
pub(super) fn invalidate(gen: &Generation, path: &[u8]) {
    let n = gen.cache.purge(&crate::cache::Purge::Path(path.to_vec()));
    if n > 0 {
        if let Some(st) = gen.cache.store.borrow().as_ref() {
            gen.stats.cache_bytes.set(st.bytes() as i64);
            gen.stats.cache_entries.set(st.len() as i64);
        }
    }
}
