//! Proxy header duties (RFC 9110 §7.6): writing the request head sent upstream and the response head
//! sent back to the client.
//!
//! Owns: hop-by-hop removal (Connection and every field it names, Keep-Alive, TE, Trailer, Upgrade,
//! Proxy-*), X-Forwarded-For/-Proto/-Host, Via, X-Request-Id, Host rewriting, credentials the route
//! does not forward (named headers dropped, a credential cookie cut out of Cookie), and framing headers
//! (Content-Length / Transfer-Encoding are always re-derived from the parsed framing, never copied).
//!
//! Flow: the connection driver parsed a head into spans over its read buffer; these functions append
//! the outgoing head to the driver's reusable output buffer in one pass. No allocation once `out` has
//! grown to its working size.

use super::credentials;
use super::head::{for_each_token, BodyKind, Header, HeaderKind, RequestHead, ResponseHead};

/// Our pseudonym in Via (RFC 9110 §7.6.3).
pub const VIA: &[u8] = b"1.1 coregate";

/// Framing of a body as it is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    None,
    Length(u64),
    Chunked,
    /// Body delimited by closing the connection (HTTP/1.0 clients only).
    Close,
}

/// Is this header dropped because the Connection header named it?
fn named_by_connection(buf: &[u8], headers: &[Header], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.kind == HeaderKind::Connection)
        .any(|h| {
            let mut hit = false;
            for_each_token(h.value.get(buf), |t| hit |= t.eq_ignore_ascii_case(name));
            hit
        })
}

#[inline]
pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn push_framing(out: &mut Vec<u8>, framing: OutFraming) {
    match framing {
        OutFraming::None | OutFraming::Close => {}
        OutFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
}

/// What the driver knows about the request beyond its head.
pub struct Forwarding<'a> {
    /// Request target to send (already prefix-rewritten).
    pub target: &'a [u8],
    /// Replaces Host when the route says so.
    pub host_rewrite: Option<&'a [u8]>,
    /// Host to send when the client sent none (HTTP/1.0): the endpoint address.
    pub fallback_host: &'a [u8],
    /// Client IP as text.
    pub client_ip: &'a [u8],
    pub request_id: &'a [u8],
    /// "http" or "https".
    pub proto: &'a [u8],
    /// Lower-cased header names dropped from the client's head (identity headers the gateway
    /// manages, credentials it does not forward).
    pub strip: &'a [Box<[u8]>],
    /// A cookie removed from every Cookie field (a credential not forwarded; see `credentials`).
    pub strip_cookie: Option<&'a [u8]>,
    /// (lower-cased name, value) appended: the authenticated identity.
    pub add: &'a [(String, String)],
    /// The route's `request_headers`: names whose client fields are dropped, and rendered
    /// `name: value\r\n` lines appended.
    pub transform_strip: &'a [Box<[u8]>],
    pub transform_lines: &'a [u8],
    /// The gateway span's `traceparent`, sent in place of the client's.
    pub traceparent: &'a [u8],
    /// Forward the client's `tracestate` (only when its `traceparent` was continued).
    pub keep_tracestate: bool,
    /// The verified client certificate's SHA-256 fingerprint (hex) and subject, sent as
    /// [`CLIENT_CERT_FINGERPRINT`] and [`CLIENT_CERT_SUBJECT`]. Client-sent copies of those two
    /// fields are always dropped, on every listener.
    pub client_cert: Option<(&'a [u8], &'a [u8])>,
    /// An upgrade passed on (its protocol token): `Connection: upgrade` and `Upgrade: token` are
    /// sent in place of the stripped hop-by-hop fields.
    pub upgrade: Option<&'a [u8]>,
}

/// Request fields the gateway writes itself (framing, hop-by-hop, forwarding, request id, trace
/// context): never copied from a client by configuration (lower-case `name`).
pub fn is_managed_request_field(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "expect"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "forwarded"
            | "via"
            | "x-request-id"
            | "traceparent"
            | "tracestate"
    )
}

/// Fields the gateway alone sets, from the TLS session's verified client certificate.
pub const CLIENT_CERT_FINGERPRINT: &[u8] = b"x-client-cert-fingerprint";
pub const CLIENT_CERT_SUBJECT: &[u8] = b"x-client-cert-subject";

/// Field-name equality as backends see it: ASCII case-insensitive, and `_` equal to `-` (CGI-style
/// frameworks map both to the same variable, so `X_User_Id` would impersonate a managed
/// `x-user-id`; nginx drops underscore names by default for the same reason).
fn same_field_name(name: &[u8], managed: &[u8]) -> bool {
    let fold = |b: u8| {
        if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    };
    name.len() == managed.len() && name.iter().zip(managed).all(|(&a, &b)| fold(a) == fold(b))
}

/// Appends the request head sent upstream: always HTTP/1.1 and keep-alive.
pub fn write_upstream_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    ctx: &Forwarding<'_>,
) {
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    out.extend_from_slice(ctx.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = head.host(buf);
    let host_out = match ctx.host_rewrite {
        Some(h) => h,
        None if head.has_host() => host,
        None => ctx.fallback_host,
    };
    push_header(out, b"host", host_out);

    let mut xff_seen = false;
    let mut via_seen = false;
    for h in &head.headers {
        match h.kind {
            HeaderKind::Host
            | HeaderKind::ContentLength
            | HeaderKind::TransferEncoding
            | HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::Expect
            | HeaderKind::XForwardedProto
            | HeaderKind::XForwardedHost
            | HeaderKind::XRequestId => continue,
            HeaderKind::XForwardedFor | HeaderKind::Via => {
                // merged below into one field each
                if h.kind == HeaderKind::XForwardedFor {
                    xff_seen = true
                } else {
                    via_seen = true
                }
                continue;
            }
            HeaderKind::Other => {
                let name = h.name.get(buf);
                if head.conn_named && named_by_connection(buf, &head.headers, name) {
                    continue;
                }
                if ctx.strip.iter().any(|s| same_field_name(name, s))
                    || ctx
                        .transform_strip
                        .iter()
                        .any(|s| name.eq_ignore_ascii_case(s))
                    || same_field_name(name, CLIENT_CERT_FINGERPRINT)
                    || same_field_name(name, CLIENT_CERT_SUBJECT)
                {
                    continue;
                }
                if let Some(c) = ctx
                    .strip_cookie
                    .filter(|_| name.eq_ignore_ascii_case(b"cookie"))
                {
                    credentials::push_cookie_header(out, name, h.value.get(buf), c);
                    continue;
                }
                if name.eq_ignore_ascii_case(b"traceparent")
                    || (!ctx.keep_tracestate && name.eq_ignore_ascii_case(b"tracestate"))
                {
                    continue;
                }
            }
        }
        push_header(out, h.name.get(buf), h.value.get(buf));
    }
    merged(
        out,
        buf,
        &head.headers,
        HeaderKind::XForwardedFor,
        xff_seen,
        b"x-forwarded-for",
        ctx.client_ip,
    );
    merged(
        out,
        buf,
        &head.headers,
        HeaderKind::Via,
        via_seen,
        b"via",
        VIA,
    );
    push_header(out, b"x-forwarded-proto", ctx.proto);
    if head.has_host() {
        push_header(out, b"x-forwarded-host", host);
    }
    push_header(out, b"x-request-id", ctx.request_id);
    if !ctx.traceparent.is_empty() {
        push_header(out, b"traceparent", ctx.traceparent);
    }
    for (name, value) in ctx.add {
        push_header(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(ctx.transform_lines);
    if let Some((fingerprint, subject)) = ctx.client_cert {
        push_header(out, CLIENT_CERT_FINGERPRINT, fingerprint);
        push_header(out, CLIENT_CERT_SUBJECT, subject);
    }
    if let Some(token) = ctx.upgrade {
        super::upgrade::write_request(out, token);
    }
    match head.body {
        BodyKind::None | BodyKind::UntilClose => {}
        BodyKind::Length(n) => push_framing(out, OutFraming::Length(n)),
        BodyKind::Chunked => push_framing(out, OutFraming::Chunked),
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `name: v1, v2, ..., last`: every existing field of `kind` joined, then ours appended.
#[allow(clippy::too_many_arguments)]
fn merged(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[Header],
    kind: HeaderKind,
    seen: bool,
    name: &[u8],
    last: &[u8],
) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    if seen {
        for h in headers.iter().filter(|h| h.kind == kind) {
            let v = h.value.get(buf).trim_ascii();
            if !v.is_empty() {
                out.extend_from_slice(v);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(last);
    out.extend_from_slice(b"\r\n");
}

/// Appends the response head sent to the client.
#[allow(clippy::too_many_arguments)]
pub fn write_client_response(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    request_id: &[u8],
    keep_alive: bool,
    framing: OutFraming,
    extra: &[u8],
    strip: &[Box<[u8]>],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, head.status as u64);
    out.push(b' ');
    out.extend_from_slice(head.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        match h.kind {
            // never on 1xx/204 (RFC 9110 §8.6)
            HeaderKind::ContentLength if head.status == 204 || head.status < 200 => continue,
            HeaderKind::ContentLength if head.body == BodyKind::None => {
                // HEAD / 304 responses keep the Content-Length the upstream declared
            }
            HeaderKind::ContentLength
            | HeaderKind::TransferEncoding
            | HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::XRequestId => continue,
            HeaderKind::Other
                if head.conn_named && named_by_connection(buf, &head.headers, h.name.get(buf)) =>
            {
                continue
            }
            // `response_headers` replaces or removes it
            _ if !strip.is_empty()
                && crate::transform::headers::stripped(strip, h.name.get(buf)) =>
            {
                continue
            }
            _ => {}
        }
        push_header(out, h.name.get(buf), h.value.get(buf));
    }
    push_header(out, b"x-request-id", request_id);
    out.extend_from_slice(extra);
    push_framing(out, framing);
    out.extend_from_slice(if keep_alive {
        b"connection: keep-alive\r\n\r\n"
    } else {
        b"connection: close\r\n\r\n"
    });
}

/// Is a client-supplied request id safe to keep? 1..=128 chars of `[A-Za-z0-9._:-]`.
pub fn sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Generates request ids without allocating: `{random prefix}-{worker}-{counter}` in hex.
pub struct RequestIdGen {
    prefix: u32,
    worker: u16,
    counter: u64,
}

impl RequestIdGen {
    pub fn new(worker: usize) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = t ^ ((std::process::id() as u64) << 32);
        let prefix = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32;
        RequestIdGen {
            prefix,
            worker: worker as u16,
            counter: 0,
        }
    }

    /// Writes the next id into `dst` and returns its length.
    pub fn next(&mut self, dst: &mut [u8; 40]) -> usize {
        self.counter += 1;
        fn hex(dst: &mut [u8], v: u64) {
            let digits = dst.len();
            for (i, d) in dst.iter_mut().enumerate() {
                *d = b"0123456789abcdef"[((v >> ((digits - 1 - i) * 4)) & 0xf) as usize];
            }
        }
        hex(&mut dst[0..8], self.prefix as u64);
        dst[8] = b'-';
        hex(&mut dst[9..11], self.worker as u64);
        dst[11] = b'-';
        hex(&mut dst[12..24], self.counter);
        24
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response, HeadLimits};

    const LIMITS: HeadLimits = HeadLimits {
        max_request_line: 1024,
        max_header_bytes: 4096,
        max_headers: 64,
    };

    #[test]
    fn upstream_request_hygiene() {
        let raw =
            b"POST /api/x HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, x-secret\r\n\
X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: b\r\nUpgrade: h2c\r\n\
X-Forwarded-For: 10.0.0.1\r\nVia: 1.0 edge\r\nX-Request-Id: bad id\r\nContent-Length: 3\r\n\
X-Forwarded-Proto: https\r\nAccept: */*\r\nExpect: 100-continue\r\n\r\nabc";
        let mut head = RequestHead::default();
        parse_request(raw, &LIMITS, &mut head).unwrap().unwrap();
        let mut out = Vec::new();
        let ctx = Forwarding {
            target: b"/x",
            host_rewrite: None,
            fallback_host: b"127.0.0.1:1",
            client_ip: b"127.0.0.1",
            request_id: b"rid-1",
            proto: b"http",
            strip: &[],
            strip_cookie: None,
            add: &[],
            transform_strip: &[],
            transform_lines: b"",
            traceparent: b"",
            keep_tracestate: true,
            client_cert: None,
            upgrade: None,
        };
        write_upstream_request(&mut out, raw, &head, &ctx);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("POST /x HTTP/1.1\r\nhost: a.example\r\n"),
            "{s}"
        );
        for gone in [
            "X-Secret",
            "Keep-Alive",
            "TE:",
            "Proxy-",
            "Upgrade",
            "Connection",
            "Expect",
        ] {
            assert!(!s.contains(gone), "{gone} leaked: {s}");
        }
        assert!(s.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"));
        assert!(s.contains("via: 1.0 edge, 1.1 coregate\r\n"));
        assert!(s.contains("x-forwarded-proto: http\r\n"));
        assert!(!s.contains("https"));
        assert!(s.contains("x-forwarded-host: a.example\r\n"));
        assert!(s.contains("x-request-id: rid-1\r\n"));
        assert!(s.contains("Accept: */*\r\n"));
        assert!(s.ends_with("content-length: 3\r\n\r\n"));
    }

    #[test]
    fn credential_cookie_cut_from_every_cookie_field() {
        let raw = b"GET /a HTTP/1.1\r\nHost: a\r\nCookie: session=t1; theme=dark\r\n\
X-Token: t\r\ncookie: session=t2\r\nCOOKIE: lang=en;session=t3\r\n\r\n";
        let mut head = RequestHead::default();
        parse_request(raw, &LIMITS, &mut head).unwrap().unwrap();
        let strip: [Box<[u8]>; 1] = [b"x-token".as_slice().into()];
        let ctx = Forwarding {
            target: b"/a",
            host_rewrite: None,
            fallback_host: b"127.0.0.1:1",
            client_ip: b"127.0.0.1",
            request_id: b"r",
            proto: b"http",
            strip: &strip,
            strip_cookie: Some(b"session"),
            add: &[],
            transform_strip: &[],
            transform_lines: b"",
            traceparent: b"",
            keep_tracestate: true,
            client_cert: None,
            upgrade: None,
        };
        let mut out = Vec::new();
        write_upstream_request(&mut out, raw, &head, &ctx);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("session") && !s.contains("X-Token"), "{s}");
        assert!(
            s.starts_with(
                "GET /a HTTP/1.1\r\nhost: a\r\nCookie: theme=dark\r\nCOOKIE: lang=en\r\n"
            ),
            "{s}"
        );
        assert_eq!(s.to_ascii_lowercase().matches("cookie:").count(), 2, "{s}");
    }

    #[test]
    fn managed_names_match_underscore_spellings() {
        assert!(same_field_name(b"X_User_Id", b"x-user-id"));
        assert!(same_field_name(b"x-USER-id", b"x-user-id"));
        assert!(!same_field_name(b"x-user-ids", b"x-user-id"));
        assert!(!same_field_name(b"x.user.id", b"x-user-id"));
    }

    #[test]
    fn no_content_length_on_204() {
        let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n";
        let mut head = ResponseHead::default();
        parse_response(raw, 4096, false, &mut head)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_client_response(&mut out, raw, &head, b"r", true, OutFraming::None, b"", &[]);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.to_ascii_lowercase().contains("content-length"), "{s}");
    }

    #[test]
    fn client_response_hygiene() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nX-App: 2\r\n\r\n";
        let mut head = ResponseHead::default();
        parse_response(raw, 4096, false, &mut head)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_client_response(
            &mut out,
            raw,
            &head,
            b"r1",
            true,
            OutFraming::Chunked,
            b"",
            &[],
        );
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\nX-App: 2\r\nx-request-id: r1\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn request_ids() {
        let mut g = RequestIdGen::new(3);
        let mut a = [0u8; 40];
        let n = g.next(&mut a);
        let first = a[..n].to_vec();
        let n2 = g.next(&mut a);
        assert_ne!(first, a[..n2].to_vec());
        assert!(sane_request_id(&first));
        assert_eq!(&first[9..12], b"03-");
        assert!(!sane_request_id(b"has space"));
        assert!(!sane_request_id(b""));
        assert!(sane_request_id(b"abc-DEF_1.2:3"));
    }
}
