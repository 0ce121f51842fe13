//! Full duplex: the request body keeps flowing to the upstream while the gateway waits for, and
//! then relays, the response (a bidirectional gRPC call answers each message before the client
//! sends the next; a server may answer before an upload ends, RFC 9112 §9.3 allows it).
//!
//! Owns [`pump_until_upstream`]. One task, readiness-raced like the tunnel (`tunnel.rs`): wait
//! until either the client has request body to read or the upstream has something to say; move
//! one piece of request body (`relay::request_body_step`) when the client wins, return when the
//! upstream wins. Dropping a readiness wait loses nothing (both adapters keep what they took), so
//! the side that loses the race is read on the next turn. The exchange calls it before reading
//! the response head, and the response relay before each read of the upstream body, so the two
//! directions interleave until the request body ends.
//!
//! An upstream that stops reading (it answered early and closed its side, or reset the stream)
//! makes a body write fail: before the response head that is the exchange's early-answer case
//! (`Exchanged::early`), after it the response is relayed on and the rest of the body is not
//! sent ([`Pumped::UpstreamStopped`]); either way the client connection closes after the answer
//! unless its whole request was read, and an upstream connection whose request body was not
//! sent whole is never pooled.

use monoio::time::Instant;

use super::{relay, BodyLeft, ClientConn, Fail};
use crate::http::respond::{ErrorKind, Reply};
use crate::runtime::worker::Generation;
use crate::upstream::pool::UpConn;

/// How a pump ended without an error the exchange must answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// The upstream has something to read (or the body ended).
    Upstream,
    /// A write to the upstream failed: it stopped reading the body.
    UpstreamStopped,
}

/// Moves request body pieces from the client to the upstream until the upstream has something
/// to read or the body ended. Neither side moving for the server's `client_body_timeout` is the
/// client's body not arriving in time (408 before the response head, a cut after it), as when
/// the body is sent before the answer is read.
pub(crate) async fn pump_until_upstream(
    ctx: &Generation,
    c: &mut ClientConn,
    conn: &mut UpConn,
    body: &mut BodyLeft,
) -> Result<Pumped, Fail> {
    let idle = ctx.cfg.server.client_body_timeout;
    while !matches!(body, BodyLeft::Done) {
        let client_first = monoio::time::timeout_at(Instant::now() + idle, async {
            monoio::select! {
                _ = c.stream.readable() => true,
                _ = conn.stream.readable() => false,
            }
        })
        .await;
        match client_first {
            Err(_) => {
                return Err(Reply::new(ErrorKind::BadRequest {
                    status: 408,
                    reason: "request body not received in time",
                })
                .into())
            }
            Ok(false) => return Ok(Pumped::Upstream),
            Ok(true) => match relay::request_body_step(ctx, c, conn, body).await {
                Ok(()) => {}
                Err(Fail::Respond(e)) if e.kind == ErrorKind::UpstreamReset => {
                    return Ok(Pumped::UpstreamStopped)
                }
                Err(e) => return Err(e),
            },
        }
    }
    Ok(Pumped::Upstream)
}
