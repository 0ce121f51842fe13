//! The admin `/stats` document as `coregate top` reads it: serde types and [`parse_stats`].
//!
//! Owns: the reading side of the `/stats` JSON (the writing side is `metrics::json`). Key parts:
//! [`Stats`] and one struct per nested object, every one `#[serde(default)]`.
//!
//! Flow: response body (from `fetch`) -> [`parse_stats`] -> [`Stats`] -> `render`.
//!
//! Errors: a missing field takes its default and an unknown field is ignored, so `top` keeps
//! working against a gateway one version older or newer (the opposite of the config file, which
//! rejects unknown keys: a typo there changes behaviour, here it only blanks a column). Malformed
//! JSON or a field of the wrong type is one line with serde_json's line and column.

use serde::Deserialize;

/// One `/stats` document.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Seconds since the gateway started (unrounded).
    pub uptime_s: f64,
    pub workers: u64,
    /// Config generation: bumped by every successful reload.
    pub generation: u64,
    pub connections: Connections,
    /// Requests that matched no route (they are in no route's counters).
    pub unmatched: Unmatched,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub limits: Vec<Limit>,
    pub access_log: AccessLog,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Connections {
    pub open: u64,
    pub accepted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Unmatched {
    pub requests: StatusClasses,
}

/// Responses by status class.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

impl StatusClasses {
    pub fn total(&self) -> u64 {
        [self.c1xx, self.c2xx, self.c3xx, self.c4xx, self.c5xx]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// A latency summary in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub count: u64,
    pub sum: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Route {
    pub name: String,
    pub requests: StatusClasses,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Client-observed: from the request head to the last response byte.
    pub latency_us: Latency,
    pub upstream_latency_us: Latency,
}

/// Upstream failures by kind.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UpstreamErrors {
    pub connect: u64,
    pub reset: u64,
    pub timeout: u64,
    pub bad_response: u64,
}

impl UpstreamErrors {
    pub fn total(&self) -> u64 {
        [self.connect, self.reset, self.timeout, self.bad_response]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Upstream {
    pub name: String,
    pub requests: StatusClasses,
    pub errors: UpstreamErrors,
    pub retries: u64,
    pub pool_hits: u64,
    pub pool_misses: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub open_connections: u64,
    pub latency_us: Latency,
}

/// Counters of one rate limit or quota policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Limit {
    pub kind: String,
    pub policy: String,
    pub allowed: u64,
    pub limited: u64,
    pub leases: u64,
    pub returned: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AccessLog {
    pub written: u64,
    pub dropped: u64,
}

/// Parses a `/stats` body. Missing fields default, unknown fields are ignored.
pub fn parse_stats(body: &str) -> Result<Stats, String> {
    serde_json::from_str(body).map_err(|e| format!("bad /stats JSON: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The documented example of `GET /stats`.
    pub(crate) const EXAMPLE: &str = r#"{
      "uptime_s": 12.5,
      "workers": 2,
      "generation": 3,
      "connections": {"open": 4, "accepted": 100},
      "routes": [
        {"name": "users", "requests": {"1xx":0,"2xx":950,"3xx":0,"4xx":10,"5xx":2}, "bytes_in": 0, "bytes_out": 12000,
         "latency_us": {"count": 962, "sum": 123456, "p50": 110, "p95": 300, "p99": 900, "p999": 2000, "max": 2500},
         "upstream_latency_us": {"count": 950, "sum": 100000, "p50": 90, "p95": 250, "p99": 800, "p999": 1900, "max": 2400}}
      ],
      "upstreams": [
        {"name": "users", "requests": {"1xx":0,"2xx":950,"3xx":0,"4xx":0,"5xx":0}, "errors": {"connect":0,"reset":0,"timeout":0,"bad_response":0},
         "retries": 0, "pool_hits": 900, "pool_misses": 50, "bytes_sent": 0, "bytes_received": 12000, "open_connections": 3,
         "latency_us": {"count": 950, "sum": 100000, "p50": 90, "p95": 250, "p99": 800, "p999": 1900, "max": 2400}}
      ],
      "limits": [{"kind": "rate_limit", "policy": "per_client", "allowed": 10, "limited": 2, "leases": 3, "returned": 0}],
      "access_log": {"written": 100, "dropped": 0}
    }"#;

    #[test]
    fn parses_the_documented_example() {
        let s = parse_stats(EXAMPLE).unwrap();
        assert_eq!((s.uptime_s, s.workers, s.generation), (12.5, 2, 3));
        assert_eq!((s.connections.open, s.connections.accepted), (4, 100));
        let r = &s.routes[0];
        assert_eq!(r.name, "users");
        assert_eq!(
            (r.requests.total(), r.requests.c4xx, r.requests.c5xx),
            (962, 10, 2)
        );
        assert_eq!(r.bytes_out, 12000);
        assert_eq!((r.latency_us.p50, r.latency_us.p99), (110, 900));
        assert_eq!(r.upstream_latency_us.max, 2400);
        let u = &s.upstreams[0];
        assert_eq!(
            (u.pool_hits, u.pool_misses, u.open_connections),
            (900, 50, 3)
        );
        assert_eq!(u.errors.total(), 0);
        assert_eq!(s.limits[0].policy, "per_client");
        assert_eq!(s.limits[0].limited, 2);
        assert_eq!(s.access_log.written, 100);
    }

    #[test]
    fn missing_fields_default_and_unknown_fields_are_ignored() {
        let s = parse_stats(
            r#"{"workers": 4, "future_field": [1, 2], "routes": [{"name": "a",
                "requests": {"2xx": 7}, "latency_us": {"p99": 5, "p9999": 6}}]}"#,
        )
        .unwrap();
        assert_eq!(s.workers, 4);
        assert_eq!((s.uptime_s, s.generation), (0.0, 0));
        assert!(s.upstreams.is_empty() && s.limits.is_empty());
        let r = &s.routes[0];
        assert_eq!((r.requests.c2xx, r.requests.total()), (7, 7));
        assert_eq!((r.latency_us.p99, r.latency_us.p50, r.bytes_out), (5, 0, 0));
        assert_eq!(parse_stats("{}").unwrap(), Stats::default());
    }

    #[test]
    fn malformed_documents_are_one_clear_error() {
        let e = parse_stats("{\"workers\": \"two\"}").unwrap_err();
        assert!(e.starts_with("bad /stats JSON: invalid type"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let e = parse_stats("<html>").unwrap_err();
        assert!(e.starts_with("bad /stats JSON"), "{e}");
    }
}
