//! Metric names, in one place so dashboards, tests and code agree.

pub const REQUESTS_TOTAL: &str = "coregate_requests_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "coregate_upstream_errors_total";
pub const OPEN_CONNECTIONS: &str = "coregate_open_connections";
pub const ACCEPTED_TOTAL: &str = "coregate_accepted_connections_total";
pub const LIMIT_ALLOWED_TOTAL: &str = "coregate_ratelimit_allowed_total";
pub const LIMIT_LIMITED_TOTAL: &str = "coregate_ratelimit_limited_total";
pub const LIMIT_LEASES_TOTAL: &str = "coregate_ratelimit_leases_total";
pub const LIMIT_RETURNED_TOTAL: &str = "coregate_ratelimit_returned_units_total";
pub const LIMIT_REDIS_ERRORS_TOTAL: &str = "coregate_ratelimit_redis_errors_total";
pub const LIMIT_REDIS_FALLBACK: &str = "coregate_ratelimit_redis_fallback";
