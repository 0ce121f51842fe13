//! The upstream's resilience tables in the rendered config: `circuit_breaker`,
//! `outlier_detection`, `health_check`, `adaptive_concurrency` and `retry`, each back in the
//! file format (`render.rs` owns the rest and the helpers these use).

use toml::Value;

use super::{duration, int, s, tbl};
use crate::config::OutlierConfig;

pub(super) fn breaker(b: &crate::upstream::breaker::BreakerConfig) -> Value {
    use crate::upstream::breaker::WindowKind;
    let (window, window_calls) = match b.window {
        WindowKind::Time(d) => (duration(d), None),
        WindowKind::Count(n) => (None, int(n)),
    };
    let statuses = b.failure_statuses.iter().map(|&(lo, hi)| match lo == hi {
        true => Value::Integer(lo.into()),
        false => Value::String(format!("{}xx", lo / 100)),
    });
    let grpc = b
        .failure_grpc_statuses
        .iter()
        .map(|&x| Value::Integer(x.into()));
    tbl([
        ("failure_rate", Some(Value::Float(b.failure_rate))),
        // above 1: off, and not writable
        (
            "slow_call_rate",
            (b.slow_call_rate <= 1.0).then_some(Value::Float(b.slow_call_rate)),
        ),
        ("slow_call_duration", duration(b.slow_call_duration)),
        ("min_calls", int(b.min_calls)),
        ("window", window),
        ("window_calls", window_calls),
        ("open_for", duration(b.open_for)),
        ("open_for_max", duration(b.open_for_max)),
        ("half_open_calls", int(b.half_open_calls)),
        ("failure_statuses", Some(Value::Array(statuses.collect()))),
        ("failure_grpc_statuses", Some(Value::Array(grpc.collect()))),
        ("scope", s(if b.cluster { "cluster" } else { "worker" })),
    ])
}

pub(super) fn outlier(o: &OutlierConfig) -> Value {
    tbl([
        ("consecutive_5xx", int(o.consecutive_5xx)),
        (
            "consecutive_gateway_errors",
            int(o.consecutive_gateway_errors),
        ),
        ("interval", duration(o.interval)),
        ("success_rate_min_hosts", int(o.success_rate_min_hosts)),
        (
            "success_rate_request_volume",
            int(o.success_rate_request_volume),
        ),
        (
            "success_rate_stdev_factor",
            Some(Value::Float(o.success_rate_stdev_factor)),
        ),
        ("base_ejection_time", duration(o.base_ejection_time)),
        ("max_ejection_time", duration(o.max_ejection_time)),
    ])
}

pub(super) fn health_check(h: &crate::config::health::HealthCheck) -> Value {
    use crate::config::health::ProbeKind;
    let (kind, path, host, statuses) = match &h.kind {
        ProbeKind::Http {
            path,
            host,
            statuses,
        } => {
            let statuses = statuses.iter().map(|&(lo, hi)| match (lo, hi) {
                (lo, hi) if lo == hi => Value::Integer(lo.into()),
                (lo, _) => Value::String(format!("{}xx", lo / 100)),
            });
            let statuses = Some(Value::Array(statuses.collect()));
            ("http", s(path), host.as_deref().and_then(s), statuses)
        }
        ProbeKind::Tcp => ("tcp", None, None, None),
    };
    tbl([
        ("kind", s(kind)),
        ("path", path),
        ("host", host),
        ("expected_statuses", statuses),
        ("interval", duration(h.interval)),
        ("timeout", duration(h.timeout)),
        ("jitter", duration(h.jitter)),
        ("healthy_threshold", int(h.healthy_threshold)),
        ("unhealthy_threshold", int(h.unhealthy_threshold)),
    ])
}

pub(super) fn adaptive(a: &crate::upstream::adaptive::AdaptiveConfig) -> Value {
    tbl([
        ("min_limit", int(a.min_limit)),
        ("max_limit", int(a.max_limit)),
        ("initial_limit", int(a.initial_limit)),
        ("tolerance", Some(Value::Float(a.tolerance))),
        ("smoothing", Some(Value::Float(a.smoothing))),
        ("window", int(a.window)),
        ("long_window", int(a.long_window)),
    ])
}

pub(super) fn retry(r: &crate::upstream::retry::RetryPolicy) -> Value {
    use crate::upstream::retry::RetryOn;
    let on = r.on.iter().map(|c| match c {
        RetryOn::ConnectFailure => Value::String("connect-failure".into()),
        RetryOn::Reset => Value::String("reset".into()),
        RetryOn::Timeout => Value::String("timeout".into()),
        RetryOn::GatewayError => Value::String("gateway-error".into()),
        RetryOn::Status5xx => Value::String("5xx".into()),
        RetryOn::GrpcUnavailable => Value::String("grpc-unavailable".into()),
        RetryOn::Status(s) => Value::Integer((*s).into()),
    });
    tbl([
        ("on", Some(Value::Array(on.collect()))),
        ("per_try_timeout", r.per_try_timeout.and_then(duration)),
        ("backoff", duration(r.backoff)),
        ("max_backoff", duration(r.max_backoff)),
        ("budget_percent", int(r.budget_percent)),
        ("budget_min", int(r.budget_min)),
        ("idempotency_key", Some(Value::Boolean(r.idempotency_key))),
        (
            "hedge_after",
            r.hedge_after.and_then(|h| match h {
                crate::upstream::retry::HedgeAfter::P95 => s("p95"),
                crate::upstream::retry::HedgeAfter::Fixed(d) => duration(d),
            }),
        ),
    ])
}
