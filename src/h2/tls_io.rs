//! TLS for protocol drivers that want poll-based IO (the `h2` codec): a rustls session over a
//! monoio poll-io socket, as tokio's `AsyncRead` / `AsyncWrite`.
//!
//! Owns [`PollTls`]. The handshake is done by our rent-style adapter (`net/tls.rs`, with its
//! deadlines, SNI and ALPN); the established session is then moved here ([`PollTls::new`]), with
//! any ciphertext that adapter had read but not yet processed. Reads decrypt into the caller's
//! buffer through rustls; writes hand plaintext to rustls and push its records out, reporting a
//! write done once rustls holds it (the records go out on the next write or flush, which the h2
//! codec always issues).

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};

/// Ciphertext read per socket read.
const READ_CHUNK: usize = 16 * 1024 + 256;

/// A rustls session over a poll-based socket.
pub struct PollTls<T> {
    io: T,
    conn: rustls::Connection,
    /// Ciphertext read from the socket; `rx[rx_pos..]` not yet given to rustls.
    rx: Vec<u8>,
    rx_pos: usize,
    /// Ciphertext waiting to go out; `tx[tx_pos..]` not yet written.
    tx: Vec<u8>,
    tx_pos: usize,
    eof: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> PollTls<T> {
    /// Wraps an established session; `pending` is ciphertext already read from `io`.
    pub fn new(io: T, conn: rustls::Connection, pending: Vec<u8>) -> Self {
        PollTls {
            io,
            conn,
            rx: pending,
            rx_pos: 0,
            tx: Vec::new(),
            tx_pos: 0,
            eof: false,
        }
    }

    /// Writes queued ciphertext; Ready(Ok) once nothing is queued.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.tx_pos == self.tx.len() {
                self.tx.clear();
                self.tx_pos = 0;
                if !self.conn.wants_write() {
                    return Poll::Ready(Ok(()));
                }
                self.conn.write_tls(&mut self.tx)?;
                continue;
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.tx[self.tx_pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.tx_pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Feeds buffered or fresh ciphertext to rustls. Ready(Ok(false)): the socket reached its end.
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.rx_pos == self.rx.len() {
            if self.eof {
                return Poll::Ready(Ok(false));
            }
            self.rx.clear();
            self.rx_pos = 0;
            self.rx.resize(READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut self.rx);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.rx.truncate(n);
                    if n == 0 {
                        self.eof = true;
                        // an empty read tells rustls the peer closed the socket
                        self.conn.read_tls(&mut io::empty())?;
                        self.conn.process_new_packets().map_err(io::Error::other)?;
                        return Poll::Ready(Ok(false));
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.rx.clear();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    self.rx.clear();
                    return Poll::Pending;
                }
            }
        }
        let mut input = &self.rx[self.rx_pos..];
        let n = self.conn.read_tls(&mut input)?;
        self.rx_pos += n;
        if let Err(e) = self.conn.process_new_packets() {
            // best effort: the alert rustls queued
            let _ = self.poll_push(cx);
            return Poll::Ready(Err(io::Error::other(e)));
        }
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for PollTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            match me.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    // n == 0: the peer's close_notify (clean end of stream)
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match me.poll_feed(cx) {
                Poll::Ready(Ok(true)) => {}
                // the socket ended: after a close_notify that is a clean end, else a truncation
                Poll::Ready(Ok(false)) => {
                    return match me.conn.reader().read(buf.initialize_unfilled()) {
                        Ok(n) => {
                            buf.advance(n);
                            Poll::Ready(Ok(()))
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                        }
                        Err(e) => Poll::Ready(Err(e)),
                    };
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            // post-handshake messages may want an answer (key updates)
            if me.conn.wants_write() {
                let _ = me.poll_push(cx);
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PollTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        // make room first: rustls buffers what it has not written yet
        if let Poll::Ready(Err(e)) = me.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        let n = me.conn.writer().write(data)?;
        if n == 0 && !data.is_empty() {
            // rustls' buffer is full until the socket takes more
            return match me.poll_push(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(me.conn.writer().write(data)?)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        let _ = me.poll_push(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_push(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.conn.send_close_notify();
        match me.poll_push(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.io).poll_shutdown(cx),
            other => other,
        }
    }
}
