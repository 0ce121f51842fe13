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

/// A plain or TLS connection, or one HTTP/2 stream of a connection (`h2::stream`: the same byte
/// interface, so an h2 request runs the HTTP/1.1 pipeline unchanged).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
    H2(Box<crate::h2::H2Stream>),
    /// One request on an upstream HTTP/2 connection (`h2::call`).
    H2Up(Box<crate::h2::call::H2Call>),
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

    /// The socket under the stream (an h2 stream shares its connection's: none of its own).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(t.session.tcp()),
            Stream::H2(_) | Stream::H2Up(_) => None,
        }
    }

    pub fn tls_info(&self) -> Option<&TlsInfo> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => Some(&t.info),
            Stream::H2(s) => s.tls_info(),
            Stream::H2Up(_) => None,
        }
    }

    /// Resolves when the peer is gone (end of stream or an error on the socket; an h2 stream: the
    /// client reset it); pending forever once the peer sends bytes (a pipelined request: the
    /// connection stays, and the bytes stay in the socket).
    pub async fn gone(&mut self) {
        match self {
            Stream::H2(s) => return s.gone().await,
            // never asked of an upstream request
            Stream::H2Up(_) => std::future::pending::<()>().await,
            _ => {}
        }
        loop {
            let readable = match self.tcp() {
                Some(tcp) => tcp.readable(false).await,
                None => return,
            };
            if readable.is_err() {
                return;
            }
            match self.peek() {
                Peeked::Closed => return,
                Peeked::Data => std::future::pending::<()>().await,
                Peeked::Empty => {}
            }
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
            Stream::H2(s) => s.read_some(buf, deadline).await,
            Stream::H2Up(s) => s.read_some(buf, deadline).await,
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
            Stream::H2(s) => s.write_all(&buf[..n], deadline).await,
            Stream::H2Up(s) => s.write_all(&buf[..n], deadline).await,
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
            Stream::H2(_) | Stream::H2Up(_) => Peeked::Empty,
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
        match self.tcp() {
            Some(tcp) => {
                let _ = tcp.readable(false).await;
            }
            None => match self {
                Stream::H2(s) => s.readable().await,
                Stream::H2Up(s) => s.readable().await,
                _ => std::future::pending::<()>().await,
            },
        }
    }

    /// Closes our sending direction (TLS: `close_notify` first) while reads go on: the peer sees
    /// end of stream.
    pub async fn shutdown_write(&mut self) {
        if let Stream::Tls(t) = self {
            t.session
                .close_notify(Instant::now() + CLOSE_NOTIFY_WAIT)
                .await;
        }
        match self {
            Stream::H2(s) => s.end_stream(),
            Stream::H2Up(_) => {}
            _ => {
                if let Some(tcp) = self.tcp() {
                    timed::shutdown_write(tcp);
                }
            }
        }
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
            // the stream ends; the connection's other streams go on
            Stream::H2(s) => s.close(),
            Stream::H2Up(_) => {}
        }
    }

    /// Ends the connection politely: TLS sends `close_notify` (so a body delimited by the close is
    /// not mistaken for a truncation); plain TCP has nothing to say.
    pub async fn close(&mut self) {
        match self {
            Stream::Plain(_) => {}
            Stream::Tls(t) => {
                t.session
                    .close_notify(Instant::now() + CLOSE_NOTIFY_WAIT)
                    .await
            }
            Stream::H2(s) => s.close(),
            Stream::H2Up(_) => {}
        }
    }

    /// The request on this stream was never processed by the upstream (an h2 stream refused or
    /// left out by GOAWAY): safe to retry whatever its method.
    pub fn unprocessed(&self) -> bool {
        matches!(self, Stream::H2Up(s) if s.unprocessed())
    }
}

/// Longest a `close_notify` may take to write before the socket is closed anyway.
const CLOSE_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
