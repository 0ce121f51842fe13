//! One request/response exchange with an upstream: endpoint choice, connection, send, response head.
//!
//! Owns: the attempt loop. Each attempt asks the balancer for an endpoint (preferring untried ones),
//! takes a stream on a pooled HTTP/2 connection (`h2/client.rs`, for `protocol = "http2"|"auto"`),
//! a pooled HTTP/1.1 connection (checked open at checkout, `upstream/pool.rs`) or connects
//! (`connect_timeout`; TLS, and ALPN deciding the protocol under `auto`), writes the buffered
//! request (head plus the body bytes that came with it), streams any remaining request body from
//! the client, then reads the response head
//! (`response_timeout`, or `[upstream.retry] per_try_timeout` per try within it) while watching
//! the client socket. Failures feed passive health (`report_failure`); whether a failure is
//! retried is `upstream/retry.rs`'s call (the conditions in `on`, `retries` attempts, the retry
//! budget, a back-off before each retry):
//! - connect failure / timeout: nothing was sent, so another attempt is safe for any method;
//! - a *reused* connection that fails before any response byte: the upstream dropped an idle
//!   keep-alive connection (a stale connection, counted as such, never an endpoint failure); one free
//!   retry on a fresh connection when the request is fully buffered and either the write failed
//!   (nothing reached the upstream: any method) or the request is idempotent;
//! - reset before any response byte on a fresh connection: retried only for idempotent (or
//!   `Idempotency-Key`), fully buffered requests; otherwise 502;
//! - a response whose status the policy retries (502-504, 5xx, listed statuses, gRPC
//!   UNAVAILABLE): for the same requests, the answer is dropped with its connection and the
//!   next try goes (to another endpoint when there is one); the last try's answer is relayed;
//! - a write that fails because the upstream answered early and closed (413, 401, an early 200 while
//!   the body was still coming): its answer is read and relayed instead of a 502 (`Exchanged::early`);
//! - an h2 stream the upstream refused unprocessed (REFUSED_STREAM, left out by a graceful GOAWAY):
//!   retried on a new connection for any method when the request is fully buffered (twice at most);
//! - response head timeout (`response_timeout`, or a gRPC call's shorter `grpc-timeout`): 504,
//!   never retried; a try past `per_try_timeout` is retried like a reset when `on` has
//!   `"timeout"`;
//! - the client closing while the upstream works: the exchange is cancelled (`Fail::Close`; the
//!   request is logged as 499) and the upstream connection is dropped, not pooled.
//!
//! A fully read GET or HEAD to an upstream with `hedge_after` goes through `hedge.rs` first (a
//! second try when the first is slow); it comes back to the loop only if no try got going.
//!
//! On success the caller gets the connection, with the parsed head in `resp`, and an in-flight guard.

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::{duplex, BodyLeft, ClientConn, Fail};
use crate::config::UpstreamProtocol;
use crate::h2::call::H2Call;
use crate::h2::client::H2Pool;
use crate::http::head::{self, HeaderKind, ResponseHead};
use crate::http::respond::{ErrorKind, Reply};
use crate::metrics::UpstreamError;
use crate::net::tls::{HandshakeFail, TlsStream};
use crate::net::{IoFail, Stream};
use crate::runtime::worker::Generation;
use crate::tls::ALPN_H2;
use crate::upstream::balance::Ejection;
use crate::upstream::pool::{keep_alive_limit, UpConn};
use crate::upstream::retry::{Tries, Verdict, Why};
use crate::upstream::UpstreamRt;
use monoio::io::IntoPollIo;

/// Upstream response heads larger than this are rejected (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// After a write to the upstream failed, how long its (early) answer may take to be readable: it was
/// sent before the upstream closed, so it is normally there already.
const EARLY_RESPONSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Retries of one request that HTTP/2 upstreams refused unprocessed (REFUSED_STREAM, GOAWAY).
const REFUSED_RETRIES: u32 = 2;
/// How long the upstream may work before the client socket is watched for a close.
const CLIENT_WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// What the exchange needs to know about the request.
pub(crate) struct ExchangePlan<'a> {
    pub up: &'a UpstreamRt,
    pub key: Option<u64>,
    pub idempotent: bool,
    pub method_head: bool,
    /// A WebSocket handshake was passed on: a 101 is the final answer.
    pub upgrade: bool,
    /// How long the response head may take: the upstream's `response_timeout`, or a gRPC
    /// request's shorter `grpc-timeout`.
    pub response_timeout: std::time::Duration,
    /// A GET or HEAD (no upgrade): may be hedged (`hedge.rs`).
    pub hedgeable: bool,
}

/// Counts a request in flight on an endpoint for least_conn / p2c; ends it on drop.
pub(crate) struct Inflight<'a> {
    up: &'a UpstreamRt,
    ep: usize,
}

impl<'a> Inflight<'a> {
    pub(super) fn new(up: &'a UpstreamRt, ep: usize) -> Self {
        up.balancer.borrow_mut().on_request_start(ep);
        Inflight { up, ep }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.up.balancer.borrow_mut().on_request_end(self.ep);
    }
}

pub(super) enum HeadFail {
    /// Closed or reset before a complete head.
    Closed {
        got_bytes: bool,
    },
    Timeout,
    Bad(&'static str),
}

/// Passive health and metrics for one failed attempt on `ep`.
pub(super) fn failed(up: &UpstreamRt, ep: usize, kind: UpstreamError) {
    let ejection = up
        .balancer
        .borrow_mut()
        .report_failure(ep, std::time::Instant::now());
    match ejection {
        Ejection::None => {}
        Ejection::Ejected => up.stats.ejections.inc(),
        Ejection::Spared => up.stats.ejections_spared.inc(),
    }
    up.stats.error(kind);
}

/// Most one TLS failure line per upstream per worker in this interval.
const TLS_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to endpoint `ep`, with the TLS handshake when the upstream has `tls`: both within
/// `connect_timeout`. A handshake failure (certificate not trusted, wrong name...) is logged (at
/// most once per `TLS_LOG_EVERY`) and answered 502. An HTTP/2 connection (the upstream's
/// `protocol`, or ALPN under `auto`) joins the upstream's h2 pool and the request gets a stream
/// on it.
async fn connect(up: &UpstreamRt, ep: usize) -> Result<UpConn, ErrorKind> {
    let addr = up.addrs[ep];
    let deadline = Instant::now() + up.cfg.connect_timeout;
    let tcp = match monoio::time::timeout_at(deadline, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Err(ErrorKind::ConnectFailed),
        Err(_) => return Err(ErrorKind::ConnectTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let h2 = up.cfg.protocol == UpstreamProtocol::Http2;
    let stream = match &up.cfg.tls {
        None if h2 => {
            let io = tcp.into_poll_io().map_err(|_| ErrorKind::ConnectFailed)?;
            return h2_connect(up, ep, io, false, deadline).await;
        }
        None => Stream::Plain(tcp),
        Some(tls) => {
            let name = tls.server_name(addr);
            match TlsStream::connect(tcp, tls.config.clone(), name, deadline).await {
                Ok(s) => {
                    let alpn_h2 = s.session().alpn_protocol() == Some(ALPN_H2.as_bytes());
                    // `http2` speaks h2 unless the endpoint chose http/1.1 outright
                    let speak_h2 = match up.cfg.protocol {
                        UpstreamProtocol::Http1 => false,
                        UpstreamProtocol::Http2 => alpn_h2 || s.session().alpn_protocol().is_none(),
                        UpstreamProtocol::Auto => alpn_h2,
                    };
                    if speak_h2 {
                        let (tcp, conn, pending) = s.into_parts();
                        let io = tcp.into_poll_io().map_err(|_| ErrorKind::ConnectFailed)?;
                        let io = crate::h2::tls_io::PollTls::new(io, conn, pending);
                        return h2_connect(up, ep, io, true, deadline).await;
                    }
                    Stream::tls(s)
                }
                Err(HandshakeFail::Timeout) => return Err(ErrorKind::ConnectTimeout),
                Err(e) => {
                    let now = std::time::Instant::now();
                    if up.tls_logged.get().is_none_or(|t| now - t >= TLS_LOG_EVERY) {
                        up.tls_logged.set(Some(now));
                        eprintln!("coregate: upstream {} endpoint {addr}: {e}", up.name);
                    }
                    return Err(ErrorKind::UpstreamTls);
                }
            }
        }
    };
    Ok(UpConn::new(stream, ep, up.stats.clone()))
}

/// The HTTP/2 handshake on a new connection to `ep` (within the connect deadline); the
/// connection joins the h2 pool and the request gets its first stream.
async fn h2_connect<T>(
    up: &UpstreamRt,
    ep: usize,
    io: T,
    tls: bool,
    deadline: Instant,
) -> Result<UpConn, ErrorKind>
where
    T: monoio::io::poll_io::AsyncRead + monoio::io::poll_io::AsyncWrite + Unpin + 'static,
{
    let shake = crate::h2::client::handshake(io, tls, up.stats.clone());
    let conn = match monoio::time::timeout_at(deadline, shake).await {
        Ok(Ok(c)) => c,
        Ok(Err(())) => return Err(ErrorKind::ConnectFailed),
        Err(_) => return Err(ErrorKind::ConnectTimeout),
    };
    let (send, lease) = conn.lease();
    up.h2.borrow_mut().add(ep, conn);
    let call = H2Call::new(send, lease, tls);
    Ok(UpConn::h2_call(call, ep, up.stats.clone()))
}

/// A connection for one attempt on `ep`: a free stream on a pooled h2 connection, a pooled
/// HTTP/1.1 connection, or a new one. `true` with it when it was pooled.
pub(super) async fn checkout(
    up: &UpstreamRt,
    ep: usize,
    now: std::time::Instant,
) -> Result<(UpConn, bool), ErrorKind> {
    let mut connecting = None;
    if up.cfg.protocol != UpstreamProtocol::Http1 {
        let mut waited = false;
        loop {
            let slot = up.h2.borrow_mut().take(ep);
            if let Some((send, lease, tls)) = slot {
                up.stats.pool_hits.inc();
                let call = H2Call::new(send, lease, tls);
                return Ok((UpConn::h2_call(call, ep, up.stats.clone()), true));
            }
            // another request is opening a connection: wait for it once, then share it
            let pending = up.h2.borrow().connecting(ep);
            match pending {
                Some(event) if !waited => {
                    waited = true;
                    let wait = Instant::now() + up.cfg.connect_timeout;
                    let _ = monoio::time::timeout_at(wait, event.wait()).await;
                }
                Some(_) => break,
                None => {
                    connecting = Some(H2Pool::start_connecting(&up.h2, ep));
                    break;
                }
            }
        }
    }
    let pooled = up.pool.borrow_mut().take(ep, now);
    if let Some(conn) = pooled {
        up.stats.pool_hits.inc();
        return Ok((conn, true));
    }
    up.stats.pool_misses.inc();
    let conn = connect(up, ep).await;
    drop(connecting);
    Ok((conn?, false))
}

pub(super) async fn read_response_head(
    conn: &mut UpConn,
    resp: &mut ResponseHead,
    deadline: Instant,
    method_head: bool,
    upgrade: bool,
) -> Result<(), HeadFail> {
    conn.buf.clear();
    loop {
        match conn.stream.read_some(&mut conn.buf, deadline).await {
            Ok(0) | Err(IoFail::Error) => {
                return Err(HeadFail::Closed {
                    got_bytes: !conn.buf.is_empty(),
                })
            }
            Err(IoFail::Timeout) => return Err(HeadFail::Timeout),
            Ok(n) => conn.stats.bytes_received.add(n as u64),
        }
        loop {
            match head::parse_response(&conn.buf, MAX_RESPONSE_HEAD, method_head, resp) {
                Ok(None) => break,
                Err(e) => return Err(HeadFail::Bad(e.reason)),
                // interim responses (100 Continue, 103 Early Hints) are consumed here
                Ok(Some(())) if (100..200).contains(&resp.status) && resp.status != 101 => {
                    conn.buf.drain(..resp.head_len);
                    if conn.buf.is_empty() {
                        break;
                    }
                }
                Ok(Some(())) if resp.status == 101 && !upgrade => {
                    return Err(HeadFail::Bad(
                        "upstream switched protocols without an upgrade",
                    ))
                }
                Ok(Some(())) => return Ok(()),
            }
        }
    }
}

/// What the exchange hands back: the connection with the response head parsed into `resp`.
pub(crate) struct Exchanged<'a> {
    pub conn: UpConn,
    pub inflight: Inflight<'a>,
    /// The upstream answered before it had read the whole request (413, 401, an early 200): its
    /// answer is relayed, the rest of the body is not sent, the upstream connection is closed, and
    /// so is the client's unless its whole request had been read.
    pub early: bool,
}

/// Parses the response head's `Keep-Alive: timeout=N` (hop-by-hop, so only classified heads are
/// scanned) into the connection's idle limit.
pub(super) fn learn_keep_alive(conn: &mut UpConn, resp: &ResponseHead) {
    let buf = &conn.buf;
    conn.idle_limit = resp
        .headers
        .iter()
        .filter(|h| h.kind == HeaderKind::HopByHop)
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|h| keep_alive_limit(h.value.get(buf)))
        .next_back();
}

/// After a failed write to the upstream: did it already answer (and close)? Reads what it sent
/// within a short wait.
async fn early_response(conn: &mut UpConn, resp: &mut ResponseHead, method_head: bool) -> bool {
    let deadline = Instant::now() + EARLY_RESPONSE_WAIT;
    read_response_head(conn, resp, deadline, method_head, false)
        .await
        .is_ok()
}

/// Resolves when the client is gone (end of stream or error on its socket); pending forever once
/// it sends bytes (a pipelined request: the connection stays, and the bytes stay in the socket).
/// The watch starts `CLIENT_WATCH_AFTER` into the wait: most responses come sooner, and arming and
/// cancelling a poll on every request measured ~0.5 µs of CPU per request.
pub(super) async fn client_gone(stream: &mut Stream) {
    monoio::time::sleep(CLIENT_WATCH_AFTER).await;
    stream.gone().await
}

/// The balancer's pick for a try (`tried`: endpoints this request already used).
pub(super) fn pick(
    up: &UpstreamRt,
    key: Option<u64>,
    tried: u64,
    now: std::time::Instant,
) -> Option<usize> {
    let mut b = up.balancer.borrow_mut();
    let picked = b.pick(key, tried, now);
    if b.last_pick_panicked() {
        up.stats.panic_picks.inc();
    }
    picked
}

/// After a failed try: may the request go again (the policy, attempts left, the budget)? Waits
/// out the back-off when it may.
async fn again(up: &UpstreamRt, tries: &mut Tries<'_>, why: Why) -> bool {
    match tries.retry(why) {
        Verdict::Retry => {
            let wait = tries.backoff();
            if !wait.is_zero() {
                monoio::time::sleep(wait).await;
            }
            true
        }
        Verdict::NoBudget => {
            up.stats.retry_budget_exhausted.inc();
            false
        }
        Verdict::No => false,
    }
}

/// A trailers-only gRPC answer's `grpc-status` (in the response head).
pub(super) fn grpc_status<'b>(resp: &ResponseHead, buf: &'b [u8]) -> Option<&'b [u8]> {
    resp.headers
        .iter()
        .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"grpc-status"))
        .map(|h| h.value.get(buf))
}

/// Who asked for the exchange: a client connection (its output buffer holds the request, and
/// its socket is watched for the client leaving), or the gateway itself (an aggregation part, a
/// background cache refresh: the request in a buffer of its own, nobody to leave).
pub(crate) enum Down<'c> {
    Client(&'c mut ClientConn),
    Internal(&'c mut Vec<u8>),
}

impl Down<'_> {
    /// The buffered request bytes.
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Down::Client(c) => &mut c.out,
            Down::Internal(out) => out,
        }
    }

    /// Resolves when the client has gone; never for the gateway's own requests.
    pub(crate) async fn gone(&mut self) {
        match self {
            Down::Client(c) => client_gone(&mut c.stream).await,
            Down::Internal(_) => std::future::pending().await,
        }
    }
}

/// Runs the attempt loop; see the module doc.
pub(crate) async fn exchange<'a>(
    ctx: &Generation,
    req: &ExchangePlan<'a>,
    c: &mut Down<'_>,
    body: &mut BodyLeft,
    resp: &mut ResponseHead,
) -> Result<Exchanged<'a>, Fail> {
    let up = req.up;
    let replayable = matches!(body, BodyLeft::Done);
    let retry_safe = replayable && req.idempotent;
    let policy = &up.cfg.retry;
    let mut tries = Tries::new(policy, &up.retry_budget, up.cfg.retries, retry_safe);
    // the whole request's wait for a response head, across tries (with a per-try timeout)
    let overall = Instant::now() + req.response_timeout;
    let mut tried = 0u64;
    let mut stale_retry = true;
    // retries of requests an h2 upstream never processed
    let mut refused_left = REFUSED_RETRIES;
    let mut last_err: Option<Reply> = None;
    let mut attempts = 0u32;
    if let Some(delay) = up.hedge_delay.get().filter(|_| req.hedgeable && replayable) {
        if let Some(done) = super::hedge::hedged(ctx, req, c, resp, delay).await {
            return done;
        }
    }
    loop {
        let now = std::time::Instant::now();
        let Some(ep) = pick(up, req.key, tried, now) else {
            return Err(last_err
                .unwrap_or(Reply::new(ErrorKind::NoHealthyUpstream))
                .into());
        };
        if attempts > 0 {
            up.stats.retries.inc();
        }
        attempts += 1;
        tried |= 1u64 << (ep & 63);
        let (mut conn, reused) = match checkout(up, ep, now).await {
            Ok(c) => c,
            Err(kind) => {
                failed(up, ep, UpstreamError::Connect);
                if !again(up, &mut tries, Why::Connect).await {
                    return Err(Reply::new(kind).into());
                }
                last_err = Some(Reply::new(kind));
                continue;
            }
        };
        // A failure on a reused connection before any response byte is the upstream having closed
        // it while idle: never an endpoint failure. One retry on a fresh connection when safe.
        let stale = |retry_ok: bool, stale_retry: &mut bool| {
            up.stats.stale_connections.inc();
            up.pool.borrow_mut().clear(ep);
            if retry_ok && *stale_retry {
                *stale_retry = false;
                true
            } else {
                false
            }
        };
        let inflight = Inflight::new(up, ep);
        let send_deadline = Instant::now() + ctx.cfg.server.client_body_timeout;
        up.stats.bytes_sent.add(c.out().len() as u64);
        let mut sent = conn.stream.write_all(c.out(), send_deadline).await.is_ok();
        if let (true, Down::Client(client)) = (sent && !matches!(body, BodyLeft::Done), &mut *c) {
            // the upstream may answer while the body still comes (full duplex, `duplex.rs`)
            let sending = duplex::pump_until_upstream(ctx, client, &mut conn, body).await;
            sent = match sending {
                Ok(duplex::Pumped::Upstream) => true,
                Ok(duplex::Pumped::UpstreamStopped) => false,
                Err(e) => return Err(e),
            };
        }
        if !sent {
            // the upstream stopped reading: it may have answered early (and closed)
            if early_response(&mut conn, resp, req.method_head).await {
                return Ok(Exchanged {
                    conn,
                    inflight,
                    early: true,
                });
            }
            if conn.stream.unprocessed() && replayable && refused_left > 0 {
                refused_left -= 1;
                up.h2.borrow_mut().clear(ep);
                tried &= !(1u64 << (ep & 63));
                continue;
            }
            if reused {
                // a write failed on a connection the upstream had closed: nothing of a fully
                // buffered request reached it, so any method may retry (a timed-out write gave
                // its buffer to the cancelled operation: nothing left to resend)
                if stale(replayable && !c.out().is_empty(), &mut stale_retry) {
                    tried &= !(1u64 << (ep & 63));
                    continue;
                }
            } else {
                failed(up, ep, UpstreamError::Reset);
            }
            return Err(Reply::new(ErrorKind::UpstreamReset).into());
        }
        let deadline = match policy.per_try_timeout {
            Some(t) => (Instant::now() + t).min(overall),
            None => Instant::now() + req.response_timeout,
        };
        let per_try = policy.per_try_timeout.is_some() && deadline < overall;
        // the client may leave while the upstream works: then the exchange is cancelled (the
        // upstream connection is dropped, never pooled) and the request is logged as 499
        let got = monoio::select! {
            r = read_response_head(&mut conn, resp, deadline, req.method_head, req.upgrade) => Some(r),
            _ = c.gone() => None,
        };
        let Some(got) = got else {
            return Err(Fail::Close);
        };
        match got {
            Ok(()) => {
                let retried = policy.has_status_conditions()
                    && policy.retries_status(resp.status, grpc_status(resp, &conn.buf));
                let outlier = {
                    let mut b = up.balancer.borrow_mut();
                    b.report_success(ep);
                    match up.cfg.outlier_detection {
                        // the clock is read only where outlier detection is on
                        Some(_) => b.report_status(ep, resp.status, std::time::Instant::now()),
                        None => Ejection::None,
                    }
                };
                match outlier {
                    Ejection::None => {}
                    Ejection::Ejected => up.stats.ejections.inc(),
                    Ejection::Spared => up.stats.ejections_spared.inc(),
                }
                if retried && again(up, &mut tries, Why::Status).await {
                    // the answer is dropped with its connection (never pooled half-read)
                    up.stats.record(resp.status);
                    last_err = Some(Reply::new(ErrorKind::UpstreamReset));
                    continue;
                }
                learn_keep_alive(&mut conn, resp);
                return Ok(Exchanged {
                    conn,
                    inflight,
                    early: false,
                });
            }
            // an h2 stream the upstream refused or left out of a graceful GOAWAY: it never saw
            // the request, so any method may go again (RFC 9113 §8.7) on a new connection
            Err(HeadFail::Closed { got_bytes: false })
                if conn.stream.unprocessed() && replayable && refused_left > 0 =>
            {
                refused_left -= 1;
                up.h2.borrow_mut().clear(ep);
                tried &= !(1u64 << (ep & 63));
                continue;
            }
            Err(HeadFail::Closed { got_bytes: false }) if reused => {
                if stale(retry_safe, &mut stale_retry) {
                    tried &= !(1u64 << (ep & 63));
                    continue;
                }
                return Err(Reply::new(ErrorKind::UpstreamReset).into());
            }
            Err(HeadFail::Closed { .. }) => {
                failed(up, ep, UpstreamError::Reset);
                if !again(up, &mut tries, Why::Reset).await {
                    return Err(Reply::new(ErrorKind::UpstreamReset).into());
                }
                last_err = Some(Reply::new(ErrorKind::UpstreamReset));
            }
            // a try past its own timeout may go again; past the whole request's, never
            Err(HeadFail::Timeout) => {
                failed(up, ep, UpstreamError::Timeout);
                if !(per_try && again(up, &mut tries, Why::Timeout).await) {
                    return Err(Reply::new(ErrorKind::ResponseTimeout).into());
                }
                last_err = Some(Reply::new(ErrorKind::ResponseTimeout));
            }
            Err(HeadFail::Bad(reason)) => {
                up.stats.error(UpstreamError::BadResponse);
                return Err(Reply::new(ErrorKind::BadUpstreamResponse { reason }).into());
            }
        }
    }
}
