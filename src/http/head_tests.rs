//! Unit tests of the strict head parser (`head.rs`): framing, smuggling shapes, limits, targets.
use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 64,
    max_header_bytes: 512,
    max_headers: 8,
};

fn req(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut h = RequestHead::default();
    parse_request(raw, &LIMITS, &mut h).map(|o| o.map(|_| h))
}

#[test]
fn parses_simple_get() {
    let raw = b"GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:80\r\nX-A: 1\r\n\r\nrest";
    let h = req(raw).unwrap().unwrap();
    assert_eq!(h.method(raw), b"GET");
    assert_eq!(h.target(raw), b"/a/b?x=1");
    assert_eq!(h.path(raw), b"/a/b");
    assert_eq!(h.host(raw), b"Example.com:80");
    assert_eq!(h.head_len, raw.len() - 4);
    assert_eq!(h.body, BodyKind::None);
    assert!(h.keep_alive);
}

#[test]
fn partial_then_complete() {
    assert!(req(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    assert!(req(b"GET / HT").unwrap().is_none());
}

#[test]
fn framing() {
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.body, BodyKind::Length(12));
    let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.body, BodyKind::Chunked);
    // valid codings before chunked are not implemented: 501, never forwarded
    for te in [
        &b"gzip, chunked"[..],
        b"gzip\r\nTransfer-Encoding: x;q=1 , chunked",
    ] {
        let raw = [
            &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "[..],
            te,
            b"\r\n\r\n",
        ]
        .concat();
        let e = req(&raw).unwrap_err();
        assert_eq!(
            (e.status, e.reason),
            (501, "transfer coding not implemented (only chunked)")
        );
    }
    let h = req(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length:  22  \r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.body, BodyKind::Length(22));
}

#[test]
fn rejects_smuggling_shapes() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\n\r\n",
        b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for c in cases {
        let r = req(c);
        assert!(
            matches!(r, Err(HeadError { status: 400, .. })),
            "{:?} -> {:?}",
            String::from_utf8_lossy(c),
            r.map(|o| o.is_some())
        );
    }
}

#[test]
fn absolute_form() {
    let raw = b"GET HTTP://api.example:8080/a/b?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = req(raw).unwrap().unwrap();
    assert_eq!(h.target(raw), b"/a/b?q=1");
    assert_eq!(h.path(raw), b"/a/b");
    assert_eq!(h.host(raw), b"api.example:8080");
    let raw = b"GET https://h?x HTTP/1.0\r\n\r\n";
    let h = req(raw).unwrap().unwrap();
    assert_eq!(
        (h.target(raw), h.path(raw), h.host(raw)),
        (&b"?x"[..], &b""[..], &b"h"[..])
    );
    assert!(h.has_host());
}

#[test]
fn limits() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    assert_eq!(req(long.as_bytes()).unwrap_err().status, 414);
    let partial_long = format!("GET /{}", "a".repeat(100));
    assert_eq!(req(partial_long.as_bytes()).unwrap_err().status, 414);
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: 1\r\n".repeat(10));
    assert_eq!(req(many.as_bytes()).unwrap_err().status, 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(600)
    );
    assert_eq!(req(big.as_bytes()).unwrap_err().status, 431);
    let big_partial = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "a".repeat(600));
    assert_eq!(req(big_partial.as_bytes()).unwrap_err().status, 431);
}

#[test]
fn connection_tokens() {
    let h = req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-foo\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!h.keep_alive);
    assert!(h.conn_named);
    let h = req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.keep_alive);
    let h = req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!h.keep_alive);
}

#[test]
fn status_lines_without_a_usable_reason() {
    // httparse gives no slice of the buffer for these reasons: the span must still be sane
    let mut h = ResponseHead::default();
    for raw in [
        &b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 \xc3\xa7a va\r\nContent-Length: 2\r\n\r\nok",
    ] {
        parse_response(raw, 1024, false, &mut h).unwrap().unwrap();
        assert_eq!((h.status, h.body), (200, BodyKind::Length(2)));
        assert!(h.reason.end as usize <= raw.len());
        let _ = h.reason.get(raw);
    }
}

#[test]
fn response_framing() {
    let mut h = ResponseHead::default();
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    parse_response(raw, 1024, false, &mut h).unwrap().unwrap();
    assert_eq!(
        (h.status, h.body, h.keep_alive),
        (200, BodyKind::Length(5), true)
    );
    parse_response(raw, 1024, true, &mut h).unwrap().unwrap();
    assert_eq!(h.body, BodyKind::None);
    let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
    parse_response(raw, 1024, false, &mut h).unwrap().unwrap();
    assert_eq!(h.body, BodyKind::None);
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    parse_response(raw, 1024, false, &mut h).unwrap().unwrap();
    assert_eq!(h.body, BodyKind::Chunked);
    let raw = b"HTTP/1.0 200 OK\r\n\r\n";
    parse_response(raw, 1024, false, &mut h).unwrap().unwrap();
    assert_eq!((h.body, h.keep_alive), (BodyKind::UntilClose, false));
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(
        parse_response(raw, 1024, false, &mut h).unwrap_err().status,
        502
    );
}
