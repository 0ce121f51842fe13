//! One request/response exchange with an upstream: endpoint choice, connection, send, response head.
//!
//! Owns: the attempt loop. Each attempt asks the balancer for an endpoint (preferring untried ones),
//! takes a pooled connection or connects (`connect_timeout`), writes the buffered request (head plus the
//! body bytes that came with it), streams any remaining request body from the client, then reads the
//! response head (`response_timeout`). Failures feed passive health (`report_failure`) and decide:
//! - connect failure / timeout: nothing was sent, so another attempt is safe for any method, up to
//!   `retries` extra attempts;
//! - a *pooled* connection that turns out closed before any response byte: the upstream dropped an idle
//!   keep-alive connection; one free retry on a fresh connection for idempotent, fully buffered requests;
//! - reset before any response byte on a fresh connection: retried (within `retries`) only for
//!   idempotent, fully buffered requests; otherwise 502;
//! - response head timeout: 504, never retried (the upstream may be working on it).
//!
//! On success the caller gets the connection, with the parsed head in `resp`, and an in-flight guard.

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::io::{self, IoFail};
use super::{relay, BodyLeft, ClientConn, Fail};
use crate::http::head::{self, ResponseHead};
use crate::http::respond::{ErrorKind, ProxyError};
use crate::metrics::UpstreamError;
use crate::runtime::worker::WorkerCtx;
use crate::upstream::pool::UpConn;
use crate::upstream::UpstreamRt;

/// Upstream response heads larger than this are rejected (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What the exchange needs to know about the request.
pub(crate) struct Request<'a> {
    pub up: &'a UpstreamRt,
    pub key: Option<u64>,
    pub idempotent: bool,
    pub method_head: bool,
}

/// Counts a request in flight on an endpoint for least_conn / p2c; ends it on drop.
pub(crate) struct Inflight<'a> {
    up: &'a UpstreamRt,
    ep: usize,
}

impl<'a> Inflight<'a> {
    fn new(up: &'a UpstreamRt, ep: usize) -> Self {
        up.balancer.borrow_mut().on_request_start(ep);
        Inflight { up, ep }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.up.balancer.borrow_mut().on_request_end(self.ep);
    }
}

enum HeadFail {
    /// Closed or reset before a complete head.
    Closed {
        got_bytes: bool,
    },
    Timeout,
    Bad(&'static str),
}

/// Passive health and metrics for one failed attempt on `ep`.
fn failed(up: &UpstreamRt, ep: usize, kind: UpstreamError) {
    up.balancer
        .borrow_mut()
        .report_failure(ep, std::time::Instant::now());
    up.stats.error(kind);
}

async fn connect(up: &UpstreamRt, ep: usize) -> Result<UpConn, ErrorKind> {
    let addr = up.addrs[ep];
    match monoio::time::timeout(up.cfg.connect_timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(UpConn::new(s, ep, up.stats.clone()))
        }
        Ok(Err(_)) => Err(ErrorKind::ConnectFailed),
        Err(_) => Err(ErrorKind::ConnectTimeout),
    }
}

async fn read_response_head(
    conn: &mut UpConn,
    resp: &mut ResponseHead,
    deadline: Instant,
    method_head: bool,
) -> Result<(), HeadFail> {
    conn.buf.clear();
    loop {
        match io::read_some(&mut conn.stream, &mut conn.buf, deadline).await {
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
                Ok(Some(())) if resp.status == 101 => {
                    return Err(HeadFail::Bad(
                        "upstream switched protocols without an upgrade",
                    ))
                }
                Ok(Some(())) => return Ok(()),
            }
        }
    }
}

/// Runs the attempt loop; see the module doc.
pub(crate) async fn exchange<'a>(
    ctx: &WorkerCtx,
    req: &Request<'a>,
    c: &mut ClientConn,
    body: &mut BodyLeft,
    resp: &mut ResponseHead,
) -> Result<(UpConn, Inflight<'a>), Fail> {
    let up = req.up;
    let replayable = matches!(body, BodyLeft::Done);
    let retry_safe = replayable && req.idempotent;
    let mut tried = 0u64;
    let mut failures = 0u32;
    let mut stale_retry = true;
    let mut last_err: Option<ProxyError> = None;
    let mut attempts = 0u32;
    loop {
        let now = std::time::Instant::now();
        let picked = up.balancer.borrow_mut().pick(req.key, tried, now);
        let Some(ep) = picked else {
            return Err(last_err
                .unwrap_or(ProxyError::new(ErrorKind::NoHealthyUpstream))
                .into());
        };
        if attempts > 0 {
            up.stats.retries.inc();
        }
        attempts += 1;
        tried |= 1u64 << (ep & 63);
        let pooled = up.pool.borrow_mut().take(ep, now);
        let (mut conn, reused) = match pooled {
            Some(conn) => {
                up.stats.pool_hits.inc();
                (conn, true)
            }
            None => match connect(up, ep).await {
                Ok(conn) => {
                    up.stats.pool_misses.inc();
                    (conn, false)
                }
                Err(kind) => {
                    up.stats.pool_misses.inc();
                    failed(up, ep, UpstreamError::Connect);
                    last_err = Some(ProxyError::new(kind));
                    failures += 1;
                    if failures > up.cfg.retries {
                        return Err(last_err.unwrap().into());
                    }
                    continue;
                }
            },
        };
        let inflight = Inflight::new(up, ep);
        let send_deadline = Instant::now() + ctx.cfg.server.client_body_timeout;
        up.stats.bytes_sent.add(c.out.len() as u64);
        let sent = io::write_all(&mut conn.stream, &mut c.out, send_deadline).await;
        if sent.is_err() {
            if reused && retry_safe && stale_retry {
                stale_retry = false;
                up.pool.borrow_mut().clear(ep);
                tried &= !(1u64 << (ep & 63));
                continue;
            }
            failed(up, ep, UpstreamError::Reset);
            return Err(ProxyError::new(ErrorKind::UpstreamReset).into());
        }
        if !matches!(body, BodyLeft::Done) {
            match relay::request_body(ctx, c, &mut conn, body).await {
                Ok(()) => {}
                Err(Fail::Respond(e)) if e.kind == ErrorKind::UpstreamReset => {
                    failed(up, ep, UpstreamError::Reset);
                    return Err(e.into());
                }
                Err(e) => return Err(e),
            }
        }
        let deadline = Instant::now() + up.cfg.response_timeout;
        match read_response_head(&mut conn, resp, deadline, req.method_head).await {
            Ok(()) => {
                up.balancer.borrow_mut().report_success(ep);
                return Ok((conn, inflight));
            }
            Err(HeadFail::Closed { got_bytes: false }) if reused && retry_safe && stale_retry => {
                stale_retry = false;
                up.pool.borrow_mut().clear(ep);
                tried &= !(1u64 << (ep & 63));
                continue;
            }
            Err(HeadFail::Closed { .. }) => {
                failed(up, ep, UpstreamError::Reset);
                last_err = Some(ProxyError::new(ErrorKind::UpstreamReset));
                failures += 1;
                if !retry_safe || failures > up.cfg.retries {
                    return Err(last_err.unwrap().into());
                }
            }
            Err(HeadFail::Timeout) => {
                failed(up, ep, UpstreamError::Timeout);
                return Err(ProxyError::new(ErrorKind::ResponseTimeout).into());
            }
            Err(HeadFail::Bad(reason)) => {
                up.stats.error(UpstreamError::BadResponse);
                return Err(ProxyError::new(ErrorKind::BadUpstreamResponse { reason }).into());
            }
        }
    }
}
