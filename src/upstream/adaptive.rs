//! Adaptive concurrency (`[upstream.adaptive_concurrency]`): a limit on requests in flight to an
//! upstream that follows its latency, so the gateway sheds before queues build (Netflix's
//! concurrency-limits Gradient2, the idea behind Envoy's adaptive concurrency filter).
//!
//! Owns [`AdaptiveLimit`], one per upstream per worker. Data flow: the upstream target asks
//! [`AdaptiveLimit::admit`] before it calls the upstream (a request past the limit is shed at
//! once: the route's fallback or 503 with `Retry-After`), and reports the call's latency to the
//! response head, or its failure, with [`AdaptiveLimit::done`]. Every `window` of samples:
//! - the short-term latency is the window's mean; the long-term latency follows it down at once
//!   and up only by 1/`long_window` of the gap per window, so it stays near the upstream's
//!   unloaded latency while a queue builds, yet accepts a lasting change;
//! - gradient = clamp(`tolerance` × long / short, 0.5, 1): 1 while latency stays near its usual,
//!   smaller as it grows;
//! - new limit = limit × gradient + √limit (room to probe upward), smoothed by `smoothing` and
//!   kept in [`min_limit`, `max_limit`]; it only grows while the limit is actually used (at least
//!   half of it was in flight during the window).
//!
//! Per worker, no locks; one comparison on admit and a few float operations per sample.

use std::time::Duration;

/// `[upstream.adaptive_concurrency]`, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    pub min_limit: u32,
    pub max_limit: u32,
    pub initial_limit: u32,
    /// Latency may grow to this multiple of its long-term value before the limit shrinks.
    pub tolerance: f64,
    /// Weight of each new limit against the old.
    pub smoothing: f64,
    /// Samples per window.
    pub window: u32,
    /// Windows the long-term latency averages over.
    pub long_window: u32,
}

/// One upstream's adaptive limit on one worker.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    cfg: AdaptiveConfig,
    limit: f64,
    in_flight: u32,
    /// The most in flight during the current window.
    peak: u32,
    /// Long-term latency (µs); 0 until the first window.
    long_us: f64,
    sum_us: f64,
    samples: u32,
}

impl AdaptiveLimit {
    pub fn new(cfg: AdaptiveConfig) -> AdaptiveLimit {
        AdaptiveLimit {
            limit: f64::from(cfg.initial_limit),
            cfg,
            in_flight: 0,
            peak: 0,
            long_us: 0.0,
            sum_us: 0.0,
            samples: 0,
        }
    }

    /// This limit for the next generation of its upstream (its config unchanged): the limit
    /// and the long-term latency carry over; calls in flight report to this one, so the
    /// successor starts with none and a fresh window.
    pub fn successor(&self) -> AdaptiveLimit {
        AdaptiveLimit {
            in_flight: 0,
            peak: 0,
            sum_us: 0.0,
            samples: 0,
            ..self.clone()
        }
    }

    /// The limit now (whole requests).
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Takes a slot, or false when the limit is reached (shed the request).
    pub fn admit(&mut self) -> bool {
        if self.in_flight >= self.limit() {
            return false;
        }
        self.in_flight += 1;
        self.peak = self.peak.max(self.in_flight);
        true
    }

    /// An admitted call ended: `took` is its latency to the response head, None when it failed
    /// (a failure gives back its slot and no sample).
    pub fn done(&mut self, took: Option<Duration>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(took) = took else {
            return;
        };
        self.sum_us += took.as_secs_f64() * 1e6;
        self.samples += 1;
        if self.samples >= self.cfg.window {
            self.update();
        }
    }

    fn update(&mut self) {
        let c = self.cfg;
        let short = (self.sum_us / f64::from(self.samples)).max(1.0);
        let used = f64::from(self.peak) >= self.limit / 2.0;
        (self.sum_us, self.samples, self.peak) = (0.0, 0, self.in_flight);
        if self.long_us == 0.0 {
            self.long_us = short;
            return;
        }
        if short < self.long_us {
            // faster than we are used to: that is the upstream's unloaded latency
            self.long_us = short;
        } else {
            // slower: believed only slowly (a lasting change is accepted over ~long_window
            // windows; a queue building up is not)
            self.long_us += (short - self.long_us) / f64::from(c.long_window.max(1));
        }
        let gradient = (c.tolerance * self.long_us / short).clamp(0.5, 1.0);
        let mut next = self.limit * gradient + self.limit.sqrt();
        if !used && next > self.limit {
            next = self.limit;
        }
        let smoothed = self.limit * (1.0 - c.smoothing) + next * c.smoothing;
        self.limit = smoothed.clamp(f64::from(c.min_limit), f64::from(c.max_limit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdaptiveConfig {
        AdaptiveConfig {
            min_limit: 2,
            max_limit: 200,
            initial_limit: 20,
            tolerance: 1.5,
            smoothing: 0.5,
            window: 10,
            long_window: 100,
        }
    }

    /// Runs `windows` windows with the limit fully used and latency `lat(limit)`.
    fn drive(a: &mut AdaptiveLimit, windows: usize, lat: impl Fn(u32) -> Duration) {
        for _ in 0..windows {
            let n = a.limit();
            for _ in 0..n {
                assert!(a.admit());
            }
            for _ in 0..n.max(a.cfg.window) {
                if a.in_flight == 0 {
                    assert!(a.admit());
                }
                a.done(Some(lat(n)));
            }
        }
    }

    #[test]
    fn grows_while_latency_holds_and_shrinks_when_it_climbs() {
        let mut a = AdaptiveLimit::new(cfg());
        drive(&mut a, 30, |_| Duration::from_millis(10));
        let grown = a.limit();
        assert!(grown > 40, "flat latency: the limit grows ({grown})");
        // the upstream saturates: latency grows with concurrency past 25
        drive(&mut a, 20, |n| {
            Duration::from_millis(10 * u64::from(n.max(25)) / 25)
        });
        let settled = a.limit();
        assert!(settled < grown && settled <= 60, "{grown} -> {settled}");
        assert!(settled >= 2);
    }

    #[test]
    fn sheds_past_the_limit_and_failures_give_slots_back() {
        let mut a = AdaptiveLimit::new(AdaptiveConfig {
            initial_limit: 2,
            ..cfg()
        });
        assert!(a.admit() && a.admit());
        assert!(!a.admit(), "at the limit");
        a.done(None);
        assert!(a.admit());
    }

    #[test]
    fn a_successor_keeps_what_was_learnt_but_not_the_calls_in_flight() {
        let mut a = AdaptiveLimit::new(cfg());
        drive(&mut a, 30, |_| Duration::from_millis(10));
        let learnt = a.limit();
        assert!(a.admit() && a.admit());
        let mut next = a.successor();
        assert_eq!(next.limit(), learnt);
        assert_eq!(next.long_us, a.long_us);
        assert_eq!(next.in_flight, 0, "the two calls report to the old limit");
        assert!((0..learnt).all(|_| next.admit()));
        assert!(!next.admit(), "the whole learnt limit, no more");
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let mut a = AdaptiveLimit::new(cfg());
        for _ in 0..500 {
            assert!(a.admit());
            a.done(Some(Duration::from_millis(5)));
        }
        assert_eq!(
            a.limit(),
            20,
            "one request at a time never proves 20 is too few"
        );
    }
}
