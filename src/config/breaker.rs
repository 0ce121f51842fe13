//! `[upstream.circuit_breaker]`, `[upstream.outlier_detection]` and
//! `[upstream.adaptive_concurrency]`: the raw tables and their checks, into the runtime's
//! [`BreakerConfig`](crate::upstream::breaker::BreakerConfig),
//! [`OutlierConfig`](super::OutlierConfig) and
//! [`AdaptiveConfig`](crate::upstream::adaptive::AdaptiveConfig).
//!
//! Owns the defaults and the rules: rates in (0, 1], `window` (a duration: a time window) or
//! `window_calls` (a count window), not both; `open_for_max` at least `open_for`; statuses 100-599
//! without duplicates. Every problem is reported with its key.

use serde::Deserialize;

use super::limits::ShareValue;
use super::position::KeyPath;
use super::raw::DurationValue;
use super::validate::Ctx;
use crate::upstream::breaker::{BreakerConfig, WindowKind};

/// `[upstream.circuit_breaker]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBreaker {
    pub failure_rate: Option<ShareValue>,
    pub slow_call_rate: Option<ShareValue>,
    pub slow_call_duration: Option<DurationValue>,
    pub min_calls: Option<i64>,
    pub window: Option<DurationValue>,
    pub window_calls: Option<i64>,
    pub open_for: Option<DurationValue>,
    pub open_for_max: Option<DurationValue>,
    pub half_open_calls: Option<i64>,
    pub failure_statuses: Option<Vec<super::raw::StatusValue>>,
    pub failure_grpc_statuses: Option<Vec<i64>>,
    pub scope: Option<String>,
}

/// `[upstream.outlier_detection]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOutlier {
    pub consecutive_5xx: Option<i64>,
    pub consecutive_gateway_errors: Option<i64>,
    pub interval: Option<DurationValue>,
    pub success_rate_min_hosts: Option<i64>,
    pub success_rate_request_volume: Option<i64>,
    pub success_rate_stdev_factor: Option<ShareValue>,
    pub base_ejection_time: Option<DurationValue>,
    pub max_ejection_time: Option<DurationValue>,
}

/// `[upstream.adaptive_concurrency]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAdaptive {
    pub min_limit: Option<i64>,
    pub max_limit: Option<i64>,
    pub initial_limit: Option<i64>,
    pub tolerance: Option<ShareValue>,
    pub smoothing: Option<ShareValue>,
    pub window: Option<i64>,
    pub long_window: Option<i64>,
}

/// `upstream.adaptive_concurrency` (`p`: the table's key).
pub(super) fn adaptive(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<RawAdaptive>,
) -> Option<crate::upstream::adaptive::AdaptiveConfig> {
    let a = raw?;
    let min_limit = cx.int(p.key("min_limit"), a.min_limit, 3, 1, 100_000);
    let max_limit = cx.int(p.key("max_limit"), a.max_limit, 1000, 1, 1_000_000);
    if max_limit < min_limit {
        cx.err(p.key("max_limit"), "must be at least min_limit");
    }
    let initial: u32 = cx.int(p.key("initial_limit"), a.initial_limit, 20, 1, 1_000_000);
    let tolerance = match a.tolerance {
        None => 1.5,
        Some(ShareValue(t)) if (1.0..=10.0).contains(&t) => t,
        Some(ShareValue(t)) => {
            let m = format!("must be between 1 and 10 (like 1.5), got {t}");
            cx.err(p.key("tolerance"), m);
            1.5
        }
    };
    Some(crate::upstream::adaptive::AdaptiveConfig {
        min_limit,
        max_limit: max_limit.max(min_limit),
        initial_limit: initial.clamp(min_limit, max_limit.max(min_limit)),
        tolerance,
        smoothing: rate(cx, p.key("smoothing"), a.smoothing, 0.2),
        window: cx.int(p.key("window"), a.window, 50, 1, 100_000),
        long_window: cx.int(p.key("long_window"), a.long_window, 100, 1, 100_000),
    })
}

/// `upstream.outlier_detection` (`p`: the table's key).
pub(super) fn outlier(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<RawOutlier>,
) -> Option<super::OutlierConfig> {
    let o = raw?;
    let base = cx.duration(p.key("base_ejection_time"), o.base_ejection_time, 30, false);
    let max = cx.duration(p.key("max_ejection_time"), o.max_ejection_time, 300, false);
    if max < base {
        cx.err(
            p.key("max_ejection_time"),
            "must be at least base_ejection_time",
        );
    }
    let factor = match o.success_rate_stdev_factor {
        None => 1.9,
        Some(ShareValue(f)) if f > 0.0 && f <= 10.0 => f,
        Some(ShareValue(f)) => {
            let m = format!("must be above 0 and at most 10 (like 1.9), got {f}");
            cx.err(p.key("success_rate_stdev_factor"), m);
            1.9
        }
    };
    Some(super::OutlierConfig {
        consecutive_5xx: cx.int(p.key("consecutive_5xx"), o.consecutive_5xx, 5, 1, 1000),
        consecutive_gateway_errors: cx.int(
            p.key("consecutive_gateway_errors"),
            o.consecutive_gateway_errors,
            0,
            0,
            1000,
        ),
        interval: cx.duration(p.key("interval"), o.interval, 10, false),
        success_rate_min_hosts: cx.int(
            p.key("success_rate_min_hosts"),
            o.success_rate_min_hosts,
            5,
            2,
            1000,
        ),
        success_rate_request_volume: cx.int(
            p.key("success_rate_request_volume"),
            o.success_rate_request_volume,
            100,
            1,
            1_000_000,
        ),
        success_rate_stdev_factor: factor,
        base_ejection_time: base,
        max_ejection_time: max.max(base),
    })
}

/// A rate: a number in (0, 1].
fn rate(cx: &mut Ctx, p: KeyPath, v: Option<ShareValue>, default: f64) -> f64 {
    match v {
        None => default,
        Some(ShareValue(r)) if r > 0.0 && r <= 1.0 => r,
        Some(ShareValue(r)) => {
            cx.err(
                p,
                format!("must be a share above 0 and at most 1 (like 0.5), got {r}"),
            );
            default
        }
    }
}

/// `upstream.circuit_breaker` (`p`: the table's key).
pub(super) fn breaker(cx: &mut Ctx, p: &KeyPath, raw: Option<RawBreaker>) -> Option<BreakerConfig> {
    let b = raw?;
    let window = match (b.window, b.window_calls) {
        (Some(_), Some(_)) => {
            cx.err(
                p.key("window_calls"),
                "give window (a time window) or window_calls (a count window), not both",
            );
            WindowKind::Time(std::time::Duration::from_secs(10))
        }
        (_, Some(n)) => WindowKind::Count(cx.int(p.key("window_calls"), Some(n), 100, 1, 100_000)),
        (w, None) => WindowKind::Time(cx.duration(p.key("window"), w, 10, false)),
    };
    let open_for = cx.duration(p.key("open_for"), b.open_for, 5, false);
    let open_for_max = match b.open_for_max {
        None => open_for,
        Some(v) => {
            let m = cx.duration(p.key("open_for_max"), Some(v), 5, false);
            if m < open_for {
                cx.err(p.key("open_for_max"), "must be at least open_for");
            }
            m.max(open_for)
        }
    };
    let mut statuses: Vec<(u16, u16)> = Vec::new();
    for (i, v) in b.failure_statuses.unwrap_or_default().iter().enumerate() {
        let p = p.key("failure_statuses").index(i);
        match super::health::status_range(&v.0) {
            Ok(r) if statuses.contains(&r) => {
                let text = match &v.0 {
                    super::raw::Scalar::Int(n) => n.to_string(),
                    super::raw::Scalar::Str(s) => s.clone(),
                };
                cx.err(p, format!("duplicate status {text}"))
            }
            Ok(r) => statuses.push(r),
            Err(m) => cx.err(p, m),
        }
    }
    let mut grpc: Vec<u8> = Vec::new();
    for (i, n) in b
        .failure_grpc_statuses
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match u8::try_from(n) {
            Ok(code @ 1..=16) if !grpc.contains(&code) => grpc.push(code),
            _ => cx.err(
                p.key("failure_grpc_statuses").index(i),
                format!("{n} is not a gRPC error status (1-16), or is listed twice"),
            ),
        }
    }
    let cluster = match b.scope.as_deref() {
        None | Some("worker") => false,
        Some("cluster") => true,
        Some(other) => {
            let m = format!("unknown scope \"{other}\" (expected \"worker\" or \"cluster\")");
            cx.err(p.key("scope"), m);
            false
        }
    };
    Some(BreakerConfig {
        cluster,
        failure_rate: rate(cx, p.key("failure_rate"), b.failure_rate, 0.5),
        // above 1: slowness never trips unless slow_call_rate is set
        slow_call_rate: rate(cx, p.key("slow_call_rate"), b.slow_call_rate, 2.0),
        slow_call_duration: cx.duration(
            p.key("slow_call_duration"),
            b.slow_call_duration,
            60,
            false,
        ),
        min_calls: cx.int(p.key("min_calls"), b.min_calls, 20, 1, 1_000_000),
        window,
        open_for,
        open_for_max,
        half_open_calls: cx.int(p.key("half_open_calls"), b.half_open_calls, 3, 1, 1000),
        failure_statuses: statuses,
        failure_grpc_statuses: grpc,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::check_cases;

    #[test]
    fn breaker_rules() {
        let up = |b: &str| {
            format!("[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\n[upstream.circuit_breaker]\n{b}\n")
        };
        check_cases(&[
            (&up("failure_rate = 0.5\nmin_calls = 20\nwindow = \"10s\"\nopen_for = \"5s\"\nhalf_open_calls = 3\nfailure_statuses = [500, 502, 503, 504]"), &[]),
            (&up("window_calls = 50\nslow_call_rate = 1\nslow_call_duration = \"2s\"\nopen_for_max = \"1m\""), &[]),
            (&up("failure_rate = 1.5"), &["upstream[1].circuit_breaker.failure_rate: must be a share above 0 and at most 1 (like 0.5), got 1.5"]),
            (&up("window = \"10s\"\nwindow_calls = 5"), &["upstream[1].circuit_breaker.window_calls: give window (a time window) or window_calls (a count window), not both"]),
            (&up("open_for = \"10s\"\nopen_for_max = \"5s\""), &["upstream[1].circuit_breaker.open_for_max: must be at least open_for"]),
            (&up("failure_statuses = [\"5xx\", 429]\nfailure_grpc_statuses = [14, 4]"), &[]),
            (&up("failure_grpc_statuses = [0, 17]"), &["upstream[1].circuit_breaker.failure_grpc_statuses[0]: 0 is not a gRPC error status (1-16), or is listed twice", "upstream[1].circuit_breaker.failure_grpc_statuses[1]: 17 is not a gRPC error status (1-16), or is listed twice"]),
            (&up("failure_statuses = [500, 500, 99]"), &["upstream[1].circuit_breaker.failure_statuses[1]: duplicate status 500", "upstream[1].circuit_breaker.failure_statuses[2]: 99 is not an HTTP status (100-599)"]),
            (&up("scope = \"cluster\""), &["upstream[1].circuit_breaker.scope: scope = \"cluster\" needs a [redis] section"]),
            (&up("scope = \"node\""), &["upstream[1].circuit_breaker.scope: unknown scope \"node\" (expected \"worker\" or \"cluster\")"]),
            (&up("min_calls = 0"), &["upstream[1].circuit_breaker.min_calls: must be between 1 and 1000000, got 0"]),
        ]);
        let od = |b: &str| {
            format!("[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\n[upstream.outlier_detection]\n{b}\n")
        };
        check_cases(&[
            (&od("consecutive_5xx = 5\nbase_ejection_time = \"30s\"\nmax_ejection_time = \"5m\""), &[]),
            (&od("consecutive_5xx = 0"), &["upstream[1].outlier_detection.consecutive_5xx: must be between 1 and 1000, got 0"]),
            (&od("base_ejection_time = \"1m\"\nmax_ejection_time = \"10s\""), &["upstream[1].outlier_detection.max_ejection_time: must be at least base_ejection_time"]),
        ]);
    }
}
