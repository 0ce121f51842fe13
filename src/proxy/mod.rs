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

mod exchange;
mod io;
mod relay;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::auth::Denied;
use crate::http::chunked::{self, ChunkedDecoder};
use crate::http::head::{self, BodyKind, RequestHead, ResponseHead};
use crate::http::respond::{write_error, ErrorKind, ProxyError};
use crate::http::rewrite::{self, RequestContext};
use crate::ratelimit::key::KeyInput;
use crate::ratelimit::Limited;
use crate::router::{self, HeaderSource, Match};
use crate::runtime::worker::WorkerCtx;
use crate::upstream::balance::hash_key;
use io::IoFail;

/// Initial size of a client connection's read buffer.
const CLIENT_BUF: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection and its reusable buffers.
pub(crate) struct ClientConn {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    target: Vec<u8>,
    head: RequestHead,
    peer_ip: String,
    /// Rate-limit headers and byte-quota charges of the current request.
    limits: crate::ratelimit::Output,
    /// Response body bytes sent to the client for the current request.
    body_sent: u64,
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

/// Decrements the open-connection counts when a connection task ends, however it ends.
struct ConnGuard(Rc<WorkerCtx>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.metrics.open_connections.add(-1);
    }
}

/// Serves one client connection until it closes.
pub async fn serve(ctx: Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr) {
    ctx.open.set(ctx.open.get() + 1);
    ctx.metrics.open_connections.add(1);
    ctx.metrics.accepted_connections.inc();
    let _guard = ConnGuard(ctx.clone());
    let _ = stream.set_nodelay(true);
    let mut c = ClientConn {
        stream,
        buf: Vec::with_capacity(CLIENT_BUF),
        out: Vec::with_capacity(4096),
        target: Vec::with_capacity(256),
        head: RequestHead::default(),
        peer_ip: peer.ip().to_string(),
        limits: Default::default(),
        body_sent: 0,
    };
    let mut resp = ResponseHead::default();
    let mut first = true;
    loop {
        c.limits.clear();
        match read_head(&ctx, &mut c, first).await {
            Ok(()) => {}
            Err(Fail::Close) => return,
            Err(Fail::Respond(e)) => {
                let _ = answer_error(&ctx, &mut c, None, None, &e, None, false).await;
                return;
            }
        }
        match handle_request(&ctx, &mut c, &mut resp).await {
            Outcome::KeepAlive => first = false,
            Outcome::Close => return,
        }
    }
}

/// Reads until a complete request head is buffered and parsed into `c.head`.
async fn read_head(ctx: &WorkerCtx, c: &mut ClientConn, first: bool) -> Result<(), Fail> {
    let cfg = &ctx.cfg.server;
    let now = Instant::now();
    let mut deadline = now + cfg.header_timeout;
    if c.buf.is_empty() && !first {
        // idle keep-alive: wait for the next request's first byte, or the drain, or the idle timeout
        if ctx.drain.is_set() {
            return Err(Fail::Close);
        }
        let idle_deadline = now + cfg.keepalive_timeout;
        let read = io::read_some(&mut c.stream, &mut c.buf, idle_deadline);
        let r = monoio::select! {
            r = read => Some(r),
            _ = ctx.drain.wait() => None,
        };
        match r {
            Some(Ok(n)) if n > 0 => deadline = Instant::now() + cfg.header_timeout,
            _ => return Err(Fail::Close),
        }
    }
    loop {
        if !c.buf.is_empty() {
            match head::parse_request(&c.buf, &ctx.limits, &mut c.head) {
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
        match io::read_some(&mut c.stream, &mut c.buf, deadline).await {
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
            &gen[..n]
        }
    };
    let keep = keep && !err.closes_connection() && !ctx.drain.is_set();
    c.out.clear();
    write_error(&mut c.out, err, rid, keep, allow, &c.limits.headers);
    ctx.metrics.record(route, err.status());
    let deadline = Instant::now() + ctx.cfg.server.client_body_timeout;
    match io::write_all(&mut c.stream, &mut c.out, deadline).await {
        Ok(()) if keep => Outcome::KeepAlive,
        _ => Outcome::Close,
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
    // a body we do not read leaves the connection's framing unknown: such answers close it
    let body_pending = head.body != BodyKind::None;
    let client_keep = head.keep_alive;

    let lookup = ctx.router.lookup(
        head.host(buf),
        head.method(buf),
        head.path(buf),
        &Headers { head, buf },
    );
    let route_idx = match lookup {
        Match::Route(i) => i,
        Match::MethodNotAllowed(allow) => {
            let e = ProxyError::new(ErrorKind::MethodNotAllowed);
            let keep = client_keep && !body_pending;
            let head_len = head.head_len;
            c.buf.drain(..head_len);
            return answer_error(ctx, c, None, Some(rid), &e, Some(&allow), keep).await;
        }
        Match::NotFound => {
            let e = ProxyError::new(ErrorKind::NoRoute);
            let keep = client_keep && !body_pending;
            let head_len = head.head_len;
            c.buf.drain(..head_len);
            return answer_error(ctx, c, None, Some(rid), &e, None, keep).await;
        }
    };
    let route = &ctx.cfg.routes[route_idx];
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
                }),
                Err(Denied::Unavailable(why)) => {
                    ctx.auth_unavailable(&why);
                    Err(ErrorKind::AuthUnavailable)
                }
            };
            match denied {
                Ok(id) => Some(id),
                Err(kind) => {
                    let e = ProxyError::new(kind);
                    let keep = client_keep && !body_pending;
                    let head_len = head.head_len;
                    c.buf.drain(..head_len);
                    return answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, keep).await;
                }
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
        if let Err(limited) = ctx.ratelimit.admit(route, &input, &mut c.limits).await {
            let e = ProxyError::new(match limited {
                Limited::Rate => ErrorKind::RateLimited,
                Limited::Quota => ErrorKind::QuotaExceeded,
            });
            let keep = client_keep && !body_pending;
            let head_len = head.head_len;
            c.buf.drain(..head_len);
            return answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, keep).await;
        }
    }
    let up = &ctx.upstreams[route.upstream];

    // everything the response phase needs from the head, before the buffer moves on
    let method_head = head.method(buf) == b"HEAD";
    let idempotent = head.is_idempotent(buf);
    let client_minor = head.minor;
    let key = match &up.cfg.balance {
        crate::config::Balance::Hash(crate::config::HashKey::Header(name)) => {
            head.header(buf, name.as_bytes()).map(hash_key)
        }
        crate::config::Balance::Hash(crate::config::HashKey::ClientIp) => {
            Some(hash_key(c.peer_ip.as_bytes()))
        }
        _ => None,
    };

    // upstream request head + whatever body arrived with it
    c.target.clear();
    router::rewrite_target(route.rewrite.as_ref(), head.target(buf), &mut c.target);
    c.out.clear();
    let rctx = RequestContext {
        target: &c.target,
        host_rewrite: route.host_rewrite.as_deref().map(str::as_bytes),
        fallback_host: up.host_text[0].as_bytes(),
        client_ip: c.peer_ip.as_bytes(),
        request_id: rid,
        proto: b"http",
        strip: ctx.auth.strip_list(route.auth),
        add: identity.as_ref().map_or(&[][..], |i| &i.headers),
    };
    rewrite::write_upstream_request(&mut c.out, buf, head, &rctx);
    let head_len = head.head_len;
    let avail = &buf[head_len..];
    let (mut body, consumed) = match head.body {
        BodyKind::None | BodyKind::UntilClose => (BodyLeft::Done, 0),
        BodyKind::Length(n) => {
            let take = (avail.len() as u64).min(n) as usize;
            c.out.extend_from_slice(&avail[..take]);
            if take as u64 == n {
                (BodyLeft::Done, take)
            } else {
                (BodyLeft::Length(n - take as u64), take)
            }
        }
        BodyKind::Chunked => {
            let mut dec = Box::new(ChunkedDecoder::new(route.max_body));
            let out = &mut c.out;
            let res = dec.decode(avail, &mut |data: &[u8]| {
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
        let r = io::write_all(&mut c.stream, &mut cont, deadline).await;
        c.target = cont;
        if r.is_err() {
            return Outcome::Close;
        }
    }

    let ex = exchange::Request {
        up,
        key,
        idempotent,
        method_head,
    };
    let (mut conn, inflight) = match exchange::exchange(ctx, &ex, c, &mut body, resp).await {
        Ok(v) => v,
        Err(Fail::Close) => return Outcome::Close,
        Err(Fail::Respond(e)) => {
            let keep = client_keep && matches!(body, BodyLeft::Done);
            return answer_error(ctx, c, Some(route_idx), Some(rid), &e, None, keep).await;
        }
    };
    let how = relay::ResponseCtx {
        rid,
        keep: client_keep && !ctx.drain.is_set(),
        client_minor,
        up_timeout: up.cfg.response_timeout,
    };
    let result = relay::response(ctx, c, &mut conn, resp, &how).await;
    drop(inflight);
    if !c.limits.charges.is_empty() {
        ctx.ratelimit.charge(&c.limits.charges, c.body_sent);
    }
    ctx.metrics.record(Some(route_idx), resp.status);
    match result {
        Ok(r) => {
            if r.upstream_reusable {
                up.pool.borrow_mut().put(conn, std::time::Instant::now());
            }
            if r.client_keep {
                Outcome::KeepAlive
            } else {
                Outcome::Close
            }
        }
        Err(()) => Outcome::Close,
    }
}
