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
    #[inline]
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One rate limit's or quota's counters on one worker.
#[derive(Debug, Default)]
pub struct LimitCounters {
    pub allowed: Counter,
    pub limited: Counter,
    /// Leases taken from the shared budget (table CAS or Redis script).
    pub leases: Counter,
    /// Leased units handed back unused.
    pub returned: Counter,
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
    /// Per rate limit, then per quota (config order).
    pub limits: Box<[LimitCounters]>,
    /// Failed Redis calls of cluster-scoped limits.
    pub redis_errors: Counter,
    /// 1 while this worker sees Redis as unreachable (cluster limits on local shares).
    pub redis_fallback: Gauge,
}

impl WorkerMetrics {
    /// Counters for `routes` routes, `upstreams` upstreams and `limits` rate limits + quotas.
    pub fn new(routes: usize, upstreams: usize, limits: usize) -> Self {
        WorkerMetrics {
            requests: (0..=routes).map(|_| Default::default()).collect(),
            upstream_errors: (0..upstreams).map(|_| Counter::default()).collect(),
            open_connections: Gauge::default(),
            accepted_connections: Counter::default(),
            limits: (0..limits).map(|_| LimitCounters::default()).collect(),
            redis_errors: Counter::default(),
            redis_fallback: Gauge::default(),
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
/// `limit_names`: (kind, policy name) of each entry of `WorkerMetrics::limits`.
pub fn render(
    workers: &[Arc<WorkerMetrics>],
    route_names: &[String],
    upstream_names: &[String],
    limit_names: &[(&'static str, String)],
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
    render_limits(&mut s, workers, limit_names);
    s
}

/// Rate-limit and quota counters, summed over workers, labelled by kind and policy.
fn render_limits(
    s: &mut String,
    workers: &[Arc<WorkerMetrics>],
    limit_names: &[(&'static str, String)],
) {
    if limit_names.is_empty() {
        return;
    }
    type Pick = fn(&LimitCounters) -> &Counter;
    let families: [(&str, &str, Pick); 4] = [
        (
            names::LIMIT_ALLOWED_TOTAL,
            "Requests a rate limit or quota let through.",
            |c| &c.allowed,
        ),
        (
            names::LIMIT_LIMITED_TOTAL,
            "Requests refused by a rate limit or quota (429).",
            |c| &c.limited,
        ),
        (
            names::LIMIT_LEASES_TOTAL,
            "Leases taken from the shared budget (atomic or Redis).",
            |c| &c.leases,
        ),
        (
            names::LIMIT_RETURNED_TOTAL,
            "Leased units handed back unused.",
            |c| &c.returned,
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} counter");
        for (i, (kind, policy)) in limit_names.iter().enumerate() {
            let total: u64 = workers.iter().map(|w| get(&w.limits[i]).get()).sum();
            let _ = writeln!(s, "{name}{{kind=\"{kind}\",policy=\"{policy}\"}} {total}");
        }
    }
    let errors: u64 = workers.iter().map(|w| w.redis_errors.get()).sum();
    let _ = writeln!(
        s,
        "# HELP {} Failed Redis calls of cluster-scoped limits.",
        names::LIMIT_REDIS_ERRORS_TOTAL
    );
    let _ = writeln!(s, "# TYPE {} counter", names::LIMIT_REDIS_ERRORS_TOTAL);
    let _ = writeln!(s, "{} {errors}", names::LIMIT_REDIS_ERRORS_TOTAL);
    let fallback = workers
        .iter()
        .map(|w| w.redis_fallback.get())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "# HELP {} 1 while Redis is unreachable and cluster limits run on local shares.",
        names::LIMIT_REDIS_FALLBACK
    );
    let _ = writeln!(s, "# TYPE {} gauge", names::LIMIT_REDIS_FALLBACK);
    let _ = writeln!(s, "{} {fallback}", names::LIMIT_REDIS_FALLBACK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers() {
        let a = Arc::new(WorkerMetrics::new(1, 1, 1));
        let b = Arc::new(WorkerMetrics::new(1, 1, 1));
        a.record(Some(0), 200);
        b.record(Some(0), 204);
        b.record(None, 404);
        b.upstream_errors[0].inc();
        a.open_connections.add(2);
        a.limits[0].limited.inc();
        b.limits[0].limited.add(2);
        b.redis_fallback.set(1);
        let text = render(
            &[a, b],
            &["users".into()],
            &["u".into()],
            &[("rate_limit", "per_client".into())],
        );
        assert!(text.contains(
            "coregate_ratelimit_limited_total{kind=\"rate_limit\",policy=\"per_client\"} 3\n"
        ));
        assert!(text.contains("coregate_ratelimit_redis_fallback 1\n"));
        assert!(
            text.contains("coregate_requests_total{route=\"users\",class=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("coregate_requests_total{route=\"\",class=\"4xx\"} 1\n"));
        assert!(text.contains("coregate_upstream_errors_total{upstream=\"u\"} 1\n"));
        assert!(text.contains("coregate_open_connections 2\n"));
    }
}
