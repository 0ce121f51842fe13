//! Timed, rent-style IO on a TCP socket: the one set of socket helpers under every connection
//! (client and upstream sides of the proxy, TLS sessions in `tls.rs`, the outbound HTTP client and
//! the Redis client).
//!
//! Owns: reading into a `Vec`'s spare capacity and writing a whole `Vec`, each bounded by a deadline.
//! monoio's ownership IO moves the buffer into the operation and hands it back; these helpers put it
//! back in place so callers keep one buffer per connection for its whole life. When a deadline fires
//! the in-flight operation is cancelled and owns the old buffer, so the slot gets a fresh empty `Vec`
//! (the caller closes that connection anyway).

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;

/// Why a timed read or write did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFail {
    Timeout,
    /// Reset, broken pipe or any other socket error.
    Error,
}

/// Reads once into the spare capacity of `buf` (growing it if full). `Ok(0)` is end of stream.
pub async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, IoFail> {
    if buf.len() == buf.capacity() {
        buf.reserve(buf.capacity().max(4096));
    }
    let len = buf.len();
    let owned = std::mem::take(buf);
    match monoio::time::timeout_at(deadline, stream.read(owned.slice_mut(len..))).await {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map_err(|_| IoFail::Error)
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes all of `buf`; `buf` keeps its contents.
pub async fn write_all(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), IoFail> {
    write_prefix(stream, buf, buf.len(), deadline).await
}

/// Writes `buf[..n]`; `buf` keeps its contents.
pub async fn write_prefix(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Result<(), IoFail> {
    if n == 0 {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    match monoio::time::timeout_at(deadline, stream.write_all(owned.slice(..n))).await {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map(|_| ()).map_err(|_| IoFail::Error)
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Closes our sending direction: the peer reads end of stream; we can still read.
pub(super) fn shutdown_write(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open socket fd; shutdown has no memory effects.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
}

/// Longest a lingering close waits for the client to stop sending (nginx `lingering_time` is 30 s,
/// `lingering_timeout` 5 s; a gateway answering early needs only long enough for the answer to land).
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
/// Most bytes a lingering close reads and discards.
const LINGER_BYTES: usize = 4 << 20;

/// Closes our sending side, then reads and discards what the client still sends (a request body we
/// did not want) until it closes, `LINGER_TIME` passes or `LINGER_BYTES` were read. Closing a socket
/// with unread input makes the kernel send a reset, which can destroy the answer still in flight to
/// the client; this is the lingering close of RFC 9112 §9.6.
pub(super) async fn linger_close(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    shutdown_write(stream);
    let deadline = Instant::now() + LINGER_TIME;
    let mut total = 0;
    while total < LINGER_BYTES {
        buf.clear();
        match read_some(stream, buf, deadline).await {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
    buf.clear();
}
