//! Full duplex for HTTP/2 upstreams: the request body keeps flowing to the upstream while the
//! gateway waits for, and then relays, the response (a bidirectional gRPC call answers each
//! message before the client sends the next; a server may answer before the upload ends).
//!
//! Owns [`pump_until_upstream`]. One task, readiness-raced like the tunnel (`tunnel.rs`): wait
//! until either the client has request body to read or the upstream has something to say; move
//! one piece of request body (`relay::request_body_step`) when the client wins, return when the
//! upstream wins. Dropping a readiness wait loses nothing (both adapters keep what they took), so
//! the side that loses the race is read on the next turn. The exchange calls it before reading
//! the response head, and the response relay before each read of the upstream body, so the two
//! directions interleave until the request body ends.
//!
//! Only for HTTP/2 upstreams: an HTTP/1.1 upstream gets the whole body before its answer is read
//! (see README, design notes), so the early-answer and retry rules there stay as they are.

use std::time::Duration;

use monoio::time::Instant;

use super::{relay, BodyLeft, ClientConn, Fail};
use crate::http::respond::{ErrorKind, Reply};
use crate::runtime::worker::Generation;
use crate::upstream::pool::UpConn;

/// Does this exchange run full duplex? An HTTP/2 upstream request whose body is still coming.
pub(crate) fn applies(conn: &UpConn, body: &BodyLeft) -> bool {
    matches!(conn.stream, crate::net::Stream::H2Up(_)) && !matches!(body, BodyLeft::Done)
}

/// Moves request body pieces from the client to the upstream until the upstream has something
/// to read or the body ended. Neither side moving for `idle` is a timeout (504 before the
/// response head, a cut after it).
pub(crate) async fn pump_until_upstream(
    ctx: &Generation,
    c: &mut ClientConn,
    conn: &mut UpConn,
    body: &mut BodyLeft,
    idle: Duration,
) -> Result<(), Fail> {
    while !matches!(body, BodyLeft::Done) {
        let client_first = monoio::time::timeout_at(Instant::now() + idle, async {
            monoio::select! {
                _ = c.stream.readable() => true,
                _ = conn.stream.readable() => false,
            }
        })
        .await;
        match client_first {
            Err(_) => return Err(Reply::new(ErrorKind::ResponseTimeout).into()),
            Ok(false) => return Ok(()),
            Ok(true) => relay::request_body_step(ctx, c, conn, body).await?,
        }
    }
    Ok(())
}
