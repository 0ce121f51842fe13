//! `coregate top` against a fake admin listener: two `/stats` documents half a gateway-second
//! apart give exact rates on the second frame (exit 0); an error answer is reported and retried;
//! an address where nothing listens gives the one-line error and exit 1. Piped stdout, so frames
//! carry no escape codes.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;

/// How long one `coregate top` run may take before it is killed (it needs well under a second).
const RUN_BUDGET_S: u64 = 30;

/// First document: uptime 10 s; users 1000 requests, orders 40.
const FIRST: &str = r#"{"uptime_s": 10.0, "workers": 2, "generation": 1,
  "connections": {"open": 3, "accepted": 50},
  "routes": [
    {"name": "orders", "requests": {"2xx": 40}, "bytes_out": 4000,
     "latency_us": {"count": 40, "p50": 250, "p99": 900}},
    {"name": "users", "requests": {"2xx": 1000}, "bytes_out": 100000,
     "latency_us": {"count": 1000, "p50": 110, "p99": 1500}}],
  "upstreams": [{"name": "users-svc", "requests": {"2xx": 1000}, "pool_hits": 990,
     "pool_misses": 10, "open_connections": 4, "latency_us": {"count": 1000, "p99": 1400}}],
  "access_log": {"written": 1040, "dropped": 0},
  "some_future_field": {"x": 1}}"#;

/// Half a second later (gateway clock): users +505 (5 of them 5xx), orders +10.
const SECOND: &str = r#"{"uptime_s": 10.5, "workers": 2, "generation": 1,
  "connections": {"open": 3, "accepted": 52},
  "routes": [
    {"name": "orders", "requests": {"2xx": 50}, "bytes_out": 5000,
     "latency_us": {"count": 50, "p50": 250, "p99": 900}},
    {"name": "users", "requests": {"2xx": 1500, "5xx": 5}, "bytes_out": 150500,
     "latency_us": {"count": 1505, "p50": 120, "p99": 1600}}],
  "upstreams": [{"name": "users-svc", "requests": {"2xx": 1505}, "pool_hits": 1490,
     "pool_misses": 15, "open_connections": 4, "latency_us": {"count": 1505, "p99": 1450}}],
  "access_log": {"written": 1555, "dropped": 0}}"#;

/// Serves `answers` in turn (the last one repeats) as full HTTP responses to successive
/// connections, like the admin listener: one request per connection, then close. Each request
/// line is sent on the returned channel.
fn fake_admin(answers: Vec<String>) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    // Detached: it blocks in accept until the test binary exits.
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(secs(5))).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && matches!(conn.read(&mut byte), Ok(1)) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let _ = tx.send(head.lines().next().unwrap_or("").to_string());
            let answer = &answers[i.min(answers.len() - 1)];
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (addr, rx)
}

fn ok(json: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{json}",
        json.len()
    )
}

fn top(admin: &str, count: &str) -> (Option<i32>, String, String) {
    let (status, out, err) = run_cli(
        &[
            "top",
            "--admin",
            admin,
            "--interval",
            "200ms",
            "--count",
            count,
        ],
        secs(RUN_BUDGET_S),
    );
    let status = status.map(|s| s.code().unwrap_or(-1));
    assert!(status.is_some(), "top hung; stdout {out:?} stderr {err:?}");
    (status, out, err)
}

/// Frames of piped output: each starts with the `coregate up` header line.
fn frames(out: &str) -> Vec<&str> {
    let starts: Vec<usize> = out.match_indices("coregate up ").map(|(i, _)| i).collect();
    let ends = starts.iter().skip(1).copied().chain([out.len()]);
    starts.iter().zip(ends).map(|(&a, b)| &out[a..b]).collect()
}

/// The whitespace-separated cells of the first line in `frame` whose first cell is `name`.
fn row(frame: &str, name: &str) -> Vec<String> {
    let line = frame
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name:?} in {frame}"));
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn two_refreshes_show_rates_from_the_difference() {
    let (addr, requests) = fake_admin(vec![ok(FIRST), ok(SECOND)]);
    let (status, out, err) = top(&addr.to_string(), "2");
    assert_eq!(status, Some(0), "stdout {out:?} stderr {err:?}");
    assert_eq!(err, "", "no errors expected");
    assert!(
        !out.contains('\x1b'),
        "piped output has no escape codes: {out:?}"
    );
    assert_eq!(
        requests.try_iter().collect::<Vec<_>>(),
        ["GET /stats HTTP/1.1", "GET /stats HTTP/1.1"]
    );
    let frames = frames(&out);
    assert_eq!(frames.len(), 2, "{out}");
    assert!(
        frames[0].ends_with("\n\n"),
        "frames are separated by a blank line: {out:?}"
    );
    assert!(frames[0].contains("(totals since start)"), "{}", frames[0]);
    assert_eq!(row(frames[0], "users")[..3], ["users", "1000", "-"]);
    assert!(frames[1].contains("(rates over 0.50s)"), "{}", frames[1]);
    assert!(frames[1].contains("rps 1030.0 "), "{}", frames[1]);
    // ROUTE REQS RPS 4XX/S 5XX/S 5XX% P50MS P99MS OUT/S: users first (highest rps).
    let routes: Vec<&str> = frames[1]
        .lines()
        .skip_while(|l| !l.starts_with("ROUTE"))
        .skip(1)
        .take(2)
        .collect();
    assert!(routes[0].starts_with("users ") && routes[1].starts_with("orders "));
    assert_eq!(
        row(frames[1], "users"),
        ["users", "1505", "1010.0", "0.0", "10.0", "0.99", "0.12", "1.60", "98.6KiB"]
    );
    assert_eq!(row(frames[1], "orders")[..3], ["orders", "50", "20.0"]);
    // UPSTREAM REQS RPS ERR/S HIT% OPEN P99MS
    assert_eq!(
        row(frames[1], "users-svc"),
        ["users-svc", "1505", "1010.0", "0.0", "99.0", "4", "1.45"]
    );
}

#[test]
fn an_error_answer_is_reported_and_retried() {
    let unavailable = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_string();
    let (addr, _) = fake_admin(vec![unavailable, ok(FIRST)]);
    let (status, out, err) = top(&addr.to_string(), "2");
    assert_eq!(status, Some(0), "stdout {out:?} stderr {err:?}");
    assert_eq!(
        err,
        format!("coregate top: cannot reach admin {addr}: GET /stats answered 503 Service Unavailable\n")
    );
    assert_eq!(frames(&out).len(), 1, "{out}");
}

#[test]
fn nothing_listening_is_one_error_line_and_exit_1() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (status, out, err) = top(&addr.to_string(), "1");
    assert_eq!(status, Some(1), "stdout {out:?} stderr {err:?}");
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!("coregate top: cannot reach admin {addr}: connection refused\n")
    );
}
