//! Strict request framing with hand-written requests the desync vectors do not cover: missing
//! or duplicate Host, obs-fold, bare LF, NUL in a header, whitespace before the colon, CL+TE,
//! repeated or malformed Content-Length, Transfer-Encoding other than exactly `chunked`, and bad
//! chunked bodies. Each must get 400 with the connection closed (a pipelined sentinel request
//! behind it must never be served) and nothing of it may reach the upstream: for head errors
//! not even the head; for errors inside a chunked body (found after the head may have been
//! forwarded) the upstream must never receive a complete request.

mod common;
use common::*;

const SENTINEL: &[u8] = b"GET /sentinel HTTP/1.1\r\nHost: f.test\r\n\r\n";

/// (name, raw request; the error is in the head). "gzip, chunked" is left to desync.rs: the
/// contract says 400, the vectors say forward, and either is safe.
const HEAD_CASES: &[(&str, &[u8])] = &[
    ("missing Host", b"GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    ("duplicate Host", b"GET /a HTTP/1.1\r\nHost: f.test\r\nHost: g.test\r\n\r\n"),
    ("obs-fold", b"GET /a HTTP/1.1\r\nHost: f.test\r\nX-A: 1\r\n  folded\r\n\r\n"),
    ("bare LF after a header", b"GET /a HTTP/1.1\r\nHost: f.test\nX-A: 1\r\n\r\n"),
    ("bare LF everywhere", b"GET /a HTTP/1.1\nHost: f.test\n\n"),
    ("NUL in a header value", b"GET /a HTTP/1.1\r\nHost: f.test\r\nX-A: a\0b\r\n\r\n"),
    ("CTL in a header value", b"GET /a HTTP/1.1\r\nHost: f.test\r\nX-A: a\x0bb\r\n\r\n"),
    ("CR inside a header value", b"GET /a HTTP/1.1\r\nHost: f.test\r\nX-A: a\rX-B: b\r\n\r\n"),
    ("whitespace before colon", b"GET /a HTTP/1.1\r\nHost: f.test\r\nX-A : 1\r\n\r\n"),
    ("space before colon of Content-Length", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length : 5\r\n\r\nhello"),
    (
        "Content-Length and Transfer-Encoding",
        b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    ("two equal Content-Length", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("Content-Length list", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("Content-Length with a sign", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length: +5\r\n\r\nhello"),
    ("Content-Length in hex", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length: 0x5\r\n\r\nhello"),
    ("Content-Length overflow", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length: 99999999999999999999999\r\n\r\nhello"),
    ("empty Content-Length", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length:\r\n\r\n"),
    ("Transfer-Encoding identity", b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: identity\r\n\r\nhello"),
    (
        "Transfer-Encoding chunked twice",
        b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding chunked, chunked",
        b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
];

/// (name, raw request; the head is fine, the chunked body is not)
const BODY_CASES: &[(&str, &[u8])] = &[
    ("chunk size not hex", b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    (
        "chunk size overflow",
        b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    ("negative chunk size", b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    ("chunk longer than its size", b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
    (
        "bare LF after chunk size",
        b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    ),
];

#[test]
fn malformed_requests_get_400_and_close() {
    let rec = Upstream::recording("rec");
    let cfg = config(
        "header_timeout = \"2s\"\nclient_body_timeout = \"2s\"",
        &(upstream_toml("rec", &[rec.addr], "retries = 0")
            + &route_toml("all", "rec", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        // One worker, so the sync request below lands after anything the case caused.
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let mut failures = Vec::new();
        let cases = HEAD_CASES
            .iter()
            .map(|c| (c, true))
            .chain(BODY_CASES.iter().map(|c| (c, false)));
        for ((name, raw), head_error) in cases {
            rec.clear();
            let mut c = Client::connect(gw.addr);
            let mut bytes = raw.to_vec();
            bytes.extend_from_slice(SENTINEL);
            let _ = c.try_send(&bytes);
            let mut problems = Vec::new();
            match c.try_read_response("GET", None) {
                Ok(r) if r.status == 400 && !r.has("x-upstream") => {
                    if c.closed_within(secs(5)) != CloseOutcome::Closed {
                        problems.push("connection not closed after the 400".to_string());
                    }
                }
                Ok(r) => problems.push(format!(
                    "got {} (from upstream: {}) {:?}",
                    r.status,
                    r.has("x-upstream"),
                    r.body_str()
                )),
                // A body error found after the upstream answered may only end the connection.
                Err(e) if !head_error => {
                    eprintln!("[{driver}] {name}: connection ended without a 400 ({e})")
                }
                Err(e) => problems.push(format!("no response: {e}")),
            }
            assert_eq!(
                get(gw.addr, "/sync", "f.test").status,
                200,
                "[{driver}] sync request after {name}"
            );
            let seen: Vec<Recorded> = rec
                .requests()
                .into_iter()
                .filter(|r| r.target != "/sync")
                .collect();
            if seen.iter().any(|r| r.target == "/sentinel") {
                problems.push(
                    "the pipelined sentinel was served: the connection went on after the error"
                        .into(),
                );
            }
            if head_error && !seen.is_empty() {
                problems.push(format!("{} request(s) reached the upstream", seen.len()));
            }
            if !head_error && seen.iter().any(|r| r.complete) {
                problems.push(format!(
                    "the upstream received a complete request: {:?}",
                    seen[0].body_str()
                ));
            }
            if !problems.is_empty() {
                failures.push(format!("{name}: {}", problems.join("; ")));
            }
        }
        assert!(
            failures.is_empty(),
            "[{driver}] {} malformed requests mishandled:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

#[test]
fn well_formed_neighbours_are_forwarded() {
    // The same shapes, correct: proves the rejections above are about the defect, not the shape.
    let echo = Upstream::echo("echo");
    let cfg = config(
        "",
        &(upstream_toml("e", &[echo.addr], "") + &route_toml("all", "e", "path_prefix = \"/\"")),
    );
    let cases: &[(&str, &[u8], &str)] = &[
        ("Content-Length with OWS", b"POST /a HTTP/1.1\r\nHost: f.test\r\nContent-Length:  5 \r\n\r\nhello", "hello"),
        ("chunk size in upper-case hex", b"POST /a HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
        ("HTTP/1.0 without Host", b"GET /a HTTP/1.0\r\n\r\n", ""),
        ("header value with tab and obs-text", b"GET /a HTTP/1.1\r\nHost: f.test\r\nX-A: a\tb\xe9\r\n\r\n", ""),
    ];
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut failures = Vec::new();
        for (name, raw, body) in cases {
            let r = Client::connect(gw.addr).request(raw);
            if r.status != 200 || !r.has("x-upstream") || r.body_str() != *body {
                failures.push(format!(
                    "{name}: status {} body {:?}",
                    r.status,
                    r.body_str()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "[{driver}] well-formed requests refused:\n{}",
            failures.join("\n")
        );
    });
}
