//! The gateway's own upstream requests: aggregation parts and background cache refreshes.
//!
//! Owns [`fetch`]: one request the gateway wrote itself (head only, no body) to an `[[upstream]]`
//! group, through the same machinery as a client's request: the breaker and adaptive limit
//! (`UpstreamRt`), the exchange's attempt loop (balancer, pool, retries, hedging, passive
//! health: `exchange.rs`, with [`Down::Internal`](super::exchange::Down)), then the whole
//! response body read into memory under a cap. A clean connection goes back to the pool. The
//! caller bounds the whole call with its own deadline (dropping the future cancels it; the
//! connection is then dropped, never pooled).

use std::time::Instant as StdInstant;

use monoio::time::Instant;

use super::exchange::{self, Down, ExchangePlan};
use super::{BodyLeft, Fail};
use crate::http::chunked::ChunkedDecoder;
use crate::http::head::{BodyKind, ResponseHead};
use crate::http::respond::{ErrorKind, Side};
use crate::metrics::UpstreamError;
use crate::runtime::worker::Generation;
use crate::upstream::pool::UpConn;
use crate::upstream::{CallEnd, UpstreamRt};

/// A whole upstream response.
pub(crate) struct Fetched {
    /// The response head bytes; `resp`'s spans point into them.
    pub head: Vec<u8>,
    pub resp: ResponseHead,
    /// The body, without transfer framing.
    pub body: Vec<u8>,
}

/// Why a fetch gave no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// The circuit breaker is open, or the adaptive limit shed the call.
    Open,
    /// Every endpoint is ejected.
    NoUpstream,
    /// Connect failure, reset, malformed response.
    Upstream,
    /// No response head within the upstream's `response_timeout`, or the body stalled.
    Timeout,
    /// The body is larger than the cap.
    TooLarge,
}

impl FetchError {
    /// A short token for logs and merged error lists.
    pub(crate) fn token(self) -> &'static str {
        match self {
            FetchError::Open => "circuit_open",
            FetchError::NoUpstream => "no_upstream",
            FetchError::Upstream => "upstream_error",
            FetchError::Timeout => "timeout",
            FetchError::TooLarge => "too_large",
        }
    }
}

/// Sends `request` (a complete HTTP/1.1 request head, no body) to `up` and reads the whole
/// response, its body at most `max_body` bytes. `idempotent`: may be retried.
pub(crate) async fn fetch(
    gen: &Generation,
    up: &UpstreamRt,
    request: &mut Vec<u8>,
    idempotent: bool,
    method_head: bool,
    max_body: usize,
) -> Result<Fetched, FetchError> {
    let trial = up.breaker_admit().map_err(|_| FetchError::Open)?;
    let Some(adaptive) = up.adaptive_admit() else {
        up.breaker_record(StdInstant::now(), CallEnd::NoVerdict, trial);
        return Err(FetchError::Open);
    };
    let start = StdInstant::now();
    let plan = ExchangePlan {
        up,
        key: None,
        idempotent,
        method_head,
        upgrade: false,
        response_timeout: up.cfg.response_timeout,
        hedgeable: idempotent,
    };
    let mut resp = ResponseHead::default();
    let mut body = BodyLeft::Done;
    let mut down = Down::Internal(request);
    let got = exchange::exchange(gen, &plan, &mut down, &mut body, &mut resp);
    let mut conn = match got.await {
        Ok(v) => {
            let now = StdInstant::now();
            let end = CallEnd::Response(resp.status, None, now - start);
            up.breaker_record(now, end, trial);
            adaptive.latency(now - start);
            v.conn
        }
        Err(e) => {
            let (end, err) = match e {
                Fail::Respond(r) => match (r.side, r.kind) {
                    (_, ErrorKind::NoHealthyUpstream) => {
                        (CallEnd::NoVerdict, FetchError::NoUpstream)
                    }
                    (_, ErrorKind::ResponseTimeout) => (CallEnd::Failed, FetchError::Timeout),
                    (Side::Downstream, _) => (CallEnd::NoVerdict, FetchError::Upstream),
                    _ => (CallEnd::Failed, FetchError::Upstream),
                },
                Fail::Close => (CallEnd::NoVerdict, FetchError::Upstream),
            };
            up.breaker_record(StdInstant::now(), end, trial);
            return Err(err);
        }
    };
    let head_len = resp.head_len;
    let mut out = Fetched {
        head: conn.buf[..head_len].to_vec(),
        resp,
        body: Vec::new(),
    };
    let timeout = up.cfg.response_timeout;
    let clean = read_body(
        &mut conn,
        &out.resp,
        head_len,
        max_body,
        timeout,
        &mut out.body,
    )
    .await?;
    up.stats.record(out.resp.status);
    up.stats
        .latency
        .record_us(start.elapsed().as_micros() as u64);
    if clean {
        up.pool.borrow_mut().put(conn, std::time::Instant::now());
    }
    Ok(out)
}

/// Reads the body after the head (`head_len` bytes of `conn.buf`) into `body`; true when the
/// connection is clean for the pool.
async fn read_body(
    conn: &mut UpConn,
    resp: &ResponseHead,
    head_len: usize,
    max: usize,
    timeout: std::time::Duration,
    body: &mut Vec<u8>,
) -> Result<bool, FetchError> {
    let rest = conn.buf.split_off(head_len);
    conn.buf.clear();
    match resp.body {
        BodyKind::None => Ok(resp.keep_alive && rest.is_empty()),
        BodyKind::Length(n) => {
            if n > max as u64 {
                return Err(FetchError::TooLarge);
            }
            let n = n as usize;
            body.extend_from_slice(&rest[..rest.len().min(n)]);
            let mut extra = rest.len() > n;
            while body.len() < n {
                let got = more(conn, timeout).await?;
                let k = got.min(n - body.len());
                extra |= got > k;
                body.extend_from_slice(&conn.buf[..k]);
            }
            Ok(resp.keep_alive && !extra)
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(max as u64);
            let mut input = rest;
            loop {
                let p = dec
                    .decode(&input, &mut |d: &[u8]| body.extend_from_slice(d))
                    .map_err(|e| match e {
                        crate::http::chunked::ChunkedError::BodyTooLarge => FetchError::TooLarge,
                        _ => {
                            conn.stats.error(UpstreamError::BadResponse);
                            FetchError::Upstream
                        }
                    })?;
                if p.done {
                    break Ok(resp.keep_alive && p.consumed == input.len());
                }
                input.drain(..p.consumed);
                let got = more(conn, timeout).await?;
                input.extend_from_slice(&conn.buf[..got]);
            }
        }
        BodyKind::UntilClose => {
            body.extend_from_slice(&rest);
            loop {
                if body.len() > max {
                    return Err(FetchError::TooLarge);
                }
                conn.buf.clear();
                match conn
                    .stream
                    .read_some(&mut conn.buf, Instant::now() + timeout)
                    .await
                {
                    Ok(0) => break Ok(false),
                    Ok(n) => body.extend_from_slice(&conn.buf[..n]),
                    Err(_) => return Err(FetchError::Upstream),
                }
            }
        }
    }
}

/// Reads the next piece of a body that must continue into the (cleared) `conn.buf`.
async fn more(conn: &mut UpConn, timeout: std::time::Duration) -> Result<usize, FetchError> {
    conn.buf.clear();
    match conn
        .stream
        .read_some(&mut conn.buf, Instant::now() + timeout)
        .await
    {
        Ok(0) => {
            conn.stats.error(UpstreamError::Reset);
            Err(FetchError::Upstream)
        }
        Ok(n) => {
            conn.stats.bytes_received.add(n as u64);
            Ok(n)
        }
        Err(crate::net::IoFail::Timeout) => {
            conn.stats.error(UpstreamError::Timeout);
            Err(FetchError::Timeout)
        }
        Err(crate::net::IoFail::Error) => {
            conn.stats.error(UpstreamError::Reset);
            Err(FetchError::Upstream)
        }
    }
}
