//! Snapshots of worker statistics and their merge: the data the admin thread renders.
//!
//! Owns: the plain, `Send` copies a worker makes of its [`super::WorkerStats`] ([`WorkerSnap`]) and
//! [`merge`], which adds them up by name (routes, upstreams, policies) — histograms included, so
//! percentiles are computed over every core's requests, not averaged per core. Also the process-wide
//! facts that are not per worker ([`Extra`]: generation, reloads, access-log counters), so both
//! renderers read one [`Merged`] value.

use hdrhistogram::Histogram;

/// A latency histogram (µs) and the exact sum of its values.
#[derive(Debug, Clone)]
pub struct LatencySnap {
    pub hist: Histogram<u64>,
    pub sum_us: u64,
}

impl Default for LatencySnap {
    fn default() -> Self {
        LatencySnap {
            hist: super::new_histogram(),
            sum_us: 0,
        }
    }
}

impl LatencySnap {
    fn add(&mut self, o: &LatencySnap) {
        // same bounds on every worker: adding cannot fail
        let _ = self.hist.add(&o.hist);
        self.sum_us = self.sum_us.wrapping_add(o.sum_us);
    }

    /// The value at quantile `q` (0..=1) in µs; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    /// For each bound (µs, ascending), how many recorded values are at most that bound: one pass
    /// over the histogram. A value counts at the top of its hdr bucket (1% resolution).
    pub fn cumulative(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; bounds.len()];
        if self.hist.is_empty() {
            return out;
        }
        let mut b = 0;
        let mut seen = 0u64;
        for v in self.hist.iter_recorded() {
            while b < bounds.len() && v.value_iterated_to() > bounds[b] {
                out[b] = seen;
                b += 1;
            }
            seen += v.count_at_value();
        }
        for o in &mut out[b..] {
            *o = seen;
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct RouteSnap {
    pub name: String,
    pub requests: [u64; 5],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub total: LatencySnap,
    pub upstream: LatencySnap,
    pub ip_denied: u64,
    pub waf: [u64; 2],
    pub waf_families: [u64; 10],
    pub invalid: u64,
    pub cache: [u64; 6],
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamSnap {
    pub name: String,
    pub requests: [u64; 5],
    pub errors: [u64; 4],
    pub retries: u64,
    pub retry_budget_exhausted: u64,
    pub adaptive_limit: i64,
    pub adaptive_shed: u64,
    pub hedges: u64,
    pub hedge_wins: u64,
    pub pool_hits: u64,
    pub pool_misses: u64,
    pub ejections: u64,
    pub ejections_spared: u64,
    pub panic_picks: u64,
    pub stale_connections: u64,
    pub breaker_trips: u64,
    pub breaker_rejected: u64,
    pub breaker_open: i64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub open_connections: i64,
    pub latency: LatencySnap,
}

#[derive(Debug, Clone, Default)]
pub struct LimitSnap {
    pub kind: &'static str,
    pub policy: String,
    pub allowed: u64,
    pub limited: u64,
    pub leases: u64,
    pub returned: u64,
}

/// One worker's statistics at one instant.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnap {
    pub worker: usize,
    pub open_connections: i64,
    pub accepted_connections: u64,
    pub handed_off: u64,
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
    pub tunnels_open: i64,
    pub cache_bytes: i64,
    pub cache_entries: i64,
    pub cache_evictions: u64,
    pub unmatched: RouteSnap,
    pub routes: Vec<RouteSnap>,
    pub upstreams: Vec<UpstreamSnap>,
    pub limits: Vec<LimitSnap>,
    pub redis_errors: u64,
    pub redis_fallback: i64,
    /// Time the worker spent building this snapshot (its stall for the scrape).
    pub snapshot_ns: u64,
}

/// Process-wide values, not kept per worker.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub uptime_s: f64,
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// 1 when the last reload attempt succeeded (or none was made).
    pub last_reload_ok: bool,
    pub log_written: u64,
    pub log_dropped: u64,
    /// OTLP spans the collector accepted, and spans lost (queue full, failed export).
    pub spans_exported: u64,
    pub spans_dropped: u64,
    /// Workers configured; `workers.len()` of [`Merged`] may be smaller if some did not answer.
    pub expected_workers: usize,
    /// Active health checks, per probed endpoint.
    pub health: Vec<EndpointHealthSnap>,
    /// Bulkhead pools: name, in flight, queued, refused.
    pub bulkheads: Vec<(String, u64, u64, u64)>,
    /// DNS discovery, per upstream with `dns_refresh = "ttl"`.
    pub dns: Vec<crate::discovery::UpstreamDns>,
}

/// One probed endpoint: the prober's verdict and counters.
#[derive(Debug, Clone, Default)]
pub struct EndpointHealthSnap {
    pub upstream: String,
    pub endpoint: String,
    pub healthy: bool,
    pub checks_ok: u64,
    pub checks_failed: u64,
    pub went_down: u64,
    pub came_up: u64,
}

impl EndpointHealthSnap {
    /// Every probed endpoint on `board`.
    pub fn all(board: &crate::upstream::health::HealthBoard) -> Vec<EndpointHealthSnap> {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        board
            .all()
            .flat_map(|u| {
                u.endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| EndpointHealthSnap {
                        upstream: u.cfg.name.clone(),
                        endpoint: u.addr(i).to_string(),
                        healthy: e.is_up(),
                        checks_ok: get(&e.checks_ok),
                        checks_failed: get(&e.checks_failed),
                        went_down: get(&e.went_down),
                        came_up: get(&e.came_up),
                    })
            })
            .collect()
    }
}

/// Every worker's snapshot, summed.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub workers: Vec<WorkerSnap>,
    pub unmatched: RouteSnap,
    pub routes: Vec<RouteSnap>,
    pub upstreams: Vec<UpstreamSnap>,
    pub limits: Vec<LimitSnap>,
    pub open_connections: i64,
    pub accepted_connections: u64,
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
    pub tunnels_open: i64,
    pub cache_bytes: i64,
    pub cache_entries: i64,
    pub cache_evictions: u64,
    pub redis_errors: u64,
    pub redis_fallback: i64,
    pub extra: Extra,
}

fn add5(a: &mut [u64; 5], b: &[u64; 5]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn add_route(into: &mut RouteSnap, r: &RouteSnap) {
    add5(&mut into.requests, &r.requests);
    into.bytes_in += r.bytes_in;
    into.bytes_out += r.bytes_out;
    into.total.add(&r.total);
    into.ip_denied += r.ip_denied;
    for (x, y) in into.waf.iter_mut().zip(&r.waf) {
        *x += y;
    }
    for (x, y) in into.waf_families.iter_mut().zip(&r.waf_families) {
        *x += y;
    }
    into.invalid += r.invalid;
    for (x, y) in into.cache.iter_mut().zip(&r.cache) {
        *x += y;
    }
    into.upstream.add(&r.upstream);
}

fn slot<T: Default>(
    list: &mut Vec<T>,
    is: impl Fn(&T) -> bool,
    make: impl FnOnce() -> T,
) -> &mut T {
    match list.iter().position(is) {
        Some(i) => &mut list[i],
        None => {
            list.push(make());
            list.last_mut().expect("just pushed")
        }
    }
}

/// Sums snapshots by name. Entries keep the order in which they first appear (worker 0's
/// registry order, i.e. config order, then later additions).
pub fn merge(mut workers: Vec<WorkerSnap>, extra: Extra) -> Merged {
    workers.sort_by_key(|w| w.worker);
    let mut m = Merged {
        extra,
        ..Default::default()
    };
    for w in &workers {
        m.open_connections += w.open_connections;
        m.accepted_connections += w.accepted_connections;
        m.tls_handshakes += w.tls_handshakes;
        m.tls_handshake_failures += w.tls_handshake_failures;
        m.tunnels_open += w.tunnels_open;
        m.cache_bytes += w.cache_bytes;
        m.cache_entries += w.cache_entries;
        m.cache_evictions += w.cache_evictions;
        m.redis_errors += w.redis_errors;
        m.redis_fallback = m.redis_fallback.max(w.redis_fallback);
        add_route(&mut m.unmatched, &w.unmatched);
        for r in &w.routes {
            let into = slot(
                &mut m.routes,
                |x| x.name == r.name,
                || RouteSnap {
                    name: r.name.clone(),
                    ..Default::default()
                },
            );
            add_route(into, r);
        }
        for u in &w.upstreams {
            let into = slot(
                &mut m.upstreams,
                |x| x.name == u.name,
                || UpstreamSnap {
                    name: u.name.clone(),
                    ..Default::default()
                },
            );
            add5(&mut into.requests, &u.requests);
            for (x, y) in into.errors.iter_mut().zip(&u.errors) {
                *x += y;
            }
            into.retries += u.retries;
            into.retry_budget_exhausted += u.retry_budget_exhausted;
            into.adaptive_limit += u.adaptive_limit;
            into.adaptive_shed += u.adaptive_shed;
            into.hedges += u.hedges;
            into.hedge_wins += u.hedge_wins;
            into.pool_hits += u.pool_hits;
            into.pool_misses += u.pool_misses;
            into.ejections += u.ejections;
            into.ejections_spared += u.ejections_spared;
            into.panic_picks += u.panic_picks;
            into.stale_connections += u.stale_connections;
            into.breaker_trips += u.breaker_trips;
            into.breaker_rejected += u.breaker_rejected;
            into.breaker_open += u.breaker_open;
            into.bytes_sent += u.bytes_sent;
            into.bytes_received += u.bytes_received;
            into.open_connections += u.open_connections;
            into.latency.add(&u.latency);
        }
        for l in &w.limits {
            let into = slot(
                &mut m.limits,
                |x| x.kind == l.kind && x.policy == l.policy,
                || LimitSnap {
                    kind: l.kind,
                    policy: l.policy.clone(),
                    ..Default::default()
                },
            );
            into.allowed += l.allowed;
            into.limited += l.limited;
            into.leases += l.leases;
            into.returned += l.returned;
        }
    }
    m.workers = workers;
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WorkerStats;

    #[test]
    fn merges_by_name_across_workers() {
        let a = WorkerStats::default();
        let b = WorkerStats::default();
        for us in [100, 200, 300] {
            a.route("users").total.record_us(us);
        }
        b.route("orders").record(500);
        b.route("users").total.record_us(10_000);
        b.route("users").record(200);
        a.upstream("u").pool_hits.add(3);
        b.upstream("u").pool_hits.add(4);
        a.open_connections.add(2);
        b.open_connections.add(1);
        let m = merge(vec![b.snapshot(1), a.snapshot(0)], Extra::default());
        assert_eq!(m.workers[0].worker, 0);
        assert_eq!(m.routes[0].name, "users");
        assert_eq!(m.routes[0].total.hist.len(), 4);
        assert_eq!(m.routes[0].total.sum_us, 10_600);
        assert_eq!(m.routes[0].requests, [0, 1, 0, 0, 0]);
        assert_eq!(m.routes[1].requests, [0, 0, 0, 0, 1]);
        assert_eq!(m.upstreams[0].pool_hits, 7);
        assert_eq!(m.open_connections, 3);
        let p50 = m.routes[0].total.quantile_us(0.5);
        assert!((198..=202).contains(&p50), "{p50}");
        assert!(m.routes[0].total.quantile_us(1.0) >= 9_900);
        assert_eq!(
            m.routes[0].total.cumulative(&[50, 250, 1_000_000]),
            [0, 2, 4]
        );
    }
}
