//! The result of one load run: what `run --json` writes and what `compare` and the HTML report read.
//!
//! Latencies are microseconds. For open-loop runs they are measured from each request's *intended*
//! send time (coordinated-omission corrected); for closed-loop runs from the actual send time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// The URL (or scenario file) that was loaded.
    pub target: String,
    /// "closed" or "open".
    pub mode: String,
    /// Requests per second asked for (open loop only).
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    /// Measured period (warm-up excluded), seconds.
    pub duration_s: f64,
    /// Completed requests in the measured period.
    pub requests: u64,
    pub throughput_rps: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Response status code -> count.
    pub status: BTreeMap<u16, u64>,
    pub errors: Errors,
    pub latency_us: Percentiles,
    /// Recorded histogram buckets: (value in µs, count), ascending, non-zero counts only.
    pub histogram: Vec<(u64, u64)>,
    /// Per-second progress over the measured period.
    pub timeline: Vec<Tick>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Errors {
    pub connect: u64,
    pub reset: u64,
    pub timeout: u64,
    /// Malformed responses and anything else.
    pub other: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.timeout + self.other
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

/// One second of a run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Tick {
    /// Seconds since the measured period started.
    pub t: f64,
    pub requests: u64,
    pub errors: u64,
}
