//! Header hygiene and message semantics as seen by the upstream and by the client: hop-by-hop
//! headers removed both ways, X-Forwarded-* and Via added, Host kept, X-Request-Id kept when
//! sane and generated otherwise (same value upstream and back), `Expect: 100-continue` answered
//! by the gateway and not forwarded, chunked request bodies re-chunked without extensions or
//! trailers, chunked responses kept chunked, HEAD/204/304 without bodies on a reusable
//! connection (and 204 without Content-Length), and underscore spellings of the identity headers
//! the gateway manages stripped like the headers themselves.

mod common;
use common::*;
use std::sync::Arc;

fn one_route(up: &Upstream) -> String {
    config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

const REQUEST_HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "proxy-authorization",
    "proxy-foo",
    "x-custom-hop",
    "expect",
];

#[test]
fn request_hygiene_seen_by_upstream() {
    let rec = Upstream::recording("rec");
    let cfg = one_route(&rec);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let r = Client::connect(gw.addr).request(&req(
            "GET",
            "/hyg?x=1",
            "front.test",
            &[
                ("Connection", "keep-alive, X-Custom-Hop"),
                ("X-Custom-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "X-T"),
                ("Upgrade", "foo/1"),
                ("Proxy-Connection", "keep-alive"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("Proxy-Foo", "bar"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("Via", "1.0 fred"),
                ("X-Keep", "yes"),
                ("Authorization", "Bearer end-to-end"),
            ],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let s = &rec.wait_requests(1, secs(5))[0];
        assert_eq!(
            (s.method.as_str(), s.target.as_str(), s.version.as_str()),
            ("GET", "/hyg?x=1", "HTTP/1.1"),
            "[{driver}]"
        );
        for h in REQUEST_HOP_BY_HOP {
            assert!(
                !s.has(h),
                "[{driver}] hop-by-hop {h} reached the upstream: {:?}",
                s.header_all(h)
            );
        }
        for v in s.header_all("connection") {
            assert!(
                v.split(',')
                    .all(|t| ["keep-alive", "close"]
                        .contains(&t.trim().to_ascii_lowercase().as_str())),
                "[{driver}] upstream Connection must be the gateway's own, got {v:?}"
            );
        }
        assert_eq!(
            s.header_all("host"),
            ["front.test"],
            "[{driver}] Host passes unchanged, once"
        );
        assert_eq!(
            s.header_all("x-forwarded-for"),
            ["10.0.0.1, 127.0.0.1"],
            "[{driver}] X-Forwarded-For appended"
        );
        assert_eq!(s.header_all("x-forwarded-proto"), ["http"], "[{driver}]");
        assert_eq!(
            s.header_all("x-forwarded-host"),
            ["front.test"],
            "[{driver}]"
        );
        assert_eq!(
            s.header_all("via"),
            ["1.0 fred, 1.1 coregate"],
            "[{driver}] Via appended with \", \""
        );
        assert_eq!(
            s.header_all("x-keep"),
            ["yes"],
            "[{driver}] end-to-end header"
        );
        assert_eq!(
            s.header_all("authorization"),
            ["Bearer end-to-end"],
            "[{driver}] Authorization is end-to-end"
        );
        assert!(
            s.malformed_lines.is_empty(),
            "[{driver}] malformed header lines upstream: {:?}",
            s.malformed_lines
        );
        rec.clear();

        // Without client-supplied forwarding headers.
        let r = Client::connect(gw.addr).get("/bare", "bare.test");
        assert_eq!(r.status, 200);
        let s = &rec.wait_requests(1, secs(5))[0];
        assert_eq!(s.header_all("x-forwarded-for"), ["127.0.0.1"], "[{driver}]");
        assert_eq!(s.header_all("via"), ["1.1 coregate"], "[{driver}]");
        assert_eq!(
            s.header_all("x-forwarded-host"),
            ["bare.test"],
            "[{driver}]"
        );
        rec.clear();
    });
}

#[test]
fn response_hygiene_seen_by_client() {
    let up = Upstream::start(
        "hop",
        true,
        Arc::new(|_| {
            MockResponse::new(200, "body")
                .header("Connection", "X-Up-Hop")
                .header("X-Up-Hop", "1")
                .header("Keep-Alive", "timeout=5")
                .header("Proxy-Foo", "x")
                .header("Upgrade", "foo/1")
                .header("Trailer", "X-T")
                .header("X-End", "1")
        }),
    );
    let cfg = one_route(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let r = c.get("/resp", "front.test");
        assert_eq!(
            (r.status, r.body_str()),
            (200, "body".to_string()),
            "[{driver}]"
        );
        for h in ["x-up-hop", "keep-alive", "proxy-foo", "upgrade", "trailer"] {
            assert!(
                !r.has(h),
                "[{driver}] hop-by-hop {h} reached the client: {:?}",
                r.header_all(h)
            );
        }
        assert!(
            !has_token(&r.header_all("connection"), "x-up-hop"),
            "[{driver}] upstream Connection value leaked"
        );
        assert_eq!(
            r.header_all("x-end"),
            ["1"],
            "[{driver}] end-to-end response header"
        );
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "[{driver}] X-Request-Id on the response"
        );
        // The connection is still good.
        assert_eq!(c.get("/again", "front.test").status, 200, "[{driver}]");
    });
}

fn sane_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
}

#[test]
fn request_id_kept_or_generated() {
    let rec = Upstream::recording("rec");
    let cfg = one_route(&rec);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let long = "a".repeat(129);
        let max = "b".repeat(128);
        // (client value, kept?)
        let cases: Vec<(Option<&str>, bool)> = vec![
            (Some("abc-123.XYZ:9_"), true),
            (Some(&max), true),
            (Some("bad id with spaces"), false),
            (Some("semi;colon"), false),
            (Some(&long), false),
            (None, false),
        ];
        let mut generated = Vec::new();
        for (sent, kept) in cases {
            rec.clear();
            let headers: Vec<(&str, &str)> =
                sent.map(|v| ("X-Request-Id", v)).into_iter().collect();
            let r =
                Client::connect(gw.addr).request(&req("GET", "/rid", "rid.test", &headers, b""));
            assert_eq!(r.status, 200);
            let s = &rec.wait_requests(1, secs(5))[0];
            let up_ids = s.header_all("x-request-id");
            let resp_ids = r.header_all("x-request-id");
            assert_eq!(
                up_ids.len(),
                1,
                "[{driver}] sent {sent:?}: upstream got X-Request-Id {up_ids:?}"
            );
            assert_eq!(
                up_ids, resp_ids,
                "[{driver}] sent {sent:?}: upstream and response ids differ"
            );
            let id = &up_ids[0];
            if kept {
                assert_eq!(Some(id.as_str()), sent, "[{driver}] a sane id must be kept");
            } else {
                assert!(
                    sane_id(id),
                    "[{driver}] sent {sent:?}: generated id {id:?} is not sane"
                );
                assert_ne!(
                    Some(id.as_str()),
                    sent,
                    "[{driver}] an insane id must be replaced"
                );
                generated.push(id.clone());
            }
        }
        let unique: std::collections::BTreeSet<_> = generated.iter().collect();
        assert_eq!(
            unique.len(),
            generated.len(),
            "[{driver}] generated ids repeat: {generated:?}"
        );
    });
}

#[test]
fn expect_100_continue_answered_by_gateway() {
    let echo = Upstream::echo("echo");
    let cfg = one_route(&echo);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        c.send(b"POST /up HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
        let interim = c
            .read_head_raw()
            .unwrap_or_else(|e| panic!("[{driver}] no 100 Continue before the body: {e}"));
        assert_eq!(
            interim.status, 100,
            "[{driver}] first response must be 100 Continue"
        );
        c.send(b"hello world");
        let r = c.read_response_for("POST");
        assert_eq!(
            (r.status, r.body_str()),
            (200, "hello world".to_string()),
            "[{driver}]"
        );
        let s = &echo.wait_requests(1, secs(5))[0];
        assert!(!s.has("expect"), "[{driver}] Expect must not be forwarded");
        assert_eq!(s.body_str(), "hello world");
        echo.clear();
        // No Expect: no interim response.
        let r = c.request(&req("POST", "/up", "e.test", &[], b"plain"));
        assert!(
            r.interim.is_empty(),
            "[{driver}] unexpected interim {:?}",
            r.interim
        );
        assert_eq!(r.body_str(), "plain");
        echo.clear();
    });
}

#[test]
fn chunked_request_is_rechunked_without_extensions_or_trailers() {
    let echo = Upstream::echo("echo");
    let cfg = one_route(&echo);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let r = c.request(
            b"POST /chunk HTTP/1.1\r\nHost: c.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n\
              5;ext=1\r\nhello\r\n6;name=\"v\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        assert_eq!(
            (r.status, r.body_str()),
            (200, "hello world".to_string()),
            "[{driver}]"
        );
        let s = &echo.wait_requests(1, secs(5))[0];
        assert_eq!(
            s.header_all("transfer-encoding"),
            ["chunked"],
            "[{driver}] re-chunked upstream"
        );
        assert!(
            !s.has("content-length"),
            "[{driver}] chunked and Content-Length together upstream"
        );
        let raw = String::from_utf8_lossy(&s.raw_body).into_owned();
        assert!(
            !raw.contains(';') && !raw.contains("X-Trailer"),
            "[{driver}] extension or trailer forwarded: {raw:?}"
        );
        assert!(
            !s.has("trailer") && !s.has("x-trailer"),
            "[{driver}] trailer header forwarded"
        );
        echo.clear();
        // Content-Length bodies pass as they are.
        let r = c.request(&req("POST", "/cl", "c.test", &[], b"0123456789"));
        assert_eq!(r.body_str(), "0123456789");
        let s = &echo.wait_requests(1, secs(5))[0];
        assert_eq!(s.header_all("content-length"), ["10"], "[{driver}]");
        assert!(!s.has("transfer-encoding"), "[{driver}]");
        echo.clear();
    });
}

#[test]
fn chunked_response_stays_chunked() {
    let up = Upstream::start(
        "chunky",
        true,
        Arc::new(|_| {
            MockResponse::chunks(
                200,
                vec![b"abc".to_vec(), b"defgh".to_vec(), vec![b'z'; 70_000]],
            )
        }),
    );
    let cfg = one_route(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        for i in 0..2 {
            let r = c.get("/chunky", "c.test");
            assert_eq!(r.status, 200);
            assert!(r.chunked, "[{driver}] request {i}: chunked upstream response must stay chunked to an HTTP/1.1 client");
            assert!(
                !r.has("content-length"),
                "[{driver}] chunked and Content-Length together"
            );
            let mut want = b"abcdefgh".to_vec();
            want.extend(vec![b'z'; 70_000]);
            assert!(
                r.body == want,
                "[{driver}] body differs ({} bytes)",
                r.body.len()
            );
        }
    });
}

#[test]
fn head_204_304_have_no_body() {
    let up = Upstream::start(
        "status",
        true,
        Arc::new(|r: &Recorded| match r.target.as_str() {
            "/204" => MockResponse::new(204, ""),
            "/304" => MockResponse::new(304, "").header("ETag", "\"v1\""),
            _ => MockResponse::new(200, "eleven byte"),
        }),
    );
    let cfg = one_route(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let r = c.request(&req("HEAD", "/doc", "s.test", &[], b""));
        assert_eq!(r.status, 200, "[{driver}] HEAD");
        assert_eq!(
            r.header("content-length").as_deref(),
            Some("11"),
            "[{driver}] HEAD keeps the entity's Content-Length"
        );
        for path in ["/204", "/304"] {
            let r = c.request(&req(
                "GET",
                path,
                "s.test",
                &[("If-None-Match", "\"v1\"")],
                b"",
            ));
            assert_eq!(r.status, path[1..].parse::<u16>().unwrap(), "[{driver}]");
            assert!(
                r.body.is_empty() && !r.chunked,
                "[{driver}] {path} carried a body"
            );
            if path == "/204" {
                // RFC 9110 §8.6: never on 204, though the upstream sent one
                assert!(
                    !r.has("content-length"),
                    "[{driver}] 204 with Content-Length"
                );
            }
        }
        // If any of the above leaked body bytes, this response would be garbled.
        let r = c.get("/doc", "s.test");
        assert_eq!(
            (r.status, r.body_str()),
            (200, "eleven byte".to_string()),
            "[{driver}] connection desynchronised"
        );
    });
}

/// `X_Consumer_Id` is `x-consumer-id` to CGI-style backends (both become HTTP_X_CONSUMER_ID): on an
/// authenticated route every spelling of a managed identity header is removed, and only the
/// gateway's own value arrives.
#[test]
fn underscore_spellings_of_managed_headers_are_stripped() {
    std::env::set_var("CG_TEST_UNDERSCORE_KEY", "underscore-key-1");
    let up = Upstream::recording("u");
    let cfg = config(
        "",
        &("[[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
           keys = [{ key_env = \"CG_TEST_UNDERSCORE_KEY\", consumer = \"acme\", tenant = \"t1\" }]\n\n"
            .to_string()
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"\nauth = \"keys\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let r = Client::connect(gw.addr).request(&req(
            "GET",
            "/x",
            "h.test",
            &[
                ("x-api-key", "underscore-key-1"),
                ("X_Consumer_Id", "evil"),
                ("x_tenant-ID", "evil"),
                ("X-Consumer_Tier", "gold"),
                ("X_Other", "kept"),
            ],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let seen = &up.wait_requests(1, secs(5))[0];
        let names: Vec<String> = seen
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        for spoof in ["x_consumer_id", "x_tenant-id", "x-consumer_tier"] {
            assert!(
                !names.iter().any(|n| n == spoof),
                "[{driver}] {spoof} forwarded: {names:?}"
            );
        }
        assert_eq!(seen.header_all("x-consumer-id"), ["acme"], "[{driver}]");
        assert_eq!(seen.header_all("x-tenant-id"), ["t1"], "[{driver}]");
        assert_eq!(
            seen.header("x_other").as_deref(),
            Some("kept"),
            "[{driver}]"
        );
    });
}
