//! Token-bucket maths, as a theoretical arrival time (GCRA) so that one `u64` holds a whole bucket.
//!
//! A bucket of capacity B refilled at r tokens per second is stored as `tat` (theoretical arrival
//! time, ns): the instant at which it would be full again. With T = 1/r (ns per token) and
//! τ = B·T, the tokens held at `now` are `(now + τ - max(tat, now)) / T`, so
//! `T_new = min(B, T + r·Δt) - c` becomes `tat' = max(tat, now) + c·T`, allowed iff
//! `tat' - now <= τ`. Any `tat <= now` is a full bucket: an untouched key and a key idle long enough
//! to refill are the same state, which is what lets the key tables reuse idle slots without a sweep.
//!
//! Everything here is pure (no clocks, no atomics) so it can be tested exactly; the atomic CAS
//! loops in `table.rs` and the Redis script in `cluster.rs` apply the same formulas. A clock that
//! goes backwards (`now` below a time already used) is harmless: `max(tat, now)` never moves a
//! bucket back, and tokens are never created by a smaller `now`.

/// A bucket's shape: ns per token and burst tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Emission interval T: ns per token (at least 1).
    pub interval: u64,
    /// Burst tolerance τ = B·T, ns (saturating).
    pub tau: u64,
    /// Capacity B, tokens.
    pub burst: u64,
}

impl Shape {
    /// `tokens` per `per_ns`, capacity `burst` (scaled by `share` for a node's fallback share).
    pub fn new(tokens: u64, per_ns: u64, burst: u64, share: f64) -> Shape {
        let tokens = ((tokens as f64 * share).floor() as u64).max(1);
        let burst = ((burst as f64 * share).floor() as u64).max(1);
        let interval = (per_ns / tokens).max(1);
        Shape {
            interval,
            tau: burst.saturating_mul(interval),
            burst,
        }
    }

    /// Whole tokens in the bucket at `now`.
    #[inline]
    pub fn available(&self, tat: u64, now: u64) -> u64 {
        let base = tat.max(now);
        now.saturating_add(self.tau).saturating_sub(base) / self.interval
    }

    /// ns from `now` until the bucket is full again.
    #[inline]
    pub fn until_full(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_sub(now)
    }
}

/// The result of [`take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// The bucket's new state (unchanged when nothing was granted).
    pub tat: u64,
    /// Tokens granted: 0, or between `min` and `want`.
    pub granted: u64,
    /// When nothing was granted: the earliest instant `min` tokens will be there.
    pub retry_at: u64,
}

/// Takes up to `want` tokens, and at least `min` (else none): a lease of a batch, or one request's
/// cost when `want == min`.
#[inline]
pub fn take(shape: &Shape, tat: u64, now: u64, want: u64, min: u64) -> Take {
    let min = min.max(1);
    let base = tat.max(now);
    let avail = now.saturating_add(shape.tau).saturating_sub(base) / shape.interval;
    if avail < min {
        let retry_at = base
            .saturating_add(min.saturating_mul(shape.interval))
            .saturating_sub(shape.tau);
        return Take {
            tat,
            granted: 0,
            retry_at: retry_at.max(now),
        };
    }
    let granted = want.min(avail);
    Take {
        tat: base + granted * shape.interval,
        granted,
        retry_at: now,
    }
}

/// Puts `tokens` back (a lease a core did not use); a full bucket stays full.
#[inline]
pub fn give_back(shape: &Shape, tat: u64, now: u64, tokens: u64) -> u64 {
    let back = tat.saturating_sub(tokens.saturating_mul(shape.interval));
    back.max(tat.min(now))
}

/// Lease size: how many tokens a core takes from the shared budget at once.
///
/// A lease is taken from the shared bucket, so leased tokens can never be admitted twice; they can
/// only be early. Over any interval Δt the gateway admits at most `r·Δt + B + N·L` (L = lease,
/// N = cores), and from the start at most `r·t + B` exactly. With L at most B/(4N) the extra burst
/// is at most B/4, and L is also capped at `window` worth of refill so a slow bucket hands out one
/// token at a time.
pub fn lease_size(shape: &Shape, cores: usize, window_ns: u64) -> u64 {
    let by_burst = shape.burst / (4 * cores.max(1) as u64);
    let by_rate = window_ns / shape.interval;
    by_burst.min(by_rate).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn shape(rate_per_s: u64, burst: u64) -> Shape {
        Shape::new(rate_per_s, S, burst, 1.0)
    }

    /// Takes `c` at `now` and returns (granted?, new tat).
    fn req(sh: &Shape, tat: u64, now: u64, c: u64) -> (bool, u64) {
        let t = take(sh, tat, now, c, c);
        (t.granted == c, t.tat)
    }

    #[test]
    fn a_new_bucket_is_full_and_drains_by_cost() {
        let sh = shape(10, 5);
        assert_eq!(sh.available(0, 100 * S), 5);
        let mut tat = 0;
        let now = 100 * S;
        for i in 0..5 {
            let (ok, t) = req(&sh, tat, now, 1);
            assert!(ok, "request {i}");
            tat = t;
        }
        assert!(!req(&sh, tat, now, 1).0, "burst spent");
        assert_eq!(sh.available(tat, now), 0);
    }

    #[test]
    fn refill_follows_the_rate_and_caps_at_burst() {
        let sh = shape(10, 5); // one token per 100 ms
        let now = 10 * S;
        let (_, tat) = (0..5).fold((true, 0), |(_, t), _| req(&sh, t, now, 1));
        assert_eq!(sh.available(tat, now + 99_999_999), 0);
        assert_eq!(sh.available(tat, now + 100_000_000), 1);
        assert_eq!(sh.available(tat, now + 350_000_000), 3);
        assert_eq!(sh.available(tat, now + 60 * S), 5, "never more than B");
        assert_eq!(sh.until_full(tat, now), 500_000_000);
    }

    #[test]
    fn cost_above_one_needs_that_many_tokens() {
        let sh = shape(10, 5);
        let now = S;
        let (ok, tat) = req(&sh, 0, now, 3);
        assert!(ok);
        assert_eq!(sh.available(tat, now), 2);
        let t = take(&sh, tat, now, 3, 3);
        assert_eq!(t.granted, 0, "2 tokens do not pay for 3");
        assert_eq!(t.tat, tat, "a refusal takes nothing");
        assert_eq!(t.retry_at, now + 100_000_000, "one more token in 100 ms");
        assert!(req(&sh, tat, t.retry_at, 3).0);
        assert!(!req(&sh, 0, now, 6).0, "cost above burst never passes");
    }

    #[test]
    fn leases_grant_what_is_there() {
        let sh = shape(100, 10);
        let t = take(&sh, 0, S, 4, 1);
        assert_eq!(t.granted, 4);
        let t = take(&sh, t.tat, S, 50, 1);
        assert_eq!(t.granted, 6, "partial lease: the rest of the bucket");
        let t2 = take(&sh, t.tat, S, 50, 1);
        assert_eq!((t2.granted, t2.retry_at), (0, S + 10_000_000));
    }

    #[test]
    fn clock_going_backwards_creates_no_tokens() {
        let sh = shape(10, 2);
        let now = 50 * S;
        let (_, tat) = req(&sh, 0, now, 1);
        let (_, tat) = req(&sh, tat, now, 1);
        // a core whose clock read is older than the last update
        let earlier = now - 3 * S;
        assert_eq!(sh.available(tat, earlier), 0);
        assert!(!req(&sh, tat, earlier, 1).0);
        assert_eq!(take(&sh, tat, earlier, 1, 1).tat, tat, "state unchanged");
    }

    #[test]
    fn giving_back_restores_tokens_but_not_past_full() {
        let sh = shape(10, 5);
        let now = S;
        let t = take(&sh, 0, now, 4, 1);
        let back = give_back(&sh, t.tat, now, 3);
        assert_eq!(sh.available(back, now), 4);
        let back = give_back(&sh, back, now, 100);
        assert_eq!(sh.available(back, now), 5);
        assert!(back <= now, "full bucket");
        // giving back to an already full bucket leaves it full
        assert_eq!(give_back(&sh, 0, now, 3), 0);
    }

    #[test]
    fn long_run_admission_is_rate_times_time_plus_burst() {
        // one request every 1 ms against 100/s, burst 20, for 10 s
        let sh = shape(100, 20);
        let (mut tat, mut ok) = (0, 0u64);
        let start = 5 * S;
        for i in 0..10_000u64 {
            let (g, t) = req(&sh, tat, start + i * 1_000_000, 1);
            tat = t;
            ok += g as u64;
        }
        // 9.999 s of refill (1000 tokens, rounded down) + the burst
        assert_eq!(ok, 20 + 999);
    }

    #[test]
    fn shapes_and_leases() {
        let sh = Shape::new(5, 60 * S, 5, 1.0); // 5/min
        assert_eq!(sh.interval, 12 * S);
        let half = Shape::new(100, S, 200, 0.5);
        assert_eq!((half.burst, half.interval), (100, 20_000_000));
        let big = shape(1_000_000, 1_000_000);
        assert_eq!(lease_size(&big, 2, 10_000_000), 10_000, "10 ms of refill");
        assert_eq!(lease_size(&shape(100, 200), 2, 10_000_000), 1);
        assert_eq!(lease_size(&shape(1000, 40), 2, 10_000_000), 5, "B/(4N)");
        assert_eq!(lease_size(&shape(1, 1), 8, S), 1);
    }
}
