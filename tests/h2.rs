//! HTTP/2 from clients: h2c with prior knowledge on a plain listener, with real HTTP/2 clients
//! (the `h2` crate, and curl where installed), both drivers. Each h2 stream runs the same pipeline
//! as an HTTP/1.1 request to an HTTP/1.1 upstream: what the upstream receives (Host from
//! `:authority`, joined cookies, the body with and without a content-length) and what the client
//! gets (no connection-specific fields, the gateway's own errors), many concurrent streams on one
//! connection, and a large download through flow control.

mod common;
use common::h2c::*;
use common::*;

fn h2_config(up: &Upstream) -> String {
    config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("api", "u", "path_prefix = \"/api\"")),
    )
}

#[test]
fn requests_run_the_pipeline_and_reach_an_http1_upstream() {
    let up = Upstream::echo("echo");
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_config(&up), driver);
        up.clear();
        let (get, missing, post_len, post_stream) = with_h2(gw.addr, |mut send| async move {
            let req = http::Request::get("http://a.test/api/items?x=1")
                .header("x-test", "yes")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let get = h2_request(&mut send, req, b"", 0).await.unwrap();
            let missing = h2_request(&mut send, h2_get("/nowhere"), b"", 0)
                .await
                .unwrap();
            let body = vec![7u8; 100_000];
            let req = http::Request::post("http://a.test/api/upload")
                .header("content-length", body.len().to_string())
                .body(())
                .unwrap();
            let post_len = h2_request(&mut send, req, &body, 16_000).await.unwrap();
            let req = http::Request::post("http://a.test/api/stream")
                .body(())
                .unwrap();
            let post_stream = h2_request(&mut send, req, b"abcdefghij", 3).await.unwrap();
            (get, missing, post_len, post_stream)
        });
        assert_eq!(get.status, 200, "[{driver}] {}", get.body_str());
        assert!(get.header("x-request-id").is_some(), "[{driver}]");
        assert!(get.header("connection").is_none() && get.header("keep-alive").is_none());
        assert_eq!(missing.status, 404, "[{driver}]");
        assert!(
            missing.body_str().contains("\"status\":404") || missing.body_str().contains("404")
        );
        assert_eq!(post_len.status, 200, "[{driver}]");
        assert_eq!(post_stream.status, 200, "[{driver}]");
        let seen = up.wait_requests(3, secs(5));
        let get_seen = seen
            .iter()
            .find(|r| r.target.starts_with("/api/items"))
            .expect("GET seen");
        assert_eq!(get_seen.target, "/api/items?x=1");
        assert_eq!(get_seen.version, "HTTP/1.1");
        assert_eq!(
            get_seen.header("host").as_deref(),
            Some("a.test"),
            "[{driver}]"
        );
        assert_eq!(get_seen.header("x-test").as_deref(), Some("yes"));
        assert_eq!(get_seen.header_all("cookie"), ["a=1; b=2"], "[{driver}]");
        assert!(
            get_seen.header("te").is_none(),
            "[{driver}] te is hop-by-hop"
        );
        assert!(get_seen.header("x-forwarded-for").is_some());
        let upload = seen
            .iter()
            .find(|r| r.target == "/api/upload")
            .expect("upload seen");
        assert_eq!(upload.header("content-length").as_deref(), Some("100000"));
        assert_eq!(upload.body, vec![7u8; 100_000], "[{driver}]");
        let streamed = seen
            .iter()
            .find(|r| r.target == "/api/stream")
            .expect("stream seen");
        assert_eq!(streamed.body, b"abcdefghij", "[{driver}]");
    });
}

#[test]
fn many_concurrent_streams_share_one_connection() {
    let up = Upstream::slow("slow", 50, "ok");
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_config(&up), driver);
        let started = std::time::Instant::now();
        let statuses = with_h2(gw.addr, |send| async move {
            let mut tasks = Vec::new();
            for i in 0..100 {
                let mut send = send.clone();
                tasks.push(monoio::spawn(async move {
                    let r = h2_request(&mut send, h2_get(&format!("/api/{i}")), b"", 0).await;
                    r.map(|r| (r.status, r.body_str()))
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            out
        });
        let took = started.elapsed();
        for (i, s) in statuses.iter().enumerate() {
            match s {
                Ok((200, body)) if body == "ok" => {}
                other => panic!("[{driver}] stream {i}: {other:?}"),
            }
        }
        // 100 streams of a 50 ms upstream ran concurrently, not one after another (5 s)
        assert!(took < secs(4), "[{driver}] took {took:?}");
    });
}

#[test]
fn a_large_download_goes_through_flow_control_intact() {
    let len = 8 << 20;
    let up = Upstream::download("big", len);
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_config(&up), driver);
        let r = with_h2(gw.addr, |mut send| async move {
            h2_request(&mut send, h2_get("/api/big"), b"", 0)
                .await
                .unwrap()
        });
        assert_eq!(r.status, 200, "[{driver}]");
        assert_eq!(r.body.len() as u64, len, "[{driver}]");
        assert_eq!(fnv64(&r.body), pattern_fnv(len), "[{driver}] body differs");
    });
}

#[test]
fn curl_speaks_h2c_with_prior_knowledge() {
    let up = Upstream::fixed("f", 200, "hello over h2");
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_config(&up), driver);
        let url = format!("http://{}/api/x", gw.addr);
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-w",
                "\n%{http_version} %{http_code}",
                &url,
            ])
            .output();
        let Ok(out) = out else {
            eprintln!("SKIP: curl not installed");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("\n2 200"),
            "[{driver}] curl said: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("hello over h2"), "[{driver}] {text:?}");
    });
}

#[test]
fn the_gateways_own_answers_to_grpc_calls_are_trailers_only() {
    let up = Upstream::fixed("f", 200, "ok");
    let digest = coregate::auth::apikey::digest(b"grpc-key");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let cfg = config(
        "",
        &(format!(
            "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\nkeys = [{{ sha256 = \"{hex}\", consumer = \"g\" }}]\n\n"
        ) + &upstream_toml("u", &[up.addr], "")
            + &route_toml("svc", "u", "path_prefix = \"/pkg.Greeter/\"\nauth = \"keys\"")),
    );
    let grpc = |path: &str| {
        http::Request::post(format!("http://a.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let (unauth, unimplemented, plain) = with_h2(gw.addr, |mut send| async move {
            let mut headers_only = Vec::new();
            for path in ["/pkg.Greeter/Hello", "/other.Svc/Call"] {
                send = send.ready().await.unwrap();
                let (resp, _) = send.send_request(grpc(path), true).unwrap();
                let resp = resp.await.unwrap();
                let ended = resp.body().is_end_stream();
                headers_only.push((resp.status().as_u16(), resp.headers().clone(), ended));
            }
            let plain = h2_request(&mut send, h2_get("/pkg.Greeter/Hello"), b"", 0)
                .await
                .unwrap();
            (headers_only.remove(0), headers_only.remove(0), plain)
        });
        let (status, headers, ended) = unauth;
        assert_eq!(
            (status, ended),
            (200, true),
            "[{driver}] trailers-only: HEADERS with END_STREAM"
        );
        assert_eq!(headers["content-type"], "application/grpc", "[{driver}]");
        assert_eq!(headers["grpc-status"], "16", "[{driver}] UNAUTHENTICATED");
        assert!(headers.contains_key("grpc-message") && headers.contains_key("x-request-id"));
        let (status, headers, ended) = unimplemented;
        assert_eq!((status, ended), (200, true), "[{driver}]");
        assert_eq!(
            headers["grpc-status"], "12",
            "[{driver}] UNIMPLEMENTED for no route"
        );
        // a non-gRPC request on the same route still gets the JSON answer
        assert_eq!(plain.status, 401, "[{driver}]");
        assert!(
            plain.body_str().contains("\"status\":401"),
            "[{driver}] {}",
            plain.body_str()
        );
        assert_eq!(up.request_count(), 0, "[{driver}]");
    });
}

#[test]
fn drain_and_idle_connections_get_a_graceful_goaway() {
    let up = Upstream::slow("slow", 400, "finished");
    let cfg = config(
        "keepalive_timeout = \"300ms\"",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("api", "u", "path_prefix = \"/api\"")),
    );
    for_each_driver(|driver| {
        // idle: no stream for keepalive_timeout -> GOAWAY(NO_ERROR), then the close; also after a
        // stream has come and gone
        let gw = Gateway::start(&cfg, driver);
        let mut c = RawH2::connect(gw.addr);
        // the idle clock starts after this stream ends: measured from before it was sent, the
        // close can only come later than keepalive_timeout, however late this client reads
        let t = std::time::Instant::now();
        c.send(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block("/api/one"),
        ));
        let answered = c.until(secs(5), |f| f.2 == 1 && f.1 & END_STREAM != 0);
        assert!(
            answered.is_some(),
            "[{driver}] the first stream was not answered"
        );
        let frames = c.until_closed(secs(5));
        let frames = frames.unwrap_or_else(|| panic!("[{driver}] idle connection still open"));
        let f = frames.iter().find(|f| f.0 == GOAWAY);
        let f = f.unwrap_or_else(|| panic!("[{driver}] no GOAWAY on an idle connection"));
        assert_eq!(goaway_code(f), 0, "[{driver}] NO_ERROR");
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(295),
            "[{driver}] {:?}",
            t.elapsed()
        );
        // drain: a stream in flight finishes after the GOAWAY, then the process exits
        let mut gw = Gateway::start(&cfg, driver);
        let mut c = RawH2::connect(gw.addr);
        c.send(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block("/api/slow"),
        ));
        let slow_seen = || up.requests().iter().any(|r| r.target == "/api/slow");
        assert!(
            wait_until(deadline(secs(5)), slow_seen),
            "[{driver}] the slow request never reached the upstream"
        );
        gw.signal(libc::SIGTERM);
        let frames = c.until_closed(secs(5));
        let frames = frames.unwrap_or_else(|| panic!("[{driver}] still open 5 s into the drain"));
        let goaway = frames.iter().position(|f| f.0 == GOAWAY);
        let end = frames
            .iter()
            .position(|f| f.2 == 1 && f.1 & END_STREAM != 0 && (f.0 == DATA || f.0 == HEADERS));
        assert!(
            goaway.is_some(),
            "[{driver}] no GOAWAY on drain: {frames:?}"
        );
        assert!(
            end.is_some(),
            "[{driver}] the in-flight stream was cut by the drain: {frames:?}"
        );
        let status = gw.wait_exit(deadline(secs(10)));
        assert!(status.success(), "[{driver}] exit {status:?}");
        up.clear();
    });
}

/// A client WebSocket text frame (FIN, masked, payload under 126 bytes).
fn ws_text(payload: &[u8]) -> bytes::Bytes {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f.into()
}

#[test]
fn websocket_over_h2_extended_connect_reaches_an_http1_websocket_upstream() {
    use common::ws::Echo;
    let echo = Echo::start();
    let cfg = config(
        "",
        &(upstream_toml("echo", &[echo.addr], "")
            + &route_toml("ws", "echo", "path = \"/ws\"\nwebsocket = true")
            + &route_toml("no", "echo", "path = \"/nows\"")),
    );
    let connect = |path: &str| {
        let mut req = http::Request::builder()
            .method("CONNECT")
            .uri(format!("http://a.test{path}"))
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        req
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let (status, echoed, refused) = with_h2(gw.addr, |send| async move {
            let mut send = send.ready().await.unwrap();
            // the server's SETTINGS (ENABLE_CONNECT_PROTOCOL) arrive after the handshake
            for _ in 0..200 {
                if send.is_extended_connect_protocol_enabled() {
                    break;
                }
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(
                send.is_extended_connect_protocol_enabled(),
                "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
            );
            let (resp, mut tx) = send.send_request(connect("/ws"), false).unwrap();
            let resp = resp.await.unwrap();
            let status = resp.status().as_u16();
            let mut rx = resp.into_body();
            let mut echoed = Vec::new();
            for msg in [&b"hello over h2"[..], b"and again"] {
                tx.send_data(ws_text(msg), false).unwrap();
                let want = echoed.len() + 2 + msg.len();
                while echoed.len() < want {
                    match rx.data().await {
                        Some(Ok(d)) => {
                            let _ = rx.flow_control().release_capacity(d.len());
                            echoed.extend_from_slice(&d);
                        }
                        _ => break,
                    }
                }
            }
            send = send.ready().await.unwrap();
            let (resp, _tx) = send.send_request(connect("/nows"), false).unwrap();
            let refused = resp.await.map(|r| r.status().as_u16()).unwrap_or(0);
            (status, echoed, refused)
        });
        assert_eq!(
            status, 200,
            "[{driver}] RFC 8441: 2xx for a switched stream"
        );
        let mut want = vec![0x81, 13];
        want.extend_from_slice(b"hello over h2");
        want.extend_from_slice(&[0x81, 9]);
        want.extend_from_slice(b"and again");
        assert_eq!(echoed, want, "[{driver}] echoed frames");
        let h = echo.handshakes.lock().unwrap()[0].clone();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("upgrade").as_deref(),
            Some("websocket"),
            "[{driver}] {h:?}"
        );
        assert_eq!(
            get("sec-websocket-version").as_deref(),
            Some("13"),
            "[{driver}]"
        );
        assert!(
            get("sec-websocket-key").is_some_and(|k| k.len() == 24),
            "[{driver}]"
        );
        assert_ne!(
            refused, 200,
            "[{driver}] a route without websocket = true must not switch"
        );
        echo.handshakes.lock().unwrap().clear();
    });
}

#[test]
fn head_requests_end_their_stream() {
    let up = Upstream::fixed("f", 200, "hello");
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_config(&up), driver);
        let r = with_h2(gw.addr, |mut send| async move {
            let req = http::Request::head("http://a.test/api/h").body(()).unwrap();
            let head = h2_request(&mut send, req, b"", 0);
            monoio::time::timeout(secs(5), head).await
        });
        let r = r.unwrap_or_else(|_| panic!("[{driver}] the HEAD stream never ended"));
        let r = r.unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0), "[{driver}]");
        assert_eq!(
            r.header("content-length").as_deref(),
            Some("5"),
            "[{driver}]"
        );
    });
}

#[test]
fn a_reload_sends_goaway_and_new_connections_get_the_new_config() {
    let (a, b) = (
        Upstream::fixed("a", 200, "A"),
        Upstream::fixed("b", 200, "B"),
    );
    let cfg = |up: &Upstream| {
        config(
            "keepalive_timeout = \"60s\"",
            &(upstream_toml("u", &[up.addr], "")
                + &route_toml("api", "u", "path_prefix = \"/api\"")),
        )
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg(&a), driver);
        let mut c = RawH2::connect(gw.addr);
        assert!(
            c.until(secs(5), |f| f.0 == SETTINGS).is_some(),
            "[{driver}] no SETTINGS"
        );
        std::fs::write(&gw.config_path, cfg(&b)).unwrap();
        let r = Client::connect(gw.admin.expect("admin")).request(&req(
            "POST",
            "/reload",
            "admin",
            &[],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let frames = c.until_closed(secs(5));
        let frames =
            frames.unwrap_or_else(|| panic!("[{driver}] connection still open after the reload"));
        let goaway = frames.iter().find(|f| f.0 == GOAWAY);
        assert!(
            goaway.is_some_and(|f| goaway_code(f) == 0),
            "[{driver}] {frames:?}"
        );
        let r = with_h2(gw.addr, |mut send| async move {
            h2_request(&mut send, h2_get("/api/x"), b"", 0)
                .await
                .unwrap()
        });
        assert_eq!(r.body_str(), "B", "[{driver}]");
    });
}

#[test]
fn a_stream_reset_by_the_client_cancels_its_upstream_exchange() {
    // the upstream answers after 8 s; the reset must show within 5 s, whatever the load
    let up = Upstream::slow("slow", 8000, "late");
    for_each_driver(|driver| {
        let gw = Gateway::start(&h2_config(&up), driver);
        up.clear();
        let mut c = RawH2::connect(gw.addr);
        c.send(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block("/api/slow"),
        ));
        assert!(
            wait_until(deadline(secs(5)), || up
                .requests()
                .iter()
                .any(|r| r.target == "/api/slow")),
            "[{driver}] the request never reached the upstream"
        );
        let t = std::time::Instant::now();
        c.send(&frame(RST_STREAM, 0, 1, &CANCEL.to_be_bytes()));
        // logged as 499 (a 4xx) as soon as the reset is seen, not when the upstream answers (8 s)
        let cancelled = wait_until(deadline(secs(5)), || {
            gw.metrics()
                .contains("coregate_requests_total{route=\"api\",class=\"4xx\"} 1")
        });
        assert!(cancelled, "[{driver}] not cancelled: {}", gw.metrics());
        assert!(t.elapsed() < secs(5), "[{driver}] {:?}", t.elapsed());
    });
}
