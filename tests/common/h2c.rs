//! A real HTTP/2 client for tests: the `h2` crate (hyperium) on a monoio runtime of its own
//! (epoll driver, poll-io sockets), prior knowledge (h2c).

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::io::IntoPollIo;

/// A response as an h2 client saw it.
#[derive(Debug)]
pub struct H2Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// The trailer block, when the response ended with one.
    pub trailers: Option<http::HeaderMap>,
}

impl H2Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens one h2c connection to `addr` and runs `f` with its request handle on a fresh runtime.
pub fn with_h2<F, Fut, T>(addr: SocketAddr, f: F) -> T
where
    F: FnOnce(SendRequest<Bytes>) -> Fut,
    Fut: Future<Output = T>,
{
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("test runtime");
    rt.block_on(async move {
        let tcp = monoio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let io = tcp.into_poll_io().expect("poll io");
        let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
        monoio::spawn(async move {
            let _ = conn.await;
        });
        f(send).await
    })
}

/// Sends one request (`body` as DATA frames of at most `piece` bytes, no content-length unless
/// the request has one) and reads the whole response.
pub async fn h2_request(
    send: &mut SendRequest<Bytes>,
    req: http::Request<()>,
    body: &[u8],
    piece: usize,
) -> Result<H2Response, h2::Error> {
    let ready = send.clone().ready().await?;
    *send = ready;
    let end = body.is_empty();
    let (resp, mut stream) = send.send_request(req, end)?;
    if !end {
        let pieces: Vec<&[u8]> = body.chunks(piece.max(1)).collect();
        for (i, p) in pieces.iter().enumerate() {
            stream.reserve_capacity(p.len());
            let mut left = Bytes::copy_from_slice(p);
            while !left.is_empty() {
                let cap = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(c) => c?,
                    None => break,
                };
                let take = left.split_to(cap.min(left.len()));
                let last = i + 1 == pieces.len() && left.is_empty();
                stream.send_data(take, last)?;
            }
        }
    }
    let resp = resp.await?;
    let (parts, mut recv) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d?;
        let _ = recv.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
    }
    let trailers = recv.trailers().await?;
    Ok(H2Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: out,
        trailers,
    })
}

/// `GET http://a.test{path}`.
pub fn h2_get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://a.test{path}"))
        .body(())
        .unwrap()
}

/// A hand-driven HTTP/2 client that writes raw frames, for abuse tests: the `h2` crate client
/// obeys the protocol (and the server's SETTINGS), an attacker does not.
pub struct RawH2 {
    pub stream: std::net::TcpStream,
    buf: Vec<u8>,
    /// The server closed the connection (end of stream or reset seen).
    pub closed: bool,
}

/// One frame as read: (type, flags, stream id, payload).
pub type Frame = (u8, u8, u32, Vec<u8>);

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub fn connect(addr: SocketAddr) -> RawH2 {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut c = RawH2 {
            stream,
            buf: Vec::new(),
            closed: false,
        };
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        c.send(&hello);
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).expect("write frames");
    }

    /// Like `send`, false when the server has closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        use std::io::Write;
        self.stream.write_all(bytes).is_ok()
    }

    /// The next frame within `within`; None at end of stream, on a reset or at the deadline.
    pub fn next_frame(&mut self, within: std::time::Duration) -> Option<Frame> {
        use std::io::Read;
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let id = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Some((f[3], f[4], id, f[9..].to_vec()));
                }
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))
                .ok()?;
            let mut b = [0u8; 16384];
            match self.stream.read(&mut b) {
                Ok(0) => {
                    self.closed = true;
                    return None;
                }
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    self.closed = true;
                    return None;
                }
                Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Reads frames until one matches `want` (returned) or the connection ends or `within` passes.
    pub fn until(
        &mut self,
        within: std::time::Duration,
        want: impl Fn(&Frame) -> bool,
    ) -> Option<Frame> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let f = self.next_frame(left)?;
            if want(&f) {
                return Some(f);
            }
        }
    }
}

impl RawH2 {
    /// Reads (answering PINGs, as h2's graceful shutdown waits for one) until the server closes
    /// the connection: the frames seen, or None if it was still open after `within`.
    pub fn until_closed(&mut self, within: std::time::Duration) -> Option<Vec<Frame>> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        while !self.closed {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            if let Some(f) = self.next_frame(left) {
                if f.0 == PING && f.1 & 1 == 0 {
                    self.try_send(&frame(PING, 1, 0, &f.3));
                }
                seen.push(f);
            }
        }
        Some(seen)
    }
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), `first` holding the pattern bits.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// One header field as an HPACK literal without indexing, new name, no Huffman (RFC 7541 §6.2.2).
pub fn hpack_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// The header block of `GET http://a.test{path}`.
pub fn get_block(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    hpack_field(&mut b, ":method", "GET");
    hpack_field(&mut b, ":scheme", "http");
    hpack_field(&mut b, ":path", path);
    hpack_field(&mut b, ":authority", "a.test");
    b
}

/// A GOAWAY frame's error code.
pub fn goaway_code(f: &Frame) -> u32 {
    u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]])
}

/// An RST_STREAM frame's error code.
pub fn rst_code(f: &Frame) -> u32 {
    u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]])
}
