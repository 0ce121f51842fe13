//! Retry policy: which failures are retried, how long each try may take, the back-off between
//! tries, and the retry budget that keeps retries from multiplying an overload.
//!
//! Owns [`RetryPolicy`] (`[upstream.retry]`, validated in `config/retry.rs`), [`Budget`] (per
//! upstream, per worker: requests in the exchange and those on a retry now) and [`Tries`], one
//! request's attempt bookkeeping. Data flow: the exchange opens [`Tries`] when it starts (the
//! request counts as active in the budget until it ends); after a failed attempt it asks
//! [`Tries::retry`] with the [`Why`] — the answer weighs the policy's conditions, the attempts
//! left, whether the request may be sent again (idempotent, or with an `Idempotency-Key`, and
//! fully buffered; a connect failure sent nothing, so any method), and the budget (Envoy's:
//! retries in flight at most `budget_percent` of active requests, or `budget_min`); then sleeps
//! [`Tries::backoff`]: exponential from `backoff` up to `max_backoff`, half fixed and half random
//! ("equal jitter"), so retries of many requests spread out but never come back at once.

use std::cell::Cell;
use std::time::Duration;

/// One retry condition of `on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// The connect (or TLS handshake) failed or timed out: nothing was sent.
    ConnectFailure,
    /// The connection closed or reset before any response byte.
    Reset,
    /// A try ran past `per_try_timeout` without a response head.
    Timeout,
    /// 502, 503 or 504 from the upstream.
    GatewayError,
    /// Any 5xx from the upstream.
    Status5xx,
    /// This status from the upstream.
    Status(u16),
    /// A gRPC trailers-only answer with `grpc-status: 14` (UNAVAILABLE).
    GrpcUnavailable,
}

/// `[upstream.retry]` (and the upstream's `retries`), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub on: Vec<RetryOn>,
    /// Each try's limit for the response head; the whole request keeps `response_timeout`.
    pub per_try_timeout: Option<Duration>,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retries in flight at most this percentage of the requests in flight...
    pub budget_percent: u32,
    /// ... or this many, whichever is more (per worker).
    pub budget_min: u32,
    /// A request with an `Idempotency-Key` header may be retried whatever its method.
    pub idempotency_key: bool,
    /// Hedged requests (GET and HEAD): a second try goes to another endpoint when the first has
    /// no response head after this long.
    pub hedge_after: Option<HedgeAfter>,
}

/// `hedge_after`: a fixed delay, or the upstream's p95 latency on this worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    Fixed(Duration),
    P95,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            on: vec![RetryOn::ConnectFailure, RetryOn::Reset],
            per_try_timeout: None,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            budget_percent: 20,
            budget_min: 3,
            idempotency_key: true,
            hedge_after: None,
        }
    }
}

impl RetryPolicy {
    /// Whether a response with `status` (and, for gRPC, `grpc_status` from its head) is retried.
    pub fn retries_status(&self, status: u16, grpc_status: Option<&[u8]>) -> bool {
        self.on.iter().any(|c| match *c {
            RetryOn::GatewayError => matches!(status, 502..=504),
            RetryOn::Status5xx => (500..=599).contains(&status),
            RetryOn::Status(s) => s == status,
            RetryOn::GrpcUnavailable => grpc_status == Some(b"14"),
            _ => false,
        })
    }

    /// Whether any status could be retried (the exchange then looks at response heads).
    pub fn has_status_conditions(&self) -> bool {
        self.on.iter().any(|c| {
            matches!(
                c,
                RetryOn::GatewayError
                    | RetryOn::Status5xx
                    | RetryOn::Status(_)
                    | RetryOn::GrpcUnavailable
            )
        })
    }

    fn allows(&self, c: RetryOn) -> bool {
        self.on.contains(&c)
    }
}

/// Requests in the exchange, and those on a retry, for one upstream on one worker.
#[derive(Debug, Default)]
pub struct Budget {
    active: Cell<u32>,
    retrying: Cell<u32>,
    /// wyrand state for the back-off's random half.
    rng: Cell<u64>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Connect,
    Reset,
    Timeout,
    /// A response whose status the policy retries.
    Status,
}

/// What [`Tries::retry`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    /// Not retried: the condition is off, the request is not safe to send again, or no attempts
    /// are left.
    No,
    /// The budget is spent (counted in `coregate_upstream_retry_budget_exhausted_total`).
    NoBudget,
}

/// One request's tries against one upstream.
pub struct Tries<'a> {
    policy: &'a RetryPolicy,
    budget: &'a Budget,
    /// Extra attempts left.
    left: u32,
    /// The request may be sent again (idempotent or keyed, and fully buffered).
    resendable: bool,
    /// This request counts in `budget.retrying`.
    retrying: bool,
    /// Retries made (for the back-off's exponent).
    made: u32,
}

impl<'a> Tries<'a> {
    pub fn new(
        policy: &'a RetryPolicy,
        budget: &'a Budget,
        retries: u32,
        resendable: bool,
    ) -> Self {
        budget.active.set(budget.active.get() + 1);
        Tries {
            policy,
            budget,
            left: retries,
            resendable,
            retrying: false,
            made: 0,
        }
    }

    /// May the request go again after an attempt failed for `why`? A yes takes one attempt.
    pub fn retry(&mut self, why: Why) -> Verdict {
        let (cond_on, safe) = match why {
            // nothing reached the upstream: any method, when the body is still at hand
            Why::Connect => (self.policy.allows(RetryOn::ConnectFailure), true),
            Why::Reset => (self.policy.allows(RetryOn::Reset), self.resendable),
            Why::Timeout => (self.policy.allows(RetryOn::Timeout), self.resendable),
            Why::Status => (true, self.resendable),
        };
        if !cond_on || !safe || self.left == 0 {
            return Verdict::No;
        }
        if !self.retrying {
            let b = self.budget;
            let cap = (u64::from(b.active.get()) * u64::from(self.policy.budget_percent) / 100)
                .max(u64::from(self.policy.budget_min));
            if u64::from(b.retrying.get()) >= cap {
                return Verdict::NoBudget;
            }
            b.retrying.set(b.retrying.get() + 1);
            self.retrying = true;
        }
        self.left -= 1;
        self.made += 1;
        Verdict::Retry
    }

    /// How long to wait before the retry just granted: `backoff × 2^(n-1)` capped at
    /// `max_backoff`, of which half is fixed and half random.
    pub fn backoff(&mut self) -> Duration {
        let p = self.policy;
        let exp = self.made.saturating_sub(1).min(20);
        let cap = p.backoff.saturating_mul(1 << exp).min(p.max_backoff);
        let half = cap / 2;
        let rng = self.budget.rng.get().wrapping_add(0xa076_1d64_78bd_642f);
        self.budget.rng.set(rng);
        let t = u128::from(rng) * u128::from(rng ^ 0xe703_7ed1_a0b4_28db);
        let r = ((t >> 64) as u64) ^ (t as u64);
        let span = (cap - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { r % (span + 1) })
    }
}

impl Drop for Tries<'_> {
    fn drop(&mut self) {
        let b = self.budget;
        b.active.set(b.active.get().saturating_sub(1));
        if self.retrying {
            b.retrying.set(b.retrying.get().saturating_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: Vec<RetryOn>) -> RetryPolicy {
        RetryPolicy {
            on,
            budget_percent: 20,
            budget_min: 1,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn conditions_safety_and_attempts() {
        let p = policy(vec![RetryOn::ConnectFailure, RetryOn::GatewayError]);
        let b = Budget::default();
        let mut t = Tries::new(&p, &b, 2, false);
        assert_eq!(t.retry(Why::Reset), Verdict::No, "reset is not on");
        assert_eq!(t.retry(Why::Status), Verdict::No, "not resendable");
        assert_eq!(t.retry(Why::Connect), Verdict::Retry, "nothing was sent");
        assert_eq!(t.retry(Why::Connect), Verdict::Retry);
        assert_eq!(t.retry(Why::Connect), Verdict::No, "two retries, no more");
        assert!(p.retries_status(503, None) && !p.retries_status(500, None));
        assert!(!p.retries_status(200, Some(b"14")));
        let g = policy(vec![RetryOn::GrpcUnavailable, RetryOn::Status(429)]);
        assert!(g.retries_status(200, Some(b"14")) && g.retries_status(429, None));
        assert!(!g.retries_status(200, Some(b"4")));
    }

    #[test]
    fn the_budget_caps_retries_in_flight() {
        let p = policy(vec![RetryOn::Reset]);
        let b = Budget::default();
        // ten requests in flight: 20% of them (2) may be on a retry at once
        let mut all: Vec<Tries> = (0..10).map(|_| Tries::new(&p, &b, 3, true)).collect();
        let verdicts: Vec<Verdict> = all.iter_mut().map(|t| t.retry(Why::Reset)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Retry).count(), 2);
        assert_eq!(verdicts[2], Verdict::NoBudget);
        // a request already retrying keeps its place for its next retry
        assert_eq!(all[0].retry(Why::Reset), Verdict::Retry);
        all.truncate(1);
        assert_eq!((b.active.get(), b.retrying.get()), (1, 1));
        drop(all);
        assert_eq!((b.active.get(), b.retrying.get()), (0, 0));
        // alone, the floor allows one
        let mut t = Tries::new(&p, &b, 1, true);
        assert_eq!(t.retry(Why::Reset), Verdict::Retry);
    }

    #[test]
    fn backoff_grows_with_equal_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..policy(vec![RetryOn::Reset])
        };
        let b = Budget::default();
        for _ in 0..50 {
            let mut t = Tries::new(&p, &b, 5, true);
            let mut waits = Vec::new();
            for _ in 0..3 {
                assert_eq!(t.retry(Why::Reset), Verdict::Retry);
                waits.push(t.backoff().as_millis());
            }
            assert!((50..=100).contains(&waits[0]), "{waits:?}");
            assert!((100..=200).contains(&waits[1]), "{waits:?}");
            assert!((150..=300).contains(&waits[2]), "capped: {waits:?}");
        }
    }
}
