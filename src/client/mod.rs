//! One-shot async HTTP/1.1 client for the gateway's own outbound calls: fetching JWKS documents and
//! calling OAuth2 token introspection endpoints (RFC 7662), over `http://` or `https://`. Not a
//! proxy path: one request, one connection, a whole response buffered in memory.
//!
//! Owns: [`Url`] parsing (`url`), form and Basic-auth encoders (`form`), trust for https (`tls`:
//! the system roots or a caller's rustls config, server names, handshake error text), and
//! [`send`], which turns a [`Request`] into a [`Response`] or a [`ClientError`] whose `Display` is
//! a one-line log message.
//!
//! Flow of [`send`]: validate the method and headers and serialise the request (`METHOD target
//! HTTP/1.1`, Host, the caller's headers, Content-Length when there is a body or the method is
//! POST/PUT/PATCH, `Connection: close`, body) -> for https, pick the rustls config
//! (`ClientOpts::tls`, else the system roots) -> resolve the host (`dns`: IP literals at once,
//! names from the table the `coregate-dns` helper thread publishes, waiting for it without
//! blocking the caller's thread) -> connect, and for https run the TLS handshake (SNI and the
//! certificate name are the URL's host; ALPN http/1.1), resolution, connect and handshake together
//! bounded by `min(connect_timeout, timeout)` -> write the request and read the response over a
//! [`net::Stream`](crate::net::Stream), every read and write bounded by the deadline `timeout`
//! after the call -> parse the head with the proxy's response parser
//! (`http::head::parse_response`), skipping 1xx interim responses -> read the body by its framing:
//! Content-Length, chunked (the proxy's strict `ChunkedDecoder`; extensions and trailers dropped)
//! or until the peer closes (over TLS, only a `close_notify` ends such a body; a bare TCP close is
//! an error, since it could be a truncation) -> drop the connection (no `close_notify` sent).
//!
//! IO is `net`'s timed rent-style IO (buffers move into each operation and come back), so it runs
//! on both `IoUringDriver` and `LegacyDriver` runtimes; the runtime must have `enable_timer()`.
//!
//! Limits: response heads up to [`MAX_HEAD_BYTES`] and [`crate::http::head::MAX_HEADERS_HARD`]
//! fields; bodies up to `ClientOpts::max_body` (checked against a declared Content-Length before
//! reading, and as chunked or close-delimited data arrives), so memory stays bounded whatever the
//! peer sends. Malformed input is an error, never a panic.

pub mod dns;
mod form;
pub mod tls;
mod url;

pub use form::{basic_auth, form_urlencode};
pub use url::Url;

use crate::http::chunked::{ChunkedDecoder, ChunkedError};
use crate::http::head::{is_token, parse_response, BodyKind, ResponseHead};
use crate::net::tls::{HandshakeFail, TlsStream};
use crate::net::{IoFail, Stream};
use monoio::net::TcpStream;
use monoio::time::Instant;
use rustls::pki_types::ServerName;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest response head accepted (status line and header fields).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bytes asked for per read.
const READ_CHUNK: usize = 16 * 1024;

/// One request. Host, Content-Length and `Connection: close` are added by [`send`]; a `Host` in
/// `headers` replaces the URL's authority, and Content-Length, Transfer-Encoding and Connection are
/// refused there since the client owns the framing.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// A GET of `url` with no extra headers.
    pub fn get(url: &'a Url) -> Request<'a> {
        Request {
            method: "GET",
            url,
            headers: &[],
            body: &[],
        }
    }
}

/// Limits and trust for one [`send`].
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// Bound on establishing the connection: resolving the host, the TCP connect and, for
    /// `https://`, the TLS handshake (never beyond `timeout`).
    pub connect_timeout: Duration,
    /// Bound on the whole exchange, from the call to the last body byte.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_body: usize,
    /// Whom `https://` servers are verified against: `None` is the system's trusted roots
    /// ([`tls::default_config`]); a config from [`tls::config`] trusts a private CA. Unused for
    /// `http://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientOpts {
    /// 2 s to connect, 5 s in all, 1 MiB of body, the system's roots.
    fn default() -> Self {
        ClientOpts {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_body: 1024 * 1024,
            tls: None,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields in the order received (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why [`send`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad URL: {0}")]
    BadUrl(String),
    /// Method or header the client refuses to send (not a token, CR/LF in a value, framing header).
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("cannot resolve host {0}")]
    Resolve(String),
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("HTTP request timed out")]
    Timeout,
    /// The TLS handshake failed: "certificate verification failed for HOST: ..." when the server's
    /// certificate was refused (untrusted issuer, wrong name, expired), or the peer's alert, a
    /// closed connection, an ALPN other than http/1.1, or no system roots to verify against.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("I/O error during HTTP exchange: {0}")]
    Io(io::Error),
    #[error("bad HTTP response: {0}")]
    BadResponse(String),
    #[error("HTTP response body larger than max_body")]
    TooLarge,
}

fn bad_response(reason: impl Into<String>) -> ClientError {
    ClientError::BadResponse(reason.into())
}

/// Sends `req` on a fresh connection and reads the whole response (see the module doc for the flow).
pub async fn send(req: &Request<'_>, opts: &ClientOpts) -> Result<Response, ClientError> {
    let start = Instant::now();
    let deadline = deadline_after(start, opts.timeout);
    let connect_deadline = deadline_after(start, opts.connect_timeout).min(deadline);
    let wire = serialize(req)?;
    let tls = match req.url.is_https() {
        true => Some(tls_setup(req.url, opts)?),
        false => None,
    };
    let addr = resolve(req.url, connect_deadline).await?;
    let tcp = match monoio::time::timeout_at(connect_deadline, TcpStream::connect_addr(addr)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ClientError::Connect(io::Error::new(
                e.kind(),
                format!("{addr}: {e}"),
            )))
        }
        Err(_) => return Err(ClientError::Timeout),
    };
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some((config, name)) => {
            handshake(tcp, config, name, req.url.host(), connect_deadline).await?
        }
    };
    let mut conn = Conn { stream, deadline };
    let is_head = req.method.eq_ignore_ascii_case("HEAD");
    exchange(&mut conn, wire, is_head, opts.max_body).await
}

/// The config and server name of an https request, before anything touches the network.
fn tls_setup(
    url: &Url,
    opts: &ClientOpts,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), ClientError> {
    let config = match &opts.tls {
        Some(c) => c.clone(),
        None => tls::default_config().map_err(ClientError::Tls)?,
    };
    let name = tls::server_name(url.host()).map_err(ClientError::BadUrl)?;
    Ok((config, name))
}

/// The TLS handshake on a connected socket; the server must agree to HTTP/1.1 (or to no ALPN).
async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    host: &str,
    deadline: Instant,
) -> Result<Stream, ClientError> {
    let session = match TlsStream::connect(tcp, config, name, deadline).await {
        Ok(s) => s,
        Err(HandshakeFail::Timeout) => return Err(ClientError::Timeout),
        Err(e) => return Err(ClientError::Tls(tls::handshake_error(host, &e))),
    };
    let stream = Stream::tls(session);
    if let Some(alpn) = stream.tls_info().and_then(|i| i.alpn.as_deref()) {
        if alpn != tls::ALPN_HTTP11 {
            return Err(ClientError::Tls(format!(
                "{host} chose ALPN protocol {:?}; this client speaks http/1.1 only",
                String::from_utf8_lossy(alpn)
            )));
        }
    }
    Ok(stream)
}

/// Parses `url` (a bad one is [`ClientError::BadUrl`]) and GETs it with `headers`.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    opts: &ClientOpts,
) -> Result<Response, ClientError> {
    let url = Url::parse(url).map_err(ClientError::BadUrl)?;
    let req = Request {
        headers,
        ..Request::get(&url)
    };
    send(&req, opts).await
}

/// `start + d`, or a deadline far enough away to never fire when that overflows.
fn deadline_after(start: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86400);
    start
        .checked_add(d.min(FAR))
        .or_else(|| start.checked_add(Duration::from_secs(86400)))
        .unwrap_or(start)
}

/// First address of the URL's host, from the DNS helper (IP literals skip it).
async fn resolve(url: &Url, deadline: Instant) -> Result<SocketAddr, ClientError> {
    let r = dns::resolver()
        .ok_or_else(|| ClientError::Resolve(format!("{}: no DNS helper thread", url.host())))?;
    match r.lookup(url.host(), url.port(), deadline).await {
        Ok(a) => Ok(a),
        Err(dns::DnsError::Failed(m)) => Err(ClientError::Resolve(m)),
        Err(dns::DnsError::Timeout) => Err(ClientError::Timeout),
    }
}

/// Field value bytes we are willing to send: HTAB, SP, VCHAR, obs-text (no CR, LF, NUL, other CTLs).
fn valid_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// The request head and body as they go on the wire.
fn serialize(req: &Request<'_>) -> Result<Vec<u8>, ClientError> {
    let bad = |m: String| Err(ClientError::BadRequest(m));
    if req.method.is_empty() || !req.method.bytes().all(is_token) {
        return bad(format!("invalid method {:?}", req.method));
    }
    let mut host = req.url.authority();
    for &(name, value) in req.headers {
        if name.is_empty() || !name.bytes().all(is_token) {
            return bad(format!("invalid header name {name:?}"));
        }
        if !valid_value(value) {
            return bad(format!(
                "header {name} has a control character in its value"
            ));
        }
        for own in ["content-length", "transfer-encoding", "connection"] {
            if name.eq_ignore_ascii_case(own) {
                return bad(format!("header {name} is set by the client itself"));
            }
        }
        if name.eq_ignore_ascii_case("host") {
            host = value;
        }
    }
    let mut out = Vec::with_capacity(256 + req.body.len());
    let mut line = |parts: &[&[u8]]| {
        for p in parts {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
    };
    line(&[
        req.method.as_bytes(),
        b" ",
        req.url.path_and_query().as_bytes(),
        b" HTTP/1.1",
    ]);
    line(&[b"Host: ", host.as_bytes()]);
    for &(name, value) in req.headers {
        if !name.eq_ignore_ascii_case("host") {
            line(&[name.as_bytes(), b": ", value.as_bytes()]);
        }
    }
    let wants_length = matches!(req.method, "POST" | "PUT" | "PATCH");
    if !req.body.is_empty() || wants_length {
        line(&[b"Content-Length: ", req.body.len().to_string().as_bytes()]);
    }
    line(&[b"Connection: close"]);
    line(&[]);
    out.extend_from_slice(req.body);
    Ok(out)
}

/// The connection of one exchange and the deadline every read and write on it shares.
struct Conn {
    stream: Stream,
    deadline: Instant,
}

impl Conn {
    /// Reads once into `buf`, at most `max` (> 0) bytes when `buf` has no spare room (a full
    /// buffer grows by exactly that much, capped at [`READ_CHUNK`]); with spare room, up to that
    /// room. `Ok(0)` is end of stream.
    async fn read_more(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, ClientError> {
        if buf.len() == buf.capacity() {
            buf.reserve_exact(max.clamp(1, READ_CHUNK));
        }
        match self.stream.read_some(buf, self.deadline).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn write_all(&mut self, buf: &mut Vec<u8>) -> Result<(), ClientError> {
        match self.stream.write_all(buf, self.deadline).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&self, e: IoFail) -> ClientError {
        let why = match (e, &self.stream) {
            (IoFail::Timeout, _) => return ClientError::Timeout,
            (IoFail::Error, Stream::Plain(_) | Stream::H2(_) | Stream::H2Up(_)) => {
                "connection reset or socket error"
            }
            // rustls reports a TCP close without close_notify as an error: a close-delimited
            // body cut short by an attacker must not read as complete
            (IoFail::Error, Stream::Tls(_)) => {
                "connection reset, TLS error, or closed without TLS close_notify"
            }
        };
        ClientError::Io(io::Error::other(why))
    }
}

/// Writes the request, then reads and frames the response.
async fn exchange(
    conn: &mut Conn,
    mut wire: Vec<u8>,
    is_head: bool,
    max_body: usize,
) -> Result<Response, ClientError> {
    conn.write_all(&mut wire).await?;
    drop(wire);

    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut head = ResponseHead::default();
    loop {
        match parse_response(&buf, MAX_HEAD_BYTES, is_head, &mut head) {
            Ok(Some(())) if head.status == 101 => {
                return Err(bad_response("unexpected 101 Switching Protocols"))
            }
            Ok(Some(())) if head.status < 200 => {
                buf.drain(..head.head_len.min(buf.len()));
            }
            Ok(Some(())) => break,
            Ok(None) => {
                if conn.read_more(&mut buf, READ_CHUNK).await? == 0 {
                    return Err(bad_response(if buf.is_empty() {
                        "connection closed before any response"
                    } else {
                        "connection closed inside the response head"
                    }));
                }
            }
            Err(e) => return Err(bad_response(e.reason)),
        }
    }

    let headers = head
        .headers
        .iter()
        .map(|h| {
            (
                String::from_utf8_lossy(h.name.get(&buf)).into_owned(),
                String::from_utf8_lossy(h.value.get(&buf)).into_owned(),
            )
        })
        .collect();
    let rest = buf.get(head.head_len..).unwrap_or_default();
    let body = match head.body {
        BodyKind::None => Vec::new(),
        BodyKind::Length(n) => {
            let n = usize::try_from(n).map_err(|_| ClientError::TooLarge)?;
            if n > max_body {
                return Err(ClientError::TooLarge);
            }
            read_length(conn, rest, n).await?
        }
        BodyKind::Chunked => read_chunked(conn, rest, max_body).await?,
        BodyKind::UntilClose => read_until_close(conn, rest, max_body).await?,
    };
    Ok(Response {
        status: head.status,
        headers,
        body,
    })
}

/// Exactly `n` body bytes, starting with those already buffered (extra bytes are ignored).
async fn read_length(conn: &mut Conn, rest: &[u8], n: usize) -> Result<Vec<u8>, ClientError> {
    // capacity never above `n`, and `read_more` grows it by at most what is left: no read
    // lands past the body
    let mut body = Vec::with_capacity(n.min(rest.len().max(READ_CHUNK)));
    body.extend_from_slice(&rest[..rest.len().min(n)]);
    while body.len() < n {
        let left = n - body.len();
        if conn.read_more(&mut body, left).await? == 0 {
            return Err(bad_response(format!(
                "connection closed after {} of {n} body bytes",
                body.len()
            )));
        }
    }
    body.truncate(n);
    Ok(body)
}

/// A chunked body, decoded; the connection may stay open after the last chunk.
async fn read_chunked(
    conn: &mut Conn,
    rest: &[u8],
    max_body: usize,
) -> Result<Vec<u8>, ClientError> {
    let mut decoder = ChunkedDecoder::new(max_body as u64);
    let mut body = Vec::new();
    let map = |e: ChunkedError| match e {
        ChunkedError::BodyTooLarge => ClientError::TooLarge,
        e => bad_response(e.to_string()),
    };
    decoder
        .decode(rest, &mut |d| body.extend_from_slice(d))
        .map_err(map)?;
    let mut input = Vec::with_capacity(READ_CHUNK);
    while !decoder.is_done() {
        input.clear();
        if conn.read_more(&mut input, READ_CHUNK).await? == 0 {
            return Err(bad_response("connection closed inside the chunked body"));
        }
        decoder
            .decode(&input, &mut |d| body.extend_from_slice(d))
            .map_err(map)?;
    }
    Ok(body)
}

/// Everything until the peer closes, at most `max_body` bytes.
async fn read_until_close(
    conn: &mut Conn,
    rest: &[u8],
    max_body: usize,
) -> Result<Vec<u8>, ClientError> {
    if rest.len() > max_body {
        return Err(ClientError::TooLarge);
    }
    let mut body = rest.to_vec();
    loop {
        // one byte past the limit tells "exactly max_body" from "too large"
        let room = (max_body - body.len()).saturating_add(1);
        match conn.read_more(&mut body, room).await? {
            0 => return Ok(body),
            _ if body.len() > max_body => return Err(ClientError::TooLarge),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn serializes_get_and_post() {
        let u = url("http://idp:8080/jwks?x=1");
        let wire = serialize(&Request::get(&u)).unwrap();
        assert_eq!(
            wire,
            b"GET /jwks?x=1 HTTP/1.1\r\nHost: idp:8080\r\nConnection: close\r\n\r\n"
        );
        let req = Request {
            method: "POST",
            url: &u,
            headers: &[("Accept", "application/json"), ("host", "other")],
            body: b"",
        };
        assert_eq!(
            serialize(&req).unwrap(),
            b"POST /jwks?x=1 HTTP/1.1\r\nHost: other\r\nAccept: application/json\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn refuses_injection_and_framing_headers() {
        let u = url("http://h/");
        let mk = |method, headers| Request {
            method,
            url: &u,
            headers,
            body: b"",
        };
        for (m, h) in [
            ("GET /x", &[][..]),
            ("", &[][..]),
            ("GET", &[("X-A", "1\r\nX-B: 2")][..]),
            ("GET", &[("X A", "1")][..]),
            ("GET", &[("", "1")][..]),
            ("GET", &[("Content-Length", "5")][..]),
            ("GET", &[("transfer-encoding", "chunked")][..]),
            ("GET", &[("Connection", "keep-alive")][..]),
        ] {
            let e = serialize(&mk(m, h)).expect_err(m);
            assert!(matches!(e, ClientError::BadRequest(_)), "{e}");
        }
    }

    #[test]
    fn far_deadlines_do_not_overflow() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now);
        assert_eq!(deadline_after(now, Duration::ZERO), now);
    }
}
