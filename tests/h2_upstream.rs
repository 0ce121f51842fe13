//! HTTP/2 to upstreams (`protocol = "http2"`, h2c prior knowledge) from HTTP/1.1 clients, against
//! a real h2 server (the `h2` crate): what the upstream receives (pseudo-headers from the request
//! line and Host, no connection-specific fields, bodies with and without a length), what the
//! client gets (a length-less h2 body chunked, upstream trailers only for a client that sent
//! `TE: trailers`), a refused stream retried even for POST, and a new connection when the
//! upstream's SETTINGS_MAX_CONCURRENT_STREAMS is reached. Both drivers.

mod common;
use common::h2up::*;
use common::*;

use std::sync::Arc;

fn h2_upstream_config(up: &H2Upstream) -> String {
    config(
        "",
        &(upstream_toml("h", &[up.addr], "protocol = \"http2\"")
            + &route_toml("api", "h", "path_prefix = \"/\"")),
    )
}

fn ok_handler() -> H2Handler {
    Arc::new(|_, s: &SeenStream| {
        let body = format!("{} {} {}", s.method, s.uri, s.body.len()).into_bytes();
        match s.uri.contains("/trailers") {
            true => Answer::Respond(
                200,
                vec![("content-type", "text/plain".into())],
                body,
                Some(vec![
                    ("x-checksum", "abc".into()),
                    ("content-type", "x".into()),
                ]),
            ),
            false if s.uri.contains("/nolength") => Answer::Respond(200, vec![], body, None),
            false => {
                let len = body.len().to_string();
                Answer::Respond(200, vec![("content-length", len)], body, None)
            }
        }
    })
}

#[test]
fn http1_requests_are_translated_to_h2() {
    let up = H2Upstream::start(100, ok_handler());
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_upstream_config(&up), driver);
        let mut c = Client::connect(gw.addr);
        let r = c.request(&req(
            "GET",
            "/a/b?x=1",
            "api.test",
            &[("connection", "keep-alive")],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(r.body_str(), "GET http://api.test/a/b?x=1 0", "[{driver}]");
        assert_eq!(r.header("content-length").as_deref(), Some("29"));
        let body = vec![b'z'; 70_000];
        let r = c.request(&req(
            "POST",
            "/upload",
            "api.test",
            &[("content-length", "70000")],
            &body,
        ));
        assert_eq!(
            r.body_str(),
            "POST http://api.test/upload 70000",
            "[{driver}]"
        );
        let r = c.request(&req(
            "POST",
            "/chunked",
            "api.test",
            &[("transfer-encoding", "chunked")],
            &chunked(&[b"abc", b"defgh"]),
        ));
        assert_eq!(r.body_str(), "POST http://api.test/chunked 8", "[{driver}]");
        // no content-length from the upstream: chunked to the HTTP/1.1 client
        let r = c.request(&req("GET", "/nolength", "api.test", &[], b""));
        assert_eq!(
            r.header("transfer-encoding").as_deref(),
            Some("chunked"),
            "[{driver}]"
        );
        assert_eq!(r.body_str(), "GET http://api.test/nolength 0");
        // trailers reach a client that asked for them; disallowed fields are dropped
        let r = c.request(&req(
            "GET",
            "/trailers",
            "api.test",
            &[("te", "trailers")],
            b"",
        ));
        assert_eq!(r.status, 200);
        assert_eq!(r.trailers.len(), 1, "[{driver}] {:?}", r.trailers);
        assert_eq!(r.trailers[0].0.to_ascii_lowercase(), "x-checksum");
        assert_eq!(r.trailers[0].1, b"abc");
        let r = c.request(&req("GET", "/trailers", "api.test", &[], b""));
        assert!(
            r.trailers.is_empty(),
            "[{driver}] no TE: trailers, no trailers"
        );
        let seen = up.seen();
        let get = seen
            .iter()
            .find(|s| s.uri.contains("/a/b"))
            .expect("GET seen");
        for hop in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "host",
            "te",
        ] {
            assert!(
                get.header(hop).is_none(),
                "[{driver}] {hop} reached the h2 upstream"
            );
        }
        assert!(get.header("x-forwarded-for").is_some());
        assert!(get.header("x-request-id").is_some());
    });
}

#[test]
fn refused_streams_are_retried_whatever_the_method() {
    // every other stream is refused: a POST goes again (the upstream never processed it)
    let handler: H2Handler = Arc::new(|n, s: &SeenStream| match n % 2 {
        0 => Answer::Refuse,
        _ => Answer::Respond(
            201,
            vec![],
            format!("took {}", s.body.len()).into_bytes(),
            None,
        ),
    });
    let up = H2Upstream::start(100, handler);
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_upstream_config(&up), driver);
        let before = up.seen().len();
        let r = Client::connect(gw.addr).request(&req(
            "POST",
            "/orders",
            "api.test",
            &[("content-length", "5")],
            b"hello",
        ));
        assert_eq!(r.status, 201, "[{driver}] {}", r.body_str());
        assert_eq!(r.body_str(), "took 5");
        assert_eq!(
            up.seen().len() - before,
            2,
            "[{driver}] one refusal, one retry"
        );
    });
}

#[test]
fn a_full_connection_opens_another() {
    // the upstream takes one stream at a time per connection
    let up = H2Upstream::start(1, ok_handler());
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&h2_upstream_config(&up), driver, &["--workers", "1"]);
        let before = up.connections();
        let addr = gw.addr;
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let path = format!("/slow/{i}");
                    let head = [("x-delay-ms", "300")];
                    Client::connect(addr).request(&req("GET", &path, "api.test", &head, b""))
                })
            })
            .collect();
        for t in threads {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        }
        let opened = up.connections() - before;
        assert!(
            opened >= 2,
            "[{driver}] 4 concurrent streams, max 1 per connection, {opened} connections"
        );
    });
}

#[test]
fn auto_speaks_h2_over_tls_where_alpn_picks_it() {
    use common::tls::*;
    // the upstream: a second gateway whose TLS listener speaks only h2, in front of an HTTP/1.1
    // echo; an HTTP/1.1 client could not complete a handshake with it
    let echo = Upstream::echo("echo");
    let (_inner, inner_addr, _ca, tls) = h2_only_tls_gateway(echo.addr);
    let outer_cfg = |protocol: &str| {
        config(
            "",
            &(upstream_toml(
                "in",
                &[inner_addr],
                &format!("protocol = \"{protocol}\"\n{tls}"),
            ) + &route_toml("all", "in", "path_prefix = \"/\"")),
        )
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&outer_cfg("auto"), driver);
        let mut c = Client::connect(gw.addr);
        for i in 0..3 {
            let body = format!("payload {i}");
            let r = c.request(&req(
                "POST",
                &format!("/via-h2/{i}"),
                "api.test",
                &[("content-length", &body.len().to_string())],
                body.as_bytes(),
            ));
            assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        }
        let seen = echo.wait_requests(3, secs(5));
        assert!(seen
            .iter()
            .any(|s| s.target == "/via-h2/2" && s.body == b"payload 2"));
        // an http1 upstream offers only http/1.1: the h2-only server refuses the handshake
        let gw1 = Gateway::start(&outer_cfg("http1"), driver);
        let r = get(gw1.addr, "/x", "api.test");
        assert_eq!(r.status, 502, "[{driver}] {}", r.body_str());
    });
}
