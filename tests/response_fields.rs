//! `response_fields`: a route's target relays into a buffer (the pipeline's buffer sink), the
//! response-body filter keeps only the listed JSON members, and the client gets the result with a
//! fresh Content-Length. Everything the filter cannot or must not touch (other types, errors,
//! content codings, bodies over the cap, broken JSON) reaches the client exactly as the upstream
//! sent it, and a body that fails while buffered is a 502, never a cut.

mod common;
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

const USER: &str = r#"{"id":7,"password":"hunter2","name":"Ada \"L\" \u00e9","avatar":{"big":"b.png","small":"s.png"},"n":1.50e3}"#;
const KEPT: &str = r#"{"id":7,"name":"Ada \"L\" \u00e9","avatar":{"small":"s.png"}}"#;
/// Larger than the gateway's 1 MiB response-body cap.
const BIG: usize = (1 << 20) + 4096;

fn json(status: u16, body: impl Into<Vec<u8>>) -> MockResponse {
    MockResponse::new(status, body).header("content-type", "application/json")
}

/// A JSON array of `n` users, each with a secret.
fn list(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":{i},"secret":"{}","name":"u{i}"}}"#,
                "x".repeat(40)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn upstream() -> Upstream {
    Upstream::start(
        "users",
        false,
        Arc::new(|r: &Recorded| {
            let split = |s: &str| s.as_bytes().chunks(5).map(<[u8]>::to_vec).collect();
            match r.target.as_str() {
                "/u/length" => json(200, USER).header("etag", "\"v1\""),
                "/u/chunked" => MockResponse::chunks(200, split(USER))
                    .header("content-type", "application/vnd.api+json; charset=utf-8"),
                "/u/list" => json(200, list(3)),
                "/u/html" => MockResponse::new(200, USER).header("content-type", "text/html"),
                "/u/broken" => json(200, "{\"id\":1,"),
                "/u/error" => json(500, USER),
                "/u/gzip" => json(200, USER).header("content-encoding", "gzip"),
                "/u/big-length" => json(200, list(BIG / 50)),
                "/u/big-chunked" => MockResponse::chunks(200, split(&list(BIG / 50)))
                    .header("content-type", "application/json"),
                _ => MockResponse::new(404, ""),
            }
        }),
    )
}

fn gateway(up: SocketAddr, raw: SocketAddr, driver: &str) -> Gateway {
    let fields = "response_fields = [\"id\", \"name\", \"avatar.small\"]";
    let cfg = config(
        "",
        &(upstream_toml("users", &[up], "")
            + &upstream_toml("raw", &[raw], "")
            + &route_toml("raw", "raw", &format!("path_prefix = \"/raw\"\n{fields}"))
            + &route_toml("users", "users", &format!("path_prefix = \"/u\"\n{fields}"))),
    );
    Gateway::start(&cfg, driver)
}

/// A raw upstream answering each request on `/raw/N` with script N's bytes, then closing.
fn raw_upstream() -> SocketAddr {
    const SCRIPTS: [&[u8]; 2] = [
        // the body stops short of its Content-Length
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":1",
        // the chunked framing breaks after the first chunk
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"i\r\nzz\r\n",
    ];
    raw_server(|mut s| {
        let Some(head) = read_head_bytes(&mut s) else {
            return;
        };
        let n = head
            .iter()
            .position(|&c| c.is_ascii_digit())
            .map(|i| head[i] - b'0');
        let _ = s.write_all(SCRIPTS[n.unwrap_or(0) as usize % SCRIPTS.len()]);
    })
}

#[test]
fn json_members_are_selected_byte_for_byte() {
    let (up, raw) = (upstream(), raw_upstream());
    for_each_driver(|driver| {
        let gw = gateway(up.addr, raw, driver);
        let mut c = Client::connect(gw.addr);
        // Content-Length and chunked upstream bodies, on one keep-alive connection
        for path in ["/u/length", "/u/chunked", "/u/length"] {
            let r = c.get(path, "a.test");
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, KEPT),
                "[{driver}] {path}"
            );
            assert!(!r.chunked, "[{driver}] {path}: sent with a Content-Length");
            assert_eq!(r.header("content-length"), Some(KEPT.len().to_string()));
            assert!(r.has("x-request-id"), "[{driver}] {path}");
            assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
        }
        // the changed body's strong validator is weakened
        assert_eq!(
            c.get("/u/length", "a.test").header("etag").as_deref(),
            Some("W/\"v1\"")
        );
        // a list endpoint: the selection applies to each item
        let r = c.get("/u/list", "a.test");
        assert_eq!(
            r.body_str(),
            r#"[{"id":0,"name":"u0"},{"id":1,"name":"u1"},{"id":2,"name":"u2"}]"#
        );
        // HEAD: no body to select from; the declared length passes through
        c.send(&req("HEAD", "/u/length", "a.test", &[], b""));
        let r = c.read_response_for("HEAD");
        assert_eq!(
            (r.status, r.header("content-length")),
            (200, Some(USER.len().to_string()))
        );
        // an HTTP/1.0 client gets the selected body with a length too
        let mut old = Client::connect(gw.addr);
        let r = old.request(b"GET /u/chunked HTTP/1.0\r\nHost: a.test\r\n\r\n");
        assert_eq!(
            (r.status, r.body_str().as_str(), r.close_delimited),
            (200, KEPT, false)
        );
    });
}

#[test]
fn what_the_filter_must_not_touch_passes_through_untouched() {
    let (up, raw) = (upstream(), raw_upstream());
    for_each_driver(|driver| {
        let gw = gateway(up.addr, raw, driver);
        let mut c = Client::connect(gw.addr);
        for (path, status, body) in [
            ("/u/html", 200, USER.to_owned()),
            ("/u/broken", 200, "{\"id\":1,".to_owned()),
            ("/u/error", 500, USER.to_owned()),
            ("/u/gzip", 200, USER.to_owned()),
            ("/u/big-length", 200, list(BIG / 50)),
        ] {
            let r = c.get(path, "a.test");
            assert_eq!(r.status, status, "[{driver}] {path}");
            assert!(r.body == body.as_bytes(), "[{driver}] {path}: body changed");
        }
        assert_eq!(
            c.get("/u/length", "a.test").header("etag").as_deref(),
            Some("W/\"v1\"")
        );
        // a chunked body that outgrows the cap while buffered spills: all of it, still chunked
        let r = c.get("/u/big-chunked", "a.test");
        let want = list(BIG / 50);
        assert!(want.len() > BIG, "the test body must exceed the cap");
        assert_eq!(
            (r.status, r.chunked, r.body.len()),
            (200, true, want.len()),
            "[{driver}]"
        );
        assert!(r.body == want.as_bytes(), "[{driver}] spilled body changed");
        // and the connection is still good
        assert_eq!(c.get("/u/length", "a.test").body_str(), KEPT, "[{driver}]");
    });
}

#[test]
fn a_body_that_fails_while_buffered_is_a_502_not_a_cut() {
    let (up, raw) = (upstream(), raw_upstream());
    for_each_driver(|driver| {
        let gw = gateway(up.addr, raw, driver);
        for path in ["/raw/0", "/raw/1"] {
            let r = Client::connect(gw.addr).get(path, "a.test");
            assert_eq!(r.status, 502, "[{driver}] {path}: {}", r.body_str());
            assert_error_json(&r, 502);
        }
    });
}
