//! Large Content-Length response bodies through every way the relay can move them: copied through
//! the connection's own 16 KiB buffer (`--relay-buffer 0 --splice-min 0`), through a large buffer
//! lent from the worker's pool (the default, and a small `--relay-buffer`), and spliced socket to
//! socket through a pipe (`--splice-min`): each body arrives whole (length and checksum), several
//! in a row on one keep-alive connection, so the pooled upstream connection and the pooled
//! buffers and pipes are reused after each. An upstream that stops mid-body cuts the client's
//! connection on every path (the client never gets a short body that looks complete).

mod common;
use common::*;
use std::io::{Read, Write};
use std::sync::Arc;

const SIZES: [usize; 3] = [40_000, 300_000, 3_000_000];

const PATHS: [&[&str]; 4] = [
    &[],
    &["--splice-min", "16KiB"],
    &["--relay-buffer", "16KiB", "--splice-min", "0"],
    &["--relay-buffer", "0", "--splice-min", "0"],
];

#[test]
fn large_bodies_arrive_whole_whichever_way_they_move() {
    let up = Upstream::start(
        "big",
        false,
        Arc::new(|r: &Recorded| {
            let n: usize = r.target.trim_start_matches("/b/").parse().unwrap_or(0);
            MockResponse::new(200, pattern_vec(n))
        }),
    );
    let cfg = config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        for flags in PATHS {
            let gw = Gateway::start_with_args(&cfg, driver, flags);
            let mut c = Client::connect(gw.addr);
            for n in SIZES.iter().chain(SIZES.iter().rev()) {
                let r = c.get(&format!("/b/{n}"), "big.test");
                let what = format!("[{driver} {flags:?}] {n} bytes");
                assert_eq!(r.status, 200, "{what}");
                assert_eq!(r.body.len(), *n, "{what}: length");
                assert_eq!(fnv64(&r.body), pattern_fnv(*n as u64), "{what}: checksum");
            }
        }
    });
}

/// An upstream that promises `declared` bytes, sends `sent`, and closes.
fn short_upstream(declared: usize, sent: usize) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n").as_bytes(),
                );
                let _ = s.write_all(&pattern_vec(sent));
                // dropped: the body ends short
            });
        }
    });
    addr
}

#[test]
fn an_upstream_that_stops_mid_body_cuts_the_client_connection() {
    let addr = short_upstream(2_000_000, 500_000);
    let cfg = config(
        "",
        &(upstream_toml("u", &[addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        for flags in PATHS {
            let gw = Gateway::start_with_args(&cfg, driver, flags);
            let mut c = Client::connect(gw.addr);
            c.send(b"GET /short HTTP/1.1\r\nHost: big.test\r\n\r\n");
            let r = c.try_read_response("GET", None);
            assert!(
                r.is_err(),
                "[{driver} {flags:?}] a body cut short upstream reached the client as complete"
            );
        }
    });
}
