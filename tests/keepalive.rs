//! Connection reuse on both sides: 1,000 sequential requests on one client connection open at
//! most one upstream connection per worker (counted by the mock's accept counter), many short
//! client connections still share the per-worker pool, pipelined requests (with and without
//! bodies) are answered in order, and `Connection: close` / HTTP/1.0 clients get their
//! connection closed after the response.

mod common;
use common::*;
use std::sync::Arc;

/// An upstream answering `"METHOD TARGET BODY"`, so each response names its request.
fn describer() -> Upstream {
    Upstream::start(
        "describer",
        true,
        Arc::new(|r: &Recorded| {
            MockResponse::new(200, format!("{} {} {}", r.method, r.target, r.body_str()))
        }),
    )
}

fn ka_config(up: &Upstream) -> String {
    config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

#[test]
fn thousand_requests_one_connection_reuse_upstream() {
    let up = describer();
    let cfg = ka_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        assert_eq!(gw.workers, 2, "ready line workers");
        let before = up.accepted();
        let mut c = Client::connect(gw.addr);
        for i in 0..1000 {
            let r = c.get(&format!("/ka/{i}"), "ka.test");
            assert_eq!(
                (r.status, r.body_str()),
                (200, format!("GET /ka/{i} ")),
                "[{driver}] request {i}"
            );
            assert!(
                !has_token(&r.header_all("connection"), "close"),
                "[{driver}] request {i}: gateway announced close on a keep-alive connection"
            );
        }
        let opened = up.accepted() - before;
        assert!(
            (1..=gw.workers).contains(&opened),
            "[{driver}] 1,000 requests on one client connection opened {opened} upstream connections (max {})",
            gw.workers
        );
    });
}

#[test]
fn short_client_connections_share_the_pool() {
    let up = describer();
    let cfg = ka_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let before = up.accepted();
        for i in 0..100 {
            let r = get(gw.addr, &format!("/short/{i}"), "ka.test");
            assert_eq!(r.status, 200, "[{driver}] request {i}");
        }
        let opened = up.accepted() - before;
        assert!(
            opened <= gw.workers,
            "[{driver}] 100 sequential client connections opened {opened} upstream connections (pool per worker: max {})",
            gw.workers
        );
    });
}

#[test]
fn pipelined_requests_answered_in_order() {
    let up = describer();
    let cfg = ka_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let mut batch = Vec::new();
        let mut expect = Vec::new();
        for i in 0..12 {
            if i % 3 == 1 {
                let body = format!("body-{i}");
                batch.extend(req(
                    "POST",
                    &format!("/pipe/{i}"),
                    "ka.test",
                    &[],
                    body.as_bytes(),
                ));
                expect.push(format!("POST /pipe/{i} {body}"));
            } else if i % 3 == 2 {
                let body = format!("chunked-{i}");
                batch.extend(req(
                    "PUT",
                    &format!("/pipe/{i}"),
                    "ka.test",
                    &[("Transfer-Encoding", "chunked")],
                    &chunked(&[body.as_bytes()]),
                ));
                expect.push(format!("PUT /pipe/{i} {body}"));
            } else {
                batch.extend(req("GET", &format!("/pipe/{i}"), "ka.test", &[], b""));
                expect.push(format!("GET /pipe/{i} "));
            }
        }
        c.send(&batch);
        for (i, want) in expect.iter().enumerate() {
            let r = c.read_response();
            assert_eq!(
                (r.status, &r.body_str()),
                (200, want),
                "[{driver}] pipelined response {i} out of order or wrong"
            );
        }
        // The connection is still usable afterwards.
        assert_eq!(
            c.get("/after", "ka.test").body_str(),
            "GET /after ",
            "[{driver}]"
        );
    });
}

#[test]
fn connection_close_and_http10_are_honoured() {
    let up = describer();
    let cfg = ka_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let r = c.request(&req(
            "GET",
            "/close",
            "ka.test",
            &[("Connection", "close")],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}]");
        assert_eq!(
            c.closed_within(secs(5)),
            CloseOutcome::Closed,
            "[{driver}] Connection: close must close after the response"
        );

        let mut c = Client::connect(gw.addr);
        let r = c.request(b"GET /old HTTP/1.0\r\nHost: ka.test\r\n\r\n");
        assert_eq!(
            (r.status, r.body_str()),
            (200, "GET /old ".to_string()),
            "[{driver}] HTTP/1.0 request"
        );
        assert_eq!(
            c.closed_within(secs(5)),
            CloseOutcome::Closed,
            "[{driver}] HTTP/1.0 without keep-alive must be closed"
        );

        // The upstream side stays pooled regardless of what the client asked for.
        let seen = up.requests();
        assert_eq!(seen.len(), 2, "[{driver}] both requests reach the upstream");
        for r in &seen {
            assert_eq!(
                r.version, "HTTP/1.1",
                "[{driver}] {}: request to upstream must be HTTP/1.1",
                r.target
            );
            assert!(
                !has_token(&r.header_all("connection"), "close"),
                "[{driver}] {}: client's close leaked upstream",
                r.target
            );
        }
        up.clear();
    });
}
