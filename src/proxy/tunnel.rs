//! The tunnel after a protocol switch (a WebSocket upgrade): bytes both ways, unchanged, until
//! both sides have closed, one fails, or nothing moves for the route's `tunnel_idle_timeout`.
//!
//! Owns [`run`]. One task drives both directions: it waits until either side is readable (a
//! readiness wait, so the side that loses the race loses no data), reads what is there and writes
//! it to the other side, with the idle timeout as the deadline of each step. A peer that stops
//! reading for that long ends the tunnel. End of stream from one side is passed on as a half
//! close (TLS: `close_notify`), and the other direction keeps going until it ends too, but with at
//! most [`HALF_CLOSED_IDLE`] between reads (HAProxy's `timeout client-fin` idea: after a WebSocket
//! close handshake the server closes first, and a client that never closes its end must not hold
//! the tunnel for the whole idle timeout). Bytes are
//! counted per direction for the access log and the upstream's byte counters.

use std::time::Duration;

use monoio::time::Instant;

use crate::net::Stream;
use crate::upstream::pool::UpConn;

/// What went through a tunnel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tunneled {
    pub to_client: u64,
    pub to_upstream: u64,
}

/// Longest wait for the other side once one side has closed its sending direction.
const HALF_CLOSED_IDLE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Side {
    Client,
    Upstream,
}

/// Relays between `client` and `up` until both sides closed, one failed, or the idle timeout
/// passed with nothing moving (see the module doc). `cbuf` is the
/// client connection's read buffer (empty on entry); the upstream side reads into `up.buf`.
pub(crate) async fn run(
    client: &mut Stream,
    cbuf: &mut Vec<u8>,
    up: &mut UpConn,
    idle: Duration,
) -> Tunneled {
    let mut t = Tunneled {
        to_client: 0,
        to_upstream: 0,
    };
    // each side's sending direction is still open (we may still read from it)
    let (mut client_open, mut up_open) = (true, true);
    while client_open || up_open {
        let wait = match client_open && up_open {
            true => idle,
            false => idle.min(HALF_CLOSED_IDLE),
        };
        let deadline = Instant::now() + wait;
        let ready = {
            let client_ready = async {
                match client_open {
                    true => client.readable().await,
                    false => std::future::pending().await,
                }
            };
            let up_ready = async {
                match up_open {
                    true => up.stream.readable().await,
                    false => std::future::pending().await,
                }
            };
            monoio::select! {
                _ = client_ready => Some(Side::Client),
                _ = up_ready => Some(Side::Upstream),
                _ = monoio::time::sleep_until(deadline) => None,
            }
        };
        let Some(side) = ready else {
            break;
        };
        let (from, to, buf) = match side {
            Side::Client => (&mut *client, &mut up.stream, &mut *cbuf),
            Side::Upstream => (&mut up.stream, &mut *client, &mut up.buf),
        };
        buf.clear();
        let n = match from.read_some(buf, deadline).await {
            Ok(0) => {
                to.shutdown_write().await;
                match side {
                    Side::Client => client_open = false,
                    Side::Upstream => up_open = false,
                }
                continue;
            }
            Ok(n) => n as u64,
            Err(_) => break,
        };
        match side {
            Side::Client => {
                t.to_upstream += n;
                up.stats.bytes_sent.add(n);
            }
            Side::Upstream => {
                t.to_client += n;
                up.stats.bytes_received.add(n);
            }
        }
        if to.write_all(buf, Instant::now() + idle).await.is_err() {
            break;
        }
    }
    t
}
