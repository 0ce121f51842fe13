//! gRPC through the gateway with a real gRPC server and client on both sides (tonic, h2c):
//! `protocol = "http2"` upstreams, unary calls with metadata, trailers that carry an error status
//! end to end, server-, client- and bidirectional streaming, `grpc-timeout` as the upstream
//! deadline, the gateway's own errors as gRPC statuses, and many calls multiplexed over one
//! upstream connection. Both drivers.

mod common;
use common::grpc::*;
use common::h2c::*;
use common::*;

use std::time::Instant;

fn grpc_config(up: &GrpcUpstream, extra_route: &str) -> String {
    config(
        "",
        &(upstream_toml("g", &[up.addr], "protocol = \"http2\"")
            + &route_toml(
                "echo",
                "g",
                &format!("path_prefix = \"/test.Echo/\"\n{extra_route}"),
            )),
    )
}

#[test]
fn unary_calls_and_error_trailers_pass_through() {
    let up = GrpcUpstream::start();
    for_each_driver(|driver| {
        let gw = Gateway::start(&grpc_config(&up, ""), driver);
        let (ok, failed, unknown) = with_client(gw.addr, |mut g| async move {
            let mut req = tonic::Request::new(msg("hi", 41));
            req.metadata_mut().insert("x-tag", "t1".parse().unwrap());
            let ok = unary(&mut g, "Unary", req).await;
            let failed = unary(&mut g, "Unary", tonic::Request::new(msg("fail", 0))).await;
            let unknown = {
                g.ready().await.unwrap();
                let path = "/other.Service/Nope".parse().unwrap();
                g.unary(tonic::Request::new(msg("x", 0)), path, codec())
                    .await
            };
            (ok, failed, unknown)
        });
        let ok = ok.unwrap_or_else(|s| panic!("[{driver}] {s:?}"));
        assert_eq!(ok.get_ref().text, "echo:hi+t1", "[{driver}]");
        assert_eq!(ok.get_ref().n, 42);
        assert_eq!(
            ok.metadata().get("x-upstream").map(|v| v.to_str().unwrap()),
            Some("tonic"),
            "[{driver}] response metadata"
        );
        // the status and its message came in the upstream's trailers
        let failed = failed.expect_err("fail");
        assert_eq!(
            failed.code(),
            tonic::Code::NotFound,
            "[{driver}] {failed:?}"
        );
        assert_eq!(
            failed.message(),
            "no such thing: caf\u{e9} 100%",
            "[{driver}]"
        );
        // no route: the gateway's own answer, as a gRPC status
        let unknown = unknown.expect_err("no route");
        assert_eq!(
            unknown.code(),
            tonic::Code::Unimplemented,
            "[{driver}] {unknown:?}"
        );
    });
}

#[test]
fn streaming_calls_stream_without_buffering() {
    let up = GrpcUpstream::start();
    for_each_driver(|driver| {
        let gw = Gateway::start(&grpc_config(&up, ""), driver);
        let (arrivals, sum, chat) = with_client(gw.addr, |mut g| async move {
            // server streaming: 4 messages, 300 ms apart
            let start = Instant::now();
            let mut s = server_stream(&mut g, "Count", msg("tick", 4))
                .await
                .unwrap();
            let mut arrivals = Vec::new();
            while let Some(m) = s.message().await.unwrap() {
                arrivals.push((m.n, start.elapsed()));
            }
            let msgs = (1..=50).map(|i| msg("part", i)).collect();
            let sum = client_stream(&mut g, "Sum", msgs).await.unwrap();
            let msgs = vec![msg("a", 1), msg("b", 2), msg("c", 3)];
            let mut s = bidi(&mut g, "Chat", msgs).await.unwrap();
            let mut chat = Vec::new();
            while let Some(m) = s.message().await.unwrap() {
                chat.push((m.text, m.n));
            }
            (arrivals, sum, chat)
        });
        let ns: Vec<u32> = arrivals.iter().map(|a| a.0).collect();
        assert_eq!(ns, [0, 1, 2, 3], "[{driver}]");
        // the first message reached the client long before the stream ended (900 ms later)
        let (first, last) = (arrivals[0].1, arrivals[3].1);
        assert!(
            last - first >= std::time::Duration::from_millis(300),
            "[{driver}] messages were held back: first at {first:?}, last at {last:?}"
        );
        assert_eq!(
            (sum.text.as_str(), sum.n),
            ("50 messages", 1275),
            "[{driver}]"
        );
        let expect: Vec<(String, u32)> = [("re:a", 2), ("re:b", 4), ("re:c", 6)]
            .iter()
            .map(|(t, n)| (t.to_string(), *n))
            .collect();
        assert_eq!(chat, expect, "[{driver}]");
    });
}

#[test]
fn bidirectional_calls_are_full_duplex() {
    // each message waits for the answer to the one before: only works if the gateway relays
    // the upstream's answers while the request stream is still open
    let up = GrpcUpstream::start();
    for_each_driver(|driver| {
        let gw = Gateway::start(&grpc_config(&up, ""), driver);
        let replies = with_client(gw.addr, |mut g| async move {
            let (tx, mut replies) = bidi_open(&mut g, "Chat").await.unwrap();
            let mut got = Vec::new();
            for i in 1..=5u32 {
                tx.send(msg(&format!("m{i}"), i)).await.unwrap();
                let wait = std::time::Duration::from_secs(5);
                let r = tokio::time::timeout(wait, replies.message()).await;
                let r = r.expect("reply before the next message").unwrap().unwrap();
                got.push((r.text, r.n));
            }
            drop(tx);
            let end = replies.message().await.unwrap();
            (got, end.is_none())
        });
        let expect: Vec<(String, u32)> = (1..=5u32).map(|i| (format!("re:m{i}"), i * 2)).collect();
        assert_eq!(replies.0, expect, "[{driver}]");
        assert!(
            replies.1,
            "[{driver}] the call ended with OK after the client half-closed"
        );
    });
}

#[test]
fn grpc_timeout_is_the_upstream_deadline() {
    // an upstream that knows nothing of grpc-timeout (a gRPC server would enforce it itself)
    let slow = Upstream::slow("slow", 3000, "late");
    let cfg = config(
        "",
        &(upstream_toml("s", &[slow.addr], "") + &route_toml("echo", "s", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let (resp, took) = with_h2(gw.addr, |mut send| async move {
            let body = grpc_frame(&msg("slow", 0));
            let req = http::Request::post("http://a.test/test.Echo/Unary")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("grpc-timeout", "300m")
                .body(())
                .unwrap();
            let start = Instant::now();
            let r = h2_request(&mut send, req, &body, 1024).await.unwrap();
            (r, start.elapsed())
        });
        assert_eq!(resp.status, 200, "[{driver}]");
        assert_eq!(
            resp.header("grpc-status").as_deref(),
            Some("4"),
            "[{driver}] DEADLINE_EXCEEDED"
        );
        assert!(
            took < std::time::Duration::from_secs(2),
            "[{driver}] took {took:?}"
        );
    });
}

#[test]
fn calls_share_one_upstream_connection() {
    let up = GrpcUpstream::start();
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&grpc_config(&up, ""), driver, &["--workers", "1"]);
        let before = up.connections();
        let results = with_client(gw.addr, |g| async move {
            let mut calls = Vec::new();
            for i in 0..40 {
                let mut g = g.clone();
                calls.push(tokio::spawn(async move {
                    unary(&mut g, "Unary", tonic::Request::new(msg("m", i))).await
                }));
            }
            let mut out = Vec::new();
            for c in calls {
                out.push(c.await.unwrap().map(|r| r.into_inner().n));
            }
            out
        });
        let mut ns: Vec<u32> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|s| panic!("[{driver}] {s:?}")))
            .collect();
        ns.sort();
        assert_eq!(ns, (1..=40).collect::<Vec<u32>>(), "[{driver}]");
        // one gateway worker, one upstream connection, 40 concurrent calls multiplexed on it
        let opened = up.connections() - before;
        assert_eq!(
            opened, 1,
            "[{driver}] upstream connections opened: {opened}"
        );
    });
}

/// One length-prefixed gRPC message (uncompressed).
fn grpc_frame(m: &Msg) -> Vec<u8> {
    use prost::Message;
    let body = m.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn listed_grpc_statuses_trip_the_breaker() {
    let up = GrpcUpstream::start();
    let cfg = config(
        "",
        &(upstream_toml(
            "g",
            &[up.addr],
            "protocol = \"http2\"\n[upstream.circuit_breaker]\nmin_calls = 3\nwindow_calls = 3\nopen_for = \"30s\"\nfailure_grpc_statuses = [5]",
        ) + &route_toml("echo", "g", "path_prefix = \"/test.Echo/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        let codes = with_client(gw.addr, |mut g| async move {
            let mut codes = Vec::new();
            for _ in 0..4 {
                let r = unary(&mut g, "Unary", tonic::Request::new(msg("fail", 0))).await;
                codes.push(r.expect_err("fails").code());
            }
            codes
        });
        // three NOT_FOUND answers (trailers-only, so the status is in the head) open it
        assert_eq!(
            codes,
            [
                tonic::Code::NotFound,
                tonic::Code::NotFound,
                tonic::Code::NotFound,
                tonic::Code::Unavailable
            ],
            "[{driver}]"
        );
    });
}
