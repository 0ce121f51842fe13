//! Hedged requests (`[upstream.retry] hedge_after`): a GET or HEAD whose first try has no
//! response head after the hedge delay is sent again to another endpoint, and the first head to
//! arrive wins.
//!
//! Owns [`hedged`], which the exchange runs instead of its attempt loop for fully read GET/HEAD
//! requests when the upstream has a hedge delay (a fixed one, or the worker's p95 once known).
//! Data flow: the first try is sent as usual; the response head is awaited with the hedge delay
//! as a timer. If the head comes first, that is the answer. If the timer fires, a second try goes
//! to an endpoint the first did not use (counted in `coregate_upstream_hedges_total`) and both
//! heads are awaited together, each try keeping its own connection and head buffer; the first
//! good head wins (`coregate_upstream_hedge_wins_total` when it is the second try's) and the
//! other try's connection is dropped. A failed try leaves the other to finish alone. Anything
//! that stops the hedge before a try reached the upstream hands the request back to the normal
//! attempt loop, with its retries.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::time::Instant;

use super::exchange::{
    checkout, failed, learn_keep_alive, pick, read_response_head, ExchangePlan, Exchanged,
    HeadFail, Inflight,
};
use super::Fail;
use crate::http::head::ResponseHead;
use crate::http::respond::{ErrorKind, Reply};
use crate::metrics::UpstreamError;
use crate::runtime::worker::Generation;
use crate::upstream::pool::UpConn;
use crate::upstream::UpstreamRt;

/// One try: its connection, endpoint and in-flight count.
struct Try<'a> {
    conn: UpConn,
    ep: usize,
    inflight: Inflight<'a>,
}

/// Sends the request on a new try to an endpoint outside `tried` (None: no endpoint, or it
/// could not be reached; the failure is counted).
async fn start<'a>(
    ctx: &Generation,
    up: &'a UpstreamRt,
    key: Option<u64>,
    tried: u64,
    out: &mut Vec<u8>,
) -> Option<Try<'a>> {
    let now = std::time::Instant::now();
    let ep = pick(up, key, tried, now)?;
    let (mut conn, _) = match checkout(up, ep, now).await {
        Ok(c) => c,
        Err(_) => {
            failed(up, ep, UpstreamError::Connect);
            return None;
        }
    };
    let inflight = Inflight::new(up, ep);
    let deadline = Instant::now() + ctx.cfg.server.client_body_timeout;
    up.stats.bytes_sent.add(out.len() as u64);
    conn.stream.write_all(out, deadline).await.ok()?;
    Some(Try { conn, ep, inflight })
}

/// What a try's head read came to: the exchange, or None (the failure counted, the try dropped).
fn settle<'a>(
    up: &UpstreamRt,
    t: Try<'a>,
    got: Result<(), HeadFail>,
    resp: &ResponseHead,
) -> Option<Exchanged<'a>> {
    match got {
        Ok(()) => {
            let mut t = t;
            up.balancer.borrow_mut().report_success(t.ep);
            learn_keep_alive(&mut t.conn, resp);
            Some(Exchanged {
                conn: t.conn,
                inflight: t.inflight,
                early: false,
            })
        }
        Err(HeadFail::Timeout) => {
            failed(up, t.ep, UpstreamError::Timeout);
            None
        }
        Err(HeadFail::Closed { .. }) => {
            failed(up, t.ep, UpstreamError::Reset);
            None
        }
        Err(HeadFail::Bad(_)) => {
            up.stats.error(UpstreamError::BadResponse);
            None
        }
    }
}

/// Runs a hedged exchange; None hands the request back to the attempt loop (nothing was
/// answered and no try is left waiting).
pub(crate) async fn hedged<'a>(
    ctx: &Generation,
    req: &ExchangePlan<'a>,
    c: &mut super::exchange::Down<'_>,
    resp: &mut ResponseHead,
    delay: Duration,
) -> Option<Result<Exchanged<'a>, Fail>> {
    let up = req.up;
    let mut first = start(ctx, up, req.key, 0, c.out()).await?;
    let deadline = Instant::now() + req.response_timeout;
    let timer = Instant::now() + delay;
    // the first try alone until the hedge delay
    let early = {
        let read = read_response_head(&mut first.conn, resp, deadline, req.method_head, false);
        monoio::select! {
            got = read => Some(Some(got)),
            _ = monoio::time::sleep_until(timer) => None,
            _ = c.gone() => Some(None),
        }
    };
    match early {
        Some(None) => return Some(Err(Fail::Close)),
        Some(Some(got)) => {
            // answered (or failed) before the hedge: a failure goes back to the attempt loop
            return settle(up, first, got, resp).map(Ok);
        }
        None => {}
    }
    // the hedge: the same request to another endpoint
    let tried = 1u64 << (first.ep & 63);
    let Some(mut second) = start(ctx, up, req.key, tried, c.out()).await else {
        let got = read_response_head(&mut first.conn, resp, deadline, req.method_head, false).await;
        return Some(settle(up, first, got, resp).ok_or_else(gateway_error));
    };
    up.stats.hedges.inc();
    let mut resp2 = ResponseHead::default();
    let (mut done1, mut done2) = (None, None);
    {
        let mut r1 = pin!(read_response_head(
            &mut first.conn,
            resp,
            deadline,
            req.method_head,
            false
        ));
        let mut r2 = pin!(read_response_head(
            &mut second.conn,
            &mut resp2,
            deadline,
            req.method_head,
            false
        ));
        let mut gone = pin!(c.gone());
        let left = std::future::poll_fn(|cx| {
            if gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            if done1.is_none() {
                if let Poll::Ready(r) = r1.as_mut().poll(cx) {
                    done1 = Some(r);
                }
            }
            if done2.is_none() {
                if let Poll::Ready(r) = r2.as_mut().poll(cx) {
                    done2 = Some(r);
                }
            }
            // a good head wins at once; two failures end it
            let ok = |d: &Option<Result<(), HeadFail>>| matches!(d, Some(Ok(())));
            if ok(&done1) || ok(&done2) || (done1.is_some() && done2.is_some()) {
                return Poll::Ready(true);
            }
            Poll::Pending
        })
        .await;
        if !left {
            return Some(Err(Fail::Close));
        }
    }
    if matches!(done2, Some(Ok(()))) && !matches!(done1, Some(Ok(()))) {
        up.stats.hedge_wins.inc();
        *resp = resp2;
        return Some(settle(up, second, Ok(()), resp).ok_or_else(gateway_error));
    }
    let got = done1.unwrap_or(Err(HeadFail::Timeout));
    let timed_out = matches!(got, Err(HeadFail::Timeout));
    if let Some(Err(e)) = done2 {
        let _ = settle(up, second, Err(e), &resp2);
    }
    Some(settle(up, first, got, resp).ok_or_else(|| match timed_out {
        true => Reply::new(ErrorKind::ResponseTimeout).into(),
        false => gateway_error(),
    }))
}

fn gateway_error() -> Fail {
    Reply::new(ErrorKind::UpstreamReset).into()
}
