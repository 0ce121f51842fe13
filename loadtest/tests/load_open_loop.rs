//! The generator against a tiny in-test backend on real sockets (127.0.0.1:0): open loop exposes a
//! one-off server stall in the latency tail (coordinated omission corrected) while closed loop hides
//! it; closed-loop throughput matches Little's law against a fixed-delay backend; bad input exits 2.
//!
//! The backend is std threads, one per connection, HTTP/1.1 keep-alive with a fixed response. It
//! can add a fixed delay per request, and stall once: when the Nth request arrives, every response
//! (that one included) waits until `stall` has passed since then.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use coregate_load::load::{execute, LoadArgs};
use coregate_load::stats::model::RunResult;

/// Timing tests share two cores: run them one at a time (a one-token channel as a semaphore).
fn serial() -> impl Drop {
    static TOKEN: OnceLock<(
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    )> = OnceLock::new();
    let (tx, rx) = TOKEN.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        tx.send(()).unwrap();
        (tx, rx)
    });
    rx.recv().unwrap();
    struct Guard(crossbeam_channel::Sender<()>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    Guard(tx.clone())
}

struct Backend {
    port: u16,
    requests: Arc<AtomicU64>,
}

/// Start the backend: `delay` per request; stall everything for `stall` once request `stall_at` arrives.
fn backend(delay: Duration, stall_at: u64, stall: Duration) -> Backend {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let requests = Arc::new(AtomicU64::new(0));
    let stall_until = Arc::new(AtomicU64::new(0)); // ns after `epoch`; 0 = no stall yet
    let epoch = Instant::now();
    let reqs = requests.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (reqs, stall_until) = (reqs.clone(), stall_until.clone());
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // One request = a head ending in CRLFCRLF (the generator sends no bodies here).
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end);
                    let n = reqs.fetch_add(1, SeqCst) + 1;
                    if n == stall_at {
                        let until = epoch.elapsed() + stall;
                        stall_until.store(until.as_nanos() as u64, SeqCst);
                    }
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let until = Duration::from_nanos(stall_until.load(SeqCst));
                    let now = epoch.elapsed();
                    if now < until {
                        std::thread::sleep(until - now); // the simulated server stall
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend { port, requests }
}

fn args(port: u16, extra: &[&str]) -> LoadArgs {
    let url = format!("http://127.0.0.1:{port}/hello");
    let mut v: Vec<String> = vec![url, "--quiet".into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    LoadArgs::from_args(v).unwrap()
}

/// Samples at or above `us`, from the result's recorded buckets.
fn at_least(r: &RunResult, us: u64) -> u64 {
    r.histogram.iter().filter(|b| b.0 >= us).map(|b| b.1).sum()
}

const RATE: f64 = 1000.0;
const STALL_MS: u64 = 1000;
const THRESHOLD_MS: u64 = 500;

#[test]
fn open_loop_shows_stall_closed_loop_hides_it() {
    let _g = serial();
    // Open loop: 1,000 req/s over 20 connections for 4 s; the server stalls 1 s at request 1,000.
    let b = backend(Duration::ZERO, 1000, Duration::from_millis(STALL_MS));
    let open = execute(&args(
        b.port,
        &["-c", "20", "-t", "2", "-d", "4s", "--rate", "1000"],
    ))
    .unwrap();
    assert_eq!(open.mode, "open");
    assert_eq!(open.errors.total(), 0, "{:?}", open.errors);
    assert!(
        b.requests.load(SeqCst) >= 3600,
        "the schedule was kept: {}",
        b.requests.load(SeqCst)
    );
    assert!(
        (open.requests as f64 - RATE * 4.0).abs() <= RATE * 4.0 * 0.1,
        "requests {}",
        open.requests
    );
    assert!(
        open.latency_us.max >= 900_000,
        "max {}",
        open.latency_us.max
    );
    assert!(
        open.latency_us.p999 >= 900_000,
        "p99.9 {}",
        open.latency_us.p999
    );
    // Model: a request intended at time t in the stall window [0, S) completes at about S, so its
    // latency is S - t; it is >= T for t <= S - T: rate * (S - T) requests.
    let expected = RATE * (STALL_MS - THRESHOLD_MS) as f64 / 1000.0;
    let slow = at_least(&open, THRESHOLD_MS * 1000) as f64;
    eprintln!(
        "open: {} requests, p99.9 {} us, max {} us, {slow} >= {THRESHOLD_MS} ms (model {expected})",
        open.requests, open.latency_us.p999, open.latency_us.max
    );
    assert!(
        (slow - expected).abs() <= expected * 0.35,
        "open loop: {slow} samples >= {THRESHOLD_MS} ms, model {expected}"
    );
    // And the tail is a ramp, not a cliff: about half of those are >= 750 ms.
    let slower = at_least(&open, 750_000) as f64;
    assert!(
        (slower - expected / 2.0).abs() <= expected / 2.0 * 0.35,
        "{slower} samples >= 750 ms"
    );

    // Closed loop, same server behaviour: only the 20 requests in flight at the stall see it.
    let b = backend(Duration::ZERO, 1000, Duration::from_millis(STALL_MS));
    let closed = execute(&args(b.port, &["-c", "20", "-t", "2", "-d", "3s"])).unwrap();
    assert_eq!(closed.mode, "closed");
    assert!(
        closed.latency_us.max >= 900_000,
        "the stall happened: max {}",
        closed.latency_us.max
    );
    let slow_closed = at_least(&closed, THRESHOLD_MS * 1000);
    eprintln!(
        "closed: {} requests, p99 {} us, max {} us, {slow_closed} >= {THRESHOLD_MS} ms",
        closed.requests, closed.latency_us.p99, closed.latency_us.max
    );
    assert!(
        slow_closed <= 20,
        "closed loop: {slow_closed} slow samples (one per connection at most)"
    );
    assert!(
        (slow_closed as f64) < slow / 10.0,
        "closed loop hides the stall: {slow_closed} vs {slow}"
    );
    assert!(
        closed.latency_us.p99 < 100_000,
        "closed-loop p99 {} looks healthy",
        closed.latency_us.p99
    );
}

#[test]
fn closed_loop_throughput_matches_littles_law() {
    let _g = serial();
    let b = backend(Duration::from_millis(10), 0, Duration::ZERO);
    let r = execute(&args(b.port, &["-c", "10", "-d", "2s"])).unwrap();
    let expected = 10.0 * 2000.0 / 10.0;
    eprintln!(
        "closed, 10 ms backend: {} requests (Little's law {expected})",
        r.requests
    );
    assert!(
        (r.requests as f64 - expected).abs() <= expected * 0.2,
        "requests {} vs {expected}",
        r.requests
    );
    assert!(
        (r.throughput_rps - 1000.0).abs() <= 200.0,
        "throughput {}",
        r.throughput_rps
    );
    assert_eq!(r.status.get(&200).copied(), Some(r.requests));
    assert_eq!(r.errors.total(), 0);
    assert!(
        r.latency_us.p50 >= 10_000,
        "p50 {} includes the 10 ms delay",
        r.latency_us.p50
    );
    assert!(
        !r.timeline.is_empty()
            && r.timeline.iter().map(|t| t.requests).sum::<u64>() <= r.requests + 50
    );
    assert!(r.bytes_read > 0 && r.bytes_written > 0);
}

#[test]
fn requests_limit_and_pipeline() {
    let _g = serial();
    let b = backend(Duration::ZERO, 0, Duration::ZERO);
    let r = execute(&args(
        b.port,
        &[
            "-c",
            "4",
            "-t",
            "1",
            "--requests",
            "3000",
            "--pipeline",
            "4",
        ],
    ))
    .unwrap();
    assert_eq!(r.requests, 3000);
    assert_eq!(r.errors.total(), 0);
    assert!(r.duration_s > 0.0 && r.duration_s < 10.0);
}

fn bin(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coregate-load"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_exits_2_with_a_message() {
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let (code, err) = bin(&["run", &url, "-d", "1s", "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let dir = std::env::temp_dir().join(format!("coregate-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "target = \"http://127.0.0.1:1\"\n[[request]]\npath = \"/x/{rand:9..1}\"\n",
    )
    .unwrap();
    let (code, err) = bin(&["run", "--scenario", bad.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid scenario") && err.contains("rand:9..1"),
        "{err}"
    );

    std::fs::write(&bad, "[[request]\npath = 3\n").unwrap();
    let (code, err) = bin(&["run", "--scenario", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid scenario"), "{err}");

    let (code, err) = bin(&[
        "run",
        "--scenario",
        dir.join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read scenario"), "{err}");

    let (code, err) = bin(&["run", &url, "--rate", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--rate"), "{err}");

    let (code, err) = bin(&["run", "https://example.com/"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad URL"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scenario_renders_placeholders_and_jwt() {
    let _g = serial();
    // A backend that keeps the first request head it sees.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.parse().unwrap());
                        if buf.len() < i + 4 + len {
                            break;
                        }
                        let body = String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).into_owned();
                        buf.drain(..i + 4 + len);
                        let _ = tx.send(format!("{head}\n\n{body}"));
                        if s.write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let dir = std::env::temp_dir().join(format!("coregate-load-sc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    let toml = format!(
        "target = \"http://127.0.0.1:{port}\"\n[[request]]\nmethod = \"POST\"\npath = \"/api/users/{{rand:5..7}}\"\n\
         headers = {{ \"x-user\" = \"{{user}}\" }}\nbody = '{{\"id\": {{rand:1..1}}}}'\n\
         [jwt]\nalg = \"HS256\"\nkey = \"secret\"\nusers = 3\nissuer = \"coregate-load\"\naudience = \"api\"\nttl = \"1h\"\nclaims = {{ tier = \"gold\" }}\n"
    );
    std::fs::write(&file, toml).unwrap();
    let a = LoadArgs::from_args([
        "--scenario",
        file.to_str().unwrap(),
        "-c",
        "2",
        "--requests",
        "50",
        "--quiet",
    ])
    .unwrap();
    let r = execute(&a).unwrap();
    assert_eq!(r.requests, 50);
    assert_eq!(r.status.get(&201).copied(), Some(50));
    let seen = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let first = seen.lines().next().unwrap();
    assert!(
        ["/api/users/5 ", "/api/users/6 ", "/api/users/7 "]
            .iter()
            .any(|p| first.contains(p)),
        "{first}"
    );
    assert!(first.starts_with("POST "), "{first}");
    assert!(seen.contains("\nx-user: user-"), "{seen}");
    assert!(seen.contains("\nAuthorization: Bearer ey"), "{seen}");
    assert!(seen.ends_with("\n\n{\"id\": 1}"), "{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn slow_responses_count_as_timeouts() {
    let _g = serial();
    // Every response waits 3 s (the stall starts at the first request); the timeout is 200 ms.
    let b = backend(Duration::ZERO, 1, Duration::from_secs(3));
    let r = execute(&args(
        b.port,
        &["-c", "2", "-t", "1", "-d", "1s", "--timeout", "200ms"],
    ))
    .unwrap();
    assert_eq!(r.requests, 0);
    assert!(r.errors.timeout >= 4, "{:?}", r.errors);
    assert_eq!(r.errors.total(), r.errors.timeout, "{:?}", r.errors);
}

#[test]
fn close_delimited_bodies_reconnect_without_errors() {
    let _g = serial();
    // HTTP/1.1 responses without Content-Length: the body ends when the server closes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 203 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
            });
        }
    });
    let r = execute(&args(port, &["-c", "2", "-t", "1", "--requests", "200"])).unwrap();
    assert_eq!(r.requests, 200);
    assert_eq!(r.status.get(&203).copied(), Some(200));
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
}
