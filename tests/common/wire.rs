//! HTTP/1.1 wire helpers shared by the test client and the mock upstreams: a buffered reader
//! that reads heads, lines, Content-Length / chunked / close-delimited bodies (streaming each
//! piece to a sink, never requiring the whole body in memory), a lenient head parser that keeps
//! raw header bytes (so tests can see exactly what crossed the wire), and checksum/pattern
//! helpers for streaming tests.

use std::io::{self, Read};

/// Size of one read from the socket.
const READ_CHUNK: usize = 64 * 1024;

/// A buffered reader over a socket with HTTP/1.1 framing helpers.
pub struct Wire<S> {
    pub inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: Read> Wire<S> {
    pub fn new(inner: S) -> Self {
        Wire {
            inner,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        }
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads once from the socket into the buffer; returns 0 at EOF.
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let res = self.inner.read(&mut self.buf[old..]);
        match res {
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(e)
            }
        }
    }

    /// Reads a message head up to and including the blank line. `Ok(None)` on a clean EOF before
    /// any byte of a head; an error on EOF in the middle of one or when it exceeds `max` bytes.
    pub fn read_head(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut scanned: usize = 0;
        loop {
            let avail = self.buffered();
            if let Some(i) = find(&avail[scanned.saturating_sub(3)..], b"\r\n\r\n") {
                let end = scanned.saturating_sub(3) + i + 4;
                let head = avail[..end].to_vec();
                self.consume(end);
                return Ok(Some(head));
            }
            scanned = avail.len();
            if scanned > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
            if self.fill()? == 0 {
                if self.buffered().is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a head",
                ));
            }
        }
    }

    /// Reads one line, without its CRLF.
    pub fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(self.buffered(), b"\r\n") {
                let line = self.buffered()[..i].to_vec();
                self.consume(i + 2);
                return Ok(line);
            }
            if self.buffered().len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a line",
                ));
            }
        }
    }

    /// Reads exactly `n` body bytes, handing each piece to `sink`.
    pub fn read_exact_to(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a body",
                ));
            }
            let take = (self.buffered().len() as u64).min(n) as usize;
            sink(&self.buf[self.pos..self.pos + take]);
            self.consume(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Reads until EOF (close-delimited body); returns the byte count.
    pub fn read_to_eof(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            if !self.buffered().is_empty() {
                let n = self.buffered().len();
                sink(&self.buf[self.pos..]);
                self.consume(n);
                total += n as u64;
            }
            if self.fill()? == 0 {
                return Ok(total);
            }
        }
    }

    /// Decodes a chunked body: data goes to `sink`, every wire byte (sizes, extensions, CRLFs,
    /// trailers) to `raw`. Returns the trailer fields.
    pub fn read_chunked(
        &mut self,
        sink: &mut dyn FnMut(&[u8]),
        raw: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Vec<(String, Vec<u8>)>> {
        loop {
            let line = self.read_line(4096)?;
            raw(&line);
            raw(b"\r\n");
            let size_part = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size_str = std::str::from_utf8(size_part).unwrap_or("").trim();
            let size = u64::from_str_radix(size_str, 16).map_err(|_| {
                let shown = String::from_utf8_lossy(&line).into_owned();
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size line {shown:?}"),
                )
            })?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let t = self.read_line(64 * 1024)?;
                    raw(&t);
                    raw(b"\r\n");
                    if t.is_empty() {
                        return Ok(trailers);
                    }
                    trailers.extend(parse_fields(&t).0);
                }
            }
            self.read_exact_to(size, &mut |d| {
                sink(d);
                raw(d);
            })?;
            let crlf = self.read_line(2)?;
            raw(b"\r\n");
            if !crlf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk data not followed by CRLF",
                ));
            }
        }
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed message head. Header names are kept as sent; values are trimmed of OWS but
/// otherwise raw bytes (they may hold obs-text).
#[derive(Clone, Debug, Default)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Lines that were not `name: value` (obs-fold, no colon): a sign of a broken forwarder.
    pub malformed: Vec<String>,
}

/// Parses a head (start line + fields, with or without the final blank line).
pub fn parse_head(bytes: &[u8]) -> Head {
    let text_end = find(bytes, b"\r\n").unwrap_or(bytes.len());
    let start_line = String::from_utf8_lossy(&bytes[..text_end]).into_owned();
    let rest = if text_end + 2 <= bytes.len() {
        &bytes[text_end + 2..]
    } else {
        &[][..]
    };
    let (headers, malformed) = parse_fields(rest);
    Head {
        start_line,
        headers,
        malformed,
    }
}

/// Parses CRLF-separated `name: value` lines.
fn parse_fields(bytes: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut headers = Vec::new();
    let mut malformed = Vec::new();
    for line in split_crlf(bytes) {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            malformed.push(String::from_utf8_lossy(line).into_owned());
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let name = String::from_utf8_lossy(&line[..i]).into_owned();
                headers.push((name, trim_ows(&line[i + 1..]).to_vec()));
            }
            None => malformed.push(String::from_utf8_lossy(line).into_owned()),
        }
    }
    (headers, malformed)
}

fn split_crlf(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(i) = find(rest, b"\r\n") {
        out.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

pub fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// All values of header `name` (case-insensitive), lossily decoded.
pub fn header_values(headers: &[(String, Vec<u8>)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Whether a comma-separated header value list contains `token` (case-insensitive).
pub fn has_token(values: &[String], token: &str) -> bool {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// FNV-1a over 64-bit little-endian words (the final partial word zero-padded, then the byte
/// count mixed in): a tiny checksum, fed in pieces of any size, 8x cheaper than byte-wise FNV
/// in unoptimised test builds.
#[derive(Clone, Debug)]
pub struct Fnv64 {
    hash: u64,
    pending: [u8; 8],
    npending: usize,
    len: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64 {
            hash: FNV_OFFSET,
            pending: [0; 8],
            npending: 0,
            len: 0,
        }
    }
}

impl Fnv64 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 8 {
                return;
            }
            self.mix(u64::from_le_bytes(self.pending));
            self.npending = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes([
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
            ]));
        }
        let rem = words.remainder();
        self.pending[..rem.len()].copy_from_slice(rem);
        self.npending = rem.len();
    }

    fn mix(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(FNV_PRIME);
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(&self) -> u64 {
        let mut h = self.hash;
        if self.npending > 0 {
            let mut last = [0u8; 8];
            last[..self.npending].copy_from_slice(&self.pending[..self.npending]);
            h = (h ^ u64::from_le_bytes(last)).wrapping_mul(FNV_PRIME);
        }
        (h ^ self.len).wrapping_mul(FNV_PRIME)
    }
}

/// Checksum of a whole buffer.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut f = Fnv64::new();
    f.update(data);
    f.finish()
}

/// Period of the deterministic stream pattern: a prime, so that reordered or repeated blocks
/// of any power-of-two size change the checksum.
pub const PATTERN_PERIOD: usize = 1_048_573;

/// Two periods of the pattern, so any window of up to one period is one slice.
pub fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..2 * PATTERN_PERIOD)
            .map(|i| {
                let i = (i % PATTERN_PERIOD) as u64;
                (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i as u8)
            })
            .collect()
    })
}

/// The `len` pattern bytes starting at stream offset `offset` (`len` <= PATTERN_PERIOD).
pub fn pattern_slice(offset: u64, len: usize) -> &'static [u8] {
    assert!(len <= PATTERN_PERIOD);
    let start = (offset % PATTERN_PERIOD as u64) as usize;
    &pattern_table()[start..start + len]
}

/// The first `n` bytes of the pattern stream, in one buffer.
pub fn pattern_vec(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = (n - out.len()).min(PATTERN_PERIOD);
        out.extend_from_slice(pattern_slice(out.len() as u64, k));
    }
    out
}

/// Checksum of the first `len` bytes of the pattern stream.
pub fn pattern_fnv(len: u64) -> u64 {
    let mut f = Fnv64::new();
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(PATTERN_PERIOD);
        f.update(pattern_slice(off, n));
        off += n as u64;
    }
    f.finish()
}

/// Reads one message head byte by byte (so nothing after it is consumed), up to and including the
/// blank line; None when the peer closed (or failed) first. For raw test peers.
pub fn read_head_bytes(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// A raw test peer on 127.0.0.1: each accepted connection runs `serve` on a thread of its own.
pub fn raw_server(serve: fn(std::net::TcpStream)) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind raw server");
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}
