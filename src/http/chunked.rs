//! Strict streaming decoder for `Transfer-Encoding: chunked` bodies (request smuggling defence).
//!
//! Owns the parsing of chunked message bodies (RFC 9112 §7.1) and the few helpers used to re-encode
//! them. The proxy feeds client (or upstream) bytes to [`ChunkedDecoder::decode`] as they arrive and
//! forwards the decoded data re-chunked with [`write_chunk`] and [`LAST_CHUNK`];
//! chunk extensions and trailers are validated and then dropped, so what we send is canonical
//! (a decoder told to [`ChunkedDecoder::keep_trailers`] keeps the validated trailer lines for a peer
//! that reads them; [`write_last_chunk`] re-emits those that may be trailers).
//!
//! Key parts: a byte-level state machine (`State`) for chunk-size lines, extensions and trailer field
//! lines; a bulk path for chunk data. Every partial line lives in the state itself (size so far,
//! grammar position, line / trailer byte counters), so input may be split at any byte and the caller
//! never re-presents bytes: `decode` consumes everything it is given until the message ends.
//!
//! Flow: `size [ext] CRLF` -> data (size bytes) -> CRLF -> ... -> `0 [ext] CRLF` -> trailer field
//! lines -> CRLF -> done. Bytes after the final CRLF are left unconsumed (a pipelined next message).
//!
//! Errors ([`ChunkedError`]): anything outside the grammar is rejected rather than tolerated, since
//! lenient parsers disagreeing with each other is what makes smuggling possible: bare LF or bare CR,
//! missing CRLF after data, empty / signed / `0x` / over-16-digit sizes, malformed extensions or
//! trailers, CTLs (NUL included) in any line, size lines over [`MAX_CHUNK_LINE`], trailer sections over
//! [`MAX_TRAILER_BYTES`], and data beyond `max_body` (checked as soon as a size digit pushes the total
//! over, before any of that chunk's data is read). Errors are sticky: later calls repeat them.
//!
//! Performance: data runs go to the sink in one call per contiguous run of the input, borrowed, never
//! copied; only line bytes (a few per chunk) are examined one at a time. No allocation.

use super::head::is_token;
use std::fmt;

/// Longest chunk-size line (size and extensions, excluding the CRLF).
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section, every byte after the last-chunk line up to and including the final CRLF.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Appended after each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The terminator we emit when there are no trailers to pass on.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// Empty chunk size, or a non-hex-digit where the size belongs (`+`, `-`, `0x`, spaces first).
    BadChunkSize,
    /// More than 16 hex digits.
    SizeOverflow,
    /// A line not ended by exactly CRLF (bare LF, bare CR), or data not followed by CRLF.
    BadLineEnding,
    /// Malformed chunk extension.
    BadExtension,
    /// Malformed trailer field line.
    BadTrailer,
    /// Chunk-size line longer than [`MAX_CHUNK_LINE`].
    LineTooLong,
    /// Trailer section larger than [`MAX_TRAILER_BYTES`].
    TrailersTooLarge,
    /// Decoded data would exceed `max_body`.
    BodyTooLarge,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::BadChunkSize => "invalid chunk size",
            ChunkedError::SizeOverflow => "chunk size too large",
            ChunkedError::BadLineEnding => "invalid line ending in chunked body",
            ChunkedError::BadExtension => "invalid chunk extension",
            ChunkedError::BadTrailer => "invalid trailer field",
            ChunkedError::LineTooLong => "chunk-size line too long",
            ChunkedError::TrailersTooLarge => "trailer section too large",
            ChunkedError::BodyTooLarge => "chunked body too large",
        })
    }
}

impl std::error::Error for ChunkedError {}

/// Result of one [`ChunkedDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed; everything unless `done`.
    pub consumed: usize,
    /// The last chunk and the trailer section's final CRLF have been consumed.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size (`digits` counts them).
    Size,
    /// BWS after the size or after an extension: only more BWS or `;`.
    ExtBws,
    /// After `;` (and BWS): extension name expected.
    ExtNameStart,
    ExtName,
    /// BWS after a name: `=`, `;` or more BWS.
    ExtNameBws,
    /// After `=` (and BWS): token or quoted-string expected.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// After the closing quote: BWS, `;` or CR.
    ExtQuoteEnd,
    /// CR of the size line seen.
    SizeLf,
    /// `remaining` data bytes still to come.
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer line: field name or the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    FinalLf,
    Done,
    Failed(ChunkedError),
}

/// Streaming chunked-body decoder; one per message.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_body: u64,
    decoded: u64,
    /// Size being parsed, then data bytes left in the current chunk.
    remaining: u64,
    digits: u8,
    line_len: usize,
    trailer_len: usize,
    /// The trailer field lines (each with its CRLF), when kept ([`ChunkedDecoder::keep_trailers`]).
    trailers: Option<Vec<u8>>,
}

#[inline]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// VCHAR or obs-text.
#[inline]
fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

#[inline]
fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl ChunkedDecoder {
    /// `max_body`: total decoded data bytes allowed (-> [`ChunkedError::BodyTooLarge`] beyond it).
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            max_body,
            decoded: 0,
            remaining: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
            trailers: None,
        }
    }

    /// Keeps the trailer section's field lines (validated as ever) for [`Self::trailers`] instead
    /// of dropping them: for a peer that reads trailers (gRPC's status travels there).
    pub fn keep_trailers(&mut self) {
        self.trailers = Some(Vec::new());
    }

    /// The kept trailer field lines, each ending in CRLF (empty when none came or none were kept).
    pub fn trailers(&self) -> &[u8] {
        self.trailers.as_deref().unwrap_or_default()
    }

    /// Decodes as much of `input` as possible, calling `sink` once per contiguous run of chunk data
    /// (borrowed from `input`). Consumes all of `input` unless the message ends inside it; then
    /// `done` is set and the bytes after `consumed` belong to the next message.
    pub fn decode(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, ChunkedError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data => {
                    let left = (input.len() - pos) as u64;
                    let n = self.remaining.min(left) as usize;
                    sink(&input[pos..pos + n]);
                    pos += n;
                    self.remaining -= n as u64;
                    self.decoded += n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let b = input[pos];
                    pos += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            s => Ok(Progress {
                consumed: pos,
                done: s == State::Done,
            }),
        }
    }

    /// Advances the line state machine by one byte (never called in `Data`, `Done`, `Failed`).
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedError::*;
        use State::*;
        let in_size_line = matches!(
            self.state,
            Size | ExtBws
                | ExtNameStart
                | ExtName
                | ExtNameBws
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtQuoteEnd
        );
        if in_size_line {
            if b == b'\n' {
                return Err(BadLineEnding);
            }
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE && b != b'\r' {
                return Err(LineTooLong);
            }
        } else if matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        ) {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILER_BYTES {
                return Err(TrailersTooLarge);
            }
            if let Some(t) = &mut self.trailers {
                // field lines only: not the final CRLF
                if !matches!((self.state, b), (TrailerStart, b'\r') | (FinalLf, _)) {
                    t.push(b);
                }
            }
        }
        self.state = match (self.state, b) {
            (Size, _) if hex_value(b).is_some() => {
                if self.digits == 16 {
                    return Err(SizeOverflow);
                }
                self.digits += 1;
                self.remaining = (self.remaining << 4) | hex_value(b).unwrap_or(0);
                Size
            }
            (Size, _) if self.digits == 0 => return Err(BadChunkSize),
            (Size, b';') => ExtNameStart,
            (Size, b'\r') => SizeLf,
            (Size, _) if is_ws(b) => ExtBws,
            (Size, _) => return Err(BadChunkSize),

            (ExtBws | ExtNameBws | ExtQuoteEnd | ExtToken | ExtName, b';') => ExtNameStart,
            (ExtBws | ExtQuoteEnd | ExtToken, _) if is_ws(b) => ExtBws,
            (ExtName | ExtNameBws, _) if is_ws(b) => ExtNameBws,
            (ExtNameStart | ExtValueStart, _) if is_ws(b) => self.state,
            (ExtNameStart, _) | (ExtName, _) if is_token(b) => ExtName,
            (ExtName | ExtToken | ExtQuoteEnd, b'\r') => SizeLf,
            (ExtName | ExtNameBws, b'=') => ExtValueStart,
            (ExtValueStart | ExtToken, _) if is_token(b) => ExtToken,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtQuoted, b'"') => ExtQuoteEnd,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted | ExtQuotedEscape, _) if is_ws(b) || is_vchar(b) => ExtQuoted,
            (ExtBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart | ExtToken, _)
            | (ExtQuoted | ExtQuotedEscape | ExtQuoteEnd, _) => return Err(BadExtension),

            (SizeLf, b'\n') => {
                // judged once the whole size is known, so a malformed size is never "too large"
                if self.remaining > self.max_body - self.decoded {
                    return Err(BodyTooLarge);
                }
                self.line_len = 0;
                self.digits = 0;
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size,
            (TrailerLf, b'\n') => TrailerStart,
            (FinalLf, b'\n') => Done,
            (SizeLf | DataCr | DataLf | TrailerLf | FinalLf, _) => return Err(BadLineEnding),

            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart | TrailerName, _) if is_token(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_ws(b) || is_vchar(b) => TrailerValue,
            (TrailerStart | TrailerName | TrailerValue, b'\n') => return Err(BadLineEnding),
            (TrailerStart | TrailerName | TrailerValue, _) => return Err(BadTrailer),

            (Data | Done | Failed(_), _) => unreachable!("step called in {:?}", self.state),
        };
        Ok(())
    }

    /// The last chunk and the trailer section's final CRLF have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes decoded so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }
}

/// May a field travel as a trailer? Not the ones that frame, route, authenticate or describe the
/// message (RFC 9110 §6.5.1): those are dropped from forwarded trailer sections.
pub fn trailer_allowed(name: &[u8]) -> bool {
    const DENY: [&[u8]; 22] = [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"authorization",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"www-authenticate",
        b"cookie",
        b"set-cookie",
        b"content-encoding",
        b"content-type",
        b"content-range",
        b"cache-control",
        b"expect",
        b"range",
        b"location",
        b"vary",
    ];
    !DENY.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// Appends the last chunk with `lines` (trailer field lines as [`ChunkedDecoder::trailers`] keeps
/// them) as its trailer section, fields [`trailer_allowed`] refuses left out.
pub fn write_last_chunk(out: &mut Vec<u8>, lines: &[u8]) {
    out.extend_from_slice(b"0\r\n");
    for line in for_each_trailer(lines) {
        if trailer_allowed(line.0) {
            out.extend_from_slice(line.0);
            out.extend_from_slice(b": ");
            out.extend_from_slice(line.1);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// (name, value) of each kept trailer line; values trimmed.
pub fn for_each_trailer(lines: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines.split(|&b| b == b'\n').filter_map(|l| {
        let l = l.strip_suffix(b"\r")?;
        let colon = memchr::memchr(b':', l)?;
        Some((&l[..colon], l[colon + 1..].trim_ascii()))
    })
}

/// Appends a chunk header for `len` data bytes: `"{len:x}\r\n"`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 18];
    let mut i = 16;
    let mut v = len as u64;
    loop {
        i -= 1;
        buf[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    out.extend_from_slice(&buf[i..]);
}

/// Appends `data` as one chunk: size line, data, CRLF. Empty `data` would write what reads as
/// the last chunk.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    write_chunk_header(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(CHUNK_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChunkedError::*;

    /// Decodes `input` in pieces of the given lengths (the rest in one final piece), stopping when
    /// done; returns (data, total consumed, done, sink calls).
    fn run(
        input: &[u8],
        max: u64,
        cuts: &[usize],
    ) -> Result<(Vec<u8>, usize, bool, usize), ChunkedError> {
        let mut d = ChunkedDecoder::new(max);
        let (mut data, mut calls, mut total, mut start) = (Vec::new(), 0, 0, 0);
        let mut sink = |b: &[u8]| {
            assert!(!b.is_empty());
            data.extend_from_slice(b);
            calls += 1;
        };
        for end in cuts.iter().copied().chain([input.len()]) {
            let p = d.decode(&input[start..end], &mut sink)?;
            total += p.consumed;
            if p.done {
                assert!(d.is_done());
                break;
            }
            assert_eq!(p.consumed, end - start, "not done: everything consumed");
            start = end;
        }
        let done = d.is_done();
        assert_eq!(d.decoded_len(), data.len() as u64);
        Ok((data, total, done, calls))
    }

    fn whole(input: &[u8]) -> Result<(Vec<u8>, usize, bool, usize), ChunkedError> {
        run(input, u64::MAX, &[])
    }

    const VALID: &[&[u8]] = &[
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"5;a=b;c;d=\"q\\\"x;\" ; e = f\t;g\r\nhello\r\nA\r\n0123456789\r\n0;last\r\n\r\n",
        b"000000000000000a\r\n0123456789\r\nF ;x\r\n0123456789abcde\r\n0\r\nX-Trailer: v \t\x80\r\nOther:\r\n\r\n",
        b"0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ];

    #[test]
    fn valid_bodies() {
        let (data, n, done, calls) = whole(VALID[0]).unwrap();
        assert_eq!(
            (&data[..], n, done, calls),
            (&b"hello world"[..], VALID[0].len(), true, 2)
        );
        let (data, _, done, _) = whole(VALID[1]).unwrap();
        assert_eq!((&data[..], done), (&b"hello0123456789"[..], true));
        let (data, n, done, _) = whole(VALID[2]).unwrap();
        assert_eq!((data.len(), n, done), (25, VALID[2].len(), true));
        assert_eq!(whole(VALID[3]).unwrap(), (vec![], 5, true, 0));
    }

    #[test]
    fn pipelined_bytes_stay_unconsumed() {
        let input = VALID[4];
        let body_len = input.len() - b"GET / HTTP/1.1\r\n\r\n".len();
        let mut d = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        let p = d.decode(input, &mut |b| out.extend_from_slice(b)).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: body_len,
                done: true
            }
        );
        assert_eq!(out, b"abc");
        let p = d
            .decode(b"more", &mut |_| panic!("no data after done"))
            .unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 0,
                done: true
            }
        );
        // Split inside the pipelined bytes too.
        let (data, n, done, _) = run(input, 100, &[body_len + 2]).unwrap();
        assert_eq!((&data[..], n, done), (&b"abc"[..], body_len, true));
    }

    #[test]
    fn every_split_and_byte_by_byte_agree() {
        for input in VALID {
            let reference = whole(input).unwrap();
            for cut in 0..=input.len() {
                let r = run(input, u64::MAX, &[cut]).unwrap();
                assert_eq!(
                    (&r.0, r.1, r.2),
                    (&reference.0, reference.1, reference.2),
                    "cut {cut}"
                );
            }
            let cuts: Vec<usize> = (1..input.len()).collect();
            let r = run(input, u64::MAX, &cuts).unwrap();
            assert_eq!((&r.0, r.1, r.2), (&reference.0, reference.1, reference.2));
        }
    }

    #[test]
    fn one_sink_call_per_contiguous_run() {
        let mut body = Vec::new();
        write_chunk_header(&mut body, 3000);
        body.extend_from_slice(&[b'x'; 3000]);
        body.extend_from_slice(CHUNK_END);
        body.extend_from_slice(LAST_CHUNK);
        assert_eq!(whole(&body).unwrap().3, 1);
        assert_eq!(run(&body, u64::MAX, &[1000, 2000]).unwrap().3, 3);
    }

    #[test]
    fn every_error_kind() {
        let long_ext = [&b"1;"[..], &[b'a'; MAX_CHUNK_LINE][..], b"\r\n"].concat();
        let ok_ext = [
            &b"1;"[..],
            &[b'a'; MAX_CHUNK_LINE - 2][..],
            b"\r\nx\r\n0\r\n\r\n",
        ]
        .concat();
        assert!(
            whole(&ok_ext).unwrap().2,
            "a line of exactly MAX_CHUNK_LINE is fine"
        );
        let mut big_trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            big_trailers.extend_from_slice(b"X-A: bcdef\r\n");
        }
        big_trailers.extend_from_slice(b"\r\n");
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"\r\n", BadChunkSize),
            (b";a\r\n", BadChunkSize),
            (b"+5\r\n", BadChunkSize),
            (b"-5\r\n", BadChunkSize),
            (b"0x5\r\n", BadChunkSize),
            (b" 5\r\n", BadChunkSize),
            (b"5x\r\n", BadChunkSize),
            (b"5\0\r\n", BadChunkSize),
            (b"g\r\n", BadChunkSize),
            (b"10000000000000000\r\n", SizeOverflow),
            (b"00000000000000001\r\n", SizeOverflow),
            (b"5\nhello\r\n", BadLineEnding),
            (b"\n", BadLineEnding),
            (b"5\r\rhello", BadLineEnding),
            (b"5\r\nhello\n", BadLineEnding),
            (b"5\r\nhello\r\r", BadLineEnding),
            (b"5\r\nhelloX\r\n", BadLineEnding),
            (b"5\r\nhello0\r\n", BadLineEnding),
            (b"0\r\n\n", BadLineEnding),
            (b"0\r\nA: b\n", BadLineEnding),
            (b"0\r\nA: b\r\r", BadLineEnding),
            (b"0\r\n\r\r", BadLineEnding),
            (b"5;a;b\n", BadLineEnding),
            (b"5 \r\n", BadExtension),
            (b"5;\r\n", BadExtension),
            (b"5;=a\r\n", BadExtension),
            (b"5;a=\r\n", BadExtension),
            (b"5;a b\r\n", BadExtension),
            (b"5;a=b c\r\n", BadExtension),
            (b"5;a=b \r\n", BadExtension),
            (b"5;a\0\r\n", BadExtension),
            (b"5;a=\"x\r\n", BadExtension),
            (b"5;a=\"x\x7f\"\r\n", BadExtension),
            (b"5;a=\"x\"y\r\n", BadExtension),
            (b"5;a@b\r\n", BadExtension),
            (b"0\r\nbad name: v\r\n\r\n", BadTrailer),
            (b"0\r\nName : v\r\n\r\n", BadTrailer),
            (b"0\r\n: v\r\n\r\n", BadTrailer),
            (b"0\r\nNoColon\r\n\r\n", BadTrailer),
            (b"0\r\nA: b\x01c\r\n\r\n", BadTrailer),
            (b"0\r\nA: b\0\r\n\r\n", BadTrailer),
            (b"0\r\nA: b\r\n folded\r\n\r\n", BadTrailer),
            (&long_ext, LineTooLong),
            (&big_trailers, TrailersTooLarge),
        ];
        for (input, want) in cases {
            assert_eq!(
                whole(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            let cuts: Vec<usize> = (1..input.len()).collect();
            assert_eq!(run(input, u64::MAX, &cuts), Err(*want), "byte by byte");
        }
        // Errors are sticky.
        let mut d = ChunkedDecoder::new(10);
        assert_eq!(d.decode(b"z", &mut |_| ()), Err(BadChunkSize));
        assert_eq!(d.decode(b"0\r\n\r\n", &mut |_| ()), Err(BadChunkSize));
        assert!(!d.is_done());
    }

    #[test]
    fn max_body_is_enforced() {
        let body = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(run(body, 8, &[]).unwrap().2);
        assert_eq!(run(body, 7, &[]), Err(BodyTooLarge));
        assert_eq!(run(b"5\r\nhello", 4, &[]), Err(BodyTooLarge));
        // Rejected at the end of the size line, before any data of that chunk.
        let mut d = ChunkedDecoder::new(100);
        let mut seen = 0;
        let r = d.decode(b"5\r\nhello\r\n1000\r\nxx", &mut |b| seen += b.len());
        assert_eq!((r, seen, d.decoded_len()), (Err(BodyTooLarge), 5, 5));
        assert!(run(b"ffffffffffffffff\r\n", u64::MAX, &[]).is_ok());
    }

    #[test]
    fn round_trip_with_encoder() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut enc = Vec::new();
        for piece in payload.chunks(777) {
            write_chunk_header(&mut enc, piece.len());
            enc.extend_from_slice(piece);
            enc.extend_from_slice(CHUNK_END);
        }
        enc.extend_from_slice(LAST_CHUNK);
        let (data, n, done, calls) = whole(&enc).unwrap();
        assert_eq!((data, n, done, calls), (payload, enc.len(), true, 13));
        let mut h = Vec::new();
        for len in [0, 1, 15, 16, 255, 4096, usize::MAX] {
            h.clear();
            write_chunk_header(&mut h, len);
            assert_eq!(h, format!("{len:x}\r\n").as_bytes());
        }
    }

    #[test]
    fn trailers_kept_when_asked_and_filtered_on_the_way_out() {
        let body =
            b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nContent-Length: 9\r\ngrpc-message: ok%20x\r\n\r\n";
        let mut dec = ChunkedDecoder::new(u64::MAX);
        dec.keep_trailers();
        // split at every byte: the kept lines do not depend on how input arrives
        for b in body.chunks(1) {
            dec.decode(b, &mut |_| {}).unwrap();
        }
        assert!(dec.is_done());
        assert_eq!(
            dec.trailers(),
            b"grpc-status: 0\r\nContent-Length: 9\r\ngrpc-message: ok%20x\r\n"
        );
        let mut out = Vec::new();
        write_last_chunk(&mut out, dec.trailers());
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\ngrpc-message: ok%20x\r\n\r\n");
        let mut plain = ChunkedDecoder::new(u64::MAX);
        plain.decode(body, &mut |_| {}).unwrap();
        assert_eq!(plain.trailers(), b"", "dropped unless kept");
        let mut out = Vec::new();
        write_last_chunk(&mut out, plain.trailers());
        assert_eq!(out, LAST_CHUNK);
    }
}
