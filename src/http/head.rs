//! Strict HTTP/1.1 message-head parsing: request heads from clients, response heads from upstreams.
//!
//! Owns: turning the bytes at the front of a connection buffer into a [`RequestHead`] or
//! [`ResponseHead`] made of offsets into that buffer (no copies, no allocation once the per-connection
//! header vector has grown), and deciding the message framing ([`BodyKind`]).
//!
//! Flow: the connection driver reads into its buffer and calls [`parse_request`] until it returns
//! `Ok(Some(..))`. Tokenising is done by `httparse` (SIMD, strict about token and value bytes, rejects
//! whitespace before the colon and obs-fold in requests); on top of it we enforce what httparse leaves
//! lenient and what request smuggling needs: CRLF only (bare LF rejected), one Host on HTTP/1.1, one
//! well-formed Content-Length, Transfer-Encoding exactly `chunked` and never beside Content-Length
//! (a valid coding list ending in `chunked`, like `gzip, chunked`, is 501: not implemented), no
//! Transfer-Encoding on HTTP/1.0, origin-form, absolute-form (its authority replaces Host) or `*`
//! targets, and the size limits (414 for the request line, 431 for the head).
//!
//! Errors: every rejection is a [`HeadError`] carrying the status to answer; the caller answers it and
//! closes the connection, so nothing of a rejected request reaches an upstream.

use std::mem::MaybeUninit;

/// Hard cap on header fields per head (`server.max_headers` is clamped to it).
pub const MAX_HEADERS_HARD: usize = 128;

/// A byte range `start..end` inside the connection buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
    /// Where `s`, a slice of the buffer at `base`, lies in it. An empty `s` may not point into
    /// the buffer at all (httparse answers a status line without a reason, or with obs-text in
    /// it, with a `""` literal): it is the empty span.
    #[inline]
    fn of(base: *const u8, s: &[u8]) -> Span {
        if s.is_empty() {
            return Span::default();
        }
        let start = s.as_ptr() as usize - base as usize;
        Span {
            start: start as u32,
            end: (start + s.len()) as u32,
        }
    }
}

/// Headers the proxy treats specially, classified once while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Keep-Alive, TE, Trailer, Upgrade, Proxy-*: hop-by-hop, never forwarded.
    HopByHop,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Via,
    XRequestId,
    Other,
}

/// One header field: name and value spans plus its classification.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub name: Span,
    pub value: Span,
    pub kind: HeaderKind,
}

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the upstream closes.
    UntilClose,
}

/// Why a head was rejected, and the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> HeadError {
    HeadError {
        status: 400,
        reason,
    }
}

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// A parsed request head; all spans point into the buffer it was parsed from.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: Span,
    pub target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
    /// Bytes of the head including the final CRLF CRLF.
    pub head_len: usize,
    pub body: BodyKind,
    /// Index into `headers` of the Host field.
    pub host: Option<u16>,
    /// The client asked to keep the connection open (HTTP/1.1 default, or 1.0 with keep-alive).
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// `TE: trailers`: the client reads trailer fields (gRPC clients always say so); upstream
    /// trailers are passed on to it.
    pub te_trailers: bool,
    /// The Connection header named fields other than close/keep-alive: they are dropped too.
    pub conn_named: bool,
    /// The authority of an absolute-form target (`GET http://host/path`): it replaces Host (RFC 9112
    /// §3.2.2), and `target` then spans only the path and query (empty path = `/`).
    pub authority: Option<Span>,
}

impl RequestHead {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method.get(buf)
    }
    pub fn target<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.target.get(buf)
    }
    /// The request path without its query string.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let t = self.target.get(buf);
        match memchr::memchr(b'?', t) {
            Some(i) => &t[..i],
            None => t,
        }
    }
    /// The request's host: the authority of an absolute-form target, else the Host header.
    pub fn host<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        match (self.authority, self.host) {
            (Some(a), _) => a.get(buf),
            (None, Some(i)) => self.headers[i as usize].value.get(buf),
            (None, None) => b"",
        }
    }
    /// The request names a host (Host header or absolute-form target).
    pub fn has_host(&self) -> bool {
        self.authority.is_some() || self.host.is_some()
    }
    /// First header with this (lower-case) name.
    pub fn header<'a>(&self, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        first_header(&self.headers, buf, name)
    }
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to retry on another connection.
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        matches!(
            self.method.get(buf),
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        )
    }
}

/// The value of the first of `headers` called `name` (case-insensitive).
fn first_header<'a>(headers: &[Header], buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.get(buf))
}

/// A parsed response head from an upstream.
#[derive(Debug, Default, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub minor: u8,
    pub reason: Span,
    pub headers: Vec<Header>,
    pub head_len: usize,
    pub body: BodyKind,
    /// The upstream will keep the connection open after this response.
    pub keep_alive: bool,
    pub conn_named: bool,
}

impl ResponseHead {
    /// First header with this (lower-case) name.
    pub fn header<'a>(&self, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        first_header(&self.headers, buf, name)
    }
}

/// What a field name is to the proxy (framing, hop-by-hop, managed...); `Other` for the rest.
pub(crate) fn classify(name: &[u8]) -> HeaderKind {
    use HeaderKind::*;
    let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if eq(b"te") => HopByHop,
        3 if eq(b"via") => Via,
        4 if eq(b"host") => Host,
        6 if eq(b"expect") => Expect,
        7 if eq(b"trailer") || eq(b"upgrade") => HopByHop,
        10 if eq(b"connection") => Connection,
        10 if eq(b"keep-alive") => HopByHop,
        12 if eq(b"x-request-id") => XRequestId,
        14 if eq(b"content-length") => ContentLength,
        15 if eq(b"x-forwarded-for") => XForwardedFor,
        16 if eq(b"x-forwarded-host") => XForwardedHost,
        17 if eq(b"transfer-encoding") => TransferEncoding,
        17 if eq(b"x-forwarded-proto") => XForwardedProto,
        n if n > 6 && name[..6].eq_ignore_ascii_case(b"proxy-") => HopByHop,
        _ => Other,
    }
}

/// Every LF in the head must be preceded by CR (bare LF is a desync vector).
fn check_crlf(head: &[u8]) -> Result<(), HeadError> {
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return Err(bad("bare LF in request head"));
        }
    }
    Ok(())
}

/// Parses a Content-Length value: 1..=18 ASCII digits, nothing else.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

/// Calls `f` with each comma-separated, whitespace-trimmed, non-empty token of a header value.
pub fn for_each_token(v: &[u8], mut f: impl FnMut(&[u8])) {
    for part in v.split(|&b| b == b',') {
        let t = part.trim_ascii();
        if !t.is_empty() {
            f(t);
        }
    }
}

fn request_line_len(buf: &[u8], max: usize) -> Result<Option<usize>, HeadError> {
    let window = &buf[..buf.len().min(max + 2)];
    match memchr::memchr(b'\n', window) {
        Some(i) if i > max + 1 => Err(HeadError {
            status: 414,
            reason: "request line too long",
        }),
        Some(i) => Ok(Some(i)),
        None if buf.len() > max + 1 => Err(HeadError {
            status: 414,
            reason: "request line too long",
        }),
        None => Ok(None),
    }
}

/// Parses a request head at the front of `buf`. `Ok(None)`: incomplete, read more (the limits are
/// already checked against what is buffered, so the caller may keep reading).
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<Option<()>, HeadError> {
    // Tolerate (RFC 9112 §2.2) but do not require leading empty lines? No: a strict gateway rejects
    // anything before the request line except nothing at all.
    let Some(line_end) = request_line_len(buf, limits.max_request_line)? else {
        return Ok(None);
    };
    if line_end > limits.max_request_line + 1 {
        return Err(HeadError {
            status: 414,
            reason: "request line too long",
        });
    }
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS_HARD);
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_HARD] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS_HARD];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut raw[..max_headers]);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HeadError {
                    status: 431,
                    reason: "request header fields too large",
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError {
                status: 431,
                reason: "too many header fields",
            })
        }
        Err(httparse::Error::Version) => {
            return Err(HeadError {
                status: 505,
                reason: "HTTP version not supported",
            })
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    if head_len > limits.max_header_bytes {
        return Err(HeadError {
            status: 431,
            reason: "request header fields too large",
        });
    }
    check_crlf(&buf[..head_len])?;
    let base = buf.as_ptr();
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    head.method = Span::of(base, method.as_bytes());
    check_target(method.as_bytes(), target.as_bytes())?;
    let (authority, target) = split_absolute_form(target.as_bytes())?;
    head.authority = authority.map(|a| Span::of(base, a));
    head.target = Span::of(base, target);
    head.minor = req.version.unwrap_or(1);
    head.head_len = head_len;
    head.headers.clear();
    head.host = None;
    head.expect_continue = false;
    head.te_trailers = false;
    head.conn_named = false;
    head.keep_alive = head.minor == 1;

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut te_other = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value;
        let kind = classify(name);
        match kind {
            HeaderKind::Host => {
                if head.host.is_some() {
                    return Err(bad("duplicate Host header"));
                }
                if !valid_host(value) {
                    return Err(bad("invalid Host header"));
                }
                head.host = Some(head.headers.len() as u16);
            }
            HeaderKind::ContentLength => {
                if content_length.is_some() {
                    return Err(bad("multiple Content-Length headers"));
                }
                content_length =
                    Some(parse_content_length(value).ok_or(bad("invalid Content-Length"))?);
            }
            HeaderKind::TransferEncoding => {
                // one list across all field lines: exactly `chunked`, once. Other codings (`gzip,
                // chunked`) are valid HTTP but not implemented here: 501, as nginx answers, rather
                // than forward a coding upstreams disagree on (RFC 9112 §6.1).
                let mut err = false;
                for_each_token(value, |t| {
                    if chunked {
                        err = true; // anything after chunked, or chunked twice
                    } else if t.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else if valid_coding(t) {
                        te_other = true;
                    } else {
                        err = true;
                    }
                });
                if err {
                    return Err(bad("Transfer-Encoding must end with chunked"));
                }
                te_seen = true;
            }
            HeaderKind::Connection => {
                let mut err = false;
                for_each_token(value, |t| {
                    if t.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        head.keep_alive = head.keep_alive || head.minor == 0;
                    } else if !t.iter().all(|&b| is_token(b)) {
                        err = true;
                    } else {
                        head.conn_named = true;
                    }
                });
                if err {
                    return Err(bad("invalid Connection header"));
                }
            }
            HeaderKind::HopByHop if name.len() == 2 => {
                // `te` (the only two-letter hop-by-hop field)
                for_each_token(value, |t| {
                    head.te_trailers |= t.eq_ignore_ascii_case(b"trailers")
                });
            }
            HeaderKind::Expect => {
                if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    head.expect_continue = true;
                } else {
                    return Err(HeadError {
                        status: 417,
                        reason: "unsupported expectation",
                    });
                }
            }
            _ => {}
        }
        head.headers.push(Header {
            name: Span::of(base, name),
            value: Span::of(base, value),
            kind,
        });
    }
    if te_seen && !chunked {
        return Err(bad("Transfer-Encoding must end with chunked"));
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is 400 even in absolute form
    if head.minor == 1 && head.host.is_none() {
        return Err(bad("missing Host header"));
    }
    head.body = match (content_length, chunked) {
        (Some(_), true) => return Err(bad("both Content-Length and Transfer-Encoding")),
        (_, true) if head.minor == 0 => return Err(bad("Transfer-Encoding in HTTP/1.0")),
        (_, true) => BodyKind::Chunked,
        (Some(0), false) | (None, false) => BodyKind::None,
        (Some(n), false) => BodyKind::Length(n),
    };
    // after the framing checks: CL + TE (or TE on HTTP/1.0) stays a 400 whatever the codings
    if te_other {
        return Err(HeadError {
            status: 501,
            reason: "transfer coding not implemented (only chunked)",
        });
    }
    if head.body == BodyKind::None {
        head.expect_continue = false;
    }
    Ok(Some(()))
}

/// A transfer coding other than chunked: `token *( OWS ";" OWS token [ "=" token ] )`.
fn valid_coding(t: &[u8]) -> bool {
    let mut parts = t.split(|&b| b == b';');
    let name = parts.next().unwrap_or(b"").trim_ascii();
    !name.is_empty()
        && name.iter().all(|&b| is_token(b))
        && parts.all(|p| {
            let p = p.trim_ascii();
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (p[..i].trim_ascii(), Some(p[i + 1..].trim_ascii())),
                None => (p, None),
            };
            !k.is_empty()
                && k.iter().all(|&b| is_token(b))
                && v.is_none_or(|v| !v.is_empty() && v.iter().all(|&b| is_token(b)))
        })
}

/// Request targets: origin-form (`/path?query`), absolute-form (`http://host/path?query`, which a
/// server MUST accept: RFC 9112 §3.2.2), or `*` for OPTIONS. Authority-form (CONNECT) is for forward
/// proxies: 400.
fn check_target(method: &[u8], target: &[u8]) -> Result<(), HeadError> {
    match target.first() {
        Some(b'/') => {}
        Some(b'*') if target.len() == 1 && method == b"OPTIONS" => {}
        _ if absolute_scheme_len(target).is_some() => {}
        _ => return Err(bad("request target must be an absolute path")),
    }
    if target.iter().any(|&b| b <= b' ' || b == 0x7f || b == b'#') {
        return Err(bad("invalid request target"));
    }
    Ok(())
}

/// `http://` or `https://` (case-insensitive) at the front: its length.
fn absolute_scheme_len(target: &[u8]) -> Option<usize> {
    [&b"http://"[..], b"https://"].into_iter().find_map(|s| {
        (target.len() >= s.len() && target[..s.len()].eq_ignore_ascii_case(s)).then_some(s.len())
    })
}

/// Splits an absolute-form target into (authority, path-and-query); origin-form passes through.
/// The authority must be a plain host[:port] (userinfo is refused, RFC 9110 §4.2.4).
fn split_absolute_form(target: &[u8]) -> Result<(Option<&[u8]>, &[u8]), HeadError> {
    let Some(skip) = absolute_scheme_len(target) else {
        return Ok((None, target));
    };
    let rest = &target[skip..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(&b'@') || !valid_host(authority) {
        return Err(bad("invalid authority in request target"));
    }
    Ok((Some(authority), &rest[end..]))
}

/// Host: reg-name / IPv4 / [IPv6] with an optional port; empty is allowed (no authority).
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'~')
    })
}

/// RFC 9110 tchar.
#[inline]
pub fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Parses an upstream response head. `request_method_head`: the request was HEAD (no body follows).
pub fn parse_response(
    buf: &[u8],
    max_header_bytes: usize,
    request_method_head: bool,
    head: &mut ResponseHead,
) -> Result<Option<()>, HeadError> {
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_HARD] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS_HARD];
    let mut resp = httparse::Response::new(&mut []);
    let upstream_bad = |reason| HeadError {
        status: 502,
        reason,
    };
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_header_bytes {
                return Err(upstream_bad("upstream response head too large"));
            }
            return Ok(None);
        }
        Err(_) => return Err(upstream_bad("malformed upstream response head")),
    };
    let base = buf.as_ptr();
    head.status = resp.code.unwrap_or(0);
    head.minor = resp.version.unwrap_or(1);
    head.reason = Span::of(base, resp.reason.unwrap_or("").as_bytes());
    head.head_len = head_len;
    head.headers.clear();
    head.keep_alive = head.minor == 1;
    head.conn_named = false;
    let mut content_length: Option<u64> = None;
    let mut te_chunked = false;
    let mut te_other = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value;
        let kind = classify(name);
        match kind {
            HeaderKind::ContentLength => {
                let n = parse_content_length(value.trim_ascii())
                    .ok_or(upstream_bad("invalid upstream Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(upstream_bad("conflicting upstream Content-Length"));
                }
                content_length = Some(n);
            }
            HeaderKind::TransferEncoding => {
                // The last coding decides: chunked last -> chunked framing; anything else -> close.
                let mut last_chunked = false;
                for_each_token(value, |t| last_chunked = t.eq_ignore_ascii_case(b"chunked"));
                te_chunked = last_chunked;
                te_other |= !last_chunked;
            }
            HeaderKind::Connection => for_each_token(value, |t| {
                if t.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = head.keep_alive || head.minor == 0;
                } else {
                    head.conn_named = true;
                }
            }),
            _ => {}
        }
        head.headers.push(Header {
            name: Span::of(base, name),
            value: Span::of(base, value),
            kind,
        });
    }
    let no_body = request_method_head
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    head.body = if no_body {
        BodyKind::None
    } else if te_chunked && !te_other {
        BodyKind::Chunked
    } else if te_chunked || te_other {
        head.keep_alive = false;
        BodyKind::UntilClose
    } else if let Some(n) = content_length {
        if n == 0 {
            BodyKind::None
        } else {
            BodyKind::Length(n)
        }
    } else {
        head.keep_alive = false;
        BodyKind::UntilClose
    };
    Ok(Some(()))
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
