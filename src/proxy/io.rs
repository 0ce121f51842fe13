//! Timed, rent-style socket IO used by the connection driver.
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
