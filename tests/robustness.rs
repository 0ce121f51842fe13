//! The gateway never falls over on hostile bytes: mutated requests from clients and malformed
//! responses from upstreams get an answer (4xx from the parser, 502 for upstream garbage) or a
//! closed connection, never a crash, and the gateway keeps serving normal requests afterwards.
//!
//! Mutations are deterministic (a fixed-seed xorshift), so a failure names a reproducible case.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const SEEDS: &[&[u8]] = &[
    b"GET /api/x?a=1 HTTP/1.1\r\nHost: r.test\r\nAccept: */*\r\n\r\n",
    b"POST /api/x HTTP/1.1\r\nHost: r.test\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /api/x HTTP/1.1\r\nHost: r.test\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET /api/x HTTP/1.0\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\n\r\n",
];
const SPICE: &[u8] = b"\r\n\0 \t:;,\"\x7f\xff-0fF";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len().max(1));
        match rng.below(5) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, SPICE[rng.below(SPICE.len())]),
            2 => {
                v.remove(at.min(v.len() - 1));
            }
            3 => v.truncate(at.max(1)),
            _ => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let piece = v[at..end].to_vec();
                v.splice(at..at, piece);
            }
        }
        if v.is_empty() {
            v.push(b'G');
        }
    }
    v
}

/// Sends raw bytes, half-closes, and reads whatever comes back (bounded by a timeout).
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn mutated_requests_never_break_the_gateway() {
    let up = Upstream::recording("rec");
    let cfg = config(
        "header_timeout = \"1s\"\n",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("r", "u", "path_prefix = \"/api\"")),
    );
    for_each_driver(|driver| {
        let mut gw = Gateway::start(&cfg, driver);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..300 {
            let seed = SEEDS[i % SEEDS.len()];
            let bytes = mutate(&mut rng, seed);
            let out = exchange(gw.addr, &bytes);
            if let Some(status) = out.get(9..12).and_then(|s| std::str::from_utf8(s).ok()) {
                let code: u16 = status.parse().unwrap_or(0);
                assert!(
                    (200..500).contains(&code) || code == 505,
                    "[{driver}] case {i}: {:?} got {code}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            assert!(
                gw.running(),
                "[{driver}] gateway died on case {i}: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert_eq!(
            get(gw.addr, "/api/ok", "r.test").status,
            200,
            "[{driver}] still serving"
        );
    });
}

/// An upstream that answers every connection with the given bytes, then closes.
fn garbage_upstream(reply: &'static [u8]) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(reply);
            });
        }
    });
    addr
}

#[test]
fn malformed_upstream_responses_become_502() {
    let replies: &[&'static [u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ];
    let mut upstreams = String::new();
    let mut routes = String::new();
    for (i, r) in replies.iter().enumerate() {
        let addr = garbage_upstream(r);
        upstreams += &upstream_toml(&format!("g{i}"), &[addr], "retries = 0\nmax_fails = 0");
        routes += &route_toml(
            &format!("r{i}"),
            &format!("g{i}"),
            &format!("path = \"/g{i}\""),
        );
    }
    let cfg = config("", &(upstreams + &routes));
    for_each_driver(|driver| {
        let mut gw = Gateway::start(&cfg, driver);
        for (i, reply) in replies.iter().enumerate() {
            let r = get(gw.addr, &format!("/g{i}"), "r.test");
            assert_eq!(r.status, 502, "[{driver}] reply {i}: {reply:?}");
            assert!(gw.running(), "[{driver}] died on upstream reply {i}");
        }
    });
}
