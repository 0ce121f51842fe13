//! Shared harness for coregate's integration tests: spawning the real binary (`gateway`),
//! mock upstreams (`upstream`), a blocking HTTP/1.1 client (`client`), wire/checksum helpers
//! (`wire`), TLS certificates, a rustls client and a rustls upstream (`tls`), and polling with
//! a deadline instead of sleeping.
// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]
// The harness shares state between its own threads with Mutex; the lint guards the gateway's
// request path, not test code.
#![allow(clippy::disallowed_types)]

pub mod client;
pub mod dns;
pub mod flood;
pub mod gateway;
pub mod grpc;
pub mod h2c;
pub mod h2up;
pub mod jwt;
pub mod redis;
pub mod tls;
pub mod tokio_peer;
pub mod upstream;
pub mod wire;
pub mod ws;

pub use client::*;
pub use flood::{flood, Flood};
pub use gateway::*;
pub use upstream::*;
pub use wire::*;

use std::time::{Duration, Instant};

/// A deterministic xorshift PRNG for generated test inputs (same sequence on every run).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Polling interval of `wait_until`.
const POLL: Duration = Duration::from_millis(5);

/// Polls `cond` until it holds (true) or `deadline` passes (false).
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// `Instant::now() + d`.
pub fn deadline(d: Duration) -> Instant {
    Instant::now() + d
}

/// `Duration::from_secs(s)`.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
