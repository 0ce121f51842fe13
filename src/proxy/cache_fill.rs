//! What goes into the response cache (`cache.rs` decides when): storability and freshness of an
//! upstream response (RFC 9111 for a shared cache), the worker's store and the shared tier in
//! Redis behind it, background refreshes for stale-while-revalidate, and aggregation parts kept
//! with `cache_ttl`.
//!
//! Data flow: `cache::complete` (a response the upstream target collected) and
//! [`refresh_in_background`] (a `subrequest::fetch` of the same request) end in [`store`]: the
//! response's Cache-Control, Set-Cookie, Vary and the caller decide whether it is kept; its
//! freshness comes from the upstream's directives or the route's `ttl`; it goes into the worker's
//! store and, with `shared = "redis"`, to Redis in the background ([`to_shared`]).
//! [`from_shared`] is the other way: a worker's miss answered by Redis.

use std::rc::Rc;
use std::time::Instant;

use super::cache::{lookup, unix_now, validators, Fill};
use super::target::{self, Call};
use super::ClientConn;
use crate::cache::freshness::{
    explicit_lifetime, initial_age, parse_http_date, CacheControl, Freshness, Received, Staleness,
};
use crate::cache::policy::CachePolicy;
use crate::cache::store::{Inserted, VaryPair};
use crate::cache::{CachedEntry, Stored};
use crate::http::head::{HeaderKind, ResponseHead};
use crate::runtime::worker::Generation;

/// Asks the shared tier (Redis) for the request's key; a hit whose Vary values match the
/// request goes into this worker's store and is returned.
pub(super) async fn from_shared(gen: &Generation, c: &ClientConn) -> Option<CachedEntry> {
    let redis = gen.ratelimit.redis()?;
    let prefix = &gen.cfg.redis.as_ref()?.key_prefix;
    let got = crate::cache::shared::fetch(redis, prefix, &c.cache_key).await?;
    let (head, buf) = (&c.head, &c.buf);
    let matches = got.vary.iter().all(|(n, v)| {
        let req = head.header(buf, n).map(<[u8]>::trim_ascii);
        req == v.as_deref()
    });
    if !matches {
        return None;
    }
    let now = Instant::now();
    let weight = stored_weight(&got.value);
    {
        let mut st = gen.cache.store.borrow_mut();
        let st = st.as_mut()?;
        let value = got.value;
        let _ = st.insert(
            &c.cache_key,
            got.vary,
            got.tags,
            got.fresh,
            weight,
            value,
            now,
        );
        gen.stats.cache_bytes.set(st.bytes() as i64);
        gen.stats.cache_entries.set(st.len() as i64);
    }
    lookup(gen, c, now)
}

/// Bytes a stored response is accounted at.
fn stored_weight(st: &Stored) -> usize {
    let headers = st.resp.headers.len() * std::mem::size_of::<crate::http::head::Header>();
    st.head.len() + st.body.len() + headers
}

/// The first field `name` of a raw request head (`name: value` lines).
pub(super) fn raw_header<'h>(head: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// Freshness of a response received now for a request sent at `request_time`.
pub(super) fn freshness(
    policy: &CachePolicy,
    cc: &CacheControl,
    head: &[u8],
    resp: &ResponseHead,
    request_time: u64,
    now: Instant,
) -> Freshness {
    let r = Received {
        cc,
        date: resp.header(head, b"date").and_then(parse_http_date),
        expires: resp.header(head, b"expires"),
        age: resp
            .header(head, b"age")
            .and_then(crate::cache::freshness::parse_delta),
        request_time,
        response_time: unix_now(),
    };
    Freshness {
        stored_at: now,
        initial_age: initial_age(&r),
        lifetime: explicit_lifetime(&r).unwrap_or(policy.ttl.as_secs()),
        stale_while_revalidate: cc
            .stale_while_revalidate
            .unwrap_or(policy.stale_while_revalidate.as_secs()),
        stale_if_error: cc.stale_if_error.unwrap_or(policy.stale_if_error.as_secs()),
        must_revalidate: cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some(),
    }
}

/// A stored entry's freshness after a 304 answered our validators (RFC 9111 4.3.4): from the
/// 304's own `Cache-Control` (every such line) or `Expires` when it has them; a bare 304 keeps
/// the stored response's lifetime and stale windows, with its age counted from now.
pub(super) fn revalidated(
    policy: &CachePolicy,
    stored: Freshness,
    head: &[u8],
    resp: &ResponseHead,
    request_time: u64,
    now: Instant,
) -> Freshness {
    let cc = CacheControl::parse(
        (resp.headers.iter())
            .filter(|h| h.name.get(head).eq_ignore_ascii_case(b"cache-control"))
            .map(|h| h.value.get(head)),
    );
    let mut f = freshness(policy, &cc, head, resp, request_time, now);
    if cc == CacheControl::default() && resp.header(head, b"expires").is_none() {
        f.lifetime = stored.lifetime;
        f.stale_while_revalidate = stored.stale_while_revalidate;
        f.stale_if_error = stored.stale_if_error;
    }
    f
}

/// Stores a response when it is storable (see the module doc); the worker's gauges follow.
#[allow(clippy::too_many_arguments)]
pub(super) fn store<'r>(
    gen: &Generation,
    policy: &CachePolicy,
    key: &[u8],
    fill: &Fill,
    head: &[u8],
    resp: &ResponseHead,
    body: &[u8],
    request: &dyn Fn(&[u8]) -> Option<&'r [u8]>,
    now: Instant,
) -> bool {
    let all = |name: &'static [u8]| {
        resp.headers
            .iter()
            .filter(move |h| h.name.get(head).eq_ignore_ascii_case(name))
            .map(move |h| h.value.get(head))
    };
    let cc = CacheControl::parse(all(b"cache-control"));
    if cc.no_store || cc.private || all(b"set-cookie").next().is_some() {
        return false;
    }
    let vouched = cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
    if fill.authed && !policy.per_user() && !policy.share_authenticated && !vouched {
        return false;
    }
    let mut names: Vec<Vec<u8>> = policy.vary.iter().map(|v| v.as_bytes().to_vec()).collect();
    for v in all(b"vary") {
        for n in v
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|n| !n.is_empty())
        {
            if n == b"*" {
                return false;
            }
            let n = n.to_ascii_lowercase();
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let vary: Vec<VaryPair> = names
        .into_iter()
        .map(|n| {
            let v = request(&n).map(|v| v.trim_ascii().into());
            (n.into_boxed_slice(), v)
        })
        .collect();
    let mut tags: Vec<Box<[u8]>> = Vec::new();
    for v in all(b"cache-tag").chain(all(b"surrogate-key")) {
        for t in v
            .split(|&b| b == b',' || b == b' ')
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
        {
            tags.push(t.into());
        }
    }
    let fresh = freshness(policy, &cc, head, resp, fill.request_time, now);
    // the stored head leaves out Age (the cache writes its own)
    let mut stored_resp = resp.clone();
    stored_resp
        .headers
        .retain(|h| h.kind != HeaderKind::Other || !h.name.get(head).eq_ignore_ascii_case(b"age"));
    let value = Stored {
        head: head.into(),
        resp: stored_resp,
        body: body.into(),
    };
    let weight = stored_weight(&value);
    if policy.shared {
        to_shared(gen, key, &vary, &tags, &fresh, &value);
    }
    let mut st = gen.cache.store.borrow_mut();
    let Some(st) = st.as_mut() else {
        return false;
    };
    let r = st.insert(key, vary, tags, fresh, weight, value, now);
    gen.stats.cache_bytes.set(st.bytes() as i64);
    gen.stats.cache_entries.set(st.len() as i64);
    match r {
        Inserted::Stored { evicted } => {
            gen.stats.cache_evictions.add(evicted as u64);
            true
        }
        Inserted::Rejected => false,
    }
}

/// Writes an entry to the shared tier in the background (for as long as it may be served).
fn to_shared(
    gen: &Generation,
    key: &[u8],
    vary: &[VaryPair],
    tags: &[Box<[u8]>],
    fresh: &Freshness,
    value: &Stored,
) {
    let (Some(redis), Some(cfg)) = (gen.ratelimit.redis(), gen.cfg.redis.as_ref()) else {
        return;
    };
    let bytes = crate::cache::shared::encode(vary, tags, fresh, value);
    let ttl = fresh.keep_for().saturating_sub(fresh.initial_age);
    if ttl == 0 {
        return;
    }
    let (redis, prefix) = (redis.clone(), cfg.key_prefix.clone());
    let (key, tags) = (key.to_vec(), tags.to_vec());
    monoio::spawn(async move {
        crate::cache::shared::put(&redis, &prefix, &key, bytes, tags, ttl).await;
    });
}

/// Refreshes a stale entry off the request path: the same request, conditional on the entry's
/// validators, through `subrequest::fetch`; the entry is updated (304) or replaced (200).
pub(super) fn refresh_in_background(
    gen: &Rc<Generation>,
    c: &mut ClientConn,
    call: &Call<'_>,
    e: &CachedEntry,
    policy: &Rc<CachePolicy>,
) {
    e.refreshing.set(true);
    let mark = c.req_lines.len();
    let conditional = validators(e, &mut c.req_lines);
    let mut req = Vec::with_capacity(512);
    target::write_head(gen, c, call, None, &mut req);
    c.req_lines.truncate(mark);
    let (gen, e, policy) = (gen.clone(), e.clone(), policy.clone());
    let key: Box<[u8]> = c.cache_key[..].into();
    let up = call.upstream;
    let authed = call.identity.is_some() || c.head.header(&c.buf, b"authorization").is_some();
    monoio::spawn(async move {
        let request_time = unix_now();
        let upstream = &gen.upstreams[up];
        let got =
            super::subrequest::fetch(&gen, upstream, &mut req, true, false, policy.max_entry).await;
        if let Ok(f) = got {
            let now = Instant::now();
            let fill = Fill {
                policy: policy.clone(),
                stale: None,
                conditional,
                request_time,
                authed,
                store: true,
            };
            if f.resp.status == 304 && conditional {
                let stored = e.fresh.get();
                e.fresh.set(revalidated(
                    &policy,
                    stored,
                    &f.head,
                    &f.resp,
                    request_time,
                    now,
                ));
            } else if policy.statuses.contains(&f.resp.status) {
                // the same variant: its Vary values are the entry's
                let entry = &*e;
                let vary = |name: &[u8]| {
                    entry
                        .vary
                        .iter()
                        .find(|(n, _)| &n[..] == name)
                        .and_then(|(_, v)| v.as_deref())
                };
                store(
                    &gen, &policy, &key, &fill, &f.head, &f.resp, &f.body, &vary, now,
                );
            }
        }
        e.refreshing.set(false);
    });
}

/// A cached aggregation part's fresh response (a copy), when the worker's store has one.
pub(super) fn part_hit(gen: &Generation, key: &[u8]) -> Option<super::subrequest::Fetched> {
    let now = Instant::now();
    let e = gen
        .cache
        .store
        .borrow_mut()
        .as_mut()?
        .lookup(key, now, &|_| None)?;
    if e.fresh.get().staleness(now) != Staleness::Fresh {
        return None;
    }
    Some(super::subrequest::Fetched {
        head: e.value.head.to_vec(),
        resp: e.value.resp.clone(),
        body: e.value.body.to_vec(),
    })
}

/// Keeps an aggregation part's successful response for `ttl` (`cache_ttl`), under the same
/// storability rules as a route's cache (its key names the caller when there is one).
pub(super) fn part_fill(
    gen: &Generation,
    key: &[u8],
    ttl: std::time::Duration,
    max: usize,
    f: &super::subrequest::Fetched,
) {
    if f.body.len() > max {
        return;
    }
    let policy = CachePolicy {
        ttl,
        max_entry: max,
        key: Vec::new(),
        vary: Vec::new(),
        stale_while_revalidate: std::time::Duration::ZERO,
        stale_if_error: std::time::Duration::ZERO,
        statuses: vec![200, 203],
        share_authenticated: true,
        coalesce: false,
        shared: false,
    };
    let fill = Fill {
        policy: Rc::new(policy.clone()),
        stale: None,
        conditional: false,
        request_time: unix_now(),
        authed: false,
        store: true,
    };
    let now = Instant::now();
    store(
        gen,
        &policy,
        key,
        &fill,
        &f.head,
        &f.resp,
        &f.body,
        &|_| None,
        now,
    );
}
