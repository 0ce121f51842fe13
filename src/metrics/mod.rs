//! Per-worker statistics: plain counters and latency histograms, snapshotted on request.
//!
//! Owns: [`WorkerStats`], one per worker thread, which only that worker touches (`Cell`/`RefCell`:
//! no atomics on the request path). It is a registry of named entries — one [`RouteStats`] per
//! route, one [`UpstreamStats`] per upstream, one [`LimitCounters`] per rate limit or quota — that
//! outlive config generations: a reload looks entries up by name, so counters keep counting across
//! reloads and an entry whose route was removed keeps its final values.
//!
//! Data flow: the request path increments counters and records latencies into hdrhistograms held
//! by `Rc` in the current generation. When `/metrics` or `/stats` is scraped, the admin thread sends
//! every worker a snapshot request over its control channel; the worker copies its registry into a
//! [`snapshot::WorkerSnap`] (plain `Send` data, the histograms cloned) between two requests and
//! sends it back; the admin thread merges the snapshots ([`snapshot::merge`]) and renders them as
//! Prometheus text ([`prom`]) or JSON ([`json`]). Metric names live in [`names`].

pub mod json;
pub mod names;
pub mod prom;
pub mod snapshot;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hdrhistogram::Histogram;

/// A counter owned by one worker.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A gauge owned by one worker.
#[derive(Debug, Default)]
pub struct Gauge(Cell<i64>);

impl Gauge {
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.set(self.0.get() + n);
    }
    #[inline]
    pub fn set(&self, n: i64) {
        self.0.set(n);
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// Largest latency a histogram tracks exactly (1 hour, in µs); longer ones count as this.
const MAX_TRACKED_US: u64 = 3_600_000_000;
/// Significant digits kept by latency histograms: 1% relative error, ~20 KiB each.
const SIGFIGS: u8 = 2;

/// A new, empty latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, SIGFIGS).expect("valid histogram bounds")
}

/// A latency distribution: hdrhistogram of µs plus the exact sum (for Prometheus `_sum`).
#[derive(Debug)]
pub struct Latency {
    hist: RefCell<Histogram<u64>>,
    sum_us: Counter,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: RefCell::new(new_histogram()),
            sum_us: Counter::default(),
        }
    }
}

impl Latency {
    #[inline]
    pub fn record_us(&self, us: u64) {
        let v = us.clamp(1, MAX_TRACKED_US);
        // in range by construction: record cannot fail
        let _ = self.hist.borrow_mut().record(v);
        self.sum_us.add(us);
    }

    /// The `q` quantile (µs) of what was recorded on this worker, once at least `min` values are.
    pub fn quantile_us(&self, q: f64, min: u64) -> Option<u64> {
        let h = self.hist.borrow();
        (h.len() >= min).then(|| h.value_at_quantile(q))
    }

    fn snap(&self) -> snapshot::LatencySnap {
        snapshot::LatencySnap {
            hist: self.hist.borrow().clone(),
            sum_us: self.sum_us.get(),
        }
    }
}

/// Status classes 1xx..5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[inline]
fn class_of(status: u16) -> usize {
    ((status / 100).clamp(1, 5) - 1) as usize
}

/// One route's counters on one worker (the registry's "" entry counts requests that matched none).
#[derive(Debug, Default)]
pub struct RouteStats {
    pub name: String,
    pub requests: [Counter; 5],
    /// Request body bytes received from clients.
    pub bytes_in: Counter,
    /// Response body bytes sent to clients.
    pub bytes_out: Counter,
    /// Parsed request head to last response byte.
    pub total: Latency,
    /// Upstream exchange: connection or pool, request sent, response fully received.
    pub upstream: Latency,
    /// Requests refused by the route's IP rules (for `unmatched`: the server-wide ones).
    pub ip_denied: Counter,
    /// WAF verdicts over the threshold: [blocked, detected (forwarded)].
    pub waf: [Counter; 2],
    /// WAF rule matches by family (`waf::rules::Family` order), counted once per request.
    pub waf_families: [Counter; 10],
    /// Requests refused (400) by request validation (`schema`, `validate_query`, `validate_headers`).
    pub invalid: Counter,
    /// Response cache lookups by outcome ([`CACHE_OUTCOMES`] order).
    pub cache: [Counter; 6],
}

/// The outcomes a cached route's requests are counted under (`X-Cache` values, lower-cased).
pub const CACHE_OUTCOMES: [&str; 6] =
    ["hit", "stale", "revalidated", "miss", "bypass", "coalesced"];

impl RouteStats {
    #[inline]
    pub fn record(&self, status: u16) {
        self.requests[class_of(status)].inc();
    }
}

/// Why an upstream attempt failed, as counted in `coregate_upstream_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Connecting failed or timed out.
    Connect = 0,
    /// The connection closed or reset before a complete response head.
    Reset = 1,
    /// No response head within `response_timeout`, or the body stalled.
    Timeout = 2,
    /// The response head was malformed or too large.
    BadResponse = 3,
}

pub const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "reset", "timeout", "bad_response"];

/// One upstream's counters on one worker.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub name: String,
    /// Responses relayed, by status class.
    pub requests: [Counter; 5],
    pub errors: [Counter; 4],
    /// Extra attempts after a failed one (including the free retry of a stale pooled connection).
    pub retries: Counter,
    /// Retries refused because the upstream's retry budget was spent.
    pub retry_budget_exhausted: Counter,
    /// Adaptive concurrency: this worker's limit now, and requests shed by it.
    pub adaptive_limit: Gauge,
    pub adaptive_shed: Counter,
    /// Hedged requests: second tries sent, and those that answered first.
    pub hedges: Counter,
    pub hedge_wins: Counter,
    pub pool_hits: Counter,
    pub pool_misses: Counter,
    /// Endpoints ejected by passive health, and ejections the safety floor refused.
    pub ejections: Counter,
    pub ejections_spared: Counter,
    /// Picks made in panic mode (too few healthy endpoints: health ignored).
    pub panic_picks: Counter,
    /// Pooled connections found closed by the upstream (before or on reuse); never an endpoint failure.
    pub stale_connections: Counter,
    /// Circuit breaker: trips (closed or half-open to open), calls refused while open, and
    /// whether this worker's breaker is open or half-open now (summed over workers: how many are).
    pub breaker_trips: Counter,
    pub breaker_rejected: Counter,
    pub breaker_open: Gauge,
    /// Bytes written to / read from upstream connections (heads and bodies).
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    /// Upstream connections open now (pooled and busy).
    pub open_connections: Gauge,
    pub latency: Latency,
}

impl UpstreamStats {
    #[inline]
    pub fn error(&self, kind: UpstreamError) {
        self.errors[kind as usize].inc();
    }
    #[inline]
    pub fn record(&self, status: u16) {
        self.requests[class_of(status)].inc();
    }
}

/// One rate limit's or quota's counters on one worker.
#[derive(Debug, Default)]
pub struct LimitCounters {
    pub kind: &'static str,
    pub policy: String,
    pub allowed: Counter,
    pub limited: Counter,
    /// Leases taken from the shared budget (table CAS or Redis script).
    pub leases: Counter,
    /// Leased units handed back unused.
    pub returned: Counter,
}

/// What the rate limiter of one generation writes to: its policies' counters plus the
/// worker-wide Redis counters.
pub struct LimitMetrics {
    /// Per rate limit, in config order.
    pub rates: Vec<Rc<LimitCounters>>,
    /// Per quota, in config order.
    pub quotas: Vec<Rc<LimitCounters>>,
    pub redis_errors: Rc<Counter>,
    pub redis_fallback: Rc<Gauge>,
}

/// Everything one worker counts. See the module doc.
#[derive(Default)]
pub struct WorkerStats {
    pub open_connections: Gauge,
    pub accepted_connections: Counter,
    /// Connections this worker accepted and handed to a less-loaded worker (`runtime/spread.rs`).
    pub handed_off: Counter,
    /// TLS handshakes completed / failed (timeout, protocol error, refused certificate).
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    /// Upgraded connections (WebSocket tunnels) open now.
    pub tunnels_open: Gauge,
    /// The response cache: bytes and entries held now, entries evicted (budget, expiry, variants).
    pub cache_bytes: Gauge,
    pub cache_entries: Gauge,
    pub cache_evictions: Counter,
    /// Requests that matched no route.
    pub unmatched: RouteStats,
    pub redis_errors: Rc<Counter>,
    pub redis_fallback: Rc<Gauge>,
    routes: RefCell<Vec<Rc<RouteStats>>>,
    upstreams: RefCell<Vec<Rc<UpstreamStats>>>,
    limits: RefCell<Vec<Rc<LimitCounters>>>,
}

fn entry<T>(
    list: &RefCell<Vec<Rc<T>>>,
    is: impl Fn(&T) -> bool,
    make: impl FnOnce() -> T,
) -> Rc<T> {
    let mut list = list.borrow_mut();
    if let Some(e) = list.iter().find(|e| is(e)) {
        return e.clone();
    }
    let e = Rc::new(make());
    list.push(e.clone());
    e
}

impl WorkerStats {
    /// The entry of route `name`, created on first use.
    pub fn route(&self, name: &str) -> Rc<RouteStats> {
        entry(
            &self.routes,
            |r| r.name == name,
            || RouteStats {
                name: name.to_owned(),
                ..Default::default()
            },
        )
    }

    /// The entry of upstream `name`, created on first use.
    pub fn upstream(&self, name: &str) -> Rc<UpstreamStats> {
        entry(
            &self.upstreams,
            |u| u.name == name,
            || UpstreamStats {
                name: name.to_owned(),
                ..Default::default()
            },
        )
    }

    /// The counters of rate limit (`kind` = "rate_limit") or quota (`"quota"`) `policy`.
    pub fn limit(&self, kind: &'static str, policy: &str) -> Rc<LimitCounters> {
        entry(
            &self.limits,
            |l| l.kind == kind && l.policy == policy,
            || LimitCounters {
                kind,
                policy: policy.to_owned(),
                ..Default::default()
            },
        )
    }

    /// Counter handles for a generation's rate limits and quotas.
    pub fn limit_metrics(&self, rates: &[&str], quotas: &[&str]) -> LimitMetrics {
        LimitMetrics {
            rates: rates.iter().map(|n| self.limit("rate_limit", n)).collect(),
            quotas: quotas.iter().map(|n| self.limit("quota", n)).collect(),
            redis_errors: self.redis_errors.clone(),
            redis_fallback: self.redis_fallback.clone(),
        }
    }

    /// Copies everything into plain data for the admin thread.
    pub fn snapshot(&self, worker: usize) -> snapshot::WorkerSnap {
        let started = std::time::Instant::now();
        let route = |r: &RouteStats| snapshot::RouteSnap {
            name: r.name.clone(),
            requests: r.requests.each_ref().map(Counter::get),
            bytes_in: r.bytes_in.get(),
            bytes_out: r.bytes_out.get(),
            total: r.total.snap(),
            upstream: r.upstream.snap(),
            ip_denied: r.ip_denied.get(),
            waf: r.waf.each_ref().map(Counter::get),
            waf_families: r.waf_families.each_ref().map(Counter::get),
            invalid: r.invalid.get(),
            cache: r.cache.each_ref().map(Counter::get),
        };
        let routes = self.routes.borrow().iter().map(|r| route(r)).collect();
        let upstreams = self
            .upstreams
            .borrow()
            .iter()
            .map(|u| snapshot::UpstreamSnap {
                name: u.name.clone(),
                requests: u.requests.each_ref().map(Counter::get),
                errors: u.errors.each_ref().map(Counter::get),
                retries: u.retries.get(),
                retry_budget_exhausted: u.retry_budget_exhausted.get(),
                adaptive_limit: u.adaptive_limit.get(),
                adaptive_shed: u.adaptive_shed.get(),
                hedges: u.hedges.get(),
                hedge_wins: u.hedge_wins.get(),
                pool_hits: u.pool_hits.get(),
                pool_misses: u.pool_misses.get(),
                ejections: u.ejections.get(),
                ejections_spared: u.ejections_spared.get(),
                panic_picks: u.panic_picks.get(),
                stale_connections: u.stale_connections.get(),
                breaker_trips: u.breaker_trips.get(),
                breaker_rejected: u.breaker_rejected.get(),
                breaker_open: u.breaker_open.get(),
                bytes_sent: u.bytes_sent.get(),
                bytes_received: u.bytes_received.get(),
                open_connections: u.open_connections.get(),
                latency: u.latency.snap(),
            })
            .collect();
        let limits = self
            .limits
            .borrow()
            .iter()
            .map(|l| snapshot::LimitSnap {
                kind: l.kind,
                policy: l.policy.clone(),
                allowed: l.allowed.get(),
                limited: l.limited.get(),
                leases: l.leases.get(),
                returned: l.returned.get(),
            })
            .collect();
        snapshot::WorkerSnap {
            worker,
            open_connections: self.open_connections.get(),
            accepted_connections: self.accepted_connections.get(),
            handed_off: self.handed_off.get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            tunnels_open: self.tunnels_open.get(),
            cache_bytes: self.cache_bytes.get(),
            cache_entries: self.cache_entries.get(),
            cache_evictions: self.cache_evictions.get(),
            unmatched: route(&self.unmatched),
            routes,
            upstreams,
            limits,
            redis_errors: self.redis_errors.get(),
            redis_fallback: self.redis_fallback.get(),
            snapshot_ns: started.elapsed().as_nanos() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_outlive_lookups() {
        let s = WorkerStats::default();
        let a = s.route("users");
        a.record(200);
        a.record(503);
        assert!(Rc::ptr_eq(&a, &s.route("users")));
        s.route("orders").record(404);
        s.upstream("u").error(UpstreamError::Timeout);
        let m = s.limit_metrics(&["per_client"], &["monthly"]);
        m.quotas[0].limited.inc();
        let snap = s.snapshot(1);
        assert_eq!(snap.routes.len(), 2);
        assert_eq!(snap.routes[0].requests, [0, 1, 0, 0, 1]);
        assert_eq!(snap.upstreams[0].errors, [0, 0, 1, 0]);
        assert_eq!(snap.limits[1].kind, "quota");
        assert_eq!(snap.limits[1].limited, 1);
    }

    #[test]
    fn latency_clamps_and_sums() {
        let l = Latency::default();
        l.record_us(0);
        l.record_us(250);
        l.record_us(u64::MAX / 2);
        let s = l.snap();
        assert_eq!(s.hist.len(), 3);
        assert_eq!(s.sum_us, 250 + u64::MAX / 2);
        assert!(s.hist.max() >= MAX_TRACKED_US * 99 / 100);
    }
}
