//! Server-sent events and other streamed responses are relayed as they arrive, with no buffering
//! delay: the first event reaches the client while the upstream is still holding back the second
//! (chunked and close-delimited upstream bodies, both drivers). What LLM streaming APIs need.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;

/// An upstream that sends one event, waits until the test says the client got it, then sends a
/// second one and ends the body. Path `/chunked` frames the body chunked, anything else ends it at
/// close.
fn gated_events() -> (SocketAddr, mpsc::Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let head = read_head_bytes(&mut s).unwrap_or_default();
            let chunked = head.starts_with(b"GET /chunked");
            let frame = |e: &str| match chunked {
                true => format!("{:x}\r\n{e}\r\n", e.len()),
                false => e.to_owned(),
            };
            let te = if chunked {
                "transfer-encoding: chunked\r\n"
            } else {
                "connection: close\r\n"
            };
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n{te}\r\n");
            let _ = s.write_all(frame("data: one\n\n").as_bytes());
            // held until the client has seen the first event (or the test gave up)
            let _ = rx.recv_timeout(secs(20));
            let _ = s.write_all(frame("data: two\n\n").as_bytes());
            if chunked {
                let _ = s.write_all(b"0\r\n\r\n");
            }
        }
    });
    (addr, tx)
}

#[test]
fn events_are_relayed_as_they_arrive() {
    let (up, release) = gated_events();
    let cfg = config(
        "",
        &(upstream_toml("llm", &[up], "") + &route_toml("sse", "llm", "")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        for path in ["/chunked", "/close"] {
            let s = TcpStream::connect(gw.addr).unwrap();
            s.set_read_timeout(Some(secs(10))).unwrap();
            let mut w = s.try_clone().unwrap();
            write!(
                w,
                "GET {path} HTTP/1.1\r\nHost: a.test\r\nAccept: text/event-stream\r\n\r\n"
            )
            .unwrap();
            let mut r = BufReader::new(s);
            // the head, then the first event, while the upstream still holds the second
            let mut line = String::new();
            let mut saw = Vec::new();
            while !saw.iter().any(|l: &String| l.starts_with("data: one")) {
                line.clear();
                let n = r.read_line(&mut line).unwrap_or_else(|e| {
                    panic!("[{driver}] {path}: first event not relayed before the upstream finished ({e}); got {saw:?}")
                });
                assert!(n > 0, "[{driver}] {path}: closed early: {saw:?}");
                saw.push(line.clone());
            }
            assert!(
                saw[0].starts_with("HTTP/1.1 200"),
                "[{driver}] {path}: {saw:?}"
            );
            assert!(saw
                .iter()
                .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream\r\n")));
            release.send(()).unwrap();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 && line.starts_with("data: two") => break,
                    Ok(n) if n > 0 => saw.push(line.clone()),
                    other => panic!("[{driver}] {path}: no second event ({other:?}): {saw:?}"),
                }
            }
        }
    });
}
