//! `[upstream.retry]`: the raw table and its checks, into the runtime's
//! [`RetryPolicy`](crate::upstream::retry::RetryPolicy).
//!
//! Owns the names of the retry conditions and the defaults (those of the policy's `Default`:
//! connect failures and resets, 25 ms back-off up to 250 ms, a 20% budget with a floor of 3).
//! Every problem is reported with its key.

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::{DurationValue, Scalar, StatusValue};
use super::validate::Ctx;
use crate::upstream::retry::{HedgeAfter, RetryOn, RetryPolicy};

/// `[upstream.retry]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRetry {
    pub on: Option<Vec<StatusValue>>,
    pub per_try_timeout: Option<DurationValue>,
    pub backoff: Option<DurationValue>,
    pub max_backoff: Option<DurationValue>,
    pub budget_percent: Option<i64>,
    pub budget_min: Option<i64>,
    pub idempotency_key: Option<bool>,
    pub hedge_after: Option<DurationValue>,
}

const CONDITIONS: &str =
    "\"connect-failure\", \"reset\", \"timeout\", \"gateway-error\", \"5xx\", \"grpc-unavailable\" or a status like 429";

fn condition(v: &Scalar) -> Result<RetryOn, String> {
    Ok(match v {
        Scalar::Int(n) => match u16::try_from(*n) {
            Ok(s) if (100..=599).contains(&s) => RetryOn::Status(s),
            _ => return Err(format!("{n} is not an HTTP status (100-599)")),
        },
        Scalar::Str(s) => match s.as_str() {
            "connect-failure" => RetryOn::ConnectFailure,
            "reset" => RetryOn::Reset,
            "timeout" => RetryOn::Timeout,
            "gateway-error" => RetryOn::GatewayError,
            "5xx" => RetryOn::Status5xx,
            "grpc-unavailable" => RetryOn::GrpcUnavailable,
            other => {
                return Err(format!(
                    "unknown condition \"{other}\" (expected {CONDITIONS})"
                ))
            }
        },
    })
}

/// `upstream.retry` (`p`: the table's key); the default policy when absent.
pub(super) fn retry(cx: &mut Ctx, p: &KeyPath, raw: Option<RawRetry>) -> RetryPolicy {
    let d = RetryPolicy::default();
    let Some(r) = raw else {
        return d;
    };
    let on = match r.on {
        None => d.on.clone(),
        Some(list) => {
            let mut on = Vec::new();
            for (i, v) in list.iter().enumerate() {
                match condition(&v.0) {
                    Ok(c) if on.contains(&c) => cx.err(p.key("on").index(i), "listed twice"),
                    Ok(c) => on.push(c),
                    Err(m) => cx.err(p.key("on").index(i), m),
                }
            }
            on
        }
    };
    let ms = |cx: &mut Ctx, key: &str, v: Option<DurationValue>, default| match v {
        None => default,
        Some(v) => cx.duration(p.key(key), Some(v), 0, true),
    };
    let backoff = ms(cx, "backoff", r.backoff, d.backoff);
    let max_backoff = ms(cx, "max_backoff", r.max_backoff, d.max_backoff.max(backoff));
    if max_backoff < backoff {
        cx.err(p.key("max_backoff"), "must be at least backoff");
    }
    RetryPolicy {
        on,
        per_try_timeout: r
            .per_try_timeout
            .map(|v| cx.duration(p.key("per_try_timeout"), Some(v), 1, false)),
        backoff,
        max_backoff: max_backoff.max(backoff),
        budget_percent: cx.int(
            p.key("budget_percent"),
            r.budget_percent,
            d.budget_percent,
            0,
            100,
        ),
        budget_min: cx.int(p.key("budget_min"), r.budget_min, d.budget_min, 0, 10_000),
        idempotency_key: r.idempotency_key.unwrap_or(d.idempotency_key),
        hedge_after: r.hedge_after.map(|v| match v.0 {
            Scalar::Str(s) if s == "p95" => HedgeAfter::P95,
            Scalar::Str(s) if super::units::parse_duration(&s).is_err() => {
                let m = format!("\"{s}\" is neither \"p95\" nor a duration like \"50ms\"");
                cx.err(p.key("hedge_after"), m);
                HedgeAfter::P95
            }
            other => HedgeAfter::Fixed(cx.duration(
                p.key("hedge_after"),
                Some(DurationValue(other)),
                1,
                false,
            )),
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::check_cases;

    #[test]
    fn retry_rules() {
        let up = |b: &str| {
            format!("[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\nretries = 2\n[upstream.retry]\n{b}\n")
        };
        check_cases(&[
            (&up("on = [\"connect-failure\", \"reset\", \"timeout\", \"gateway-error\", \"grpc-unavailable\", 429]\nper_try_timeout = \"250ms\"\nbackoff = \"10ms\"\nmax_backoff = \"1s\"\nbudget_percent = 25\nbudget_min = 5\nidempotency_key = false"), &[]),
            (&up("on = [\"5xx\", \"5xx\", \"sometimes\", 600]"), &[
                "upstream[1].retry.on[1]: listed twice",
                "upstream[1].retry.on[2]: unknown condition \"sometimes\" (expected \"connect-failure\", \"reset\", \"timeout\", \"gateway-error\", \"5xx\", \"grpc-unavailable\" or a status like 429)",
                "upstream[1].retry.on[3]: 600 is not an HTTP status (100-599)",
            ]),
            (&up("backoff = \"1s\"\nmax_backoff = \"100ms\""), &["upstream[1].retry.max_backoff: must be at least backoff"]),
            (&up("per_try_timeout = \"0s\""), &["upstream[1].retry.per_try_timeout: must be greater than 0"]),
            (&up("hedge_after = \"p95\""), &[]),
            (&up("hedge_after = \"40ms\""), &[]),
            (&up("hedge_after = \"soon\""), &["upstream[1].retry.hedge_after: \"soon\" is neither \"p95\" nor a duration like \"50ms\""]),
            (&up("budget_percent = 101"), &["upstream[1].retry.budget_percent: must be between 0 and 100, got 101"]),
        ]);
    }
}
