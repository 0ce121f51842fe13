//! PROXY protocol v1 and v2 on a listener that opts in (`[server] proxy_protocol = true`), through
//! real sockets: the client the header names is the client for IP rules and the upstream's
//! X-Forwarded-For; a v2 LOCAL header keeps the TCP peer; a connection without a header, or with
//! a malformed one, is closed unanswered and reaches no upstream. Both drivers.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Sends `prefix` then a GET, and returns what came back before the close.
fn exchange(addr: SocketAddr, prefix: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(secs(5))).unwrap();
    let mut out = prefix.to_vec();
    out.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(&out);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

fn v2(cmd: u8, src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20 | cmd, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1, 0, 0]);
    h[24..26].copy_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

#[test]
fn the_header_names_the_client_and_bad_headers_close() {
    let up = Upstream::recording("u");
    let cfg = config(
        "proxy_protocol = true",
        &(upstream_toml("u", &[up.addr], "")
            + &route_toml(
                "all",
                "u",
                "path_prefix = \"/\"\ndeny_ips = [\"203.0.113.0/24\"]",
            )),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let r = exchange(gw.addr, b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "[{driver}] {r}");
        let seen = up.wait_requests(1, secs(5));
        assert_eq!(
            seen[0].header("x-forwarded-for").as_deref(),
            Some("198.51.100.7"),
            "[{driver}]"
        );
        let r = exchange(gw.addr, b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\n");
        assert!(
            r.starts_with("HTTP/1.1 403"),
            "[{driver}] the named client is denied: {r}"
        );
        let r = exchange(gw.addr, &v2(1, [203, 0, 113, 10], 5000));
        assert!(r.starts_with("HTTP/1.1 403"), "[{driver}] v2: {r}");
        up.clear();
        let r = exchange(gw.addr, &v2(1, [192, 0, 2, 44], 5000));
        assert!(r.starts_with("HTTP/1.1 200"), "[{driver}] v2: {r}");
        let r = exchange(gw.addr, &v2(0, [0; 4], 0));
        assert!(
            r.starts_with("HTTP/1.1 200"),
            "[{driver}] LOCAL keeps the TCP peer: {r}"
        );
        let seen = up.wait_requests(2, secs(5));
        let xff: Vec<String> = seen
            .iter()
            .filter_map(|s| s.header("x-forwarded-for"))
            .collect();
        assert_eq!(xff, ["192.0.2.44", "127.0.0.1"], "[{driver}]");
        // no header, or a malformed one: closed without a word, nothing forwarded
        up.clear();
        for bad in [
            &b""[..],
            b"PROXY TCP4 nope 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 198.51.100.7 127.0.0.1 1\r\n",
        ] {
            let r = exchange(gw.addr, bad);
            assert_eq!(r, "", "[{driver}] {:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(up.request_count(), 0, "[{driver}]");
    });
}

#[test]
fn a_tls_listener_reads_the_header_before_the_handshake() {
    use common::tls::*;
    let ca = Ca::new("proxy CA");
    let leaf = ca.server("edge", &["edge.test"]);
    let up = Upstream::recording("u");
    let listener = tls_listener(&[&leaf], "").replacen(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\nproxy_protocol = true\n",
        1,
    );
    let cfg = config(
        "",
        &(listener
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    );
    let client = ClientOpts::trusting(&ca).build();
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let header = b"PROXY TCP6 2001:db8::7 ::1 1234 443\r\n";
        let mut c = TlsClient::connect_after(tls_addr(&gw), &client, "edge.test", header)
            .unwrap_or_else(|e| panic!("[{driver}] {e}"));
        assert_eq!(c.get("/x", "edge.test").status, 200, "[{driver}]");
        let seen = up.wait_requests(1, secs(5));
        assert_eq!(
            seen[0].header("x-forwarded-for").as_deref(),
            Some("2001:db8::7"),
            "[{driver}]"
        );
        // without the header the handshake never starts
        assert!(
            TlsClient::connect(tls_addr(&gw), &client, "edge.test").is_err(),
            "[{driver}]"
        );
    });
}
