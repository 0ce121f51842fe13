//! One `serve` connection: answer pipelined HTTP/1.1 requests in order; the canned responses and
//! the shared stall.
//!
//! Data flow: bytes are read into a per-connection buffer (`rbuf`, filled from `start` to its
//! length); every complete request in it is parsed in place by [`super::parse`] (head and body
//! framing; bodies are buffered whole), and its response
//! appended to a reused output buffer: the canned fixed response is a single copy. When no complete
//! request is left the output is written in one go, so pipelined requests get one write. Delays
//! and the shared stall flush what is pending, then sleep before the response that must wait.
//! The stall is one atomic deadline shared by all workers (see [`Stall`]).

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::parse::{chunked, parse_head, Framing, Mode, Parsed, Route, MAX_BODY, MAX_HEAD};

/// Initial (and retained) size of a connection's read buffer.
const READ_BUF: usize = 16 << 10;
/// Buffers that grew past this (a large body) are replaced by fresh small ones once idle.
const KEEP_BUF: usize = 1 << 20;
/// Most bytes one request (head, body and chunk framing) may occupy in the read buffer.
const MAX_BUFFERED: usize = 4 * MAX_BODY;
/// Pending output is written once it reaches this much, even mid-pipeline.
const FLUSH_AT: usize = 256 << 10;
/// The once-only stall: armed until `after` responses have been written in total, then a deadline
/// (nanoseconds since `epoch`, never 0) until which every response waits, then over.
#[derive(Debug)]
pub struct Stall {
    after: u64,
    nanos: u64,
    written: AtomicU64,
    state: AtomicU64,
    epoch: Instant,
}

const ARMED: u64 = 0;
const OVER: u64 = u64::MAX;

impl Stall {
    pub fn new(after: u64, ms: u64) -> Stall {
        let s = Stall {
            after,
            nanos: ms.saturating_mul(1_000_000),
            written: AtomicU64::new(0),
            state: AtomicU64::new(ARMED),
            epoch: Instant::now(),
        };
        if after == 0 {
            s.begin();
        }
        s
    }

    fn begin(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let deadline = now.saturating_add(self.nanos).saturating_add(1);
        self.state.store(deadline.min(OVER - 1), Ordering::Release);
    }

    /// Counts `n` more responses written; the one that reaches `after` starts the stall.
    fn written(&self, n: u64) {
        if n == 0 || self.state.load(Ordering::Relaxed) != ARMED {
            return;
        }
        let before = self.written.fetch_add(n, Ordering::Relaxed);
        if before < self.after && before + n >= self.after {
            self.begin();
        }
    }

    /// While the stall is on, how long is left.
    fn remaining(&self) -> Option<Duration> {
        let s = self.state.load(Ordering::Acquire);
        if s == ARMED || s == OVER {
            return None;
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        if now >= s {
            let _ = self
                .state
                .compare_exchange(s, OVER, Ordering::Relaxed, Ordering::Relaxed);
            return None;
        }
        Some(Duration::from_nanos(s - now))
    }
}

/// A pre-rendered full response and the length of its head.
#[derive(Debug, Clone)]
struct Canned {
    bytes: Vec<u8>,
    head: usize,
}

/// What every connection of a worker shares: the canned fixed responses (one per [`Mode`]), the
/// body, the default delay and the stall.
#[derive(Debug, Clone)]
pub struct Config {
    canned: [Canned; 3],
    body: Vec<u8>,
    delay: Duration,
    stall: Option<Arc<Stall>>,
}

impl Config {
    pub fn new(body: Vec<u8>, delay_ms: u64, stall: Option<Stall>) -> Config {
        let canned = [Mode::Keep11, Mode::Keep10, Mode::Close].map(|mode| {
            let mut bytes = Vec::new();
            render_head(&mut bytes, 200, Some(body.len()), mode);
            let head = bytes.len();
            bytes.extend_from_slice(&body);
            Canned { bytes, head }
        });
        Config {
            canned,
            body,
            delay: Duration::from_millis(delay_ms),
            stall: stall.map(Arc::new),
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn push_dec(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Status line and headers; `length: None` leaves out Content-Length (204 and 304).
fn render_head(out: &mut Vec<u8>, code: u16, length: Option<usize>, mode: Mode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_dec(out, usize::from(code));
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\n");
    if let Some(n) = length {
        out.extend_from_slice(b"content-length: ");
        push_dec(out, n);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(match mode {
        Mode::Keep11 => b"\r\n".as_slice(),
        Mode::Keep10 => b"connection: keep-alive\r\n\r\n",
        Mode::Close => b"connection: close\r\n\r\n",
    });
}

/// A status response carrying the fixed body (none for 204, 205 and 304, nor for HEAD).
fn render_status(out: &mut Vec<u8>, cfg: &Config, code: u16, head_only: bool, mode: Mode) {
    if code == 200 {
        let c = &cfg.canned[mode as usize];
        out.extend_from_slice(&c.bytes[..if head_only { c.head } else { c.bytes.len() }]);
        return;
    }
    let body: &[u8] = match code {
        204 | 304 => return render_head(out, code, None, mode),
        205 => b"",
        _ => &cfg.body,
    };
    render_head(out, code, Some(body.len()), mode);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// The connection's socket and output buffer, with the count of responses not yet written.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    pending: u64,
    stall: Option<Arc<Stall>>,
}

impl Conn {
    /// Writes the pending output; false when the peer is gone.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let (res, mut out) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        out.clear();
        if out.capacity() > KEEP_BUF {
            out = Vec::with_capacity(READ_BUF);
        }
        self.out = out;
        if let Some(stall) = &self.stall {
            stall.written(self.pending);
        }
        self.pending = 0;
        res.is_ok()
    }

    /// Flushes, then sleeps for `d`.
    async fn wait(&mut self, d: Duration) -> bool {
        let ok = self.flush().await;
        monoio::time::sleep(d).await;
        ok
    }
}

/// Serves one connection until the peer closes, asks to close, or sends something unusable.
pub async fn serve_conn(stream: TcpStream, cfg: Rc<Config>) {
    let mut c = Conn {
        stream,
        out: Vec::with_capacity(READ_BUF),
        pending: 0,
        stall: cfg.stall.clone(),
    };
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut start = 0usize;
    let mut continued = false;
    loop {
        let mut close = false;
        let mut need = 0usize;
        while start < rbuf.len() {
            let head = match parse_head(&rbuf[start..]) {
                Parsed::Head(h) => h,
                Parsed::Partial if rbuf.len() - start <= MAX_HEAD => break,
                Parsed::Partial => {
                    render_status(&mut c.out, &cfg, 431, false, Mode::Close);
                    close = true;
                    break;
                }
                Parsed::Error(code) => {
                    render_status(&mut c.out, &cfg, code, false, Mode::Close);
                    close = true;
                    break;
                }
            };
            let body_at = start + head.len;
            let (consumed, body_len) = match head.framing {
                Framing::None => (0, 0),
                Framing::Length(n) if rbuf.len() - body_at >= n => (n, n),
                Framing::Length(n) => {
                    need = head.len + n;
                    break;
                }
                Framing::Chunked => {
                    let mut total = 0;
                    match chunked(&rbuf[body_at..], |d| total += d.len()) {
                        Ok(Some(n)) => (n, total),
                        Ok(None) => break,
                        Err(code) => {
                            render_status(&mut c.out, &cfg, code, false, Mode::Close);
                            close = true;
                            break;
                        }
                    }
                }
            };
            let delay = match head.route {
                Route::Delay(ms) => Duration::from_millis(ms),
                _ => cfg.delay,
            };
            if !delay.is_zero() && !c.wait(delay).await {
                return;
            }
            while let Some(left) = c.stall.as_ref().and_then(|s| s.remaining()) {
                if !c.wait(left).await {
                    return;
                }
            }
            let out = &mut c.out;
            match head.route {
                Route::Fixed | Route::Delay(_) => {
                    render_status(out, &cfg, 200, head.head_only, head.mode)
                }
                Route::Status(code) => render_status(out, &cfg, code, head.head_only, head.mode),
                Route::BadRequest => render_status(out, &cfg, 400, head.head_only, head.mode),
                Route::Echo => {
                    render_head(out, 200, Some(body_len), head.mode);
                    let body = &rbuf[body_at..body_at + consumed];
                    match head.framing {
                        Framing::Chunked => {
                            let _ = chunked(body, |d| out.extend_from_slice(d));
                        }
                        _ => out.extend_from_slice(body),
                    }
                }
            }
            c.pending += 1;
            start = body_at + consumed;
            continued = false;
            if head.mode == Mode::Close {
                close = true;
                break;
            }
            if c.out.len() >= FLUSH_AT && !c.flush().await {
                return;
            }
        }
        // A chunked body's framing is not bounded by MAX_BODY alone: cap what one request may buffer.
        if !close && rbuf.len() - start > MAX_BUFFERED {
            render_status(&mut c.out, &cfg, 413, false, Mode::Close);
            close = true;
        }
        // A body is still on its way: say 100 Continue once if the client waits for it.
        if !close && start < rbuf.len() && !continued {
            if let Parsed::Head(h) = parse_head(&rbuf[start..]) {
                if h.expect_continue {
                    c.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    continued = true;
                }
            }
        }
        if !c.flush().await || close {
            return;
        }
        // Keep only the unparsed tail, at the front, with room for what is known to be coming.
        if start == rbuf.len() {
            rbuf.clear();
            if rbuf.capacity() > KEEP_BUF {
                rbuf = Vec::with_capacity(READ_BUF);
            }
        } else if start > 0 {
            rbuf.copy_within(start.., 0);
            rbuf.truncate(rbuf.len() - start);
        }
        start = 0;
        let want = need.max(rbuf.len() + 4096);
        if rbuf.capacity() < want {
            rbuf.reserve(want - rbuf.len());
        }
        let (len, cap) = (rbuf.len(), rbuf.capacity());
        let (res, slice) = c.stream.read(rbuf.slice_mut(len..cap)).await;
        rbuf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
