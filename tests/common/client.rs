//! A small blocking HTTP/1.1 client for driving the gateway: send raw bytes, read one response
//! with correct framing (Content-Length, chunked, close-delimited, HEAD/1xx/204/304 without
//! body), keep-alive reuse and pipelining (leftover bytes stay buffered), and detection of the
//! server closing the connection.

use super::wire::{header_values, parse_head, Wire};
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default read/write timeout: generous, only there so a broken gateway fails a test instead of
/// hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One response as the client saw it.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Decoded body (empty when a sink consumed it).
    pub body: Vec<u8>,
    pub body_len: u64,
    pub chunked: bool,
    /// The body ended with the connection (no Content-Length, not chunked).
    pub close_delimited: bool,
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Statuses of interim (1xx) responses that preceded this one.
    pub interim: Vec<u16>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        header_values(&self.headers, name).into_iter().next()
    }
    pub fn header_all(&self, name: &str) -> Vec<String> {
        header_values(&self.headers, name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body_str()))
    }
}

/// What `Client::closed_within` observed.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// EOF or connection reset.
    Closed,
    /// The connection is still open at the deadline.
    StillOpen,
    /// The server sent bytes instead of closing.
    Data(Vec<u8>),
}

/// Where a streamed body goes instead of `Response::body`.
pub type BodySink<'a> = &'a mut dyn FnMut(&[u8]);

pub struct Client {
    pub stream: TcpStream,
    wire: Wire<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        Ok(Client {
            stream,
            wire: Wire::new(reader),
        })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {} bytes: {e}", bytes.len()));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `raw` and reads the final response (for the method found at the start of `raw`).
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        let method = raw.split(|&b| b == b' ').next().unwrap_or(b"GET");
        self.read_response_for(&String::from_utf8_lossy(method))
    }

    /// GET `path` with `Host: host` on this connection.
    pub fn get(&mut self, path: &str, host: &str) -> Response {
        self.request(&req("GET", path, host, &[], b""))
    }

    /// Reads the next final response to a GET-like request (interim 1xx are collected).
    pub fn read_response(&mut self) -> Response {
        self.read_response_for("GET")
    }

    pub fn read_response_for(&mut self, method: &str) -> Response {
        self.try_read_response(method, None)
            .unwrap_or_else(|e| panic!("read response: {e}"))
    }

    /// Reads the next response head, interim responses included, without reading any body.
    pub fn read_head_raw(&mut self) -> io::Result<Response> {
        let head = self
            .wire
            .read_head(1 << 20)
            .map_err(timeout_msg)?
            .ok_or_else(|| {
                io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                )
            })?;
        let h = parse_head(&head);
        let mut parts = h.start_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidData,
                format!("bad status line {:?}", h.start_line),
            )
        })?;
        Ok(Response {
            version,
            status,
            reason: parts.next().unwrap_or("").to_string(),
            headers: h.headers,
            ..Response::default()
        })
    }

    /// Reads a final response; the body goes to `sink` when given (not stored), else to `body`.
    pub fn try_read_response(
        &mut self,
        method: &str,
        mut sink: Option<BodySink>,
    ) -> io::Result<Response> {
        let mut interim = Vec::new();
        let mut resp = loop {
            let r = self.read_head_raw()?;
            if (100..200).contains(&r.status) && r.status != 101 {
                interim.push(r.status);
                continue;
            }
            break r;
        };
        resp.interim = interim;
        let mut body = Vec::new();
        let mut len = 0u64;
        let mut store = |d: &[u8]| {
            len += d.len() as u64;
            match sink.as_mut() {
                Some(s) => s(d),
                None => body.extend_from_slice(d),
            }
        };
        let bodyless =
            method.eq_ignore_ascii_case("HEAD") || resp.status == 204 || resp.status == 304;
        let te = resp.header_all("transfer-encoding");
        if bodyless {
        } else if !te.is_empty() {
            if !te.last().unwrap().trim().eq_ignore_ascii_case("chunked") {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("response TE {te:?}"),
                ));
            }
            resp.chunked = true;
            resp.trailers = self.wire.read_chunked(&mut store, &mut |_| {})?;
        } else if let Some(cl) = resp.header("content-length") {
            let n: u64 = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("response Content-Length {cl:?}"),
                )
            })?;
            self.wire.read_exact_to(n, &mut store)?;
        } else {
            resp.close_delimited = true;
            self.wire.read_to_eof(&mut store)?;
        }
        resp.body = body;
        resp.body_len = len;
        Ok(resp)
    }

    /// Waits up to `within` for the server to close the connection. Bytes already buffered or
    /// arriving count as `Data`.
    pub fn closed_within(&mut self, within: Duration) -> CloseOutcome {
        if !self.wire.buffered().is_empty() {
            return CloseOutcome::Data(self.wire.buffered().to_vec());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return CloseOutcome::StillOpen;
            }
            self.wire
                .inner
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.wire.fill() {
                Ok(0) => return CloseOutcome::Closed,
                Ok(_) => return CloseOutcome::Data(self.wire.buffered().to_vec()),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return CloseOutcome::Closed,
            }
        }
    }
}

/// Names a read timeout as such (the OS says "Resource temporarily unavailable").
fn timeout_msg(e: io::Error) -> io::Error {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => io::Error::new(
            ErrorKind::TimedOut,
            "timed out waiting for the response head",
        ),
        _ => e,
    }
}

/// Builds a request: `Host` (omitted when `host` is empty), the extra headers, and
/// `Content-Length` when there is a body or the method usually carries one.
pub fn req(method: &str, path: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    if !host.is_empty() {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let has_framing = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !has_framing && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, host: &str) -> Response {
    Client::connect(addr).get(path, host)
}

/// Encodes `pieces` as a chunked body (with the final zero chunk).
pub fn chunked(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces.iter().filter(|p| !p.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Asserts the gateway's JSON error shape: status, `content-type: application/json`, and
/// `{"error": non-empty string, "status": N, "request_id": same as the X-Request-Id header}`.
#[track_caller]
pub fn assert_error_json(resp: &Response, status: u16) {
    assert_eq!(resp.status, status, "status; body {:?}", resp.body_str());
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.to_ascii_lowercase().starts_with("application/json"),
        "content-type {ct:?} for {status}"
    );
    let v = resp.json();
    let err = v.get("error").and_then(|e| e.as_str()).unwrap_or("");
    assert!(
        !err.is_empty(),
        "error JSON lacks a non-empty \"error\": {v}"
    );
    assert_eq!(
        v.get("status").and_then(|s| s.as_u64()),
        Some(u64::from(status)),
        "error JSON status: {v}"
    );
    let rid = v.get("request_id").and_then(|s| s.as_str()).unwrap_or("");
    assert!(!rid.is_empty(), "error JSON lacks request_id: {v}");
    assert_eq!(
        resp.header("x-request-id").as_deref(),
        Some(rid),
        "request_id vs X-Request-Id header"
    );
}
