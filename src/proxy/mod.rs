//! The connection driver: one task per client connection (plain or TLS, `net::Stream`), running
//! the keep-alive loop, and the one exit for the gateway's own answers.
//!
//! Owns: a client connection's buffers (one read buffer, one output buffer, one target buffer, reused
//! for every request on the connection), reading and strictly parsing each head, and [`answer`].
//! The request itself goes through the pipeline:
//!
//! ```text
//! mod.rs       read head (header_timeout; keepalive_timeout while idle, raced with drain)
//!               -> parse strictly (http::head)            -> 400/408/414/431/505 + close
//! pipeline.rs   -> request id, span, normalised path, RequestView, route lookup -> 400/404/405
//! filter.rs     -> request phase: client cert, auth, body size, rate limit -> 401/403/413/429/503
//! target.rs     -> upstream head + buffered body, 100-continue
//! exchange.rs   -> pick endpoint, pooled or new connection (TLS when configured), send, stream
//!                  body, read response head (retries, passive health) -> 502 / 503 / 504
//! filter.rs     -> response phase (reverse order): header lines for the response
//! relay.rs      -> response into the target's sink (sink.rs): streamed to the client, or buffered
//!                  for the response-body phase (filter.rs) and then sent; connection back to the pool
//! record.rs     -> counters, histograms, one access-log line
//! ```
//! Every answer the gateway makes itself goes through [`answer`] (response phase, `Reply`
//! rendered by `http::respond`, keep-alive decided by how much of the request was read: a
//! connection whose request framing is in doubt is closed after the answer).
//!
//! Each request runs on the worker's *current* config generation, fetched when its head has been
//! read (so a reload applies to the next request of a keep-alive connection, and a request in
//! flight finishes on the generation it started with).

mod aggregate;
pub mod bulkhead;
mod cache;
mod cache_fill;
mod duplex;
mod exchange;
pub mod filter;
mod hedge;
mod inspect;
pub mod pipeline;
mod realip;
mod record;
mod relay;
mod sink;
mod source;
mod subrequest;
pub mod target;
mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::time::Instant;

use crate::http::chunked::ChunkedDecoder;
use crate::http::head::{self, BodyKind, RequestHead, ResponseHead};
use crate::http::respond::{render_fallback, render_grpc, render_h1, ErrorKind, Reply};
use crate::net::{IoFail, Stream};
use crate::runtime::worker::{Current, Generation};

/// Initial size of a client connection's read buffer.
const CLIENT_BUF: usize = 16 * 1024;
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Sends the interim `100 Continue` a client that sent `Expect: 100-continue` waits for before its
/// body (through `c.target`, free at this point: no allocation); false when the write failed.
async fn send_continue(c: &mut ClientConn, deadline: Instant) -> bool {
    let mut cont = std::mem::take(&mut c.target);
    cont.clear();
    cont.extend_from_slice(CONTINUE);
    let r = c.stream.write_all(&mut cont, deadline).await;
    c.target = cont;
    r.is_ok()
}

/// A client connection and its reusable buffers.
pub(crate) struct ClientConn {
    stream: Stream,
    buf: Vec<u8>,
    out: Vec<u8>,
    target: Vec<u8>,
    /// The normalised path (and the query after it) when the request's path was not normal.
    norm: Vec<u8>,
    head: RequestHead,
    /// The TCP peer's address.
    peer_ip: String,
    /// The `[[listener]]` entry that accepted the connection (its IP rules apply); None for a
    /// `[server] listen` address.
    listener: Option<usize>,
    /// The client a trusted proxy named for the current request (`realip.rs`); empty: the peer
    /// is the client. Read through [`realip::client`]: rate-limit keys, IP rules, balancing,
    /// bulkheads and the log use it.
    real_ip: String,
    /// Rate-limit headers and byte-quota charges of the current request.
    limits: crate::ratelimit::Output,
    /// Header lines the response phase adds to the current response.
    extra: Vec<u8>,
    /// Header lines `request_headers` adds to the current upstream request (rendered in the
    /// request phase).
    req_lines: Vec<u8>,
    /// Header lines `response_headers` adds to the current response (rendered in the request
    /// phase, while the request's values are at hand).
    resp_lines: Vec<u8>,
    /// The current request's cache key (`cache.rs`; starts with the path for every method).
    cache_key: Vec<u8>,
    /// A copy of the current request's head on a cache fill (Vary values for the stored entry).
    cache_req: Vec<u8>,
    /// `X-Cache` of the current response ("" on routes without a cache), and where its line
    /// starts in `extra`.
    cache_label: &'static str,
    cache_line_at: usize,
    /// The current request's `?fields=` selection (`query_fields`).
    fields: Option<crate::transform::fields::FieldSet>,
    /// Response body bytes sent to the client for the current request.
    body_sent: u64,
    /// Request body bytes received from the client for the current request.
    body_recv: u64,
    /// The current request is gRPC: the gateway's own answers are trailers-only gRPC responses.
    /// Set by the pipeline once the head is known good.
    grpc: bool,
    /// More members of the gateway's own JSON answer for the current request (a WAF verdict's
    /// rule ids, validation problems: `respond::render_h1`); empty for most answers.
    detail: String,
    /// The request body read for the request_body phase (`inspect.rs`), decoded from chunked;
    /// allocated only on routes whose filters read bodies, reused across requests.
    body: Vec<u8>,
    /// The WAF's reused decoding buffers (`waf::Scratch`).
    waf: crate::waf::Scratch,
    /// Validation problems of the current request (empty unless it failed validation).
    problems: Vec<crate::validate::Problem>,
    info: record::RequestRecord,
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
    Respond(Reply),
    Close,
}

impl From<Reply> for Fail {
    fn from(e: Reply) -> Self {
        Fail::Respond(e)
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
/// Who is on the other end of a client connection, and where it came in.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The TCP peer's address (or the client a PROXY protocol header named).
    pub ip: String,
    /// The `[[listener]]` entry that accepted it; None for a `[server] listen` address.
    pub listener: Option<usize>,
}

pub async fn serve(cur: Rc<Current>, stream: Stream, peer: SocketAddr, listener: Option<usize>) {
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
    if let Some(tcp) = stream.tcp() {
        let _ = tcp.set_nodelay(true);
    }
    let stream = match stream {
        Stream::Tls(t) if t.info.alpn.as_deref() == Some(b"h2") => {
            // ALPN chose HTTP/2: the session goes to the h2 driver
            let conn = *t;
            let origin = Origin {
                ip: peer.ip().to_string(),
                listener,
            };
            crate::h2::server::serve_tls(cur, conn.session, origin).await;
            return;
        }
        s => s,
    };
    let mut c = ClientConn::new(stream, peer.ip().to_string());
    c.listener = listener;
    let mut resp = ResponseHead::default();
    let mut first = true;
    loop {
        c.limits.clear();
        let head = match read_head(&cur, &mut c, first).await {
            Ok(Head::H2) => {
                // an h2c connection preface: the socket and what was read go to the h2 driver
                let ClientConn {
                    stream,
                    buf,
                    peer_ip,
                    ..
                } = c;
                if let Stream::Plain(tcp) = stream {
                    let origin = Origin {
                        ip: peer_ip,
                        listener,
                    };
                    crate::h2::server::serve(cur, tcp, buf, origin).await;
                }
                return;
            }
            Ok(Head::H1) => Ok(()),
            Err(e) => Err(e),
        };
        // the generation this request runs on
        let ctx = cur.get();
        c.info.begin(ctx.records_requests());
        c.body_sent = 0;
        c.body_recv = 0;
        c.grpc = false;
        c.detail.clear();
        let outcome = match head {
            Ok(()) => pipeline::run(&ctx, &mut c, &mut resp).await,
            Err(Fail::Close) => return,
            Err(Fail::Respond(e)) => {
                // an unparsable head: log the request id we send
                let mut rid = [0u8; 40];
                let n = ctx.request_ids.borrow_mut().next(&mut rid);
                c.info.rid[..n].copy_from_slice(&rid[..n]);
                c.info.rid_len = n;
                let _ = answer(&ctx, &mut c, None, &rid[..n], &e, None, &[], Consumed::Part).await;
                Outcome::Close
            }
        };
        record::finish(&ctx, &mut c);
        match outcome {
            Outcome::KeepAlive => first = false,
            Outcome::Close => {
                c.stream.close().await;
                return;
            }
        }
    }
}

impl ClientConn {
    fn new(stream: Stream, peer_ip: String) -> Self {
        Self::with_buf(stream, peer_ip, Vec::with_capacity(CLIENT_BUF), 4096)
    }

    /// `buf` as the read buffer (an h2 stream's request head), `out` starting at `out_cap`.
    fn with_buf(stream: Stream, peer_ip: String, buf: Vec<u8>, out_cap: usize) -> Self {
        ClientConn {
            stream,
            buf,
            out: Vec::with_capacity(out_cap),
            target: Vec::with_capacity(256),
            norm: Vec::new(),
            head: RequestHead::default(),
            real_ip: String::new(),
            peer_ip,
            listener: None,
            limits: Default::default(),
            extra: Vec::new(),
            req_lines: Vec::new(),
            resp_lines: Vec::new(),
            cache_key: Vec::new(),
            cache_req: Vec::new(),
            cache_label: "",
            cache_line_at: 0,
            fields: None,
            body_sent: 0,
            body_recv: 0,
            grpc: false,
            detail: String::new(),
            body: Vec::new(),
            waf: Default::default(),
            problems: Vec::new(),
            info: record::RequestRecord::new(),
        }
    }
}

/// Serves one HTTP/2 stream (`h2::server`): `head` is the request written as an HTTP/1.1 head, the
/// stream's body and response go through `stream` (`Stream::H2`). The same pipeline as
/// [`serve`], for one request.
pub(crate) async fn serve_stream(cur: Rc<Current>, stream: Stream, head: Vec<u8>, peer: Origin) {
    let ctx = cur.get();
    // one request per stream: no connection-sized read buffer (the head is all it reads into)
    let mut c = ClientConn::with_buf(stream, peer.ip, head, 1024);
    c.listener = peer.listener;
    c.info.begin(ctx.records_requests());
    let mut resp = ResponseHead::default();
    match head::parse_request(&c.buf, &ctx.limits, &mut c.head) {
        Ok(Some(())) => {
            let _ = pipeline::run(&ctx, &mut c, &mut resp).await;
        }
        Ok(None) | Err(_) => {
            let reply = Reply::new(ErrorKind::BadRequest {
                status: 400,
                reason: "malformed request header fields",
            });
            let mut rid = [0u8; 40];
            let n = ctx.request_ids.borrow_mut().next(&mut rid);
            c.info.rid[..n].copy_from_slice(&rid[..n]);
            c.info.rid_len = n;
            let _ = answer(
                &ctx,
                &mut c,
                None,
                &rid[..n],
                &reply,
                None,
                &[],
                Consumed::Part,
            )
            .await;
        }
    }
    record::finish(&ctx, &mut c);
    c.stream.close().await;
}

/// What the first bytes of a connection turned out to be.
enum Head {
    /// An HTTP/1.x request head, parsed into `c.head`.
    H1,
    /// The HTTP/2 connection preface (h2c with prior knowledge), in `c.buf`.
    H2,
}

/// Reads until a complete request head is buffered and parsed into `c.head`. Holds no generation
/// while it waits (an idle keep-alive connection must not keep an old config alive). On a plain
/// connection's first request, the HTTP/2 preface is recognised instead.
async fn read_head(cur: &Current, c: &mut ClientConn, first: bool) -> Result<Head, Fail> {
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
        if first && matches!(c.stream, Stream::Plain(_)) && c.buf.len() >= 3 {
            let n = c.buf.len().min(crate::h2::PREFACE.len());
            if c.buf[..n] == crate::h2::PREFACE[..n] {
                if n == crate::h2::PREFACE.len() {
                    return Ok(Head::H2);
                }
                // part of the preface: read on
                match c.stream.read_some(&mut c.buf, deadline).await {
                    Ok(n) if n > 0 => continue,
                    _ => return Err(Fail::Close),
                }
            }
        }
        if !c.buf.is_empty() {
            match head::parse_request(&c.buf, &limits, &mut c.head) {
                Ok(Some(())) => return Ok(Head::H1),
                Ok(None) => {}
                Err(e) => {
                    return Err(Fail::Respond(Reply::new(ErrorKind::BadRequest {
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
                return Err(Fail::Respond(Reply::new(ErrorKind::HeaderTimeout)));
            }
        }
    }
}

/// How much of the request the connection has consumed when the gateway answers it.
#[derive(Clone, Copy)]
pub(crate) enum Consumed {
    /// Only the head: it leaves the buffer, and the connection may stay open only when no body
    /// follows it (a body we do not read leaves the connection's framing unknown).
    Head,
    /// The whole request: the connection stays open if the client wants it.
    Whole,
    /// Part of the body, or an unparsable head: the connection closes after the answer.
    Part,
}

/// Runs the response phase of the filters that ran (reverse order): header lines for the response
/// head collect in `c.extra`. `upstream`: the upstream's (or a cached) response head and its
/// bytes, when the response is one.
fn response_phase(
    c: &mut ClientConn,
    ran: &[filter::Filter],
    upstream: Option<(&ResponseHead, &[u8])>,
) {
    c.extra.clear();
    let r = filter::ResponseInput {
        limits: &c.limits,
        lines: &c.resp_lines,
        upstream,
    };
    for f in ran.iter().rev() {
        f.response(&r, &mut c.extra);
    }
    push_cache_line(c);
}

/// Appends `X-Cache` on cached routes (last in `extra`, so the cache can replace it).
fn push_cache_line(c: &mut ClientConn) {
    if !c.cache_label.is_empty() {
        c.cache_line_at = c.extra.len();
        crate::http::rewrite::push_header(&mut c.extra, b"x-cache", c.cache_label.as_bytes());
    }
}

/// The one exit for everything the gateway answers itself: runs the response phase of the filters
/// that ran, renders `reply` and decides whether the connection stays open.
#[allow(clippy::too_many_arguments)]
async fn answer(
    gen: &Generation,
    c: &mut ClientConn,
    route: Option<usize>,
    rid: &[u8],
    reply: &Reply,
    allow: Option<&str>,
    ran: &[filter::Filter],
    consumed: Consumed,
) -> Outcome {
    let keep = keep_after(gen, c, consumed) && !reply.closes_connection();
    response_phase(c, ran, None);
    c.out.clear();
    let body = if c.grpc {
        // a gRPC client reads the outcome from grpc-status, not the HTTP status
        render_grpc(&mut c.out, reply, rid, &c.extra)
    } else {
        render_h1(&mut c.out, reply, rid, keep, allow, &c.extra, &c.detail)
    };
    c.info.route = route;
    c.info.status = reply.status();
    send_answer(gen, c, body, keep).await
}

/// Whether the connection stays open after an answer, given how much of the request was read.
fn keep_after(gen: &Generation, c: &mut ClientConn, consumed: Consumed) -> bool {
    let keep = match consumed {
        Consumed::Head => {
            let head_len = c.head.head_len;
            c.buf.drain(..head_len);
            c.head.keep_alive && c.head.body == BodyKind::None
        }
        Consumed::Whole => c.head.keep_alive,
        Consumed::Part => false,
    };
    keep && !gen.drain.is_set()
}

/// Writes the answer rendered into `c.out` (`body` bytes of body).
async fn send_answer(gen: &Generation, c: &mut ClientConn, body: usize, keep: bool) -> Outcome {
    c.body_sent = body as u64;
    let deadline = Instant::now() + gen.cfg.server.client_body_timeout;
    match c.stream.write_all(&mut c.out, deadline).await {
        Ok(()) if keep => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// A route's fallback answer (`why`: circuit_open, busy, no_upstream) in place of the upstream's.
#[allow(clippy::too_many_arguments)]
async fn answer_fallback(
    gen: &Generation,
    c: &mut ClientConn,
    route: usize,
    rid: &[u8],
    fb: &crate::config::fallback::Fallback,
    why: &str,
    ran: &[filter::Filter],
    consumed: Consumed,
) -> Outcome {
    let keep = keep_after(gen, c, consumed);
    response_phase(c, ran, None);
    c.out.clear();
    let (status, ct) = (fb.status, fb.content_type.as_str());
    let body = render_fallback(&mut c.out, status, ct, &fb.body, why, rid, keep, &c.extra);
    c.info.route = Some(route);
    c.info.status = status;
    send_answer(gen, c, body, keep).await
}
