//! Upstream and client faults the gateway must absorb, through real sockets under both drivers:
//! a client that leaves while the upstream works (the exchange is cancelled, 499 logged), the
//! ejection safety floor (a sole endpoint is never ejected; `max_ejection_percent`), stale pooled
//! connections (closed by the upstream while idle, or dropped on reuse: never a 502 for a fresh
//! retry-able request, never an ejection), `Keep-Alive: timeout=N` learned from the upstream, an
//! upstream that answers before reading the whole request body (its answer is relayed), and a
//! malformed chunked response caught before any byte went out (502, not a cut connection).
//!
//! Upstreams here are scripted raw TCP servers (`Scripted`), since each fault is a precise
//! sequence of socket events that the mock upstream does not model.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// What a scripted upstream connection reports to the test (with the connection's index).
#[derive(Debug)]
#[allow(dead_code)] // the index shows in failure messages
enum Event {
    Head(usize),
    Eof(usize),
}

/// A raw upstream: each accepted connection runs `script(conn_index, stream, events)` on a thread.
struct Scripted {
    addr: SocketAddr,
    events: mpsc::Receiver<Event>,
}

type Script = fn(usize, TcpStream, &mpsc::Sender<Event>);

impl Scripted {
    fn start(script: Script) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (i, s) in l.incoming().enumerate() {
                let Ok(s) = s else { return };
                let tx = tx.clone();
                std::thread::spawn(move || script(i, s, &tx));
            }
        });
        Scripted { addr, events: rx }
    }

    /// Waits for the next event matching `want`, skipping others.
    fn next(&self, want: fn(&Event) -> bool, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if want(&e) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    fn expect_eof(&self, within: Duration) {
        assert!(
            self.next(|e| matches!(e, Event::Eof(_)), within),
            "no close within {within:?}"
        );
    }
}

/// Reads one request head (up to the blank line); false at end of stream.
fn read_head(s: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return false,
        }
    }
    true
}

/// Reads until end of stream (bounded by a read timeout); true if the peer closed.
fn wait_eof(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(secs(20))).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn gw_config(addr: SocketAddr, upstream_extra: &str, rest: &str) -> String {
    config(
        "",
        &(rest.to_string()
            + &upstream_toml("u", &[addr], upstream_extra)
            + &route_toml("r", "u", "path_prefix = \"/\"")),
    )
}

const ONE_WORKER: &[&str] = &["--workers", "1"];

/// The Prometheus line of metric `name` for upstream "u" ("" when absent).
fn upstream_series(metrics: &str, name: &str) -> String {
    let start = format!("{name}{{upstream=\"u\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn client_leaving_cancels_the_upstream_exchange() {
    let up = Scripted::start(|i, mut s, tx| {
        if read_head(&mut s) {
            tx.send(Event::Head(i)).unwrap();
            if wait_eof(&mut s) {
                tx.send(Event::Eof(i)).unwrap();
            }
        }
    });
    for_each_driver(|driver| {
        let log = temp_path("log");
        let cfg = gw_config(
            up.addr,
            "response_timeout = \"60s\"",
            &format!(
                "[access_log]\nsink = \"file\"\npath = \"{}\"\nflush_interval = \"20ms\"\n\n",
                log.display()
            ),
        );
        let gw = Gateway::start_with_args(&cfg, driver, ONE_WORKER);
        let mut c = Client::connect(gw.addr);
        c.send(&req("GET", "/work", "a.test", &[], b""));
        let got_head = up.next(|e| matches!(e, Event::Head(_)), secs(5));
        assert!(got_head, "[{driver}] the upstream never got the request");
        drop(c);
        // the upstream sees its connection closed long before response_timeout
        let closed = up.next(|e| matches!(e, Event::Eof(_)), secs(5));
        assert!(
            closed,
            "[{driver}] upstream exchange not cancelled after the client left"
        );
        let mut line = String::new();
        wait_until(deadline(secs(5)), || {
            line = std::fs::read_to_string(&log).unwrap_or_default();
            line.contains("\"status\":499")
        });
        assert!(line.contains("\"status\":499"), "[{driver}] log: {line}");
        let m = gw.metrics();
        assert!(
            m.contains("coregate_requests_total{route=\"r\",class=\"4xx\"} 1"),
            "[{driver}] 499 not counted:\n{}",
            m.lines()
                .filter(|l| l.contains("requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    });
}

#[test]
fn a_sole_endpoint_survives_a_timeout_and_the_floor_caps_ejections() {
    let up = Upstream::start(
        "slow-once",
        false,
        std::sync::Arc::new(|r: &Recorded| {
            if r.target == "/slow" {
                MockResponse::new(200, "late").delay_ms(1500)
            } else {
                MockResponse::new(200, "ok")
            }
        }),
    );
    let cfg = gw_config(up.addr, "response_timeout = \"300ms\"\nmax_fails = 1", "");
    // two endpoints that refuse connections, the default max_ejection_percent (50): one may go,
    // never both
    let pair = config(
        "",
        &(upstream_toml(
            "u",
            &[closed_port(), closed_port()],
            "max_fails = 1\nretries = 1",
        ) + &route_toml("r", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, ONE_WORKER);
        let r = Client::connect(gw.addr).get("/slow", "a.test");
        assert_eq!(r.status, 504, "[{driver}]");
        for _ in 0..3 {
            let r = Client::connect(gw.addr).get("/fast", "a.test");
            assert_eq!(
                r.status,
                200,
                "[{driver}] the sole endpoint was ejected: {}",
                r.body_str()
            );
        }
        let m = gw.metrics();
        let line = |name: &str| upstream_series(&m, name);
        assert!(
            line("coregate_upstream_ejections_spared_total").ends_with(" 1"),
            "[{driver}] {m}"
        );
        assert!(
            line("coregate_upstream_ejections_total").ends_with(" 0"),
            "[{driver}] {m}"
        );
        drop(gw);
        let gw = Gateway::start_with_args(&pair, driver, ONE_WORKER);
        for _ in 0..3 {
            // 502 (connection refused), never 503 "no healthy upstream"
            assert_eq!(
                Client::connect(gw.addr).get("/", "a.test").status,
                502,
                "[{driver}]"
            );
        }
        let m = gw.metrics();
        let line = |name: &str| upstream_series(&m, name);
        assert!(
            line("coregate_upstream_ejections_total").ends_with(" 1"),
            "[{driver}] {m}"
        );
        assert!(
            !line("coregate_upstream_ejections_spared_total").ends_with(" 0"),
            "[{driver}] {m}"
        );
    });
}

/// Answers every request with 200 and keeps the connection, but closes it once it has been idle
/// for 300 ms (uvicorn closes idle keep-alive connections after 5 s, gunicorn after 2 s).
fn idle_closer(i: usize, mut s: TcpStream, tx: &mpsc::Sender<Event>) {
    loop {
        s.set_read_timeout(None).unwrap();
        if !read_head(&mut s) {
            return;
        }
        tx.send(Event::Head(i)).unwrap();
        // bodies here are Content-Length 4
        let mut body = [0u8; 4];
        if s.read_exact(&mut body).is_err() || s.write_all(OK).is_err() {
            return;
        }
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        match s.peek(&mut b) {
            Ok(n) if n > 0 => continue,
            _ => {
                let _ = s.shutdown(std::net::Shutdown::Both);
                tx.send(Event::Eof(i)).unwrap();
                return;
            }
        }
    }
}

/// Answers the first request on each connection and drops the connection when a second arrives,
/// without answering: the race of an idle close with our reuse, lost.
fn drops_on_reuse(i: usize, mut s: TcpStream, tx: &mpsc::Sender<Event>) {
    if !read_head(&mut s) {
        return;
    }
    tx.send(Event::Head(i)).unwrap();
    if s.write_all(OK).is_err() || !read_head(&mut s) {
        return;
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    tx.send(Event::Eof(i)).unwrap();
}

#[test]
fn stale_pooled_connections_are_never_502s_or_ejections() {
    let closer = Scripted::start(idle_closer);
    let dropper = Scripted::start(drops_on_reuse);
    for_each_driver(|driver| {
        // POSTs (not idempotent) one after another, each after the upstream closed the idle
        // connection: nginx and HAProxy answer every one
        let gw = Gateway::start_with_args(&gw_config(closer.addr, "", ""), driver, ONE_WORKER);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let r = Client::connect(gw.addr).request(&req("POST", "/p", "a.test", &[], b"data"));
            statuses.push(r.status);
            closer.expect_eof(secs(5));
        }
        assert_eq!(statuses, [200; 4], "[{driver}]");
        drop(gw);
        // the close races our reuse and wins: a GET is retried on a fresh connection; a POST gets
        // 502, but the endpoint is not ejected (the next request is served, not 503)
        let gw = Gateway::start_with_args(&gw_config(dropper.addr, "", ""), driver, ONE_WORKER);
        let mut c = Client::connect(gw.addr);
        assert_eq!(c.get("/a", "a.test").status, 200, "[{driver}] first");
        assert_eq!(
            c.get("/b", "a.test").status,
            200,
            "[{driver}] GET on a dropped reuse"
        );
        let r = c.request(&req("POST", "/c", "a.test", &[], b""));
        assert_eq!(r.status, 502, "[{driver}] POST on a dropped reuse");
        let r = Client::connect(gw.addr).get("/d", "a.test");
        assert_eq!(
            r.status, 200,
            "[{driver}] endpoint ejected by a stale connection"
        );
        let m = gw.metrics();
        assert!(
            m.contains("coregate_upstream_ejections_total{upstream=\"u\"} 0"),
            "[{driver}]"
        );
        assert!(!m.contains("coregate_upstream_stale_connections_total{upstream=\"u\"} 0"));
    });
}

/// Advertises `Keep-Alive: timeout=2` and never closes: the gateway must stop reusing a
/// connection once it has been idle for about that long, although its own idle_timeout is 60 s.
fn advertises_keep_alive(i: usize, mut s: TcpStream, tx: &mpsc::Sender<Event>) {
    tx.send(Event::Head(i)).unwrap();
    while read_head(&mut s) {
        let r = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=2, max=100\r\nContent-Length: 2\r\n\r\nok";
        if s.write_all(r).is_err() {
            return;
        }
    }
}

#[test]
fn keep_alive_timeout_from_the_upstream_is_honoured() {
    let up = Scripted::start(advertises_keep_alive);
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(
            &gw_config(up.addr, "idle_timeout = \"60s\"", ""),
            driver,
            ONE_WORKER,
        );
        while up.events.try_recv().is_ok() {}
        let get = |path: &str| assert_eq!(Client::connect(gw.addr).get(path, "a.test").status, 200);
        get("/1");
        assert!(
            up.next(|e| matches!(e, Event::Head(_)), secs(5)),
            "first connection"
        );
        get("/2");
        assert!(
            up.events.try_recv().is_err(),
            "[{driver}] a fresh connection was not reused"
        );
        // the behaviour under test is an idle timeout: time has to pass (2 s less the 1 s margin)
        std::thread::sleep(Duration::from_millis(1300));
        get("/3");
        assert!(
            up.next(|e| matches!(e, Event::Head(_)), secs(5)),
            "[{driver}] connection reused past the upstream's keep-alive timeout"
        );
    });
}

/// Reads the head of a large upload, answers 413 at once and closes without reading the body.
fn answers_early(_: usize, mut s: TcpStream, _: &mpsc::Sender<Event>) {
    if read_head(&mut s) {
        let _ = s.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
        );
        let _ = s.shutdown(std::net::Shutdown::Write);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Answers with status lines that carry no usable reason phrase (none, or obs-text bytes).
fn reasonless(i: usize, mut s: TcpStream, _: &mpsc::Sender<Event>) {
    let lines: [&[u8]; 3] = [b"HTTP/1.1 201", b"HTTP/1.1 202 ", b"HTTP/1.1 203 \xc3\xa7a"];
    while read_head(&mut s) {
        let mut r = lines[i % 3].to_vec();
        r.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        if s.write_all(&r).is_err() {
            return;
        }
    }
}

#[test]
fn status_lines_without_a_reason_are_relayed() {
    let up = Scripted::start(reasonless);
    for_each_driver(|driver| {
        let gw = Gateway::start(&gw_config(up.addr, "", ""), driver);
        for _ in 0..3 {
            // a new client connection each time: new upstream connections take turns
            let mut c = Client::connect(gw.addr);
            c.send(b"GET /r HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
            let r = c.read_response();
            assert!((201..=203).contains(&r.status), "[{driver}] {}", r.status);
            assert_eq!(r.body_str(), "ok", "[{driver}]");
        }
    });
}

#[test]
fn an_early_upstream_answer_is_relayed() {
    let up = Scripted::start(answers_early);
    for_each_driver(|driver| {
        let gw = Gateway::start(&gw_config(up.addr, "", ""), driver);
        let len = 8 << 20;
        let mut c = Client::connect(gw.addr);
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: {len}\r\n\r\n");
        c.send(head.as_bytes());
        let mut w = c.stream.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 0;
            while sent < len {
                if w.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
        });
        let r = c.read_response();
        assert_eq!(r.status, 413, "[{driver}] {}", r.body_str());
        assert_eq!(r.body_str(), "too big!", "[{driver}]");
        assert_eq!(
            r.header("connection").as_deref(),
            Some("close"),
            "[{driver}]"
        );
        drop(c);
        writer.join().unwrap();
    });
}

#[test]
fn a_malformed_chunked_response_before_any_byte_is_a_502() {
    let up = Scripted::start(|_, mut s, _| {
        if read_head(&mut s) {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            );
            let _ = wait_eof(&mut s);
        }
    });
    for_each_driver(|driver| {
        let gw = Gateway::start(&gw_config(up.addr, "", ""), driver);
        let r = Client::connect(gw.addr).get("/", "a.test");
        assert_eq!(r.status, 502, "[{driver}]");
        assert_error_json(&r, 502);
    });
}
