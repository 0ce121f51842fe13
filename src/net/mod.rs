//! Connections below HTTP: plain and TLS streams, timed socket IO, and socket probes.
//!
//! - `timed.rs`: rent-style reads and writes on a TCP socket, each bounded by a deadline.
//! - `tls.rs`: a TLS session (rustls) over a TCP socket, using the same timed IO.
//! - `stream.rs`: [`Stream`], plain or TLS, which the proxy, the pool and the outbound client use.
//! - `cidr.rs`: CIDR sets for IP rules and trusted proxies.
//! - `relay_buf.rs`: each worker's pool of large buffers long response bodies stream through.
//! - `splice.rs`: socket -> pipe -> socket body relay (`--splice-min`) and its pipe pool.
//!
//! This file owns [`peek`]: a non-blocking `recv(MSG_PEEK | MSG_DONTWAIT)` of one byte that tells what a
//! socket holds without consuming it. The upstream pool uses it to notice an idle keep-alive
//! connection the upstream closed (`upstream/pool.rs`); the exchange uses it to tell a client that
//! went away from one that pipelined its next request (`proxy/exchange.rs`). Works the same under
//! io_uring and epoll: it is a plain syscall on the socket, outside the driver.

pub mod cidr;
pub mod proxy_protocol;
pub mod relay_buf;
pub mod splice;
mod stream;
mod timed;
pub mod tls;

pub use stream::{Stream, TlsConn, TlsInfo};
pub use timed::IoFail;

use std::os::fd::AsRawFd;

/// What a non-blocking peek found on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// Nothing to read yet: the peer is there and silent.
    Empty,
    /// Bytes are waiting (left in the socket).
    Data,
    /// End of stream or a socket error: the peer is gone.
    Closed,
}

/// Peeks at one byte of `socket` without blocking or consuming it.
pub fn peek(socket: &impl AsRawFd) -> Peeked {
    peek_byte(socket).0
}

/// TLS record content type of an alert.
const TLS_ALERT: u8 = 21;

/// Like [`peek`] on a socket carrying TLS: a waiting alert record (`close_notify`, or a fatal
/// alert) means the peer is leaving, so it reads as closed.
pub fn peek_tls(socket: &impl AsRawFd) -> Peeked {
    match peek_byte(socket) {
        (Peeked::Data, TLS_ALERT) => Peeked::Closed,
        (p, _) => p,
    }
}

/// Like [`peek`], with the byte itself when there is one.
pub fn peek_byte(socket: &impl AsRawFd) -> (Peeked, u8) {
    let mut byte = 0u8;
    // SAFETY: a valid open socket fd and a one-byte buffer we own; MSG_PEEK consumes nothing.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let p = match n {
        0 => Peeked::Closed,
        n if n > 0 => Peeked::Data,
        _ => match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Peeked::Empty,
            _ => Peeked::Closed,
        },
    };
    (p, byte)
}
