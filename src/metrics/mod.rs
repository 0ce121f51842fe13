//! Per-worker counters, merged on scrape.
//!
//! Owns: [`WorkerMetrics`], one per worker thread, written only by that worker (single writer, so an
//! increment is a relaxed load + store: no locked instruction on the request path) and read by the
//! admin thread, which sums every worker's values when `/metrics` is scraped ([`render`]).
//! Metric names live in [`names`] so dashboards and code agree.

pub mod names;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// A counter with exactly one writer thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    #[inline]
    pub fn add(&self, n: u64) {
        // single writer: load + store is enough and avoids a locked read-modify-write
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge with exactly one writer thread.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn add(&self, n: i64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Status classes 1xx..5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters owned by one worker.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// `[route][class]`; the extra last row counts requests that matched no route.
    pub requests: Box<[[Counter; 5]]>,
    /// Per upstream: connect failures, resets, timeouts, malformed responses.
    pub upstream_errors: Box<[Counter]>,
    pub open_connections: Gauge,
    pub accepted_connections: Counter,
}

impl WorkerMetrics {
    pub fn new(routes: usize, upstreams: usize) -> Self {
        WorkerMetrics {
            requests: (0..=routes).map(|_| Default::default()).collect(),
            upstream_errors: (0..upstreams).map(|_| Counter::default()).collect(),
            open_connections: Gauge::default(),
            accepted_connections: Counter::default(),
        }
    }

    /// Counts a finished request. `route`: None when no route matched.
    #[inline]
    pub fn record(&self, route: Option<usize>, status: u16) {
        let row = route.unwrap_or(self.requests.len() - 1);
        let class = ((status / 100).clamp(1, 5) - 1) as usize;
        self.requests[row][class].inc();
    }
}

/// Renders Prometheus text for all workers: per worker (`worker` label) and summed.
pub fn render(
    workers: &[Arc<WorkerMetrics>],
    route_names: &[String],
    upstream_names: &[String],
) -> String {
    let mut s = String::with_capacity(4096);
    let route_label = |i: usize| -> &str { route_names.get(i).map(|r| r.as_str()).unwrap_or("") };
    let _ = writeln!(
        s,
        "# HELP {} Requests answered, by route and status class.",
        names::REQUESTS_TOTAL
    );
    let _ = writeln!(s, "# TYPE {} counter", names::REQUESTS_TOTAL);
    let rows = workers.first().map(|w| w.requests.len()).unwrap_or(0);
    for row in 0..rows {
        for (c, class) in CLASSES.iter().enumerate() {
            let total: u64 = workers.iter().map(|w| w.requests[row][c].get()).sum();
            if total == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "{}{{route=\"{}\",class=\"{}\"}} {}",
                names::REQUESTS_TOTAL,
                route_label(row),
                class,
                total
            );
            for (wi, w) in workers.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{}{{route=\"{}\",class=\"{}\",worker=\"{}\"}} {}",
                    names::REQUESTS_TOTAL,
                    route_label(row),
                    class,
                    wi,
                    w.requests[row][c].get()
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "# HELP {} Upstream failures (connect, reset, timeout, malformed).",
        names::UPSTREAM_ERRORS_TOTAL
    );
    let _ = writeln!(s, "# TYPE {} counter", names::UPSTREAM_ERRORS_TOTAL);
    for (u, name) in upstream_names.iter().enumerate() {
        let total: u64 = workers.iter().map(|w| w.upstream_errors[u].get()).sum();
        let _ = writeln!(
            s,
            "{}{{upstream=\"{}\"}} {}",
            names::UPSTREAM_ERRORS_TOTAL,
            name,
            total
        );
    }
    let _ = writeln!(
        s,
        "# HELP {} Open client connections.",
        names::OPEN_CONNECTIONS
    );
    let _ = writeln!(s, "# TYPE {} gauge", names::OPEN_CONNECTIONS);
    let open: i64 = workers.iter().map(|w| w.open_connections.get()).sum();
    let _ = writeln!(s, "{} {}", names::OPEN_CONNECTIONS, open);
    for (wi, w) in workers.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}{{worker=\"{}\"}} {}",
            names::OPEN_CONNECTIONS,
            wi,
            w.open_connections.get()
        );
    }
    let _ = writeln!(
        s,
        "# HELP {} Client connections accepted.",
        names::ACCEPTED_TOTAL
    );
    let _ = writeln!(s, "# TYPE {} counter", names::ACCEPTED_TOTAL);
    let acc: u64 = workers.iter().map(|w| w.accepted_connections.get()).sum();
    let _ = writeln!(s, "{} {}", names::ACCEPTED_TOTAL, acc);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers() {
        let a = Arc::new(WorkerMetrics::new(1, 1));
        let b = Arc::new(WorkerMetrics::new(1, 1));
        a.record(Some(0), 200);
        b.record(Some(0), 204);
        b.record(None, 404);
        b.upstream_errors[0].inc();
        a.open_connections.add(2);
        let text = render(&[a, b], &["users".into()], &["u".into()]);
        assert!(
            text.contains("coregate_requests_total{route=\"users\",class=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("coregate_requests_total{route=\"\",class=\"4xx\"} 1\n"));
        assert!(text.contains("coregate_upstream_errors_total{upstream=\"u\"} 1\n"));
        assert!(text.contains("coregate_open_connections 2\n"));
    }
}
