//! Full duplex through the gateway with HTTP/1.1 on both sides: an upstream that answers as soon
//! as the request head arrives and then echoes each piece of the chunked request body as it
//! comes, and a client that sends each piece only after it has read the echo of the one before.
//! Without full duplex the gateway would wait for the whole body first and the client would
//! never send it. Both drivers. (The HTTP/2 and gRPC cases are in `tests/grpc.rs`.)

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;

/// Answers at once, then echoes every chunk of the request body as a chunk of the response.
fn echo_chunks(mut s: TcpStream) {
    if read_head_bytes(&mut s).is_none() {
        return;
    }
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        // every complete chunk in `buf` goes back as it is
        while let Some(line_end) = find(&buf, b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            let total = line_end + 2 + size + 2;
            if size == 0 {
                let _ = s.write_all(b"0\r\n\r\n");
                return;
            }
            if buf.len() < total {
                break;
            }
            let _ = s.write_all(&buf[..total]);
            buf.drain(..total);
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Reads until `needle` has been seen in what arrived so far (5 s at most).
fn read_until(c: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) -> bool {
    c.set_read_timeout(Some(secs(5))).unwrap();
    let mut tmp = [0u8; 4096];
    while find(got, needle).is_none() {
        match c.read(&mut tmp) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
        }
    }
    true
}

#[test]
fn http1_upload_and_answer_interleave() {
    let up = raw_server(echo_chunks);
    let cfg = config(
        "",
        &(upstream_toml("u", &[up], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = TcpStream::connect(gw.addr).unwrap();
        c.write_all(b"POST /duplex HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nping1\r\n")
            .unwrap();
        let mut got = Vec::new();
        assert!(
            read_until(&mut c, &mut got, b"ping1"),
            "[{driver}] no echo of the first piece: {}",
            String::from_utf8_lossy(&got)
        );
        assert!(got.starts_with(b"HTTP/1.1 200"), "[{driver}]");
        for i in 2..=4 {
            let piece = format!("5\r\nping{i}\r\n");
            c.write_all(piece.as_bytes()).unwrap();
            let want = format!("ping{i}");
            assert!(
                read_until(&mut c, &mut got, want.as_bytes()),
                "[{driver}] no echo of piece {i}"
            );
        }
        c.write_all(b"0\r\n\r\n").unwrap();
        assert!(
            read_until(&mut c, &mut got, b"\r\n0\r\n\r\n"),
            "[{driver}] the response did not end"
        );
    });
}
