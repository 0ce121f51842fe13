//! A connection's byte stream, plain TCP or TLS, behind one set of timed operations.
//!
//! Owns: [`Stream`], which everything above the socket uses (the client connection driver, the
//! upstream pool and exchange, the outbound HTTP client). Each operation dispatches once on the
//! variant; the plain arm is exactly the rent-style socket IO of `timed.rs`, so plain connections
//! pay one branch for TLS existing. TLS facts the request pipeline reads (SNI, ALPN, version,
//! resumption, the verified client certificate) are gathered once after the handshake
//! ([`TlsInfo`]).

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::timed::{self, IoFail};
use super::tls::TlsStream;
use super::Peeked;

/// A plain or TLS connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

/// A TLS session and what the handshake established.
pub struct TlsConn {
    pub session: TlsStream,
    pub info: TlsInfo,
}

/// What a completed handshake established, read by routes, headers and logs.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The server name the client asked for (server side only).
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    /// "TLSv1.2" / "TLSv1.3".
    pub version: &'static str,
    pub resumed: bool,
    /// The peer's verified certificate (server side with client auth only).
    pub client_cert: Option<crate::tls::ClientCert>,
}

impl TlsInfo {
    /// Reads the facts of an established session.
    pub fn of(session: &rustls::Connection) -> TlsInfo {
        let sni = match session {
            rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
            rustls::Connection::Client(_) => None,
        };
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let client_cert = match session {
            rustls::Connection::Server(_) => session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::tls::client_cert(leaf)),
            rustls::Connection::Client(_) => None,
        };
        TlsInfo {
            sni,
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
            version,
            resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            client_cert,
        }
    }
}

impl Stream {
    /// Wraps an established TLS session.
    pub fn tls(session: TlsStream) -> Stream {
        let info = TlsInfo::of(session.session());
        Stream::Tls(Box::new(TlsConn { session, info }))
    }

    /// The socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.session.tcp(),
        }
    }

    pub fn tls_info(&self) -> Option<&TlsInfo> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => Some(&t.info),
        }
    }

    /// Reads once into the spare capacity of `buf` (growing it if full). `Ok(0)` is end of stream.
    pub async fn read_some(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, IoFail> {
        match self {
            Stream::Plain(s) => timed::read_some(s, buf, deadline).await,
            Stream::Tls(t) => t.session.read_some(buf, deadline).await,
        }
    }

    /// Writes all of `buf`; `buf` keeps its contents.
    pub async fn write_all(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<(), IoFail> {
        let n = buf.len();
        self.write_prefix(buf, n, deadline).await
    }

    /// Writes `buf[..n]`; `buf` keeps its contents.
    pub async fn write_prefix(
        &mut self,
        buf: &mut Vec<u8>,
        n: usize,
        deadline: Instant,
    ) -> Result<(), IoFail> {
        match self {
            Stream::Plain(s) => timed::write_prefix(s, buf, n, deadline).await,
            Stream::Tls(t) => t.session.write_all(&buf[..n], deadline).await,
        }
    }

    /// What the stream holds without consuming it: see [`super::peek`]. On TLS, decrypted bytes
    /// waiting count as data, and a pending alert record (a `close_notify` or a fatal alert: the
    /// peer is leaving) as closed.
    pub fn peek(&mut self) -> Peeked {
        match self {
            Stream::Plain(s) => super::peek(s),
            Stream::Tls(t) => {
                if t.session.has_plaintext() {
                    return Peeked::Data;
                }
                super::peek_tls(t.session.tcp())
            }
        }
    }

    /// Resolves when a read would make progress: decrypted or not yet decrypted bytes are waiting,
    /// or the socket is readable (data, end of stream or an error). Dropping it loses nothing, so
    /// it can be raced against other events (a tunnel waits on both of its sides this way).
    pub async fn readable(&mut self) {
        if let Stream::Tls(t) = self {
            if t.session.has_buffered() {
                return;
            }
        }
        let _ = self.tcp().readable(false).await;
    }

    /// Closes our sending direction (TLS: `close_notify` first) while reads go on: the peer sees
    /// end of stream.
    pub async fn shutdown_write(&mut self) {
        if let Stream::Tls(t) = self {
            t.session
                .close_notify(Instant::now() + CLOSE_NOTIFY_WAIT)
                .await;
        }
        timed::shutdown_write(self.tcp());
    }

    /// Ends the connection after an answer while the peer may still be sending: TLS says
    /// `close_notify` first, then see `timed::linger_close`.
    pub async fn linger_close(&mut self, buf: &mut Vec<u8>) {
        match self {
            Stream::Plain(s) => timed::linger_close(s, buf).await,
            Stream::Tls(t) => {
                t.session
                    .close_notify(Instant::now() + CLOSE_NOTIFY_WAIT)
                    .await;
                let tcp = t.session.tcp_mut();
                timed::linger_close(tcp, buf).await
            }
        }
    }

    /// Ends the connection politely: TLS sends `close_notify` (so a body delimited by the close is
    /// not mistaken for a truncation); plain TCP has nothing to say.
    pub async fn close(&mut self) {
        if let Stream::Tls(t) = self {
            t.session
                .close_notify(Instant::now() + CLOSE_NOTIFY_WAIT)
                .await;
        }
    }
}

/// Longest a `close_notify` may take to write before the socket is closed anyway.
const CLOSE_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
