//! The gateway's own answers are made here, and only here.
//!
//! Owns: [`Reply`], the one type for everything the gateway answers itself rather than relaying
//! (what went wrong, which side is at fault, whether a retry is safe, its status, message, whether
//! the connection must close, and the gRPC status it maps to), and its rendering per protocol:
//! [`render_h1`] writes the status line, headers and JSON body a client sees:
//! `{"error": "...", "status": N, "request_id": "..."}`. The pipeline turns every failure into a
//! `Reply`; nothing else writes the gateway's own responses.

use std::fmt::Write as _;

/// Which side of the proxy caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

/// Every client-facing failure, with one status and one message each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request head was rejected by the parser (status from the parser: 400, 414, 417, 431, 505).
    BadRequest {
        status: u16,
        reason: &'static str,
    },
    /// The request body was malformed (bad chunk framing).
    BadBody,
    BodyTooLarge,
    HeaderTimeout,
    NoRoute,
    MethodNotAllowed,
    /// Every endpoint of the upstream is ejected.
    NoHealthyUpstream,
    /// 503: the upstream's circuit breaker is open (the upstream was not called); the client may
    /// try again in `retry_after` seconds (`Retry-After`).
    CircuitOpen {
        retry_after: u32,
    },
    /// 503: a concurrency limit is reached (a bulkhead of the route, a pool it names or its
    /// upstream, or the upstream's adaptive limit); `Retry-After: 1`.
    RouteBusy,
    ConnectFailed,
    ConnectTimeout,
    /// The TLS handshake with the upstream failed (certificate, name, protocol).
    UpstreamTls,
    /// The upstream closed or reset the connection before a complete response head.
    UpstreamReset,
    ResponseTimeout,
    /// The upstream's response head was malformed.
    BadUpstreamResponse {
        reason: &'static str,
    },
    /// 401: no or bad credentials; `bearer` picks the WWW-Authenticate scheme (else ApiKey);
    /// `presented`: a credential was sent (only then does the challenge carry an error code, RFC 6750
    /// §3.1: a request without authentication information gets none).
    Unauthorized {
        reason: &'static str,
        bearer: bool,
        presented: bool,
    },
    /// 403: authenticated, lacking a required role or scope.
    Forbidden,
    /// 403: the route needs a verified client certificate and the connection has none.
    ClientCertRequired,
    /// 403: the client certificate carries none of the route's allowed names.
    ClientCertNotAllowed,
    /// 403: the client address is not allowed (`allow_ips` / `deny_ips`).
    IpDenied,
    /// 503: the phantom-token store or introspection endpoint could not answer.
    AuthUnavailable,
    /// 429: a rate limit's bucket does not hold the request's cost.
    RateLimited,
    /// 429: a quota's window is used up.
    QuotaExceeded,
    /// The route's WAF scored the request at or over its threshold (`waf.status`, 403 by
    /// default); the matched rule ids go in the body (`rules`).
    WafBlocked {
        status: u16,
    },
    /// 400: the request failed the route's validation (`schema`, query and header checks); the
    /// problems go in the body (`problems`).
    Invalid,
}

/// An error with its kind, the side at fault and whether another attempt is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub kind: ErrorKind,
    pub side: Side,
    pub retryable: bool,
}

impl Reply {
    pub fn new(kind: ErrorKind) -> Self {
        use ErrorKind::*;
        let (side, retryable) = match kind {
            BadRequest { .. } | BadBody | BodyTooLarge | HeaderTimeout => (Side::Downstream, false),
            NoRoute | MethodNotAllowed => (Side::Downstream, false),
            Unauthorized { .. } | Forbidden => (Side::Downstream, false),
            ClientCertRequired | ClientCertNotAllowed | IpDenied => (Side::Downstream, false),
            WafBlocked { .. } | Invalid => (Side::Downstream, false),
            RateLimited | QuotaExceeded => (Side::Downstream, false),
            AuthUnavailable => (Side::Internal, false),
            NoHealthyUpstream | CircuitOpen { .. } => (Side::Internal, false),
            RouteBusy => (Side::Downstream, false),
            ConnectFailed | ConnectTimeout | UpstreamTls => (Side::Upstream, true),
            UpstreamReset => (Side::Upstream, true),
            ResponseTimeout | BadUpstreamResponse { .. } => (Side::Upstream, false),
        };
        Reply {
            kind,
            side,
            retryable,
        }
    }

    /// The status a client gets.
    pub fn status(&self) -> u16 {
        use ErrorKind::*;
        match self.kind {
            BadRequest { status, .. } => status,
            BadBody => 400,
            BodyTooLarge => 413,
            HeaderTimeout => 408,
            NoRoute => 404,
            MethodNotAllowed => 405,
            NoHealthyUpstream | AuthUnavailable | CircuitOpen { .. } | RouteBusy => 503,
            Unauthorized { .. } => 401,
            Forbidden | ClientCertRequired | ClientCertNotAllowed | IpDenied => 403,
            RateLimited | QuotaExceeded => 429,
            WafBlocked { status } => status,
            Invalid => 400,
            ConnectFailed | UpstreamTls | UpstreamReset | BadUpstreamResponse { .. } => 502,
            ConnectTimeout | ResponseTimeout => 504,
        }
    }

    /// The message a client gets.
    pub fn message(&self) -> &'static str {
        use ErrorKind::*;
        match self.kind {
            BadRequest { reason, .. } => reason,
            BadBody => "malformed request body",
            BodyTooLarge => "request body too large",
            HeaderTimeout => "request head not received in time",
            NoRoute => "no route matches the request",
            MethodNotAllowed => "method not allowed on this route",
            NoHealthyUpstream => "no healthy upstream endpoint",
            CircuitOpen { .. } => "upstream circuit breaker is open",
            RouteBusy => "concurrency limit reached",
            ConnectFailed => "upstream connection failed",
            ConnectTimeout => "upstream connect timed out",
            UpstreamTls => "upstream TLS handshake failed",
            UpstreamReset => "upstream closed the connection",
            ResponseTimeout => "upstream response timed out",
            BadUpstreamResponse { reason } => reason,
            Unauthorized { reason, .. } => reason,
            Forbidden => "insufficient role or scope for this route",
            ClientCertRequired => "a verified client certificate is required",
            ClientCertNotAllowed => "the client certificate is not allowed on this route",
            IpDenied => "client address not allowed",
            AuthUnavailable => "authentication backend unavailable",
            RateLimited => "rate limit exceeded",
            QuotaExceeded => "quota exceeded",
            WafBlocked { .. } => "request blocked by the web application firewall",
            Invalid => "request failed validation",
        }
    }

    /// The gRPC status code this answer maps to (the HTTP-to-gRPC mapping of grpc/doc/statuscodes.md
    /// and http-grpc-status-mapping.md), for answering gRPC clients in their own terms.
    pub fn grpc_status(&self) -> u8 {
        use ErrorKind::*;
        match self.kind {
            Unauthorized { .. } => 16, // UNAUTHENTICATED
            Forbidden | ClientCertRequired | ClientCertNotAllowed | IpDenied => 7, // PERMISSION_DENIED
            RateLimited | QuotaExceeded => 8,  // RESOURCE_EXHAUSTED
            WafBlocked { .. } => 7,            // PERMISSION_DENIED
            Invalid => 3,                      // INVALID_ARGUMENT
            NoRoute => 12,                     // UNIMPLEMENTED
            MethodNotAllowed => 12,            // UNIMPLEMENTED
            BadRequest { .. } | BadBody => 13, // INTERNAL (malformed frame)
            BodyTooLarge => 8,                 // RESOURCE_EXHAUSTED
            ConnectTimeout | ResponseTimeout | HeaderTimeout => 4, // DEADLINE_EXCEEDED
            NoHealthyUpstream
            | AuthUnavailable
            | ConnectFailed
            | UpstreamReset
            | CircuitOpen { .. }
            | RouteBusy => 14, // UNAVAILABLE
            BadUpstreamResponse { .. } | UpstreamTls => 13, // INTERNAL
        }
    }

    /// Must the client connection be closed after answering? (Framing is lost or the client is slow.)
    pub fn closes_connection(&self) -> bool {
        use ErrorKind::*;
        matches!(
            self.kind,
            BadRequest { .. } | BadBody | BodyTooLarge | HeaderTimeout
        )
    }
}

/// Standard reason phrase for the statuses we generate.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Appends the HTTP/1.1 rendering of `err` to `out` and returns the length of its body. `allow`: value
/// of the Allow header (405); `extra`: complete header lines to add (rate-limit fields).
pub fn render_h1(
    out: &mut Vec<u8>,
    err: &Reply,
    request_id: &[u8],
    keep_alive: bool,
    allow: Option<&str>,
    extra: &[u8],
    members: &str,
) -> usize {
    let status = err.status();
    let mut body = String::with_capacity(128);
    let _ = write!(
        body,
        "{{\"error\":\"{}\",\"status\":{},\"request_id\":\"",
        err.message(),
        status
    );
    // request ids are validated to a JSON-safe charset before they get here
    body.push_str(std::str::from_utf8(request_id).unwrap_or(""));
    body.push('"');
    // more members of the answer's object (`,"rules":[...]`, `,"problems":[...]`), JSON already
    body.push_str(members);
    body.push('}');
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\n",
        status,
        reason_phrase(status),
        body.len(),
        std::str::from_utf8(request_id).unwrap_or("")
    );
    if let Some(allow) = allow {
        let _ = write!(head, "allow: {allow}\r\n");
    }
    match err.kind {
        ErrorKind::Unauthorized {
            reason,
            bearer,
            presented,
        } => {
            let scheme = if bearer { "Bearer" } else { "ApiKey" };
            let _ = write!(head, "www-authenticate: {scheme} realm=\"coregate\"");
            if presented {
                let _ = write!(
                    head,
                    ", error=\"invalid_token\", error_description=\"{reason}\""
                );
            }
            head.push_str("\r\n");
        }
        ErrorKind::Forbidden => {
            head.push_str(
                "www-authenticate: Bearer realm=\"coregate\", error=\"insufficient_scope\"\r\n",
            );
        }
        ErrorKind::CircuitOpen { retry_after } => {
            let _ = write!(head, "retry-after: {retry_after}\r\n");
        }
        ErrorKind::RouteBusy => head.push_str("retry-after: 1\r\n"),
        _ => {}
    }
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(if keep_alive && !err.closes_connection() {
        b"connection: keep-alive\r\n\r\n"
    } else {
        b"connection: close\r\n\r\n"
    });
    out.extend_from_slice(body.as_bytes());
    body.len()
}

/// Renders a route's fallback answer (`[[route]] fallback`): its status, content type and body,
/// with `x-fallback: <why>` (circuit_open, busy, no_upstream) so clients and logs can tell a
/// degraded answer from the upstream's. Returns the body length.
#[allow(clippy::too_many_arguments)]
pub fn render_fallback(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    why: &str,
    request_id: &[u8],
    keep_alive: bool,
    extra: &[u8],
) -> usize {
    let why = [b"x-fallback: ", why.as_bytes(), b"\r\n"];
    let doc = Document {
        status,
        content_type,
        body,
        marker: &why,
    };
    render_document(out, &doc, request_id, keep_alive, extra)
}

/// A whole response the gateway composed itself (a fallback, an aggregate's merged document).
pub struct Document<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// Pieces of one header line that says where the document came from (or none).
    pub marker: &'a [&'a [u8]],
}

/// Renders `doc` with its request id, the response phase's `extra` lines and keep-alive;
/// returns the body length.
pub fn render_document(
    out: &mut Vec<u8>,
    doc: &Document<'_>,
    request_id: &[u8],
    keep_alive: bool,
    extra: &[u8],
) -> usize {
    use std::io::Write;
    let (status, content_type, body) = (doc.status, doc.content_type, doc.body);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    doc.marker.iter().for_each(|p| out.extend_from_slice(p));
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(if keep_alive {
        b"connection: keep-alive\r\n\r\n"
    } else {
        b"connection: close\r\n\r\n"
    });
    out.extend_from_slice(body);
    body.len()
}

/// Is this request gRPC (`content-type: application/grpc` or `application/grpc+proto` ...; not
/// gRPC-Web, whose clients read ordinary responses)?
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.trim_ascii();
        ct.len() >= 16
            && ct[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(ct.get(16), None | Some(b'+' | b';'))
    })
}

/// A `grpc-timeout` value (gRPC over HTTP/2: 1 to 8 digits and a unit, `H` `M` `S` `m` `u` `n`)
/// as a duration; `None` when malformed (then the route's own timeouts apply).
pub fn grpc_timeout(v: &[u8]) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (&unit, digits) = v.trim_ascii().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Renders `err` for a gRPC client: a trailers-only response (gRPC over HTTP/2 spec) as an
/// HTTP/1.1 head the h2 adapter turns into one HEADERS frame with END_STREAM: status 200,
/// `content-type: application/grpc`, the mapped `grpc-status` and the message as `grpc-message`
/// (percent-encoded where the spec asks). Returns the body length (0).
pub fn render_grpc(out: &mut Vec<u8>, err: &Reply, request_id: &[u8], extra: &[u8]) -> usize {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: ");
    out.extend_from_slice(err.grpc_status().to_string().as_bytes());
    out.extend_from_slice(b"\r\ngrpc-message: ");
    for &b in err.message().as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\ncontent-length: 0\r\nx-request-id: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"connection: keep-alive\r\n\r\n");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_get_trailers_only_answers() {
        assert!(is_grpc(Some(b"application/grpc")));
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(is_grpc(Some(b"Application/GRPC; charset=x")));
        assert!(!is_grpc(Some(b"application/grpc-web")));
        assert!(!is_grpc(Some(b"application/json")) && !is_grpc(None));
        let mut out = Vec::new();
        let e = Reply::new(ErrorKind::RateLimited);
        render_grpc(&mut out, &e, b"r1", b"retry-after: 1\r\n");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 8\r\ngrpc-message: "
        ));
        assert!(s.ends_with("content-length: 0\r\nx-request-id: r1\r\nretry-after: 1\r\nconnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn error_json_shape() {
        let mut out = Vec::new();
        let e = Reply::new(ErrorKind::MethodNotAllowed);
        render_h1(&mut out, &e, b"abc-1", true, Some("GET, HEAD"), b"", "");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(s.contains("\r\nallow: GET, HEAD\r\n"));
        assert!(s.contains("connection: keep-alive"));
        assert!(s.ends_with(
            "{\"error\":\"method not allowed on this route\",\"status\":405,\"request_id\":\"abc-1\"}"
        ));
        let body_start = s.find("\r\n\r\n").unwrap() + 4;
        let cl: usize = s
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, s.len() - body_start);
    }

    #[test]
    fn unauthorized_challenge_has_an_error_only_for_a_presented_token() {
        let challenge = |presented, bearer| {
            let e = Reply::new(ErrorKind::Unauthorized {
                reason: if presented {
                    "token expired"
                } else {
                    "missing credentials"
                },
                bearer,
                presented,
            });
            let mut out = Vec::new();
            render_h1(&mut out, &e, b"r", true, None, b"", "");
            let s = String::from_utf8(out).unwrap();
            assert!(s.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{s}");
            s.lines()
                .find_map(|l| l.strip_prefix("www-authenticate: "))
                .unwrap()
                .to_string()
        };
        assert_eq!(challenge(false, true), "Bearer realm=\"coregate\"");
        assert_eq!(challenge(false, false), "ApiKey realm=\"coregate\"");
        assert_eq!(
            challenge(true, true),
            "Bearer realm=\"coregate\", error=\"invalid_token\", error_description=\"token expired\""
        );
    }

    #[test]
    fn grpc_status_follows_the_http_mapping() {
        let g = |k| Reply::new(k).grpc_status();
        let unauth = ErrorKind::Unauthorized {
            reason: "x",
            bearer: true,
            presented: false,
        };
        assert_eq!(g(unauth), 16, "UNAUTHENTICATED");
        assert_eq!(g(ErrorKind::Forbidden), 7, "PERMISSION_DENIED");
        assert_eq!(g(ErrorKind::ClientCertRequired), 7);
        assert_eq!(g(ErrorKind::RateLimited), 8, "RESOURCE_EXHAUSTED");
        assert_eq!(g(ErrorKind::NoRoute), 12, "UNIMPLEMENTED");
        assert_eq!(g(ErrorKind::ResponseTimeout), 4, "DEADLINE_EXCEEDED");
        assert_eq!(g(ErrorKind::ConnectFailed), 14, "UNAVAILABLE");
        assert_eq!(g(ErrorKind::UpstreamTls), 13, "INTERNAL");
    }

    #[test]
    fn grpc_timeout_units() {
        use std::time::Duration;
        assert_eq!(grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            grpc_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b"m"[..],
            b"100",
            b"123456789S",
            b"-1S",
            b"1x",
            b"1.5S",
            b"",
        ] {
            assert_eq!(
                grpc_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn framing_errors_close() {
        let e = Reply::new(ErrorKind::BadBody);
        let mut out = Vec::new();
        render_h1(&mut out, &e, b"x", true, None, b"", "");
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("connection: close"));
        assert_eq!(Reply::new(ErrorKind::ConnectTimeout).status(), 504);
        assert_eq!(Reply::new(ErrorKind::NoHealthyUpstream).status(), 503);
    }
}
