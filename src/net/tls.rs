//! A TLS session over a monoio `TcpStream`: our own thin adapter over rustls' buffered API.
//!
//! Owns: the handshake, and moving bytes between the socket and the rustls session with the same
//! timed, rent-style socket IO as plain connections (`timed.rs`). Ciphertext read from the socket
//! lands in `rx` and is fed to rustls; plaintext comes out of rustls' reader straight into the
//! caller's buffer (no intermediate copy); plaintext written goes into rustls, and the records it
//! produces are gathered in `tx` and written with one socket write.
//!
//! Why not monoio-rustls: its stream exposes neither the rustls session (SNI, ALPN, version,
//! resumption, the client's certificate: routes and forwarded headers need them) nor the socket
//! (the pool's stale check and the client watch peek at it), and it has no deadlines.
//!
//! End of stream: a peer's `close_notify` reads as `Ok(0)`; a TCP close without it is an error
//! (`IoFail::Error`), as rustls reports it: a body delimited by the close could have been cut short
//! by an attacker. Any IO failure or timeout leaves the session unusable; callers close it.

use std::io::{BufRead, Write};
use std::sync::Arc;

use monoio::net::TcpStream;
use monoio::time::Instant;
use rustls::pki_types::ServerName;

use super::timed::{self, IoFail};

/// Initial size of the ciphertext buffers (one TLS record and its overhead).
const RECORD_BUF: usize = 16 * 1024 + 256;

/// An established TLS session on a TCP socket.
pub struct TlsStream {
    tcp: TcpStream,
    conn: rustls::Connection,
    /// Ciphertext read from the socket; `rx[rx_pos..]` not yet fed to rustls.
    rx: Vec<u8>,
    rx_pos: usize,
    /// Ciphertext waiting to be written.
    tx: Vec<u8>,
}

/// Why a handshake failed: the peer left or stalled, or TLS itself refused (the reason is rustls'
/// own description: certificate problems, no shared version, ALPN mismatch...).
#[derive(Debug)]
pub enum HandshakeFail {
    Timeout,
    Closed,
    Tls(rustls::Error),
}

impl std::fmt::Display for HandshakeFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFail::Timeout => f.write_str("TLS handshake timed out"),
            HandshakeFail::Closed => f.write_str("connection closed during the TLS handshake"),
            HandshakeFail::Tls(rustls::Error::InvalidCertificate(why)) => write!(
                f,
                "TLS handshake failed: certificate verification failed ({why})"
            ),
            HandshakeFail::Tls(why) => write!(f, "TLS handshake failed: {why}"),
        }
    }
}

impl TlsStream {
    /// Runs the server side of a handshake on an accepted socket.
    pub async fn accept(
        tcp: TcpStream,
        config: Arc<rustls::ServerConfig>,
        deadline: Instant,
    ) -> Result<TlsStream, HandshakeFail> {
        let conn = rustls::ServerConnection::new(config).map_err(HandshakeFail::Tls)?;
        let mut s = TlsStream::new(tcp, conn.into());
        s.handshake(deadline).await?;
        Ok(s)
    }

    /// Runs the client side of a handshake on a connected socket.
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<TlsStream, HandshakeFail> {
        let conn = rustls::ClientConnection::new(config, name).map_err(HandshakeFail::Tls)?;
        let mut s = TlsStream::new(tcp, conn.into());
        s.handshake(deadline).await?;
        Ok(s)
    }

    fn new(tcp: TcpStream, conn: rustls::Connection) -> TlsStream {
        TlsStream {
            tcp,
            conn,
            rx: Vec::with_capacity(RECORD_BUF),
            rx_pos: 0,
            tx: Vec::with_capacity(RECORD_BUF),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    pub fn session(&self) -> &rustls::Connection {
        &self.conn
    }

    async fn handshake(&mut self, deadline: Instant) -> Result<(), HandshakeFail> {
        let io = |e: IoFail| match e {
            IoFail::Timeout => HandshakeFail::Timeout,
            IoFail::Error => HandshakeFail::Closed,
        };
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush(deadline).await.map_err(io)?;
                continue;
            }
            match self.feed(deadline).await {
                Ok(true) => {}
                Ok(false) => return Err(HandshakeFail::Closed),
                Err(Fed::Io(e)) => return Err(io(e)),
                Err(Fed::Tls(why)) => return Err(HandshakeFail::Tls(why)),
            }
        }
        // the last flight (server Finished, tickets; client Finished)
        self.flush(deadline).await.map_err(io)
    }

    /// Reads more ciphertext (unless some is waiting) and processes it. `Ok(false)`: the socket
    /// reached end of stream. A TLS error is answered with its alert before returning.
    async fn feed(&mut self, deadline: Instant) -> Result<bool, Fed> {
        let mut eof = false;
        if self.rx_pos == self.rx.len() {
            self.rx.clear();
            self.rx_pos = 0;
            match timed::read_some(&mut self.tcp, &mut self.rx, deadline).await {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => return Err(Fed::Io(e)),
            }
        }
        let mut input = &self.rx[self.rx_pos..];
        // an empty reader tells rustls the peer closed the socket
        let n = self
            .conn
            .read_tls(&mut input)
            .map_err(|_| Fed::Io(IoFail::Error))?;
        self.rx_pos += n;
        if let Err(e) = self.conn.process_new_packets() {
            // best effort: tell the peer why
            let _ = self.flush(deadline).await;
            return Err(Fed::Tls(e));
        }
        Ok(!eof)
    }

    /// Writes every pending record.
    async fn flush(&mut self, deadline: Instant) -> Result<(), IoFail> {
        while self.conn.wants_write() {
            self.conn
                .write_tls(&mut self.tx)
                .map_err(|_| IoFail::Error)?;
        }
        let r = timed::write_all(&mut self.tcp, &mut self.tx, deadline).await;
        self.tx.clear();
        r
    }

    /// Reads plaintext into the spare capacity of `buf` (growing it when full). `Ok(0)` is the
    /// peer's `close_notify`.
    pub async fn read_some(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, IoFail> {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(4096));
        }
        loop {
            let room = buf.capacity() - buf.len();
            match self.conn.reader().fill_buf() {
                Ok(chunk) => {
                    let n = chunk.len().min(room);
                    buf.extend_from_slice(&chunk[..n]);
                    self.conn.reader().consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(IoFail::Error),
            }
            match self.feed(deadline).await {
                Ok(_) => {}
                Err(Fed::Io(e)) => return Err(e),
                Err(Fed::Tls(_)) => return Err(IoFail::Error),
            }
            // post-handshake messages may need an answer (key updates)
            if self.conn.wants_write() {
                self.flush(deadline).await?;
            }
        }
    }

    /// Encrypts and writes all of `data`.
    pub async fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), IoFail> {
        let mut off = 0;
        while off < data.len() {
            // rustls takes what fits its outgoing buffer limit; the flush below makes room
            off += self
                .conn
                .writer()
                .write(&data[off..])
                .map_err(|_| IoFail::Error)?;
            self.flush(deadline).await?;
        }
        Ok(())
    }

    /// The session's parts, for a protocol driver with its own IO (HTTP/2 over poll-io): the
    /// socket, the rustls session and the ciphertext read but not yet given to rustls. Nothing is
    /// waiting to be written after a handshake (its last flight was flushed).
    pub fn into_parts(self) -> (TcpStream, rustls::Connection, Vec<u8>) {
        let rest = self.rx[self.rx_pos..].to_vec();
        (self.tcp, self.conn, rest)
    }

    /// Whether decrypted bytes are waiting to be read.
    pub fn has_plaintext(&mut self) -> bool {
        matches!(self.conn.reader().fill_buf(), Ok(chunk) if !chunk.is_empty())
    }

    /// Whether a read can make progress without the socket: decrypted bytes, or ciphertext
    /// already read but not yet given to rustls.
    pub fn has_buffered(&mut self) -> bool {
        self.rx_pos < self.rx.len() || self.has_plaintext()
    }

    /// Sends `close_notify` (best effort, bounded by `deadline`), so the peer can tell our close
    /// from a truncation.
    pub async fn close_notify(&mut self, deadline: Instant) {
        self.conn.send_close_notify();
        let _ = self.flush(deadline).await;
    }
}

enum Fed {
    Io(IoFail),
    Tls(rustls::Error),
}
