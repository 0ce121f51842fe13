//! WebSocket through the gateway, with real WebSocket peers (tungstenite) on both sides, both
//! drivers: the handshake is passed on only on `websocket = true` routes, the upstream's 101 turns
//! the connection into a tunnel (text, a 5 MiB binary message, ping/pong, the close handshake,
//! abrupt closes, the idle timeout, wss on a TLS listener), auth applies to the handshake, and an
//! upstream that refuses or switches to something else is relayed or answered 502.
// The test's peers share state between their own threads with Mutex; the lint guards the
// gateway's request path, not test code.
#![allow(clippy::disallowed_types)]
// tungstenite's handshake callback type returns its (large) error response by value.
#![allow(clippy::result_large_err)]

mod common;
use common::tls::*;
use common::ws::*;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::{Message, WebSocket};

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

const KEY: &str = "ws-test-key";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ws_config(echo: SocketAddr, plain: SocketAddr, raw: SocketAddr, listener: &str) -> String {
    config(
        "",
        &(format!(
            "{listener}[[auth]]\nname = \"keys\"\ntype = \"api_key\"\nkeys = [{{ sha256 = \"{}\", consumer = \"ws\" }}]\ntoken_query = \"api_key\"\n\n",
            hex(&coregate::auth::apikey::digest(KEY.as_bytes()))
        ) + &upstream_toml("echo", &[echo], "")
            + &upstream_toml("plain", &[plain], "")
            + &upstream_toml("raw", &[raw], "")
            + &route_toml("ws", "echo", "path = \"/ws\"\nwebsocket = true")
            + &route_toml("idle", "echo", "path = \"/idle\"\nwebsocket = true\ntunnel_idle_timeout = \"300ms\"")
            + &route_toml("private", "echo", "path = \"/private\"\nwebsocket = true\nauth = \"keys\"")
            + &route_toml("no-ws", "plain", "path_prefix = \"/plain\"")
            + &route_toml("plain-ws", "plain", "path_prefix = \"/refuse\"\nwebsocket = true")
            + &route_toml("raw", "raw", "path_prefix = \"/raw\"\nwebsocket = true")),
    )
}

/// An upstream that answers any request with a 101 to another protocol.
fn wrong_switch() -> SocketAddr {
    raw_server(|mut s| {
        let mut b = [0u8; 4096];
        let _ = s.read(&mut b);
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
        );
        let _ = s.read(&mut b);
    })
}

fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://a.test{path}"), s)
        .unwrap_or_else(|e| panic!("handshake on {path}: {e}"));
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    ws
}

/// Reads the next data or pong message (skipping nothing else).
fn next(ws: &mut WebSocket<impl Read + Write>) -> Message {
    ws.read().expect("read a message")
}

fn exercise(ws: &mut WebSocket<impl Read + Write>, driver: &str) {
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(next(ws), Message::text("hello"), "[{driver}]");
    let mut rng = Rng(7);
    let big: Vec<u8> = (0..5 << 20).map(|_| rng.next() as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    match next(ws) {
        Message::Binary(b) => assert!(b[..] == big[..], "[{driver}] 5 MiB message changed"),
        m => panic!("[{driver}] expected the binary echo, got {m:?}"),
    }
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        next(ws),
        Message::Pong(b"are you there".to_vec().into()),
        "[{driver}]"
    );
    // the close handshake: our close comes back, then the connection ends
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("[{driver}] close handshake: {e}"),
        }
    }
}

fn gauge(gw: &Gateway) -> u64 {
    let m = gw.metrics();
    m.lines()
        .find_map(|l| l.strip_prefix("coregate_tunnels_open "))
        .and_then(|v| v.trim().parse().ok())
        .expect("coregate_tunnels_open in /metrics")
}

#[test]
fn messages_pings_and_the_close_handshake_pass_through() {
    let (echo, plain, raw) = (Echo::start(), Upstream::recording("plain"), wrong_switch());
    for_each_driver(|driver| {
        let gw = Gateway::start(&ws_config(echo.addr, plain.addr, raw, ""), driver);
        let mut ws = connect(gw.addr, "/ws");
        // what the upstream saw: a proper handshake, plus the usual forwarded fields
        let h = echo.last_handshake();
        assert_eq!(header(&h, "upgrade"), Some("websocket"), "[{driver}] {h:?}");
        assert_eq!(header(&h, "connection"), Some("upgrade"), "[{driver}]");
        assert!(
            header(&h, "sec-websocket-key").is_some() && header(&h, "x-forwarded-for").is_some()
        );
        assert!(
            wait_until(deadline(secs(5)), || gauge(&gw) == 1),
            "[{driver}] tunnel gauge"
        );
        exercise(&mut ws, driver);
        // the upstream closed after the close handshake; the client closes its end too
        drop(ws);
        assert!(
            wait_until(deadline(secs(5)), || gauge(&gw) == 0),
            "[{driver}] gauge after close"
        );
        // the request is counted once it ends, as a 1xx, and the upstream's byte counters hold
        // the 5 MiB that went each way
        let m = gw.metrics();
        assert!(
            m.contains("coregate_requests_total{route=\"ws\",class=\"1xx\"} 1"),
            "[{driver}] 101 counted: {m}"
        );
        let bytes = |dir: &str| -> u64 {
            let prefix = format!("coregate_upstream_{dir}_bytes_total{{upstream=\"echo\"}} ");
            m.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("[{driver}] no {prefix} in {m}"))
        };
        assert!(
            bytes("sent") > 5 << 20 && bytes("received") > 5 << 20,
            "[{driver}]"
        );
    });
}

#[test]
fn wss_on_a_tls_listener() {
    let ca = Ca::new("ws CA");
    let leaf = ca.server("api", &["a.test"]);
    let (echo, plain, raw) = (Echo::start(), Upstream::recording("plain"), wrong_switch());
    let client = ClientOpts::trusting(&ca).build();
    for_each_driver(|driver| {
        let cfg = ws_config(echo.addr, plain.addr, raw, &tls_listener(&[&leaf], ""));
        let gw = Gateway::start(&cfg, driver);
        let tcp = TcpStream::connect(tls_addr(&gw)).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
        let conn = rustls::ClientConnection::new(client.config.clone(), name).unwrap();
        let tls = rustls::StreamOwned::new(conn, tcp);
        let (mut ws, resp) = tungstenite::client("wss://a.test/ws", tls).expect("wss handshake");
        assert_eq!(resp.status(), 101);
        assert_eq!(
            header(&echo.last_handshake(), "x-forwarded-proto"),
            Some("https"),
            "[{driver}]"
        );
        exercise(&mut ws, driver);
    });
}

#[test]
fn only_websocket_routes_pass_the_handshake_and_auth_applies_to_it() {
    let (echo, plain, raw) = (Echo::start(), Upstream::recording("plain"), wrong_switch());
    let handshake = |path: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&ws_config(echo.addr, plain.addr, raw, ""), driver);
        // a route without `websocket = true`: an ordinary GET reaches the upstream
        plain.clear();
        let r = Client::connect(gw.addr).request(handshake("/plain", "").as_bytes());
        assert_eq!(r.status, 200, "[{driver}]");
        let seen = plain.wait_requests(1, secs(5));
        assert!(
            !seen[0].has("upgrade"),
            "[{driver}] Upgrade must be stripped"
        );
        // a handshake with a body is not an upgrade, even on a websocket route
        plain.clear();
        let with_body = handshake("/refuse", "Content-Length: 5\r\n") + "hello";
        let r = Client::connect(gw.addr).request(with_body.as_bytes());
        assert_eq!(r.status, 200, "[{driver}]");
        assert!(
            !plain.wait_requests(1, secs(5))[0].has("upgrade"),
            "[{driver}]"
        );
        // an upstream that answers the handshake with a plain response: relayed, connection kept
        let mut c = Client::connect(gw.addr);
        let r = c.request(handshake("/refuse", "").as_bytes());
        assert_eq!(r.status, 200, "[{driver}]");
        assert!(plain
            .wait_requests(1, secs(5))
            .iter()
            .any(|r| r.has("upgrade")));
        assert_eq!(c.get("/plain/again", "a.test").status, 200, "[{driver}]");
        // a 101 to something else than websocket: 502
        let r = Client::connect(gw.addr).request(handshake("/raw", "").as_bytes());
        assert_eq!(r.status, 502, "[{driver}]");
        // auth runs on the handshake: no key, 401, and the upstream never hears of it
        let before = echo.handshakes.lock().unwrap().len();
        let r = Client::connect(gw.addr).request(handshake("/private", "").as_bytes());
        assert_eq!(r.status, 401, "[{driver}]");
        assert_eq!(echo.handshakes.lock().unwrap().len(), before, "[{driver}]");
        let mut ws = connect(gw.addr, &format!("/private?api_key={KEY}"));
        ws.send(Message::text("with a key")).unwrap();
        assert_eq!(next(&mut ws), Message::text("with a key"), "[{driver}]");
    });
}

#[test]
fn abrupt_closes_and_idle_tunnels_end_both_sides() {
    let (echo, plain, raw) = (Echo::start(), Upstream::recording("plain"), wrong_switch());
    for_each_driver(|driver| {
        let gw = Gateway::start(&ws_config(echo.addr, plain.addr, raw, ""), driver);
        // the client vanishes without a close frame: the upstream's side ends too
        let ended = *echo.ended.lock().unwrap();
        let mut ws = connect(gw.addr, "/ws");
        ws.send(Message::text("bye")).unwrap();
        assert_eq!(next(&mut ws), Message::text("bye"));
        drop(ws);
        assert!(
            wait_until(deadline(secs(5)), || *echo.ended.lock().unwrap() > ended),
            "[{driver}] the upstream connection outlived the client"
        );
        assert!(
            wait_until(deadline(secs(5)), || gauge(&gw) == 0),
            "[{driver}]"
        );
        // nothing moves for tunnel_idle_timeout (300 ms): the gateway closes the tunnel
        // (timed from before the upgrade: the idle clock starts after it, so the close can only
        // come later than 300 ms, however late this client reads)
        let t = std::time::Instant::now();
        let mut ws = connect(gw.addr, "/idle");
        match ws.read() {
            Err(tungstenite::Error::ConnectionClosed)
            | Err(tungstenite::Error::Protocol(_))
            | Err(tungstenite::Error::Io(_)) => {}
            other => panic!("[{driver}] idle tunnel: {other:?}"),
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(295) && took < secs(5),
            "[{driver}] {took:?}"
        );
    });
}

/// An upstream that switches to `echo-proto` when asked (and says what it was asked), then echoes
/// bytes until the client closes.
fn echo_proto() -> SocketAddr {
    raw_server(|mut s| {
        let Some(head) = read_head_bytes(&mut s) else {
            return;
        };
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !text.contains("\r\nupgrade: echo-proto\r\n") {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 10\r\n\r\nno upgrade",
            );
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n");
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

#[test]
fn configured_upgrade_protocols_are_tunnelled_too() {
    let up = echo_proto();
    let cfg = config(
        "",
        &(upstream_toml("p", &[up], "")
            + &route_toml(
                "custom",
                "p",
                "path = \"/custom\"\nupgrades = [\"echo-proto\"]",
            )
            + &route_toml("plain", "p", "path = \"/plain\"")),
    );
    let ask = |path: &str, proto: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n")
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        // the client offers two protocols; the gateway passes on the one the route allows
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(ask("/custom", "other/1, Echo-Proto").as_bytes())
            .unwrap();
        let head =
            read_head_bytes(&mut s).unwrap_or_else(|| panic!("[{driver}] closed in the head"));
        let text = String::from_utf8_lossy(&head);
        assert!(text.starts_with("HTTP/1.1 101 "), "[{driver}] {text}");
        assert!(
            text.to_ascii_lowercase().contains("upgrade: echo-proto"),
            "[{driver}] {text}"
        );
        for msg in [&b"ping through the tunnel"[..], b"and back"] {
            s.write_all(msg).unwrap();
            let mut got = vec![0u8; msg.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, msg, "[{driver}]");
        }
        // not a protocol the route lists, or a route that lists none: an ordinary request
        for (path, proto) in [("/custom", "other/1"), ("/plain", "echo-proto")] {
            let r = Client::connect(gw.addr).request(ask(path, proto).as_bytes());
            assert_eq!(
                (r.status, r.body_str().as_str()),
                (200, "no upgrade"),
                "[{driver}] {path} {proto}"
            );
        }
    });
}
