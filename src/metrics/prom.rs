//! Prometheus text exposition (format 0.0.4) of merged worker snapshots.
//!
//! Owns: [`render`], which turns a [`Merged`] value into `# HELP` / `# TYPE` families. Counters are
//! totals over workers; latency distributions are real Prometheus histograms (cumulative
//! `_bucket{le}` series read off the merged hdrhistogram, exact `_sum` and `_count`) plus
//! `..._quantile_seconds{quantile}` gauges for p50/p95/p99/p99.9 computed from the same merge.

use std::fmt::Write as _;

use super::names::{self, LATENCY_BUCKETS, QUANTILES};
use super::snapshot::{LatencySnap, Merged, WorkerSnap};
use super::{CLASSES, UPSTREAM_ERROR_KINDS};

fn family(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

/// A family of one unlabelled series: its HELP and TYPE lines, then `name value`.
fn single(s: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(s, name, kind, help);
    let _ = writeln!(s, "{name} {value}");
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> std::borrow::Cow<'_, str> {
    if v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn histogram(s: &mut String, name: &str, label: &str, value: &str, l: &LatencySnap) {
    let bounds: Vec<u64> = LATENCY_BUCKETS
        .iter()
        .map(|b| (b * 1e6).round() as u64)
        .collect();
    let counts = l.cumulative(&bounds);
    for (b, n) in LATENCY_BUCKETS.iter().zip(counts) {
        let _ = writeln!(s, "{name}_bucket{{{label}=\"{value}\",le=\"{b}\"}} {n}");
    }
    let total = l.hist.len();
    let _ = writeln!(
        s,
        "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(s, "{name}_sum{{{label}=\"{value}\"}} {}", secs(l.sum_us));
    let _ = writeln!(s, "{name}_count{{{label}=\"{value}\"}} {total}");
}

fn quantiles(s: &mut String, name: &str, label: &str, value: &str, l: &LatencySnap) {
    for (q, text) in QUANTILES {
        let v = secs(l.quantile_us(q));
        let _ = writeln!(s, "{name}{{{label}=\"{value}\",quantile=\"{text}\"}} {v}");
    }
}

/// One latency distribution as two families: a histogram, then its quantile gauges, one series
/// each per `(label value, distribution)` of `items`.
fn latency_families<'a>(
    s: &mut String,
    (hist_name, hist_help): (&str, &str),
    (q_name, q_help): (&str, &str),
    label: &str,
    items: impl Iterator<Item = (&'a str, &'a LatencySnap)> + Clone,
) {
    family(s, hist_name, "histogram", hist_help);
    for (value, l) in items.clone() {
        histogram(s, hist_name, label, &esc(value), l);
    }
    family(s, q_name, "gauge", q_help);
    for (value, l) in items {
        quantiles(s, q_name, label, &esc(value), l);
    }
}

/// A counter family with one series per `(label value, status class)`.
fn class_family<'a>(
    s: &mut String,
    name: &str,
    help: &str,
    label: &str,
    items: impl Iterator<Item = (&'a str, &'a [u64; 5])>,
) {
    family(s, name, "counter", help);
    for (value, counts) in items {
        for (c, class) in CLASSES.iter().enumerate() {
            let _ = writeln!(
                s,
                "{name}{{{label}=\"{}\",class=\"{class}\"}} {}",
                esc(value),
                counts[c]
            );
        }
    }
}

#[path = "prom_process.rs"]
mod process;
use process::render_process;

/// Renders every family. Series of a route or upstream appear once it has an entry on any worker.
pub fn render(m: &Merged) -> String {
    let mut s = String::with_capacity(16 * 1024);
    render_routes(&mut s, m);
    render_upstreams(&mut s, m);
    render_health(&mut s, m);
    render_bulkheads(&mut s, m);
    render_connections(&mut s, m);
    render_limits(&mut s, m);
    render_process(&mut s, m);
    s
}

fn render_routes(s: &mut String, m: &Merged) {
    let all = || m.routes.iter().map(|r| (r.name.as_str(), r));
    class_family(
        s,
        names::REQUESTS_TOTAL,
        "Requests answered, by route and status class (route=\"\": no route matched).",
        "route",
        all()
            .chain(std::iter::once(("", &m.unmatched)))
            .map(|(name, r)| (name, &r.requests)),
    );
    type Pick = fn(&super::snapshot::RouteSnap) -> u64;
    let bytes: [(&str, &str, Pick); 2] = [
        (
            names::REQUEST_BYTES_TOTAL,
            "Request body bytes received from clients, by route.",
            |r| r.bytes_in,
        ),
        (
            names::RESPONSE_BYTES_TOTAL,
            "Response body bytes sent to clients, by route.",
            |r| r.bytes_out,
        ),
    ];
    for (name, help, get) in bytes {
        family(s, name, "counter", help);
        for (route, r) in all() {
            let _ = writeln!(s, "{name}{{route=\"{}\"}} {}", esc(route), get(r));
        }
    }
    let name = names::IP_DENIED_TOTAL;
    family(s, name, "counter", "Requests refused (403) by IP rules, by route (route=\"\": the [server] rules, before routing).");
    for (route, r) in all().chain(std::iter::once(("", &m.unmatched))) {
        let _ = writeln!(s, "{name}{{route=\"{}\"}} {}", esc(route), r.ip_denied);
    }
    let name = names::WAF_REQUESTS_TOTAL;
    family(s, name, "counter", "Requests at or over their route's WAF threshold, by route and action (blocked, or detected and forwarded).");
    for (route, r) in all() {
        for (action, n) in ["blocked", "detected"].iter().zip(r.waf) {
            let _ = writeln!(
                s,
                "{name}{{route=\"{}\",action=\"{action}\"}} {n}",
                esc(route)
            );
        }
    }
    let name = names::WAF_MATCHES_TOTAL;
    family(
        s,
        name,
        "counter",
        "Requests in which a WAF rule family matched, by route and family (whatever the score).",
    );
    for (route, r) in all() {
        for (fam, n) in crate::waf::rules::Family::ALL.iter().zip(r.waf_families) {
            let fam = fam.name();
            let _ = writeln!(s, "{name}{{route=\"{}\",family=\"{fam}\"}} {n}", esc(route));
        }
    }
    let name = names::VALIDATION_FAILED_TOTAL;
    family(
        s,
        name,
        "counter",
        "Requests refused (400) by request validation (schema, query and header checks), by route.",
    );
    for (route, r) in all() {
        let _ = writeln!(s, "{name}{{route=\"{}\"}} {}", esc(route), r.invalid);
    }
    let name = names::CACHE_REQUESTS_TOTAL;
    family(
        s,
        name,
        "counter",
        "Requests on cached routes by cache outcome (hit, stale, revalidated, miss, bypass, coalesced).",
    );
    for (route, r) in all().filter(|(_, r)| r.cache.iter().any(|&n| n > 0)) {
        for (outcome, n) in super::CACHE_OUTCOMES.iter().zip(r.cache) {
            let _ = writeln!(
                s,
                "{name}{{route=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(route)
            );
        }
    }
    latency_families(
        s,
        (
            names::REQUEST_DURATION,
            "Time from the parsed request head to the last response byte, by route.",
        ),
        (
            names::REQUEST_DURATION_QUANTILE,
            "Request duration percentiles since start, from merged per-core hdrhistograms.",
        ),
        "route",
        all().map(|(name, r)| (name, &r.total)),
    );
    latency_families(
        s,
        (
            names::ROUTE_UPSTREAM_DURATION,
            "Upstream exchange time (connect or pool, send, full response), by route.",
        ),
        (
            names::ROUTE_UPSTREAM_DURATION_QUANTILE,
            "Upstream exchange time percentiles since start, by route.",
        ),
        "route",
        all().map(|(name, r)| (name, &r.upstream)),
    );
}

fn render_upstreams(s: &mut String, m: &Merged) {
    class_family(
        s,
        names::UPSTREAM_REQUESTS_TOTAL,
        "Upstream responses relayed, by upstream and status class.",
        "upstream",
        m.upstreams.iter().map(|u| (u.name.as_str(), &u.requests)),
    );
    family(
        s,
        names::UPSTREAM_ERRORS_TOTAL,
        "counter",
        "Failed upstream attempts by kind: connect (failed or timed out), reset (closed before a full response head), timeout (response), bad_response.",
    );
    for u in &m.upstreams {
        for (k, kind) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}{{upstream=\"{}\",kind=\"{kind}\"}} {}",
                names::UPSTREAM_ERRORS_TOTAL,
                esc(&u.name),
                u.errors[k]
            );
        }
    }
    type Pick = fn(&super::snapshot::UpstreamSnap) -> u64;
    let simple: [(&str, &str, &str, Pick); 18] = [
        (
            names::UPSTREAM_RETRIES_TOTAL,
            "counter",
            "Extra attempts after a failed one.",
            |u| u.retries,
        ),
        (
            names::UPSTREAM_RETRY_BUDGET_EXHAUSTED_TOTAL,
            "counter",
            "Retries not made because the retry budget was spent.",
            |u| u.retry_budget_exhausted,
        ),
        (
            names::UPSTREAM_HEDGES_TOTAL,
            "counter",
            "Hedged requests: a second try sent because the first was slower than hedge_after.",
            |u| u.hedges,
        ),
        (
            names::UPSTREAM_HEDGE_WINS_TOTAL,
            "counter",
            "Hedged requests the second try answered first.",
            |u| u.hedge_wins,
        ),
        (
            names::UPSTREAM_ADAPTIVE_SHED_TOTAL,
            "counter",
            "Requests shed at once by the adaptive concurrency limit.",
            |u| u.adaptive_shed,
        ),
        (
            names::UPSTREAM_ADAPTIVE_LIMIT,
            "gauge",
            "Adaptive concurrency limit now, summed over workers (0 without one).",
            |u| u.adaptive_limit.max(0) as u64,
        ),
        (
            names::UPSTREAM_POOL_HITS_TOTAL,
            "counter",
            "Requests sent on a pooled keep-alive connection.",
            |u| u.pool_hits,
        ),
        (
            names::UPSTREAM_POOL_MISSES_TOTAL,
            "counter",
            "Requests that needed a new upstream connection.",
            |u| u.pool_misses,
        ),
        (
            names::UPSTREAM_EJECTIONS_TOTAL,
            "counter",
            "Endpoints ejected by passive health (max_fails within fail_timeout).",
            |u| u.ejections,
        ),
        (
            names::UPSTREAM_EJECTIONS_SPARED_TOTAL,
            "counter",
            "Ejections not made: the last healthy endpoint, or max_ejection_percent reached.",
            |u| u.ejections_spared,
        ),
        (
            names::UPSTREAM_PANIC_PICKS_TOTAL,
            "counter",
            "Endpoint picks in panic mode (healthy share below panic_threshold: health ignored).",
            |u| u.panic_picks,
        ),
        (
            names::UPSTREAM_STALE_CONNECTIONS_TOTAL,
            "counter",
            "Pooled connections the upstream had closed, found at reuse (not endpoint failures).",
            |u| u.stale_connections,
        ),
        (
            names::UPSTREAM_BREAKER_TRIPS_TOTAL,
            "counter",
            "Circuit breaker trips (closed or half-open to open).",
            |u| u.breaker_trips,
        ),
        (
            names::UPSTREAM_BREAKER_REJECTED_TOTAL,
            "counter",
            "Calls refused at once (503) because the circuit breaker was open.",
            |u| u.breaker_rejected,
        ),
        (
            names::UPSTREAM_SENT_BYTES_TOTAL,
            "counter",
            "Bytes written to upstream connections (heads and bodies).",
            |u| u.bytes_sent,
        ),
        (
            names::UPSTREAM_RECEIVED_BYTES_TOTAL,
            "counter",
            "Bytes read from upstream connections (heads and bodies).",
            |u| u.bytes_received,
        ),
        (
            names::UPSTREAM_OPEN_CONNECTIONS,
            "gauge",
            "Upstream connections open now, idle or busy.",
            |u| u.open_connections.max(0) as u64,
        ),
        (
            names::UPSTREAM_BREAKER_OPEN,
            "gauge",
            "Workers whose circuit breaker for this upstream is open or half-open now.",
            |u| u.breaker_open.max(0) as u64,
        ),
    ];
    for (name, kind, help, get) in simple {
        family(s, name, kind, help);
        for u in &m.upstreams {
            let _ = writeln!(s, "{name}{{upstream=\"{}\"}} {}", esc(&u.name), get(u));
        }
    }
    latency_families(
        s,
        (
            names::UPSTREAM_DURATION,
            "Upstream exchange time (connect or pool, send, full response), by upstream.",
        ),
        (
            names::UPSTREAM_DURATION_QUANTILE,
            "Upstream exchange time percentiles since start, by upstream.",
        ),
        "upstream",
        m.upstreams.iter().map(|u| (u.name.as_str(), &u.latency)),
    );
}

/// Active health checks: the verdict, probes and verdict changes per probed endpoint.
fn render_health(s: &mut String, m: &Merged) {
    let h = &m.extra.health;
    if h.is_empty() {
        return;
    }
    let labels = |e: &super::snapshot::EndpointHealthSnap| {
        format!(
            "upstream=\"{}\",endpoint=\"{}\"",
            esc(&e.upstream),
            esc(&e.endpoint)
        )
    };
    let name = names::UPSTREAM_ENDPOINT_HEALTHY;
    family(
        s,
        name,
        "gauge",
        "1 while active health checks find the endpoint healthy, 0 while they keep it out.",
    );
    for e in h {
        let _ = writeln!(s, "{name}{{{}}} {}", labels(e), u8::from(e.healthy));
    }
    let name = names::UPSTREAM_HEALTH_CHECKS_TOTAL;
    family(s, name, "counter", "Active health probes, by result.");
    for e in h {
        let _ = writeln!(s, "{name}{{{},result=\"ok\"}} {}", labels(e), e.checks_ok);
        let _ = writeln!(
            s,
            "{name}{{{},result=\"failed\"}} {}",
            labels(e),
            e.checks_failed
        );
    }
    let name = names::UPSTREAM_HEALTH_CHANGES_TOTAL;
    family(
        s,
        name,
        "counter",
        "Verdict changes of active health checks (to=unhealthy: taken out; to=healthy: back).",
    );
    for e in h {
        let _ = writeln!(
            s,
            "{name}{{{},to=\"unhealthy\"}} {}",
            labels(e),
            e.went_down
        );
        let _ = writeln!(s, "{name}{{{},to=\"healthy\"}} {}", labels(e), e.came_up);
    }
}

/// Bulkhead pools (`route:<name>`, `upstream:<name>`, `[[bulkhead]]` names), whole process.
fn render_bulkheads(s: &mut String, m: &Merged) {
    let b = &m.extra.bulkheads;
    if b.is_empty() {
        return;
    }
    type Pick = fn(&(String, u64, u64, u64)) -> u64;
    let families: [(&str, &str, &str, Pick); 3] = [
        (
            names::BULKHEAD_IN_FLIGHT,
            "gauge",
            "Requests holding a slot in the pool now.",
            |p| p.1,
        ),
        (
            names::BULKHEAD_QUEUED,
            "gauge",
            "Requests waiting for a slot now.",
            |p| p.2,
        ),
        (
            names::BULKHEAD_REJECTED_TOTAL,
            "counter",
            "Requests refused (pool and queue full, or the queue wait ran out).",
            |p| p.3,
        ),
    ];
    for (name, kind, help, get) in families {
        family(s, name, kind, help);
        for p in b {
            let _ = writeln!(s, "{name}{{bulkhead=\"{}\"}} {}", esc(&p.0), get(p));
        }
    }
}

fn render_connections(s: &mut String, m: &Merged) {
    single(
        s,
        names::OPEN_CONNECTIONS,
        "gauge",
        "Open client connections.",
        m.open_connections,
    );
    single(
        s,
        names::ACCEPTED_TOTAL,
        "counter",
        "Client connections accepted.",
        m.accepted_connections,
    );
    single(
        s,
        names::TUNNELS_OPEN,
        "gauge",
        "Upgraded connections (WebSocket tunnels) open now.",
        m.tunnels_open.max(0),
    );
    for (name, kind, help, v) in [
        (
            names::CACHE_BYTES,
            "gauge",
            "Bytes held by the response cache (all workers).",
            m.cache_bytes.max(0) as u64,
        ),
        (
            names::CACHE_ENTRIES,
            "gauge",
            "Responses held by the response cache (all workers).",
            m.cache_entries.max(0) as u64,
        ),
        (
            names::CACHE_EVICTIONS_TOTAL,
            "counter",
            "Cached responses evicted (memory budget, expiry, variants over the limit).",
            m.cache_evictions,
        ),
    ] {
        single(s, name, kind, help, v);
    }
    family(
        s,
        names::TLS_HANDSHAKES_TOTAL,
        "counter",
        "TLS handshakes on TLS listeners, by result.",
    );
    let _ = writeln!(
        s,
        "{}{{result=\"ok\"}} {}",
        names::TLS_HANDSHAKES_TOTAL,
        m.tls_handshakes
    );
    let _ = writeln!(
        s,
        "{}{{result=\"error\"}} {}",
        names::TLS_HANDSHAKES_TOTAL,
        m.tls_handshake_failures
    );
    per_worker(
        s,
        m,
        names::WORKER_OPEN_CONNECTIONS,
        "gauge",
        "Open client connections, per worker (how SO_REUSEPORT spread them).",
        |w| w.open_connections,
    );
    per_worker(
        s,
        m,
        names::WORKER_ACCEPTED_TOTAL,
        "counter",
        "Client connections accepted, per worker.",
        |w| w.accepted_connections as i64,
    );
    per_worker(
        s,
        m,
        names::WORKER_HANDED_OFF_TOTAL,
        "counter",
        "Client connections a worker accepted and handed to a less-loaded worker.",
        |w| w.handed_off as i64,
    );
}

/// One family with a `worker` label: a sample per worker.
fn per_worker(
    s: &mut String,
    m: &Merged,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&WorkerSnap) -> i64,
) {
    family(s, name, kind, help);
    for w in &m.workers {
        let _ = writeln!(s, "{name}{{worker=\"{}\"}} {}", w.worker, value(w));
    }
}

fn render_limits(s: &mut String, m: &Merged) {
    if m.limits.is_empty() {
        return;
    }
    type Pick = fn(&super::snapshot::LimitSnap) -> u64;
    let families: [(&str, &str, Pick); 4] = [
        (
            names::LIMIT_ALLOWED_TOTAL,
            "Requests a rate limit or quota let through.",
            |c| c.allowed,
        ),
        (
            names::LIMIT_LIMITED_TOTAL,
            "Requests refused by a rate limit or quota (429).",
            |c| c.limited,
        ),
        (
            names::LIMIT_LEASES_TOTAL,
            "Leases taken from the shared budget (atomic or Redis).",
            |c| c.leases,
        ),
        (
            names::LIMIT_RETURNED_TOTAL,
            "Leased units handed back unused.",
            |c| c.returned,
        ),
    ];
    for (name, help, get) in families {
        family(s, name, "counter", help);
        for l in &m.limits {
            let _ = writeln!(
                s,
                "{name}{{kind=\"{}\",policy=\"{}\"}} {}",
                l.kind,
                esc(&l.policy),
                get(l)
            );
        }
    }
    single(
        s,
        names::LIMIT_REDIS_ERRORS_TOTAL,
        "counter",
        "Failed Redis calls of cluster-scoped limits.",
        m.redis_errors,
    );
    single(
        s,
        names::LIMIT_REDIS_FALLBACK,
        "gauge",
        "1 while Redis is unreachable and cluster limits run on local shares.",
        m.redis_fallback,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::{merge, Extra};
    use crate::metrics::WorkerStats;

    #[test]
    fn renders_histograms_and_totals() {
        let a = WorkerStats::default();
        let r = a.route("users");
        for us in [50, 400, 3_000, 2_000_000] {
            r.total.record_us(us);
            r.record(200);
        }
        a.unmatched.record(404);
        a.upstream("u")
            .error(crate::metrics::UpstreamError::Connect);
        let m = merge(
            vec![a.snapshot(0)],
            Extra {
                expected_workers: 2,
                ..Default::default()
            },
        );
        let text = render(&m);
        for want in [
            "coregate_requests_total{route=\"users\",class=\"2xx\"} 4\n",
            "coregate_requests_total{route=\"\",class=\"4xx\"} 1\n",
            "coregate_request_duration_seconds_bucket{route=\"users\",le=\"0.0001\"} 1\n",
            "coregate_request_duration_seconds_bucket{route=\"users\",le=\"0.0005\"} 2\n",
            "coregate_request_duration_seconds_bucket{route=\"users\",le=\"0.005\"} 3\n",
            "coregate_request_duration_seconds_bucket{route=\"users\",le=\"2.5\"} 4\n",
            "coregate_request_duration_seconds_bucket{route=\"users\",le=\"+Inf\"} 4\n",
            "coregate_request_duration_seconds_count{route=\"users\"} 4\n",
            "coregate_request_duration_seconds_sum{route=\"users\"} 2.00345\n",
            "coregate_upstream_errors_total{upstream=\"u\",kind=\"connect\"} 1\n",
            "coregate_scrape_missing_workers 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(esc("plain"), "plain");
    }
}
