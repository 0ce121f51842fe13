//! Metric names, in one place so dashboards, tests and code agree.

pub const REQUESTS_TOTAL: &str = "coregate_requests_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "coregate_upstream_errors_total";
pub const OPEN_CONNECTIONS: &str = "coregate_open_connections";
pub const ACCEPTED_TOTAL: &str = "coregate_accepted_connections_total";
