//! The HTTP/2 connection driver: handshake with our limits, accept streams, run each one as its
//! own task through the pipeline (`proxy::serve_stream`), GOAWAY on drain, on reload and when idle.
//!
//! Data flow: the connection driver in `proxy/mod.rs` reads the first bytes of a plain connection;
//! when they are the h2 preface it hands the socket and those bytes here. The socket becomes a
//! poll-based stream (monoio `poll-io`) with the bytes already read replayed in front ([`Rewind`]),
//! and `h2::server` runs the protocol. Each accepted request is written as an HTTP/1.1 head
//! ([`request_head`]: the canonical in-memory form of a request in this gateway, parsed by the same
//! strict parser) and served on an [`H2Stream`].
//!
//! Limits (RFC 9113 §6.5.2 SETTINGS, plus the h2 crate's abuse guards), from `[server] http2`
//! (`config/http2.rs`, defaults there): concurrent streams (more are refused with RST_STREAM),
//! stream and connection receive windows (the connection window bounds the unread request bodies
//! one connection holds), streams reset by the client before they were served (Rapid Reset,
//! CVE-2023-44487) and streams reset by us for protocol errors (both answered with GOAWAY
//! ENHANCE_YOUR_CALM past the limit), and a header list of at most `server.max_header_bytes` (the
//! h2 crate closes connections that send 4x that, and bounds CONTINUATION frames).

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::stream::{BodyFraming, H2Stream};
use super::tls_io::PollTls;
use crate::http::rewrite::push_header;
use crate::net::Stream;
use crate::runtime::worker::Current;

/// A stream that replays bytes already read before reading the socket.
pub struct Rewind<T> {
    pre: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.pre.len() {
            let n = (me.pre.len() - me.pos).min(buf.remaining());
            buf.put_slice(&me.pre[me.pos..me.pos + n]);
            me.pos += n;
            if me.pos == me.pre.len() {
                me.pre = Vec::new();
                me.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves an h2c connection whose first bytes (`pre`, starting with the preface) were already
/// read. Returns when the connection is closed.
pub async fn serve(cur: Rc<Current>, tcp: TcpStream, pre: Vec<u8>, peer: crate::proxy::Origin) {
    let Ok(io) = tcp.into_poll_io() else {
        return;
    };
    let io = Rewind {
        pre,
        pos: 0,
        inner: io,
    };
    run(cur, io, peer, None).await
}

/// Serves a TLS connection whose handshake chose `h2` by ALPN.
pub async fn serve_tls(
    cur: Rc<Current>,
    session: crate::net::tls::TlsStream,
    peer: crate::proxy::Origin,
) {
    let info = Rc::new(crate::net::TlsInfo::of(session.session()));
    let (tcp, conn, pending) = session.into_parts();
    let Ok(io) = tcp.into_poll_io() else {
        return;
    };
    run(cur, PollTls::new(io, conn, pending), peer, Some(info)).await
}

async fn run<T: AsyncRead + AsyncWrite + Unpin>(
    cur: Rc<Current>,
    io: T,
    peer_ip: crate::proxy::Origin,
    tls: Option<Rc<crate::net::TlsInfo>>,
) {
    let (header_timeout, idle, max_header, limits, drain, retired) = {
        let g = cur.get();
        let s = &g.cfg.server;
        (
            s.header_timeout,
            s.keepalive_timeout,
            s.max_header_bytes,
            s.http2.clone(),
            g.drain.clone(),
            g.retired.clone(),
        )
    };
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(max_header as u32)
        .initial_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window)
        .max_pending_accept_reset_streams(limits.max_client_resets)
        .max_local_error_reset_streams(Some(limits.max_error_resets))
        // RFC 8441: WebSocket over HTTP/2 (extended CONNECT with :protocol = websocket)
        .enable_connect_protocol()
        .handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout_at(Instant::now() + header_timeout, handshake).await
    {
        Ok(Ok(c)) => c,
        _ => return,
    };
    let open = Rc::new(Cell::new(0usize));
    let mut shutting = false;
    loop {
        if !shutting && drain.is_set() {
            conn.graceful_shutdown();
            shutting = true;
        }
        // no stream for keepalive_timeout (streams still open are looked at again every 250 ms:
        // the last one may end while no other event wakes this loop)
        let idle_wait = async {
            if shutting {
                std::future::pending::<()>().await
            }
            while open.get() > 0 {
                monoio::time::sleep(idle.min(IDLE_CHECK)).await;
            }
            monoio::time::sleep(idle).await
        };
        let next = monoio::select! {
            r = conn.accept() => Some(r),
            _ = drain.wait(), if !shutting => None,
            // a reload: the client reconnects onto the new generation's settings (as nginx's
            // old workers do)
            _ = retired.wait(), if !shutting => None,
            _ = idle_wait => None,
        };
        match next {
            None => {
                // drain, reload, or no stream for keepalive_timeout: GOAWAY, finish the open streams
                conn.graceful_shutdown();
                shutting = true;
            }
            Some(None) | Some(Some(Err(_))) => break,
            Some(Some(Ok((req, respond)))) => {
                open.set(open.get() + 1);
                let guard = OpenGuard(open.clone());
                let cur = cur.clone();
                let ip = peer_ip.clone();
                let tls = tls.clone();
                // the stream's future (the whole pipeline, several KB) lives in a box of its own:
                // spawning then moves a few words instead of copying it twice into the task
                // (measured: the spawn copies were 6% of the gateway's CPU at one stream per
                // connection)
                monoio::spawn(async move {
                    Box::pin(stream_task(cur, req, respond, ip, tls)).await;
                    drop(guard);
                });
            }
        }
    }
}

/// How often a connection with open streams checks whether it has become idle.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

struct OpenGuard(Rc<Cell<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn stream_task(
    cur: Rc<Current>,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    ip: crate::proxy::Origin,
    tls: Option<Rc<crate::net::TlsInfo>>,
) {
    let (parts, recv) = req.into_parts();
    let websocket = parts.method == http::Method::CONNECT
        && parts
            .extensions
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    let framing = if websocket {
        BodyFraming::Tunnel
    } else if recv.is_end_stream() {
        BodyFraming::None
    } else if parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        BodyFraming::Raw
    } else {
        BodyFraming::Chunked
    };
    let mut head = Vec::with_capacity(1024);
    if request_head(&parts, framing, &mut head).is_err() {
        let resp = http::Response::builder()
            .status(400)
            .body(())
            .unwrap_or_default();
        let _ = respond.send_response(resp, true);
        return;
    }
    let head_request = parts.method == http::Method::HEAD;
    let stream = H2Stream::new(recv, respond, framing, tls, head_request);
    let stream = Stream::H2(Box::new(stream));
    crate::proxy::serve_stream(cur, stream, head, ip).await;
}

/// Why an h2 request cannot be written as a request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Writes the HTTP/1.1 head that stands for an h2 request: the method and `:path`, `Host` from
/// `:authority` (a different `Host` field as well is malformed, RFC 9113 §8.3.1), the fields (the h2
/// codec already refused connection-specific ones, RFC 9113 §8.2.2), `Cookie` fields joined into
/// one (§8.2.3), and the body framing `framing` announces. A WebSocket extended CONNECT
/// (`BodyFraming::Tunnel`, RFC 8441 §5) becomes the HTTP/1.1 handshake (RFC 6455 §4.1): GET with
/// `Connection: upgrade`, `Upgrade: websocket` and a fresh `Sec-WebSocket-Key`; the route must
/// allow WebSocket like any other handshake.
pub fn request_head(
    parts: &http::request::Parts,
    framing: BodyFraming,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    use http::header::{CONTENT_LENGTH, COOKIE, HOST};
    let tunnel = framing == BodyFraming::Tunnel;
    let method = if tunnel { "GET" } else { parts.method.as_str() };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let target = match parts.uri.path_and_query() {
        Some(pq) if parts.method != http::Method::CONNECT || tunnel => pq.as_str(),
        _ => return Err(Malformed),
    };
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = parts.headers.get(HOST).map(|h| h.as_bytes());
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let host = match (authority, host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => return Err(Malformed),
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(Malformed),
    };
    push_header(out, b"host", host);
    let mut cookies = parts.headers.get_all(COOKIE).iter().peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b"cookie: ");
        for (i, c) in cookies.enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        // `expect`: an h2 client sends its body without waiting for a 100 (the gateway reads it
        // when the upstream wants it; flow control holds the rest)
        if name == HOST
            || name == COOKIE
            || name == http::header::EXPECT
            || (name == CONTENT_LENGTH && framing != BodyFraming::Raw)
            || (tunnel && name == http::header::SEC_WEBSOCKET_KEY)
        {
            continue;
        }
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::Tunnel => {
            crate::http::upgrade::write_request(out, b"websocket");
            push_header(out, b"sec-websocket-key", &websocket_key());
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
fn websocket_key() -> Vec<u8> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 16];
    // the key only has to differ between handshakes; a failed RNG still leaves a valid key
    let _ = ring::rand::SystemRandom::new().fill(&mut nonce);
    base64::engine::general_purpose::STANDARD
        .encode(nonce)
        .into_bytes()
}
