//! Circuit breaker of one upstream on one worker (`[upstream.circuit_breaker]`).
//!
//! Owns [`Breaker`]: the closed → open → half-open → closed state machine and its sliding window.
//! Data flow: the upstream target asks [`Breaker::admit`] before it touches the upstream; an open
//! breaker answers at once (503 with `Retry-After`, the route's fallback once that exists) and
//! the upstream sees nothing. Every admitted call's outcome comes back through
//! [`Breaker::record`]: connect failures, resets and timeouts always count as failures, responses
//! count when their status is in `failure_statuses`, and calls slower than `slow_call_duration`
//! count as slow.
//!
//! - **Closed**: calls are counted in a time window (`window`, kept as 10 buckets, so the window
//!   slides in tenths) or a count window (the last `window_calls` outcomes, a ring). Once the
//!   window holds at least `min_calls`, a failure share of `failure_rate` or more, or a slow share
//!   of `slow_call_rate` or more, trips it.
//! - **Open** for `open_for`, doubled on each trip that follows a failed half-open trial, up to
//!   `open_for_max` (Envoy's and resilience4j's exponential backoff).
//! - **Half-open**: `half_open_calls` trial calls are let through; when all succeed the breaker
//!   closes with an empty window, the first failure re-opens it. Other calls are refused meanwhile.
//!
//! Per worker, no locks: the worker's tasks share it through the upstream's `RefCell`, never across
//! an await. Cost on the request path: one branch and, closed, a few integer updates.
//!
//! `scope = "cluster"`: a local trip is also noted for publication ([`Breaker::take_trip`]), and
//! a trip published elsewhere opens this breaker too ([`Breaker::force_open`]); the worker's
//! sync task (`cluster_breaker.rs`) carries both through Redis.

use std::time::{Duration, Instant};

/// `[upstream.circuit_breaker]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub failure_rate: f64,
    /// 1.0 + a little: never trips on slowness unless set.
    pub slow_call_rate: f64,
    pub slow_call_duration: Duration,
    pub min_calls: u32,
    pub window: WindowKind,
    pub open_for: Duration,
    pub open_for_max: Duration,
    pub half_open_calls: u32,
    /// Response statuses that count as failures (inclusive ranges: a status, or a class).
    pub failure_statuses: Vec<(u16, u16)>,
    /// gRPC statuses (of a trailers-only answer's head) that count as failures.
    pub failure_grpc_statuses: Vec<u8>,
    /// `scope = "cluster"`: trips are shared through Redis.
    pub cluster: bool,
}

/// How the window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The calls of the last `Duration`.
    Time(Duration),
    /// The last N calls.
    Count(u32),
}

/// What `admit` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// A half-open trial call: its outcome decides the breaker.
    Trial,
    /// Open: refuse, and the client may retry after this long.
    No(Duration),
}

/// The breaker's state, as the metrics gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// One call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub failed: bool,
    pub slow: bool,
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    calls: u32,
    failed: u32,
    slow: u32,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        self.calls += 1;
        self.failed += o.failed as u32;
        self.slow += o.slow as u32;
    }
}

/// The window: time buckets, or a ring of outcomes.
#[derive(Debug, Clone)]
enum Window {
    Time {
        /// Bucket width in nanoseconds.
        width: u64,
        buckets: [Counts; BUCKETS],
        /// Index of the bucket `since` belongs to, counted from the breaker's start.
        current: u64,
        start: Instant,
    },
    Count {
        ring: Vec<Outcome>,
        next: usize,
        total: Counts,
    },
}

impl Window {
    fn new(kind: WindowKind, now: Instant) -> Window {
        match kind {
            WindowKind::Time(d) => Window::Time {
                width: (d / BUCKETS as u32)
                    .max(Duration::from_millis(1))
                    .as_nanos() as u64,
                buckets: [Counts::default(); BUCKETS],
                current: 0,
                start: now,
            },
            WindowKind::Count(n) => Window::Count {
                ring: Vec::with_capacity(n as usize),
                next: 0,
                total: Counts::default(),
            },
        }
    }

    /// Moves a time window on to `now`, emptying the buckets that fell out.
    fn advance(&mut self, now: Instant) {
        if let Window::Time {
            width,
            buckets,
            current,
            start,
        } = self
        {
            let idx = now.saturating_duration_since(*start).as_nanos() as u64 / *width;
            if idx > *current {
                let stale = (idx - *current).min(BUCKETS as u64);
                for k in 1..=stale {
                    buckets[((*current + k) % BUCKETS as u64) as usize] = Counts::default();
                }
                *current = idx;
            }
        }
    }

    fn add(&mut self, o: Outcome, cap: u32) {
        match self {
            Window::Time {
                buckets, current, ..
            } => buckets[(*current % BUCKETS as u64) as usize].add(o),
            Window::Count { ring, next, total } => {
                if ring.len() < cap as usize {
                    ring.push(o);
                } else {
                    let old = ring[*next];
                    total.calls -= 1;
                    total.failed -= old.failed as u32;
                    total.slow -= old.slow as u32;
                    ring[*next] = o;
                    *next = (*next + 1) % ring.len();
                }
                total.add(o);
            }
        }
    }

    fn totals(&self) -> Counts {
        match self {
            Window::Time { buckets, .. } => buckets.iter().fold(Counts::default(), |mut t, b| {
                t.calls += b.calls;
                t.failed += b.failed;
                t.slow += b.slow;
                t
            }),
            Window::Count { total, .. } => *total,
        }
    }
}

#[derive(Debug, Clone)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    phase: Phase,
    window: Window,
    /// How long the next trip opens the breaker (grows after failed trials).
    next_open: Duration,
    /// A local trip not yet published (cluster scope): how long it opened the breaker.
    unpublished: Option<Duration>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Breaker {
        Breaker {
            window: Window::new(cfg.window, now),
            next_open: cfg.open_for,
            phase: Phase::Closed,
            unpublished: None,
            cfg,
        }
    }

    /// This breaker for the next generation of its upstream (a reload or DNS change that left
    /// the breaker's config alone): window, phase and backoff carry over; a half-open phase
    /// starts its trials afresh, since the trials in flight report to this one.
    pub fn successor(&self) -> Breaker {
        let mut next = self.clone();
        if let Phase::HalfOpen { .. } = next.phase {
            next.phase = Phase::HalfOpen {
                admitted: 0,
                succeeded: 0,
            };
        }
        next
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// May a call go to the upstream? `now` is only read when the breaker is not closed. An open
    /// breaker whose time is up turns half-open.
    pub fn admit(&mut self, now: impl FnOnce() -> Instant) -> Admit {
        match &mut self.phase {
            Phase::Closed => Admit::Yes,
            Phase::Open { until } => {
                let now = now();
                if now < *until {
                    return Admit::No(*until - now);
                }
                self.phase = Phase::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                Admit::Trial
            }
            Phase::HalfOpen { admitted, .. } if *admitted < self.cfg.half_open_calls => {
                *admitted += 1;
                Admit::Trial
            }
            // trials are out: the rest wait for their verdict (about one call's time)
            Phase::HalfOpen { .. } => Admit::No(Duration::from_secs(1)),
        }
    }

    /// What an admitted call came to (`trial`: it was admitted as one). Returns the state it
    /// changed to, if it changed.
    pub fn record(&mut self, now: Instant, o: Outcome, trial: bool) -> Option<State> {
        let bad = o.failed || o.slow;
        match &mut self.phase {
            Phase::HalfOpen {
                succeeded,
                admitted: _,
            } if trial => {
                if bad {
                    // the upstream is still unwell: open again, for longer
                    self.next_open = (self.next_open * 2).min(self.cfg.open_for_max);
                    self.open(now);
                    return Some(State::Open);
                }
                *succeeded += 1;
                if *succeeded >= self.cfg.half_open_calls {
                    self.phase = Phase::Closed;
                    self.window = Window::new(self.cfg.window, now);
                    self.next_open = self.cfg.open_for;
                    return Some(State::Closed);
                }
                None
            }
            Phase::Closed => {
                self.window.advance(now);
                let cap = match self.cfg.window {
                    WindowKind::Count(n) => n,
                    WindowKind::Time(_) => 0,
                };
                self.window.add(o, cap);
                let t = self.window.totals();
                if t.calls < self.cfg.min_calls.max(1) {
                    return None;
                }
                let rate = |n: u32| f64::from(n) / f64::from(t.calls);
                if rate(t.failed) >= self.cfg.failure_rate
                    || rate(t.slow) >= self.cfg.slow_call_rate
                {
                    self.open(now);
                    return Some(State::Open);
                }
                None
            }
            // a call admitted before the breaker opened (or a non-trial during half-open)
            _ => None,
        }
    }

    /// A trial call that ended with no verdict (the client left, its request was bad): its slot
    /// goes back, so another call can try.
    pub fn abandon(&mut self, trial: bool) {
        if let Phase::HalfOpen { admitted, .. } = &mut self.phase {
            if trial {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }

    /// The outcome of a call that got a response with `status` (and, on a gRPC answer that
    /// came trailers-only, `grpc` from its head) after `took`.
    pub fn outcome(&self, status: u16, grpc: Option<u8>, took: Duration) -> Outcome {
        let listed = |&(lo, hi): &(u16, u16)| (lo..=hi).contains(&status);
        let grpc_failed = grpc.is_some_and(|g| self.cfg.failure_grpc_statuses.contains(&g));
        Outcome {
            failed: self.cfg.failure_statuses.iter().any(listed) || grpc_failed,
            slow: took >= self.cfg.slow_call_duration,
        }
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open {
            until: now + self.next_open,
        };
        if self.cfg.cluster {
            self.unpublished = Some(self.next_open);
        }
    }

    /// The open time of a local trip not yet published (cluster scope), once.
    pub fn take_trip(&mut self) -> Option<Duration> {
        self.unpublished.take()
    }

    /// Puts back a trip whose publication failed, for the next sync.
    pub fn note_trip(&mut self, open_for: Duration) {
        self.unpublished = Some(open_for);
    }

    /// A trip published elsewhere, open for `left` more: a closed or half-open breaker opens
    /// until then (its trials' verdicts no longer count). Returns whether it was closed.
    pub fn force_open(&mut self, now: Instant, left: Duration) -> bool {
        let until = now + left;
        match self.phase {
            Phase::Open { until: mine } if mine >= until => false,
            Phase::Open { .. } => {
                self.phase = Phase::Open { until };
                false
            }
            Phase::HalfOpen { .. } => {
                self.phase = Phase::Open { until };
                false
            }
            Phase::Closed => {
                self.phase = Phase::Open { until };
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(window: WindowKind) -> BreakerConfig {
        BreakerConfig {
            failure_rate: 0.5,
            slow_call_rate: 1.1,
            slow_call_duration: Duration::from_secs(60),
            min_calls: 4,
            window,
            open_for: Duration::from_secs(5),
            open_for_max: Duration::from_secs(20),
            half_open_calls: 2,
            failure_statuses: vec![(500, 500), (502, 504)],
            failure_grpc_statuses: vec![],
            cluster: false,
        }
    }

    const OK: Outcome = Outcome {
        failed: false,
        slow: false,
    };
    const FAIL: Outcome = Outcome {
        failed: true,
        slow: false,
    };

    #[test]
    fn trips_at_the_rate_once_min_calls_are_in() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(WindowKind::Time(Duration::from_secs(10))), t0);
        assert_eq!(b.record(t0, FAIL, false), None);
        assert_eq!(b.record(t0, FAIL, false), None);
        assert_eq!(b.record(t0, OK, false), None, "3 calls < min_calls");
        assert_eq!(
            b.record(t0, FAIL, false),
            Some(State::Open),
            "3 of 4 failed"
        );
        assert_eq!(
            b.admit(|| t0 + Duration::from_secs(1)),
            Admit::No(Duration::from_secs(4))
        );
    }

    #[test]
    fn old_calls_slide_out_of_a_time_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(WindowKind::Time(Duration::from_secs(10))), t0);
        for _ in 0..3 {
            b.record(t0, FAIL, false);
        }
        // 11 s later those failures are gone: 3 successes and a failure do not trip
        let t1 = t0 + Duration::from_secs(11);
        for _ in 0..3 {
            assert_eq!(b.record(t1, OK, false), None);
        }
        assert_eq!(b.record(t1, FAIL, false), None);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn count_window_keeps_the_last_n() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(WindowKind::Count(4)), t0);
        assert_eq!(b.record(t0, FAIL, false), None);
        for _ in 0..7 {
            assert_eq!(b.record(t0, OK, false), None, "at most 1 of 4 failed");
        }
        // the first failure has left the window: one more is 25%, a second 50%
        assert_eq!(b.record(t0, FAIL, false), None);
        assert_eq!(
            b.record(t0, FAIL, false),
            Some(State::Open),
            "2 of the last 4"
        );
    }

    #[test]
    fn half_open_trials_close_or_reopen_for_longer() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(WindowKind::Count(4)), t0);
        for _ in 0..4 {
            b.record(t0, FAIL, false);
        }
        assert_eq!(b.state(), State::Open);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(|| t1), Admit::Trial);
        assert_eq!(b.admit(|| t1), Admit::Trial);
        assert!(
            matches!(b.admit(|| t1), Admit::No(_)),
            "only half_open_calls trials"
        );
        assert_eq!(b.record(t1, FAIL, true), Some(State::Open));
        // re-opened for twice as long
        assert!(matches!(
            b.admit(|| t1 + Duration::from_secs(9)),
            Admit::No(_)
        ));
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(b.admit(|| t2), Admit::Trial);
        assert_eq!(b.admit(|| t2), Admit::Trial);
        assert_eq!(b.record(t2, OK, true), None);
        assert_eq!(b.record(t2, OK, true), Some(State::Closed));
        assert_eq!(b.admit(|| t2), Admit::Yes);
        // and the next trip is back to open_for
        for _ in 0..4 {
            b.record(t2, FAIL, false);
        }
        assert_eq!(b.admit(|| t2 + Duration::from_secs(5)), Admit::Trial);
    }

    #[test]
    fn a_successor_keeps_the_state_but_not_the_trials_in_flight() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(WindowKind::Count(4)), t0);
        for _ in 0..4 {
            b.record(t0, FAIL, false);
        }
        // open: the successor is open until the same moment
        let next = b.successor();
        assert_eq!(next.state(), State::Open);
        assert!(matches!(b.successor().admit(|| t0), Admit::No(_)));
        // half-open with both trials out: they report to `b`, the successor may try again
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(|| t1), Admit::Trial);
        assert_eq!(b.admit(|| t1), Admit::Trial);
        assert!(matches!(b.admit(|| t1), Admit::No(_)));
        let mut next = b.successor();
        assert_eq!(next.state(), State::HalfOpen);
        assert_eq!(next.admit(|| t1), Admit::Trial);
        assert_eq!(next.record(t1, OK, true), None);
        assert_eq!(next.admit(|| t1), Admit::Trial);
        assert_eq!(next.record(t1, OK, true), Some(State::Closed));
    }

    #[test]
    fn slow_calls_trip_when_configured() {
        let t0 = Instant::now();
        let mut c = cfg(WindowKind::Count(4));
        c.slow_call_rate = 0.75;
        let mut b = Breaker::new(c, t0);
        let slow = Outcome {
            failed: false,
            slow: true,
        };
        b.record(t0, slow, false);
        b.record(t0, slow, false);
        b.record(t0, OK, false);
        assert_eq!(b.record(t0, slow, false), Some(State::Open));
    }
}
