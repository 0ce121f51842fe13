//! Allocations per proxied keep-alive request, counted by a global allocator.
//!
//! Runs the gateway in-process (one worker) between a client and an upstream that are written not to
//! allocate in their loops (fixed buffers, static responses), so every allocation counted during the
//! measured requests is the gateway's. The README quotes the figure; the budget (ARCHITECTURE.md
//! invariant 3: 0-2 per request in steady state) is asserted so a regression fails here. Measured
//! with the access log off and on (JSON lines to a file): metrics, latency histograms and trace
//! context are always on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"id\":42,\"ok\":1}";

/// Reads one request head (no body) per iteration into a fixed buffer and answers RESPONSE.
fn upstream(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut filled = 0;
            loop {
                match conn.read(&mut buf[filled..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => filled += n,
                }
                while let Some(end) = find_head_end(&buf[..filled]) {
                    if conn.write_all(RESPONSE).is_err() {
                        return;
                    }
                    buf.copy_within(end..filled, 0);
                    filled -= end;
                }
            }
        });
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Sends `n` keep-alive requests on one connection, reading each response fully.
fn requests(conn: &mut TcpStream, n: usize) {
    const REQ: &[u8] =
        b"GET /api/users/42 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\n\r\n";
    let mut buf = [0u8; 4096];
    for _ in 0..n {
        conn.write_all(REQ).unwrap();
        let mut filled = 0;
        loop {
            let got = conn.read(&mut buf[filled..]).unwrap();
            assert!(got > 0, "gateway closed the connection");
            filled += got;
            if let Some(end) = find_head_end(&buf[..filled]) {
                if filled >= end + 16 {
                    assert!(buf.starts_with(b"HTTP/1.1 200"), "unexpected response");
                    break;
                }
            }
        }
    }
}

fn measure(driver: coregate::runtime::DriverChoice, log: Option<&std::path::Path>) -> f64 {
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    std::thread::spawn(move || upstream(up));
    let access_log = log.map_or(String::new(), |p| {
        format!(
            "[access_log]\nsink = \"file\"\npath = \"{}\"\n",
            p.display()
        )
    });
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{access_log}[[upstream]]\nname = \"u\"\nendpoints = [\"{up_addr}\"]\n\
         [[route]]\nname = \"users\"\npath_prefix = \"/api/users\"\nupstream = \"u\"\n"
    );
    let cfg = coregate::config::parse_str(&text, "alloc.toml").unwrap();
    let opts = coregate::runtime::RunOptions {
        workers: 1,
        driver,
        pin: false,
        ..Default::default()
    };
    let gw = match coregate::runtime::start(cfg, &opts, None) {
        Ok(gw) => gw,
        Err(e) if e.contains("io_uring unavailable") => {
            eprintln!("SKIP io_uring: {e}");
            return 0.0;
        }
        Err(e) => panic!("{e}"),
    };
    let start = ALLOCS.load(Ordering::Relaxed);
    let mut conn = TcpStream::connect(gw.listen[0]).unwrap();
    requests(&mut conn, 200); // warm-up: buffers, pool, timer wheel reach their working size
    let warm = ALLOCS.load(Ordering::Relaxed) - start;
    // the counter sees the gateway: a new connection allocates its buffers and an upstream connection
    assert!(
        warm >= 3,
        "counting allocator saw only {warm} allocations while warming up"
    );
    const N: usize = 2000;
    let before = ALLOCS.load(Ordering::Relaxed);
    requests(&mut conn, N);
    let after = ALLOCS.load(Ordering::Relaxed);
    drop(conn);
    gw.shutdown();
    gw.join();
    (after - before) as f64 / N as f64
}

#[test]
fn allocations_per_keepalive_request() {
    let log = std::env::temp_dir().join(format!("coregate-alloc-{}.log", std::process::id()));
    let mut logged_runs = 0;
    for (name, driver) in [
        ("io_uring", coregate::runtime::DriverChoice::Uring),
        ("epoll", coregate::runtime::DriverChoice::Epoll),
    ] {
        if driver == coregate::runtime::DriverChoice::Uring {
            // a host without io_uring (seccomp, qemu-user, an old kernel) measures epoll only
            if let Err(why) = coregate::runtime::driver::probe_summary() {
                eprintln!("\n!!!!!!!! SKIP io_uring: {why}\n");
                continue;
            }
        }
        logged_runs += 1;
        for (what, log) in [
            ("access log off", None),
            ("access log on", Some(log.as_path())),
        ] {
            let per = measure(driver, log);
            println!("allocations per proxied keep-alive request ({name}, {what}): {per:.3}");
            assert!(
                per <= 2.0,
                "{name}, {what}: {per:.3} allocations per request (budget 0-2)"
            );
        }
    }
    let lines = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    let _ = std::fs::remove_file(&log);
    assert!(
        lines >= logged_runs * 2200,
        "the {logged_runs} logged runs wrote {lines} lines"
    );
}
