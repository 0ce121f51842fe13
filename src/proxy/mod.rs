//! The connection driver: one task per client connection, running the keep-alive loop.
//!
//! Owns: a client connection's buffers (one read buffer, one output buffer, one target buffer, reused
//! for every request on the connection) and the per-request sequence:
//!
//! ```text
//! read head (header_timeout; keepalive_timeout while idle, raced with drain)
//!  -> parse strictly (http::head)            -> 400/408/414/431/505 + close
//!  -> request id, route lookup (router)      -> 404 / 405
//!  -> max_body, 100-continue
//!  -> write upstream head + buffered body into `out`
//!  -> exchange.rs: pick endpoint, pooled or new connection, send, stream body, read response head
//!     (retries, passive health)              -> 502 / 503 / 504
//!  -> relay.rs: response head + body to the client, connection back to the pool
//! ```
//! Errors are turned into responses by `http::respond` only. A connection whose request framing is in
//! doubt (any 4xx from the parser, a body we did not read) is closed after the answer.
//!
//! Each request runs on the worker's *current* config generation, fetched when its head has been
//! read (so a reload applies to the next request of a keep-alive connection, and a request in
//! flight finishes on the generation it started with). When it ends, `finish` records it once:
//! route and upstream counters, latency histograms, and one access-log line (`ReqInfo` collects
//! what they need as the request goes: route, status, endpoint, timings, trace span, subject,
//! rate-limit decision).

mod exchange;
mod relay;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant as StdInstant;

use monoio::time::Instant;

use crate::auth::jwt::Reject;
use crate::auth::Denied;
use crate::http::chunked::{self, ChunkedDecoder};
use crate::http::head::{self, BodyKind, RequestHead, ResponseHead};
use crate::http::respond::{write_error, ErrorKind, ProxyError};
use crate::http::rewrite::{self, RequestContext};
use crate::net::{IoFail, Stream};
use crate::ratelimit::key::KeyInput;
use crate::ratelimit::Limited;
use crate::router::{self, HeaderSource, Match};
use crate::runtime::worker::{Current, WorkerCtx};
use crate::trace::Span;
use crate::upstream::balance::hash_key;

/// Initial size of a client connection's read buffer.
const CLIENT_BUF: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection and its reusable buffers.
pub(crate) struct ClientConn {
    stream: Stream,
    buf: Vec<u8>,
    out: Vec<u8>,
    target: Vec<u8>,
    /// The normalised path (and the query after it) when the request's path was not normal.
    norm: Vec<u8>,
    head: RequestHead,
    peer_ip: String,
    /// Rate-limit headers and byte-quota charges of the current request.
    limits: crate::ratelimit::Output,
    /// Response body bytes sent to the client for the current request.
    body_sent: u64,
    /// Request body bytes received from the client for the current request.
    body_recv: u64,
    info: ReqInfo,
}

/// What `finish` needs to know about the current request.
struct ReqInfo {
    start: StdInstant,
    unix_ns: u64,
    route: Option<usize>,
    /// 0 until a response (or its head) was sent.
    status: u16,
    /// (upstream index, endpoint index) that answered.
    upstream: Option<(usize, usize)>,
    upstream_us: Option<u64>,
    ratelimit: &'static str,
    span: Option<Span>,
    rid: [u8; 128],
    rid_len: usize,
    /// Copied only while the access log is on.
    method: Vec<u8>,
    target: Vec<u8>,
    subject: String,
}

impl ReqInfo {
    fn new() -> Self {
        ReqInfo {
            start: StdInstant::now(),
            unix_ns: 0,
            route: None,
            status: 0,
            upstream: None,
            upstream_us: None,
            ratelimit: "",
            span: None,
            rid: [0; 128],
            rid_len: 0,
            method: Vec::new(),
            target: Vec::new(),
            subject: String::new(),
        }
    }

    /// Starts a request's record: now. The wall clock is read only for the access log (`wall`).
    fn begin(&mut self, wall: bool) {
        self.start = StdInstant::now();
        self.unix_ns = if wall {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        } else {
            0
        };
        self.route = None;
        self.status = 0;
        self.upstream = None;
        self.upstream_us = None;
        self.ratelimit = "";
        self.span = None;
        self.rid_len = 0;
        self.method.clear();
        self.target.clear();
        self.subject.clear();
    }
}

/// What remains of a request body after the bytes that arrived with the head.
pub(crate) enum BodyLeft {
    Done,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

/// How a request ended for the connection.
pub(crate) enum Outcome {
    KeepAlive,
    Close,
}

/// Failure of a request step: answer the client, or just close (client gone / response started).
pub(crate) enum Fail {
    Respond(ProxyError),
    Close,
}

impl From<ProxyError> for Fail {
    fn from(e: ProxyError) -> Self {
        Fail::Respond(e)
    }
}

struct Headers<'a> {
    head: &'a RequestHead,
    buf: &'a [u8],
}

impl HeaderSource for Headers<'_> {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
}

/// Decrements the open-connection counts when a connection task ends, however it ends. Holds only
/// worker-lifetime parts, never a generation.
struct ConnGuard {
    open: Rc<std::cell::Cell<usize>>,
    stats: Rc<crate::metrics::WorkerStats>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
        self.stats.open_connections.add(-1);
    }
}

/// Serves one client connection until it closes.
pub async fn serve(cur: Rc<Current>, stream: Stream, peer: SocketAddr) {
    let _guard = {
        let ctx = cur.get();
        ctx.open.set(ctx.open.get() + 1);
        ctx.stats.open_connections.add(1);
        ctx.stats.accepted_connections.inc();
        ConnGuard {
            open: ctx.open.clone(),
            stats: ctx.stats.clone(),
        }
    };
    let _ = stream.tcp().set_nodelay(true);
    let mut c = ClientConn {
        stream,
        buf: Vec::with_capacity(CLIENT_BUF),
        out: Vec::with_capacity(4096),
        target: Vec::with_capacity(256),
        norm: Vec::new(),
        head: RequestHead::default(),
        peer_ip: peer.ip().to_string(),
        limits: Default::default(),
        body_sent: 0,
        body_recv: 0,
        info: ReqInfo::new(),
    };
    let mut resp = ResponseHead::default();
    let mut first = true;
    loop {
        c.limits.clear();
        let head = read_head(&cur, &mut c, first).await;
        // the generation this request runs on
        let ctx = cur.get();
        c.info.begin(ctx.log.enabled());
        c.body_sent = 0;
        c.body_recv = 0;
        let outcome = match head {
            Ok(()) => handle_request(&ctx, &mut c, &mut resp).await,
            Err(Fail::Close) => return,
            Err(Fail::Respond(e)) => {
                let _ = answer_error(&ctx, &mut c, None, None, &e, None, false).await;
                Outcome::Close
            }
        };
        finish(&ctx, &mut c);
        match outcome {
            Outcome::KeepAlive => first = false,
            Outcome::Close => {
                c.stream.close().await;
                return;
            }
        }
    }
}

/// Records a finished request: counters and latency of its route, one access-log line.
fn finish(ctx: &WorkerCtx, c: &mut ClientConn) {
    let i = &c.info;
    let total_us = i.start.elapsed().as_micros() as u64;
    let rs = match i.route {
        Some(r) => &ctx.routes[r],
        None => &ctx.stats.unmatched,
    };
    // nginx's convention for a client that went away before any response
    let status = if i.status == 0 { 499 } else { i.status };
    rs.record(status);
    rs.total.record_us(total_us);
    rs.bytes_in.add(c.body_recv);
    rs.bytes_out.add(c.body_sent);
    if let Some(us) = i.upstream_us {
        rs.upstream.record_us(us);
    }
    if !ctx.log.enabled() {
        return;
    }
    let route = i.route.map_or("", |r| ctx.cfg.routes[r].name.as_str());
    let (trace_id, span_id, parent): (&[u8], &[u8], &[u8]) = match &i.span {
        Some(s) => (
            &s.trace_id,
            &s.span_id,
            s.parent_id.as_ref().map_or(&[][..], |p| &p[..]),
        ),
        None => (b"", b"", b""),
    };
    ctx.log.record(&crate::accesslog::Record {
        unix_ns: i.unix_ns,
        request_id: &i.rid[..i.rid_len],
        trace_id,
        span_id,
        parent_span_id: parent,
        client_ip: &c.peer_ip,
        method: &i.method,
        path: &i.target,
        route,
        upstream: i
            .upstream
            .map(|(u, ep)| ctx.upstreams[u].host_text[ep].as_str()),
        status,
        bytes_in: c.body_recv,
        bytes_out: c.body_sent,
        total_us,
        upstream_us: i.upstream_us,
        subject: (!i.subject.is_empty()).then_some(i.subject.as_str()),
        ratelimit: i.ratelimit,
    });
}

/// Reads until a complete request head is buffered and parsed into `c.head`. Holds no generation
/// while it waits (an idle keep-alive connection must not keep an old config alive).
async fn read_head(cur: &Current, c: &mut ClientConn, first: bool) -> Result<(), Fail> {
    let (server, limits, drain) = {
        let g = cur.get();
        let s = &g.cfg.server;
        (
            (s.header_timeout, s.keepalive_timeout),
            g.limits,
            g.drain.clone(),
        )
    };
    let (header_timeout, keepalive_timeout) = server;
    let now = Instant::now();
    let mut deadline = now + header_timeout;
    if c.buf.is_empty() && !first {
        // idle keep-alive: wait for the next request's first byte, or the drain, or the idle timeout
        if drain.is_set() {
            return Err(Fail::Close);
        }
        let idle_deadline = now + keepalive_timeout;
        let read = c.stream.read_some(&mut c.buf, idle_deadline);
        let r = monoio::select! {
            r = read => Some(r),
            _ = drain.wait() => None,
        };
        match r {
            Some(Ok(n)) if n > 0 => deadline = Instant::now() + header_timeout,
            _ => return Err(Fail::Close),
        }
    }
    loop {
        if !c.buf.is_empty() {
            match head::parse_request(&c.buf, &limits, &mut c.head) {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(e) => {
                    return Err(Fail::Respond(ProxyError::new(ErrorKind::BadRequest {
                        status: e.status,
                        reason: e.reason,
                    })))
                }
            }
        }
        match c.stream.read_some(&mut c.buf, deadline).await {
            Ok(0) | Err(IoFail::Error) => return Err(Fail::Close),
            Ok(_) => {}
            Err(IoFail::Timeout) => {
                if c.buf.is_empty() && !first {
                    return Err(Fail::Close);
                }
                return Err(Fail::Respond(ProxyError::new(ErrorKind::HeaderTimeout)));
            }
        }
    }
}

/// Writes an error response. `keep` = the connection may stay open (also subject to the error kind).
async fn answer_error(
    ctx: &WorkerCtx,
    c: &mut ClientConn,
    route: Option<usize>,
    rid: Option<&[u8]>,
    err: &ProxyError,
    allow: Option<&str>,
    keep: bool,
) -> Outcome {
    let mut gen = [0u8; 40];
    let rid = match rid {
        Some(r) => r,
        None => {
            let n = ctx.request_ids.borrow_mut().next(&mut gen);
            // answers before a request id was chosen (unparsable heads): log the one we send
            c.info.rid[..n].copy_from_slice(&gen[..n]);
            c.info.rid_len = n;
            &gen[..n]
        }
    };
    let keep = keep && !err.closes_connection() && !ctx.drain.is_set();
    c.out.clear();
    let body = write_error(&mut c.out, err, rid, keep, allow, &c.limits.headers);
    c.info.route = route;
    c.info.status = err.status();
    c.body_sent = body as u64;
    let deadline = Instant::now() + ctx.cfg.server.client_body_timeout;
    match c.stream.write_all(&mut c.out, deadline).await {
        Ok(()) if keep => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// Answers an error before any of the request body was read: the head leaves the buffer, and the
/// connection stays open only when the client wants it and no body follows the head (a body we do
/// not read leaves the connection's framing unknown).
async fn refuse(
    ctx: &WorkerCtx,
    c: &mut ClientConn,
    route: Option<usize>,
    rid: &[u8],
    kind: ErrorKind,
    allow: Option<&str>,
) -> Outcome {
    let keep = c.head.keep_alive && c.head.body == BodyKind::None;
    let head_len = c.head.head_len;
    c.buf.drain(..head_len);
    let e = ProxyError::new(kind);
    answer_error(ctx, c, route, Some(rid), &e, allow, keep).await
}

/// The hash-balancing key of a request, read from what the upstream will receive: a header the
/// gateway sets from the verified identity hashes that value, a header it strips (managed identity
/// and credential headers) hashes as absent, so a client-sent copy can never steer balancing.
fn balance_key(
    balance: &crate::config::Balance,
    head: &RequestHead,
    buf: &[u8],
    peer_ip: &str,
    identity: Option<&crate::auth::identity::Identity>,
    strip: &[Box<[u8]>],
) -> Option<u64> {
    use crate::config::{Balance, HashKey};
    let Balance::Hash(key) = balance else {
        return None;
    };
    match key {
        HashKey::ClientIp => Some(hash_key(peer_ip.as_bytes())),
        HashKey::Identity => identity
            .and_then(|id| id.subject.as_ref().or(id.consumer.as_ref()))
            .map(|who| hash_key(who.as_bytes())),
        HashKey::Header(name) => {
            let name = name.as_bytes();
            if let Some((_, v)) = identity.and_then(|id| {
                id.headers
                    .iter()
                    .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            }) {
                return Some(hash_key(v.as_bytes()));
            }
            if strip.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                return None;
            }
            head.header(buf, name).map(hash_key)
        }
    }
}

/// Runs one parsed request to completion.
async fn handle_request(
    ctx: &Rc<WorkerCtx>,
    c: &mut ClientConn,
    resp: &mut ResponseHead,
) -> Outcome {
    let head = &c.head;
    let buf = &c.buf;
    // request id: keep a sane one, else generate
    let mut rid_store = [0u8; 128];
    let rid_len = match head
        .headers
        .iter()
        .find(|h| h.kind == head::HeaderKind::XRequestId)
        .map(|h| h.value.get(buf))
    {
        Some(v) if rewrite::sane_request_id(v) => {
            rid_store[..v.len()].copy_from_slice(v);
            v.len()
        }
        _ => {
            let mut gen = [0u8; 40];
            let n = ctx.request_ids.borrow_mut().next(&mut gen);
            rid_store[..n].copy_from_slice(&gen[..n]);
            n
        }
    };
    let rid = &rid_store[..rid_len];
    c.info.rid[..rid_len].copy_from_slice(rid);
    c.info.rid_len = rid_len;
    if ctx.log.enabled() {
        c.info.method.extend_from_slice(head.method(buf));
        c.info.target.extend_from_slice(head.target(buf));
    }
    let span = Span::start(
        head.header(buf, b"traceparent"),
        &mut ctx.span_ids.borrow_mut(),
    );
    c.info.span = Some(span);
    let client_keep = head.keep_alive;

    // routing and the upstream see the normalised path (router/normalize.rs); the query is kept
    let raw_path = head.path(buf);
    let (path, target) =
        match router::normalize(raw_path, &ctx.cfg.server.path_normalization, &mut c.norm) {
            Ok(false) => (raw_path, head.target(buf)),
            Ok(true) => {
                let path_len = c.norm.len();
                c.norm
                    .extend_from_slice(&head.target(buf)[raw_path.len()..]);
                (&c.norm[..path_len], &c.norm[..])
            }
            Err(router::PathError(reason)) => {
                let kind = ErrorKind::BadRequest {
                    status: 400,
                    reason,
                };
                return refuse(ctx, c, None, rid, kind, None).await;
            }
        };
    let lookup = ctx.router.lookup(
        head.host(buf),
        head.method(buf),
        path,
        &Headers { head, buf },
    );
    let route_idx = match lookup {
        Match::Route(i) => i,
        Match::MethodNotAllowed(allow) => {
            let kind = ErrorKind::MethodNotAllowed;
            return refuse(ctx, c, None, rid, kind, Some(&allow)).await;
        }
        Match::NotFound => return refuse(ctx, c, None, rid, ErrorKind::NoRoute, None).await,
    };
    let route = &ctx.cfg.routes[route_idx];
    c.info.route = Some(route_idx);
    // a credential the route does not forward is not written to the access log either
    let hidden = ctx.auth.hidden(route.auth);
    hidden.strip_target(&mut c.info.target);
    let identity = match route.auth {
        None => None,
        Some(policy) => {
            let denied = match ctx.auth.authenticate(policy, head, buf).await {
                Ok(id) if route.require.as_ref().is_none_or(|r| id.satisfies(r)) => Ok(id),
                Ok(_) => Err(ErrorKind::Forbidden),
                Err(Denied::Forbidden) => Err(ErrorKind::Forbidden),
                Err(Denied::Unauthorized { reject, bearer }) => Err(ErrorKind::Unauthorized {
                    reason: reject.reason(),
                    bearer,
                    presented: reject != Reject::Missing,
                }),
                Err(Denied::Unavailable(why)) => {
                    ctx.auth_unavailable(&why);
                    Err(ErrorKind::AuthUnavailable)
                }
            };
            match denied {
                Ok(id) => {
                    if ctx.log.enabled() {
                        if let Some(who) = id.consumer.as_ref().or(id.subject.as_ref()) {
                            c.info.subject.push_str(who);
                        }
                    }
                    Some(id)
                }
                Err(kind) => return refuse(ctx, c, Some(route_idx), rid, kind, None).await,
            }
        }
    };
    if let BodyKind::Length(n) = head.body {
        if n > route.max_body {
            let e = ProxyError::new(ErrorKind::BodyTooLarge);
            return answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, false).await;
        }
    }
    if ctx.ratelimit.applies(route) {
        let input = KeyInput {
            headers: &Headers { head, buf },
            client_ip: c.peer_ip.as_bytes(),
            identity: identity.as_deref(),
            route: &route.name,
        };
        let admitted = ctx.ratelimit.admit(route, &input, &mut c.limits).await;
        c.info.ratelimit = match admitted {
            // tiers exist, but none of their policies (nor the route's) applied to this caller
            Ok(()) if !c.limits.applied() => "",
            Ok(()) => "allowed",
            Err(Limited::Rate) => "limited",
            Err(Limited::Quota) => "quota_exceeded",
        };
        if let Err(limited) = admitted {
            let kind = match limited {
                Limited::Rate => ErrorKind::RateLimited,
                Limited::Quota => ErrorKind::QuotaExceeded,
            };
            return refuse(ctx, c, Some(route_idx), rid, kind, None).await;
        }
    }
    let up = &ctx.upstreams[route.upstream];

    // everything the response phase needs from the head, before the buffer moves on
    let method_head = head.method(buf) == b"HEAD";
    let idempotent = head.is_idempotent(buf);
    let client_minor = head.minor;
    let key = balance_key(
        &up.cfg.balance,
        head,
        buf,
        &c.peer_ip,
        identity.as_deref(),
        ctx.auth.strip_list(route.auth),
    );

    // upstream request head + whatever body arrived with it
    c.target.clear();
    router::rewrite_target(route.rewrite.as_ref(), target, &mut c.target);
    hidden.strip_target(&mut c.target);
    c.out.clear();
    let rctx = RequestContext {
        target: &c.target,
        host_rewrite: route.host_rewrite.as_deref().map(str::as_bytes),
        fallback_host: up.host_text[0].as_bytes(),
        client_ip: c.peer_ip.as_bytes(),
        request_id: rid,
        proto: b"http",
        strip: ctx.auth.strip_list(route.auth),
        strip_cookie: hidden.cookie,
        add: identity.as_ref().map_or(&[][..], |i| &i.headers),
        traceparent: &span.traceparent(),
        keep_tracestate: span.continued(),
    };
    rewrite::write_upstream_request(&mut c.out, buf, head, &rctx);
    let head_len = head.head_len;
    let avail = &buf[head_len..];
    let (mut body, consumed) = match head.body {
        BodyKind::None | BodyKind::UntilClose => (BodyLeft::Done, 0),
        BodyKind::Length(n) => {
            let take = (avail.len() as u64).min(n) as usize;
            c.out.extend_from_slice(&avail[..take]);
            c.body_recv = take as u64;
            if take as u64 == n {
                (BodyLeft::Done, take)
            } else {
                (BodyLeft::Length(n - take as u64), take)
            }
        }
        BodyKind::Chunked => {
            let mut dec = Box::new(ChunkedDecoder::new(route.max_body));
            let (out, recv) = (&mut c.out, &mut c.body_recv);
            let res = dec.decode(avail, &mut |data: &[u8]| {
                *recv += data.len() as u64;
                chunked::write_chunk_header(out, data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(chunked::CHUNK_END);
            });
            match res {
                Ok(p) if p.done => {
                    c.out.extend_from_slice(chunked::LAST_CHUNK);
                    (BodyLeft::Done, p.consumed)
                }
                Ok(p) => (BodyLeft::Chunked(dec), p.consumed),
                Err(e) => {
                    let e = relay::chunk_error(e);
                    return answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, false).await;
                }
            }
        }
    };
    c.buf.drain(..head_len + consumed);
    if c.head.expect_continue && !matches!(body, BodyLeft::Done) {
        let deadline = Instant::now() + ctx.cfg.server.client_body_timeout;
        let mut cont = std::mem::take(&mut c.target);
        cont.clear();
        cont.extend_from_slice(CONTINUE);
        let r = c.stream.write_all(&mut cont, deadline).await;
        c.target = cont;
        if r.is_err() {
            return Outcome::Close;
        }
    }

    let up_start = StdInstant::now();
    let ex = exchange::Request {
        up,
        key,
        idempotent,
        method_head,
    };
    let exchange::Exchanged {
        mut conn,
        inflight,
        early,
    } = match exchange::exchange(ctx, &ex, c, &mut body, resp).await {
        Ok(v) => v,
        Err(Fail::Close) => return Outcome::Close,
        Err(Fail::Respond(e)) => {
            let keep = client_keep && matches!(body, BodyLeft::Done);
            return answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, keep).await;
        }
    };
    // an early answer leaves the rest of the request body unread: the connection closes after it
    let body_unread = !matches!(body, BodyLeft::Done);
    let how = relay::ResponseCtx {
        rid,
        keep: client_keep && !ctx.drain.is_set() && !body_unread,
        client_minor,
        up_timeout: up.cfg.response_timeout,
    };
    c.info.status = resp.status;
    c.info.upstream = Some((route.upstream, conn.endpoint));
    let result = relay::response(ctx, c, &mut conn, resp, &how).await;
    drop(inflight);
    if !c.limits.charges.is_empty() {
        ctx.ratelimit.charge(&c.limits.charges, c.body_sent);
    }
    let up_us = up_start.elapsed().as_micros() as u64;
    c.info.upstream_us = Some(up_us);
    up.stats.latency.record_us(up_us);
    match result {
        Ok(r) => {
            up.stats.record(resp.status);
            if r.upstream_reusable && !early {
                up.pool.borrow_mut().put(conn, std::time::Instant::now());
            }
            if body_unread {
                // let the client read the answer before its unread body makes our close a reset
                c.stream.linger_close(&mut c.buf).await;
            }
            if r.client_keep {
                Outcome::KeepAlive
            } else {
                Outcome::Close
            }
        }
        Err(relay::RelayFail::Close) => {
            up.stats.record(resp.status);
            Outcome::Close
        }
        Err(relay::RelayFail::BadUpstream(reason)) => {
            c.info.upstream_us = None;
            let e = ProxyError::new(ErrorKind::BadUpstreamResponse { reason });
            let keep = client_keep && !body_unread;
            answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, keep).await
        }
    }
}
