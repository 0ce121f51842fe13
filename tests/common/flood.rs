//! Closed-loop load for rate-limit accuracy tests: keep-alive clients spread over gateways, each
//! sending GETs as fast as answers come, counting 200s and 429s.
//!
//! The clock starts once every client has connected (a barrier), so thread start-up and connects
//! on a busy machine do not count as time the limiter had to admit requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::client::Client;

/// What a flood saw: admitted (200), refused (429), and the seconds it ran.
pub struct Flood {
    pub ok: u64,
    pub limited: u64,
    pub secs: f64,
}

/// `per_addr` clients on each of `addrs` GET `path` (Host `h`) for `dur`. Any other status fails.
pub fn flood(addrs: &[SocketAddr], per_addr: usize, path: &str, dur: Duration) -> Flood {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(addrs.len() * per_addr + 1));
    let mut handles = Vec::new();
    for &addr in addrs {
        for _ in 0..per_addr {
            let (ok, limited, stop, ready) =
                (ok.clone(), limited.clone(), stop.clone(), ready.clone());
            let path = path.to_string();
            handles.push(std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    match c.get(&path, "h").status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        s => panic!("unexpected status {s}"),
                    };
                }
            }));
        }
    }
    ready.wait();
    let start = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    Flood {
        ok: ok.load(Ordering::Relaxed),
        limited: limited.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
    }
}
