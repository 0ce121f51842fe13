//! `/stats`: the merged statistics as one JSON document, for humans, scripts and `coregate top`.
//!
//! Owns: [`render`]. Same data as `/metrics`, shaped per entity: routes and upstreams with their
//! counters and latency summaries (count, sum, p50/p95/p99/p99.9, max, in µs), connection totals,
//! limit counters, access-log counters, generation and reload results.

use serde_json::{json, Map, Value};

use super::snapshot::{LatencySnap, Merged};
use super::{CLASSES, UPSTREAM_ERROR_KINDS};

fn classes(c: &[u64; 5]) -> Value {
    let mut m = Map::new();
    for (i, name) in CLASSES.iter().enumerate() {
        m.insert((*name).into(), c[i].into());
    }
    Value::Object(m)
}

fn latency(l: &LatencySnap) -> Value {
    json!({
        "count": l.hist.len(),
        "sum": l.sum_us,
        "p50": l.quantile_us(0.5),
        "p95": l.quantile_us(0.95),
        "p99": l.quantile_us(0.99),
        "p999": l.quantile_us(0.999),
        "max": if l.hist.is_empty() { 0 } else { l.hist.max() },
    })
}

pub fn render(m: &Merged) -> String {
    let routes: Vec<Value> = m
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "requests": classes(&r.requests),
                "bytes_in": r.bytes_in,
                "bytes_out": r.bytes_out,
                "latency_us": latency(&r.total),
                "upstream_latency_us": latency(&r.upstream),
            })
        })
        .collect();
    let upstreams: Vec<Value> = m
        .upstreams
        .iter()
        .map(|u| {
            let mut errors = Map::new();
            for (i, k) in UPSTREAM_ERROR_KINDS.iter().enumerate() {
                errors.insert((*k).into(), u.errors[i].into());
            }
            json!({
                "name": u.name,
                "requests": classes(&u.requests),
                "errors": errors,
                "retries": u.retries,
                "retry_budget_exhausted": u.retry_budget_exhausted,
                "adaptive": {"limit": u.adaptive_limit, "shed": u.adaptive_shed},
                "hedges": {"sent": u.hedges, "won": u.hedge_wins},
                "pool_hits": u.pool_hits,
                "pool_misses": u.pool_misses,
                "ejections": u.ejections,
                "ejections_spared": u.ejections_spared,
                "panic_picks": u.panic_picks,
                "stale_connections": u.stale_connections,
                "breaker": {"trips": u.breaker_trips, "rejected": u.breaker_rejected, "open_workers": u.breaker_open},
                "bytes_sent": u.bytes_sent,
                "bytes_received": u.bytes_received,
                "open_connections": u.open_connections,
                "latency_us": latency(&u.latency),
            })
        })
        .collect();
    let limits: Vec<Value> = m
        .limits
        .iter()
        .map(|l| {
            json!({
                "kind": l.kind,
                "policy": l.policy,
                "allowed": l.allowed,
                "limited": l.limited,
                "leases": l.leases,
                "returned": l.returned,
            })
        })
        .collect();
    let x = &m.extra;
    let health: Vec<Value> = (x.health.iter())
        .map(|e| {
            json!({
                "upstream": e.upstream,
                "endpoint": e.endpoint,
                "healthy": e.healthy,
                "checks": {"ok": e.checks_ok, "failed": e.checks_failed},
                "changes": {"unhealthy": e.went_down, "healthy": e.came_up},
            })
        })
        .collect();
    let doc = json!({
        "uptime_s": x.uptime_s,
        "workers": x.expected_workers,
        "workers_answered": m.workers.len(),
        "generation": x.generation,
        "reloads": {"ok": x.reloads_ok, "failed": x.reloads_failed, "last_ok": x.last_reload_ok},
        "connections": {"open": m.open_connections, "accepted": m.accepted_connections, "tunnels": m.tunnels_open},
        "unmatched": {"requests": classes(&m.unmatched.requests)},
        "routes": routes,
        "upstreams": upstreams,
        "health_checks": health,
        "bulkheads": x.bulkheads.iter().map(|b| json!({"name": b.0, "in_flight": b.1, "queued": b.2, "rejected": b.3})).collect::<Vec<_>>(),
        "limits": limits,
        "redis": {"errors": m.redis_errors, "fallback": m.redis_fallback},
        "access_log": {"written": x.log_written, "dropped": x.log_dropped},
        "otlp": {"exported": x.spans_exported, "dropped": x.spans_dropped},
        "dns": x.dns.iter().map(|d| json!({"upstream": d.upstream, "endpoints": d.endpoints, "changed": d.changed, "unchanged": d.unchanged, "failed": d.failed, "last_error": d.last_error})).collect::<Vec<_>>(),
        "scrape_worker_us": m.workers.iter().map(|w| w.snapshot_ns / 1000).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
