//! Metric names, in one place so dashboards, tests and code agree.

// requests, per route (route="" counts requests that matched no route)
pub const REQUESTS_TOTAL: &str = "coregate_requests_total";
pub const REQUEST_BYTES_TOTAL: &str = "coregate_request_body_bytes_total";
pub const RESPONSE_BYTES_TOTAL: &str = "coregate_response_body_bytes_total";
pub const REQUEST_DURATION: &str = "coregate_request_duration_seconds";
pub const REQUEST_DURATION_QUANTILE: &str = "coregate_request_duration_quantile_seconds";
pub const IP_DENIED_TOTAL: &str = "coregate_ip_denied_total";
pub const WAF_REQUESTS_TOTAL: &str = "coregate_waf_requests_total";
pub const WAF_MATCHES_TOTAL: &str = "coregate_waf_matches_total";
pub const VALIDATION_FAILED_TOTAL: &str = "coregate_validation_failed_total";
pub const CACHE_REQUESTS_TOTAL: &str = "coregate_cache_requests_total";
pub const CACHE_BYTES: &str = "coregate_cache_bytes";
pub const CACHE_ENTRIES: &str = "coregate_cache_entries";
pub const CACHE_EVICTIONS_TOTAL: &str = "coregate_cache_evictions_total";
pub const ROUTE_UPSTREAM_DURATION: &str = "coregate_route_upstream_duration_seconds";
pub const ROUTE_UPSTREAM_DURATION_QUANTILE: &str =
    "coregate_route_upstream_duration_quantile_seconds";

// upstreams
pub const UPSTREAM_REQUESTS_TOTAL: &str = "coregate_upstream_requests_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "coregate_upstream_errors_total";
pub const UPSTREAM_RETRIES_TOTAL: &str = "coregate_upstream_retries_total";
pub const UPSTREAM_RETRY_BUDGET_EXHAUSTED_TOTAL: &str =
    "coregate_upstream_retry_budget_exhausted_total";
pub const UPSTREAM_ADAPTIVE_LIMIT: &str = "coregate_upstream_adaptive_limit";
pub const UPSTREAM_ADAPTIVE_SHED_TOTAL: &str = "coregate_upstream_adaptive_shed_total";
pub const UPSTREAM_HEDGES_TOTAL: &str = "coregate_upstream_hedges_total";
pub const UPSTREAM_HEDGE_WINS_TOTAL: &str = "coregate_upstream_hedge_wins_total";
pub const UPSTREAM_POOL_HITS_TOTAL: &str = "coregate_upstream_pool_hits_total";
pub const UPSTREAM_POOL_MISSES_TOTAL: &str = "coregate_upstream_pool_misses_total";
pub const UPSTREAM_EJECTIONS_TOTAL: &str = "coregate_upstream_ejections_total";
pub const UPSTREAM_EJECTIONS_SPARED_TOTAL: &str = "coregate_upstream_ejections_spared_total";
pub const UPSTREAM_PANIC_PICKS_TOTAL: &str = "coregate_upstream_panic_picks_total";
pub const UPSTREAM_STALE_CONNECTIONS_TOTAL: &str = "coregate_upstream_stale_connections_total";
pub const UPSTREAM_BREAKER_TRIPS_TOTAL: &str = "coregate_upstream_breaker_trips_total";
pub const UPSTREAM_BREAKER_REJECTED_TOTAL: &str = "coregate_upstream_breaker_rejected_total";
pub const UPSTREAM_BREAKER_OPEN: &str = "coregate_upstream_breaker_open";
pub const UPSTREAM_SENT_BYTES_TOTAL: &str = "coregate_upstream_sent_bytes_total";
pub const UPSTREAM_RECEIVED_BYTES_TOTAL: &str = "coregate_upstream_received_bytes_total";
pub const UPSTREAM_OPEN_CONNECTIONS: &str = "coregate_upstream_open_connections";
pub const UPSTREAM_ENDPOINT_HEALTHY: &str = "coregate_upstream_endpoint_healthy";
pub const UPSTREAM_HEALTH_CHECKS_TOTAL: &str = "coregate_upstream_health_checks_total";
pub const UPSTREAM_HEALTH_CHANGES_TOTAL: &str = "coregate_upstream_health_changes_total";
pub const UPSTREAM_DURATION: &str = "coregate_upstream_duration_seconds";
pub const UPSTREAM_DURATION_QUANTILE: &str = "coregate_upstream_duration_quantile_seconds";

// bulkheads
pub const BULKHEAD_IN_FLIGHT: &str = "coregate_bulkhead_in_flight";
pub const BULKHEAD_QUEUED: &str = "coregate_bulkhead_queued";
pub const BULKHEAD_REJECTED_TOTAL: &str = "coregate_bulkhead_rejected_total";

// client connections
pub const OPEN_CONNECTIONS: &str = "coregate_open_connections";
pub const ACCEPTED_TOTAL: &str = "coregate_accepted_connections_total";
pub const TLS_HANDSHAKES_TOTAL: &str = "coregate_tls_handshakes_total";
pub const TUNNELS_OPEN: &str = "coregate_tunnels_open";
// the same per worker, in families of their own so `sum()` over the totals stays right
pub const WORKER_OPEN_CONNECTIONS: &str = "coregate_worker_open_connections";
pub const WORKER_ACCEPTED_TOTAL: &str = "coregate_worker_accepted_connections_total";
pub const WORKER_HANDED_OFF_TOTAL: &str = "coregate_worker_handed_off_connections_total";

// rate limits and quotas
pub const LIMIT_ALLOWED_TOTAL: &str = "coregate_ratelimit_allowed_total";
pub const LIMIT_LIMITED_TOTAL: &str = "coregate_ratelimit_limited_total";
pub const LIMIT_LEASES_TOTAL: &str = "coregate_ratelimit_leases_total";
pub const LIMIT_RETURNED_TOTAL: &str = "coregate_ratelimit_returned_units_total";
pub const LIMIT_REDIS_ERRORS_TOTAL: &str = "coregate_ratelimit_redis_errors_total";
pub const LIMIT_REDIS_FALLBACK: &str = "coregate_ratelimit_redis_fallback";

// access log
pub const ACCESS_LOG_LINES_TOTAL: &str = "coregate_access_log_lines_total";
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "coregate_access_log_dropped_lines_total";

// OTLP span export
pub const OTLP_SPANS_TOTAL: &str = "coregate_otlp_spans_total";

// DNS service discovery
pub const DNS_RESOLUTIONS_TOTAL: &str = "coregate_dns_resolutions_total";
pub const DNS_ENDPOINTS: &str = "coregate_dns_endpoints";

// config and the process
pub const CONFIG_GENERATION: &str = "coregate_config_generation";
pub const CONFIG_RELOADS_TOTAL: &str = "coregate_config_reloads_total";
pub const CONFIG_LAST_RELOAD_OK: &str = "coregate_config_last_reload_successful";
pub const UPTIME_SECONDS: &str = "coregate_uptime_seconds";
pub const WORKERS: &str = "coregate_workers";
pub const SCRAPE_WORKER_SECONDS: &str = "coregate_scrape_worker_seconds";
pub const SCRAPE_MISSING_WORKERS: &str = "coregate_scrape_missing_workers";

/// Upper bounds (seconds) of the latency histogram buckets: 100 µs to 30 s.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Quantiles exported as gauges, computed from the merged hdrhistograms.
pub const QUANTILES: [(f64, &str); 4] = [
    (0.5, "0.5"),
    (0.95, "0.95"),
    (0.99, "0.99"),
    (0.999, "0.999"),
];
