//! Mock upstreams: thread-per-connection HTTP/1.1 servers on 127.0.0.1:0 with keep-alive and
//! correct framing. Every mock records each request it receives (the head as soon as it
//! arrives, the body once complete), counts accepted connections, and tags each response with
//! `x-upstream: NAME` so tests see which endpoint answered. Behaviours: fixed, recording, slow,
//! echo, chunked pattern download, discard-and-checksum, gated (held until released), slam
//! (reads the head, then drops the connection).

use super::wire::{
    has_token, header_values, parse_head, pattern_slice, Fnv64, Wire, PATTERN_PERIOD,
};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request as the upstream saw it.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub id: usize,
    /// Connection number in accept order (0-based).
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    pub raw_head: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub malformed_lines: Vec<String>,
    /// Decoded body (only for mocks that store bodies).
    pub body: Vec<u8>,
    /// Body bytes exactly as on the wire, chunk framing included (stored bodies only).
    pub raw_body: Vec<u8>,
    pub body_len: u64,
    pub body_fnv: u64,
    pub chunked: bool,
    /// Body read completely.
    pub complete: bool,
    /// Framing the mock could not accept (several CL, CL+TE, unknown TE, bad chunk...).
    pub framing_error: Option<String>,
}

impl Recorded {
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
}

/// Body of a mock response.
#[derive(Clone, Debug)]
pub enum MockBody {
    /// Content-Length framed.
    Bytes(Vec<u8>),
    /// Chunked, one chunk per element.
    Chunks(Vec<Vec<u8>>),
    /// Chunked stream of `n` pattern bytes (see `wire::pattern_slice`).
    Pattern(u64),
}

/// What a mock answers.
#[derive(Clone, Debug)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: MockBody,
    /// Wait this long before writing the head (a slow upstream).
    pub delay: Duration,
    /// Close the connection after this response.
    pub close: bool,
}

impl MockResponse {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        MockResponse {
            status,
            headers: Vec::new(),
            body: MockBody::Bytes(body.into()),
            delay: Duration::ZERO,
            close: false,
        }
    }
    pub fn chunks(status: u16, chunks: Vec<Vec<u8>>) -> Self {
        MockResponse {
            body: MockBody::Chunks(chunks),
            ..Self::new(status, "")
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }
}

pub type Handler = Arc<dyn Fn(&Recorded) -> MockResponse + Send + Sync>;

/// A gate that holds responses until released.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    pub fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
}

struct Shared {
    name: String,
    accepted: AtomicUsize,
    open: AtomicUsize,
    next_id: AtomicUsize,
    records: Mutex<Vec<Recorded>>,
    handler: Handler,
    store_body: bool,
    slam: bool,
    stop: AtomicBool,
}

/// A running mock upstream. Dropping it stops accepting new connections.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    shared: Arc<Shared>,
}

impl Upstream {
    /// A mock answering every request with `handler`.
    pub fn start(name: &str, store_body: bool, handler: Handler) -> Upstream {
        Self::start_inner(name, store_body, false, handler)
    }

    fn start_inner(name: &str, store_body: bool, slam: bool, handler: Handler) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock upstream");
        Self::serve(listener, name, store_body, slam, handler)
    }

    /// A recording mock on `bind` (another loopback address, or a port another mock has on one:
    /// names that resolve to several addresses share the port).
    pub fn recording_on(name: &str, bind: SocketAddr) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind(bind)?;
        let n = name.to_string();
        let handler: Handler = Arc::new(move |_r: &Recorded| MockResponse::new(200, n.clone()));
        Ok(Self::serve(listener, name, true, false, handler))
    }

    fn serve(
        listener: TcpListener,
        name: &str,
        store_body: bool,
        slam: bool,
        handler: Handler,
    ) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            next_id: AtomicUsize::new(0),
            records: Mutex::new(Vec::new()),
            handler,
            store_body,
            slam,
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("mock-{name}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let id = sh.accepted.fetch_add(1, Ordering::SeqCst);
                    sh.open.fetch_add(1, Ordering::SeqCst);
                    let sh2 = sh.clone();
                    std::thread::spawn(move || {
                        serve_conn(&sh2, stream, id);
                        sh2.open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
            .unwrap();
        Upstream {
            addr,
            name: name.to_string(),
            shared,
        }
    }

    /// Answers `status` with `body`.
    pub fn fixed(name: &str, status: u16, body: &str) -> Upstream {
        let body = body.to_string();
        Self::start(
            name,
            true,
            Arc::new(move |_| MockResponse::new(status, body.clone())),
        )
    }

    /// Answers 200 "ok"; use `requests()` to see what arrived.
    pub fn recording(name: &str) -> Upstream {
        Self::fixed(name, 200, "ok")
    }

    /// Answers 200 `body` after holding the head for `delay_ms`.
    pub fn slow(name: &str, delay_ms: u64, body: &str) -> Upstream {
        let body = body.to_string();
        Self::start(
            name,
            true,
            Arc::new(move |_| MockResponse::new(200, body.clone()).delay_ms(delay_ms)),
        )
    }

    /// Returns the request body, chunked if the request was chunked, else with Content-Length.
    pub fn echo(name: &str) -> Upstream {
        Self::start(
            name,
            true,
            Arc::new(|r: &Recorded| {
                if r.chunked {
                    MockResponse::chunks(200, vec![r.body.clone()])
                } else {
                    MockResponse::new(200, r.body.clone())
                }
            }),
        )
    }

    /// Streams `len` bytes of the deterministic pattern, chunked.
    pub fn download(name: &str, len: u64) -> Upstream {
        Self::start(
            name,
            false,
            Arc::new(move |_| MockResponse {
                body: MockBody::Pattern(len),
                ..MockResponse::new(200, "")
            }),
        )
    }

    /// Discards request bodies; answers `"LEN FNV"` (decimal, hex) of what it received.
    pub fn discard(name: &str) -> Upstream {
        Self::start(
            name,
            false,
            Arc::new(|r: &Recorded| {
                MockResponse::new(200, format!("{} {:016x}", r.body_len, r.body_fnv))
            }),
        )
    }

    /// Holds every response until the returned gate is released.
    pub fn gated(name: &str) -> (Upstream, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        let up = Self::start(
            name,
            true,
            Arc::new(move |_| {
                g.wait();
                MockResponse::new(200, "gated")
            }),
        );
        (up, gate)
    }

    /// Reads each request head, records it, then closes the connection without answering.
    pub fn slam(name: &str) -> Upstream {
        Self::start_inner(
            name,
            false,
            true,
            Arc::new(|_| MockResponse::new(500, "unreachable")),
        )
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Every request seen so far (heads included even when the body is still arriving).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.records.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.records.lock().unwrap().len()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.shared.records.lock().unwrap().clear();
    }

    /// Waits until `n` complete requests were recorded and returns all recorded requests.
    pub fn wait_requests(&self, n: usize, within: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + within;
        let ok = super::wait_until(deadline, || {
            self.shared
                .records
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.complete)
                .count()
                >= n
        });
        let recs = self.requests();
        assert!(
            ok,
            "upstream {}: expected {n} complete requests within {within:?}, have {recs:#?}",
            self.name
        );
        recs
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_conn(sh: &Shared, stream: TcpStream, conn: usize) {
    let _ = stream.set_nodelay(true);
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut wire = Wire::new(stream);
    loop {
        let head_bytes = match wire.read_head(1 << 20) {
            Ok(Some(h)) => h,
            _ => return,
        };
        let head = parse_head(&head_bytes);
        let mut parts = head.start_line.splitn(3, ' ');
        let mut rec = Recorded {
            id: sh.next_id.fetch_add(1, Ordering::SeqCst),
            conn,
            method: parts.next().unwrap_or("").to_string(),
            target: parts.next().unwrap_or("").to_string(),
            version: parts.next().unwrap_or("").to_string(),
            raw_head: head_bytes.clone(),
            headers: head.headers.clone(),
            malformed_lines: head.malformed.clone(),
            ..Recorded::default()
        };
        let framing = request_framing(&rec);
        rec.chunked = matches!(framing, Ok(Framing::Chunked));
        if let Err(e) = &framing {
            rec.framing_error = Some(e.clone());
        }
        sh.records.lock().unwrap().push(rec.clone());
        if sh.slam {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
        let mut fnv = Fnv64::new();
        let store = sh.store_body;
        let (mut body, mut raw_body) = (Vec::new(), Vec::new());
        let res = match framing {
            Ok(Framing::None) => Ok(()),
            Ok(Framing::Length(n)) => wire.read_exact_to(n, &mut |d| {
                fnv.update(d);
                if store {
                    body.extend_from_slice(d);
                    raw_body.extend_from_slice(d);
                }
            }),
            Ok(Framing::Chunked) => {
                let mut raw_sink = |d: &[u8]| {
                    if store {
                        raw_body.extend_from_slice(d);
                    }
                };
                wire.read_chunked(
                    &mut |d| {
                        fnv.update(d);
                        if store {
                            body.extend_from_slice(d);
                        }
                    },
                    &mut raw_sink,
                )
                .map(|_| ())
            }
            Err(_) => Err(std::io::Error::other("unframeable")),
        };
        rec.body_len = fnv.len();
        rec.body_fnv = fnv.finish();
        rec.body = body;
        rec.raw_body = raw_body;
        rec.complete = res.is_ok();
        if let (Err(e), None) = (&res, &rec.framing_error) {
            rec.framing_error = Some(format!("body: {e}"));
        }
        if let Some(slot) = sh
            .records
            .lock()
            .unwrap()
            .iter_mut()
            .find(|r| r.id == rec.id)
        {
            *slot = rec.clone();
        }
        let resp = if res.is_ok() {
            (sh.handler)(&rec)
        } else {
            MockResponse {
                close: true,
                ..MockResponse::new(400, "mock upstream: bad request framing")
            }
        };
        let close = resp.close || has_token(&rec.header_all("connection"), "close");
        if write_response(&mut out, &sh.name, &rec.method, &resp).is_err() || close {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Strict request framing as a careful origin server would apply it.
fn request_framing(r: &Recorded) -> Result<Framing, String> {
    let cl = r.header_all("content-length");
    let te = r.header_all("transfer-encoding");
    if !te.is_empty() && !cl.is_empty() {
        return Err(format!(
            "both Transfer-Encoding {te:?} and Content-Length {cl:?}"
        ));
    }
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        // Other codings before a single final `chunked` are payload the origin would decode; the
        // framing is still chunked.
        if codings.last().map(String::as_str) != Some("chunked")
            || codings.iter().filter(|c| *c == "chunked").count() != 1
        {
            return Err(format!(
                "Transfer-Encoding not ending in a single chunked: {te:?}"
            ));
        }
        return Ok(Framing::Chunked);
    }
    match cl.as_slice() {
        [] => Ok(Framing::None),
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => one
            .parse()
            .map(Framing::Length)
            .map_err(|_| format!("Content-Length overflow {one:?}")),
        _ => Err(format!("bad or repeated Content-Length {cl:?}")),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn write_response(
    out: &mut TcpStream,
    name: &str,
    method: &str,
    resp: &MockResponse,
) -> std::io::Result<()> {
    if !resp.delay.is_zero() {
        std::thread::sleep(resp.delay);
    }
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nx-upstream: {name}\r\n",
        resp.status,
        reason(resp.status)
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let bodyless = resp.status < 200 || resp.status == 204 || resp.status == 304;
    let custom_framing = resp.headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !bodyless && !custom_framing {
        match &resp.body {
            MockBody::Bytes(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
            MockBody::Chunks(_) | MockBody::Pattern(_) => {
                head.push_str("transfer-encoding: chunked\r\n")
            }
        }
    }
    if resp.close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if bodyless || method.eq_ignore_ascii_case("HEAD") {
        return out.flush();
    }
    match &resp.body {
        MockBody::Bytes(b) => out.write_all(b)?,
        MockBody::Chunks(chunks) => {
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                write_chunk(out, c)?;
            }
            out.write_all(b"0\r\n\r\n")?;
        }
        MockBody::Pattern(len) => {
            let mut off = 0u64;
            while off < *len {
                let n = ((*len - off) as usize).min(PATTERN_PERIOD).min(256 * 1024);
                write_chunk(out, pattern_slice(off, n))?;
                off += n as u64;
            }
            out.write_all(b"0\r\n\r\n")?;
        }
    }
    out.flush()
}

fn write_chunk(out: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(data.len() + 16);
    buf.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    out.write_all(&buf)
}

/// An address on which nothing listens: connecting is refused. The port stays bound (without
/// listening) for the rest of the test process, so no other socket — a gateway binding
/// `127.0.0.1:0`, say — can be given it and turn a dead upstream into a proxy loop.
pub fn closed_port() -> SocketAddr {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // reserved until the process exits
    std::mem::forget(s);
    addr
}
