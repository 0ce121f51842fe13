//! A TLS listener against clients that do not finish a handshake, both drivers:
//! - `handshake_timeout` closes a client that connects and sends nothing, one that sends half a
//!   ClientHello, and one that dribbles its ClientHello a byte at a time (the timeout bounds the
//!   whole handshake, not each read); an established session idle longer than the handshake
//!   timeout is not cut by it; forty stalled handshakes do not hold up a real client;
//! - garbage on the TLS port (plain-text HTTP, application data before a handshake, an oversized
//!   record, an SSLv2-style hello, random bytes, one NUL byte) is closed, never reaches the
//!   upstream, and the gateway keeps serving TLS and plain clients; plain HTTP gets a readable
//!   400 first (as from nginx), not a TLS alert.

mod common;
use common::tls::*;
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn tls_config(leaf: &Leaf, up: &Upstream, extra: &str) -> String {
    config(
        "",
        &(tls_listener(&[leaf], extra)
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// A full TLS request still works.
#[track_caller]
fn assert_serves(addr: SocketAddr, cfg: &TlsClientConfig, what: &str) {
    let (r, _) = tls_get(addr, cfg, "api.test", "/ok").unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.status, 200, "{what}");
}

#[test]
fn handshake_timeout_closes_silent_and_slow_clients() {
    let ca = Ca::new("robustness CA");
    let leaf = ca.server("api", &["api.test"]);
    let up = Upstream::recording("u");
    let cfg = tls_config(&leaf, &up, "handshake_timeout = \"300ms\"");
    let patient_cfg = tls_config(&leaf, &up, "handshake_timeout = \"10s\"");
    let hello = client_hello_bytes("api.test");
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        let tls = ClientOpts::trusting(&ca).build();

        // silent
        let started = Instant::now();
        let mut s = connect(addr);
        let r = read_until_closed(&mut s, secs(5));
        let took = started.elapsed();
        assert!(
            r.is_ok(),
            "[{driver}] a silent client must be closed within 5 s (handshake_timeout 300ms)"
        );
        assert!(
            took >= Duration::from_millis(200),
            "[{driver}] closed after {took:?}: before the handshake timeout"
        );

        // half a ClientHello
        let mut s = connect(addr);
        s.write_all(&hello[..hello.len() / 2]).unwrap();
        assert!(
            read_until_closed(&mut s, secs(5)).is_ok(),
            "[{driver}] half a ClientHello must be closed within 5 s"
        );

        // a byte every 50 ms: each read is quick, the handshake never ends
        let mut s = connect(addr);
        let started = Instant::now();
        let mut closed = false;
        for b in &hello {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                closed = true;
                break;
            }
            if read_until_closed(&mut s, Duration::from_millis(50)).is_ok() {
                closed = true;
                break;
            }
            if started.elapsed() > secs(5) {
                break;
            }
        }
        assert!(
            closed,
            "[{driver}] a dribbling ClientHello must be closed by the handshake timeout ({:?}, {} bytes)",
            started.elapsed(),
            hello.len()
        );

        // an established session outlives the handshake timeout
        let mut c = TlsClient::open(addr, &tls, "api.test");
        assert_eq!(c.get("/1", "api.test").status, 200);
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(
            c.get("/2", "api.test").status,
            200,
            "[{driver}] an idle established session is not subject to handshake_timeout"
        );

        // many stalled handshakes do not block a real client: on a gateway that lets them stall
        // for 10 s, so a client queued behind them could not be served in time
        let patient = Gateway::start(&patient_cfg, driver);
        let patient_addr = tls_addr(&patient);
        let mut stalled = Vec::new();
        for i in 0..40 {
            let mut s = connect(patient_addr);
            if i % 2 == 1 {
                s.write_all(&hello[..hello.len() / 3]).unwrap();
            }
            stalled.push(s);
        }
        let t = Instant::now();
        assert_serves(
            patient_addr,
            &tls,
            &format!("[{driver}] next to 40 stalled handshakes"),
        );
        assert!(t.elapsed() < secs(5), "[{driver}] took {:?}", t.elapsed());
        drop(patient);
        // and on the 300 ms gateway they are all closed
        let mut stalled: Vec<_> = (0..40).map(|_| connect(addr)).collect();
        for (i, s) in stalled.iter_mut().enumerate() {
            assert!(
                read_until_closed(s, secs(5)).is_ok(),
                "[{driver}] stalled handshake {i} never closed"
            );
        }
        assert_serves(addr, &tls, &format!("[{driver}] after the stalls"));
    });
}

#[test]
fn garbage_on_the_tls_port_closes_cleanly() {
    let ca = Ca::new("robustness CA");
    let leaf = ca.server("api", &["api.test"]);
    let up = Upstream::recording("u");
    let cfg = tls_config(&leaf, &up, "handshake_timeout = \"2s\"");
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let random: Vec<u8> = (0..512).map(|_| rng.next() as u8).collect();
    let mut app_data = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    app_data.extend_from_slice(&[0xab; 32]);
    let mut oversized = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    oversized.extend_from_slice(&[0x01; 64]);
    let sslv2 = [
        0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        (
            "plain-text HTTP",
            b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        ),
        ("application data before a handshake", app_data),
        ("oversized handshake record", oversized),
        ("SSLv2-style hello", sslv2.to_vec()),
        ("random bytes", random),
        ("a single NUL byte", vec![0]),
    ];
    for_each_driver(|driver| {
        let mut gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        let tls = ClientOpts::trusting(&ca).build();
        for (what, bytes) in &inputs {
            let mut s = connect(addr);
            // the gateway may close while we still write: that is fine
            let _ = s.write_all(bytes);
            // an alert (or the 400 for plain HTTP) may come first; the connection must end
            let got = read_until_closed(&mut s, secs(5)).unwrap_or_else(|got| {
                panic!("[{driver}] {what}: still open after 5 s (read {got:?})")
            });
            eprintln!("[{driver}] {what}: closed after {} byte(s)", got.len());
            if *what == "plain-text HTTP" {
                // answered in its own terms, as nginx does, not with a TLS alert
                let text = String::from_utf8_lossy(&got);
                assert!(
                    text.starts_with("HTTP/1.1 400 ")
                        && text.contains("plain HTTP request sent to a TLS port"),
                    "[{driver}] {what}: {text:?}"
                );
            }
            assert_serves(addr, &tls, &format!("[{driver}] after {what}"));
        }
        assert!(gw.running(), "[{driver}] the gateway is still up");
        assert_eq!(get(gw.addr, "/plain", "api.test").status, 200, "[{driver}]");
        assert_eq!(
            up.requests()
                .iter()
                .filter(|r| r.target == "/" && r.header("host").as_deref() == Some("api.test"))
                .count(),
            0,
            "[{driver}] the plain-text request must not reach the upstream"
        );
    });
}
