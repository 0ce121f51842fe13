//! Per-worker load balancing with passive health checks.
//!
//! Owns endpoint selection for one upstream on one worker thread. Every worker builds its own
//! [`Balancer`] per upstream from the shared [`UpstreamConfig`], so the state (rotation cursor, smooth
//! weights, in-flight counts, failure counts, ejection deadlines, PRNG) is plain fields behind
//! `&mut self`: no atomics, no locks, no cross-core traffic.
//!
//! Key parts:
//! - [`Balancer::pick`] applies the policy over the *eligible* endpoints: not ejected, and not yet
//!   tried by this request when an untried healthy endpoint exists (else tried healthy ones are
//!   eligible again). Policies: round robin (cursor rotation), weighted (nginx smooth weighted round
//!   robin), least_conn (fewest in-flight, ties by rotation), p2c (two distinct random candidates,
//!   fewer in-flight wins, ties random) and hash (rendezvous/HRW: highest `score(key, endpoint)` wins,
//!   so ejecting an endpoint moves only its own keys; the score salts with the endpoint's address,
//!   not its position, so adding or removing endpoints moves only the keys that must move). Hash
//!   without a key falls back to round robin.
//! - Passive health (nginx `max_fails` / `fail_timeout`): [`Balancer::report_failure`] counts failures
//!   in a window of `fail_timeout` starting at the first failure; reaching `max_fails` ejects the
//!   endpoint for `fail_timeout`. It returns automatically once the deadline passes (checked lazily
//!   against the caller's `now`). [`Balancer::report_success`] clears the count. `max_fails == 0`
//!   disables ejection.
//! - The safety floor (nginx never ejects a sole server; Envoy's `max_ejection_percent` and panic
//!   threshold): an ejection that would leave no healthy endpoint, or more than
//!   `max_ejection_percent` of them ejected, is not made ([`Ejection::Spared`]); and when fewer than
//!   `panic_threshold` percent of the endpoints are healthy, `pick` ignores health and balances over
//!   all of them ("panic", [`Balancer::last_pick_panicked`]) rather than overload the few left.
//! - [`hash_key`]: a fast, platform-independent 64-bit hash for request keys (header value, client IP).
//!
//! Flow: the proxy hashes the key if the policy needs one, calls `pick` (None: every endpoint is
//! ejected -> 503), brackets the upstream exchange with `on_request_start` / `on_request_end`, and
//! reports connect failures / early resets (`report_failure`) or a good response (`report_success`).
//! A retry passes the bitmask of indexes already tried.
//!
//! Errors: none. Methods taking an endpoint index panic if it is out of range (indexes come from
//! `pick`, so that is a bug).
//!
//! Performance: `pick` never allocates and is O(endpoints) with small constants (two linear scans at
//! most; p2c maps its two random ranks in one scan). The `tried` mask covers indexes 0..64; larger
//! upstreams work, but indexes >= 64 never count as tried.

use crate::config::{Balance, UpstreamConfig};
use std::time::{Duration, Instant};

/// Per-endpoint state on this worker.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// Configured weight (>= 1).
    weight: i64,
    /// Smooth weighted round robin's running weight.
    current: i64,
    in_flight: u32,
    /// Failures counted in the window that began at `window_start`.
    fails: u32,
    window_start: Option<Instant>,
    /// Ejected while `now < ejected_until`.
    ejected_until: Option<Instant>,
    /// Per-endpoint salt for rendezvous hashing: [`endpoint_salt`] of its address, so a key's
    /// endpoint is the same on every worker and every gateway, whatever the endpoints' order, and
    /// stays put when other endpoints come or go (a reload, a DNS change).
    salt: u64,
    /// Outlier detection: 5xx responses in a row, gateway errors in a row, calls and successes
    /// since the last success-rate check, and how often this endpoint was ejected as an outlier.
    consecutive_5xx: u32,
    consecutive_gw: u32,
    calls: u32,
    successes: u32,
    outlier_ejections: u32,
    /// Active health checks: the prober's verdicts for this upstream, and this endpoint's index.
    probed: Option<(std::sync::Arc<super::health::UpstreamHealth>, usize)>,
}

impl Slot {
    /// Not ejected by a passive source, and not taken out by the prober.
    #[inline]
    fn healthy(&self, now: Instant) -> bool {
        self.ejected_until.is_none_or(|until| now >= until)
            && self
                .probed
                .as_ref()
                .is_none_or(|(h, i)| h.endpoints[*i].is_up())
    }
}

/// One upstream's endpoint picker, owned by one worker.
#[derive(Debug, Clone)]
pub struct Balancer {
    /// The policy (for `Hash`, the caller extracts and hashes the key).
    policy: Balance,
    slots: Vec<Slot>,
    /// Next index to consider for round robin / least_conn tie rotation.
    cursor: usize,
    /// wyrand state (p2c).
    rng: u64,
    max_fails: u32,
    fail_timeout: Duration,
    max_ejection_percent: u32,
    panic_threshold: u32,
    /// The last `pick` ignored health (panic mode).
    panicked: bool,
    /// `[upstream.outlier_detection]`.
    outlier: Option<crate::config::OutlierConfig>,
    /// When success rates were last compared.
    last_sr_check: Option<Instant>,
    /// `slow_start`: an endpoint back from an ejection or a failed health check takes a share of
    /// its picks that grows from 10% to all over this window.
    slow_start: Option<Duration>,
}

/// The share of its picks a returning endpoint keeps at the start of its slow start (Envoy's
/// `min_weight_percent` default).
const SLOW_START_FLOOR: f64 = 0.1;

/// What a reported failure did to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// Counted (or ignored while already ejected); the endpoint stays as it was.
    None,
    /// This failure ejected the endpoint for `fail_timeout`.
    Ejected,
    /// It reached `max_fails`, but ejecting it would break the safety floor: it stays in.
    Spared,
}

/// Longest prefix of the weighted sequence skipped at construction to offset workers.
const MAX_WEIGHTED_OFFSET: u64 = 4096;

#[inline]
fn tried_bit(mask: u64, idx: usize) -> bool {
    idx < 64 && (mask >> idx) & 1 == 1
}

/// splitmix64 finaliser: a bijective 64-bit mixer with full avalanche.
#[inline]
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Balancer {
    /// Builds the balancer for `cfg`. `seed` differs per worker (the worker index): round robin and
    /// least_conn start their rotation at `seed % len`, weighted skips `seed % total_weight` steps of
    /// its sequence, and the p2c PRNG is seeded from it.
    pub fn new(cfg: &UpstreamConfig, seed: u64) -> Balancer {
        let slots: Vec<Slot> = cfg
            .endpoints
            .iter()
            .map(|ep| Slot {
                weight: i64::from(ep.weight.max(1)),
                salt: endpoint_salt(ep.addr),
                ..Slot::default()
            })
            .collect();
        let n = slots.len() as u64;
        let mut b = Balancer {
            policy: cfg.balance.clone(),
            cursor: if n == 0 { 0 } else { (seed % n) as usize },
            slots,
            rng: mix64(seed ^ 0x2545_f491_4f6c_dd1d),
            max_fails: cfg.max_fails,
            fail_timeout: cfg.fail_timeout,
            max_ejection_percent: cfg.max_ejection_percent,
            panic_threshold: cfg.panic_threshold,
            panicked: false,
            outlier: cfg.outlier_detection,
            last_sr_check: None,
            slow_start: cfg.slow_start,
        };
        if b.policy == Balance::Weighted && n > 0 {
            let total: u64 = b.slots.iter().map(|s| s.weight as u64).sum();
            let now = Instant::now(); // nothing is ejected yet: any instant will do
            for _ in 0..seed % total.min(MAX_WEIGHTED_OFFSET) {
                b.pick_weighted(0, now, false);
            }
        }
        b
    }

    /// Reads the prober's verdicts too (an upstream with `[upstream.health_check]`): an endpoint
    /// it took out is unhealthy like an ejected one, under the same panic threshold.
    pub fn with_health(
        mut self,
        health: Option<std::sync::Arc<super::health::UpstreamHealth>>,
    ) -> Self {
        if let Some(h) = health {
            for (i, s) in self.slots.iter_mut().enumerate() {
                s.probed = Some((h.clone(), i));
            }
        }
        self
    }

    /// Picks an endpoint index, or None when every endpoint is ejected (the caller answers 503).
    /// `key`: the request key's [`hash_key`] for hash balancing (None -> round robin).
    /// `tried`: bitmask of indexes already tried by this request; an untried healthy endpoint is
    /// preferred, and when every healthy one was tried, a tried one may be returned again.
    ///
    /// Slow start: an endpoint picked while it ramps up keeps the pick with the probability of its
    /// share (time since it came back over `slow_start`, at least 10%); otherwise another
    /// endpoint is picked when there is one. Hash balancing is left alone (keys stay put).
    pub fn pick(&mut self, key: Option<u64>, tried: u64, now: Instant) -> Option<usize> {
        let idx = self.pick_policy(key, tried, now)?;
        let Some(window) = self.slow_start else {
            return Some(idx);
        };
        let share = self.ramp(idx, now, window);
        if share >= 1.0 || matches!(self.policy, Balance::Hash(_)) {
            return Some(idx);
        }
        let draw = (next_rand(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < share {
            return Some(idx);
        }
        let others = tried | if idx < 64 { 1 << idx } else { 0 };
        self.pick_policy(key, others, now).or(Some(idx))
    }

    /// The share of its picks endpoint `idx` gets now: below 1 for `window` after it came back
    /// from a passive or outlier ejection or from a failed health check.
    fn ramp(&self, idx: usize, now: Instant, window: Duration) -> f64 {
        let s = &self.slots[idx];
        let passive = s.ejected_until.filter(|&until| until <= now);
        let probed = (s.probed.as_ref()).and_then(|(h, i)| h.endpoints[*i].up_since());
        let Some(back) = passive.max(probed) else {
            return 1.0;
        };
        let t = now.saturating_duration_since(back);
        if t >= window {
            return 1.0;
        }
        (t.as_secs_f64() / window.as_secs_f64()).max(SLOW_START_FLOOR)
    }

    /// [`Balancer::pick`] by the policy alone.
    fn pick_policy(&mut self, key: Option<u64>, tried: u64, now: Instant) -> Option<usize> {
        let n = self.slots.len();
        // one scan: healthy endpoints, and the untried among them and among all
        let (mut healthy, mut fresh, mut untried) = (0usize, 0usize, 0usize);
        for (i, s) in self.slots.iter().enumerate() {
            let new = !tried_bit(tried, i);
            untried += usize::from(new);
            if s.healthy(now) {
                healthy += 1;
                fresh += usize::from(new);
            }
        }
        // panic: too few healthy endpoints left; every endpoint counts as healthy for this pick
        let panic = (healthy as u64) * 100 < u64::from(self.panic_threshold) * n as u64;
        self.panicked = panic && n > 0;
        if panic {
            (healthy, fresh) = (n, untried);
        }
        let healthy_at = |s: &Slot| panic || s.healthy(now);
        if healthy == 0 {
            return None;
        }
        // Eligible = healthy and not in `mask`; with no fresh endpoint left, everything healthy is.
        let (mask, count) = if fresh > 0 {
            (tried, fresh)
        } else {
            (0, healthy)
        };
        let slots = &self.slots;
        let eligible = |i: usize| !tried_bit(mask, i) && healthy_at(&slots[i]);
        match (&self.policy, key) {
            (Balance::Hash(_), Some(key)) => {
                let mut best: Option<(u64, usize)> = None;
                for (i, s) in slots.iter().enumerate() {
                    if eligible(i) {
                        let score = mix64(key ^ s.salt); // rendezvous score
                        if best.is_none_or(|(b, _)| score > b) {
                            best = Some((score, i));
                        }
                    }
                }
                best.map(|(_, i)| i)
            }
            (Balance::RoundRobin | Balance::Hash(_) | Balance::LeastConn, _) => {
                // Round robin is least_conn with every load equal: the first eligible from the cursor.
                let lc = self.policy == Balance::LeastConn;
                let load = |i: usize| if lc { slots[i].in_flight } else { 0 };
                let (n, mut i) = (slots.len(), self.cursor);
                let mut best: Option<(u32, usize)> = None;
                for _ in 0..n {
                    if i >= n {
                        i = 0;
                    }
                    if eligible(i) && best.is_none_or(|(b, _)| load(i) < b) {
                        best = Some((load(i), i));
                    }
                    i += 1;
                }
                let (_, idx) = best?;
                self.cursor = idx + 1;
                Some(idx)
            }
            (Balance::P2c, _) => {
                let (a, b) = if count == 1 {
                    (0, 0)
                } else {
                    let a = (next_rand(&mut self.rng) % count as u64) as usize;
                    let mut b = (next_rand(&mut self.rng) % (count as u64 - 1)) as usize;
                    if b >= a {
                        b += 1;
                    }
                    (a, b)
                };
                // Map the two ranks among eligible endpoints to indexes in one scan.
                let (mut ia, mut ib, mut rank) = (None, None, 0usize);
                for i in 0..slots.len() {
                    if eligible(i) {
                        if rank == a {
                            ia = Some(i);
                        }
                        if rank == b {
                            ib = Some(i);
                        }
                        rank += 1;
                    }
                }
                let (ia, ib) = (ia?, ib?);
                let (fa, fb) = (slots[ia].in_flight, slots[ib].in_flight);
                Some(if fa < fb {
                    ia
                } else if fb < fa {
                    ib
                } else if next_rand(&mut self.rng) & 1 == 0 {
                    ia
                } else {
                    ib
                })
            }
            (Balance::Weighted, _) => self.pick_weighted(mask, now, panic),
        }
    }

    /// Whether the last [`Balancer::pick`] was made in panic mode (health ignored).
    pub fn last_pick_panicked(&self) -> bool {
        self.panicked
    }

    /// nginx smooth weighted round robin over the healthy endpoints outside `mask` (all endpoints
    /// outside `mask` in panic mode).
    fn pick_weighted(&mut self, mask: u64, now: Instant, panic: bool) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<(i64, usize)> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if tried_bit(mask, i) || !(panic || s.healthy(now)) {
                continue;
            }
            s.current += s.weight;
            total += s.weight;
            if best.is_none_or(|(c, _)| s.current > c) {
                best = Some((s.current, i));
            }
        }
        let (_, b) = best?;
        self.slots[b].current -= total;
        Some(b)
    }

    /// A request to endpoint `idx` started (least_conn and p2c count in-flight requests).
    pub fn on_request_start(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        s.in_flight = s.in_flight.saturating_add(1);
    }

    /// A request to endpoint `idx` finished (whatever the outcome).
    pub fn on_request_end(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// Connect failure / reset / timeout on `idx`: counts toward `max_fails` within `fail_timeout`
    /// (the window starts at the first failure); reaching it ejects the endpoint for `fail_timeout`
    /// unless the safety floor forbids it. Failures while already ejected are ignored.
    pub fn report_failure(&mut self, idx: usize, now: Instant) -> Ejection {
        if self.outlier.is_some() {
            // a failed call is a failed call for the success rate, and a gateway error
            let s = &mut self.slots[idx];
            s.calls = s.calls.saturating_add(1);
            if self.gateway_error(idx, now) == Ejection::Ejected {
                return Ejection::Ejected;
            }
        }
        let (max_fails, ft) = (self.max_fails, self.fail_timeout);
        if max_fails == 0 {
            return Ejection::None;
        }
        let others_ejected = self
            .slots
            .iter()
            .enumerate()
            .filter(|&(i, o)| i != idx && !o.healthy(now))
            .count() as u64;
        let s = &mut self.slots[idx];
        if let Some(until) = s.ejected_until {
            if now < until {
                return Ejection::None;
            }
            s.ejected_until = None;
        }
        match s.window_start {
            Some(start) if now.saturating_duration_since(start) < ft => {}
            _ => {
                s.window_start = Some(now);
                s.fails = 0;
            }
        }
        s.fails += 1;
        if s.fails < max_fails {
            return Ejection::None;
        }
        s.fails = 0;
        s.window_start = None;
        self.eject(idx, ft, others_ejected, now)
    }

    /// Ejects `idx` for `time` unless the safety floor forbids it: one healthy endpoint always
    /// remains, and at most `max_ejection_percent` are out (every ejection source obeys it).
    fn eject(&mut self, idx: usize, time: Duration, others_ejected: u64, now: Instant) -> Ejection {
        let n = self.slots.len() as u64;
        let after = others_ejected + 1;
        if after >= n || after * 100 > u64::from(self.max_ejection_percent) * n {
            return Ejection::Spared;
        }
        self.slots[idx].ejected_until = Some(
            now.checked_add(time)
                .unwrap_or(now + Duration::from_secs(86_400)),
        );
        Ejection::Ejected
    }

    /// Outlier detection (`[upstream.outlier_detection]`, Envoy's consecutive-5xx detector): a
    /// response from `idx` with `status`. `consecutive_5xx` 5xx answers in a row eject it for
    /// `base_ejection_time` times the number of its ejections so far, up to `max_ejection_time`;
    /// any other status ends the run.
    pub fn report_status(&mut self, idx: usize, status: u16, now: Instant) -> Ejection {
        let Some(o) = self.outlier else {
            return Ejection::None;
        };
        let s = &mut self.slots[idx];
        s.calls = s.calls.saturating_add(1);
        if status < 500 {
            s.successes = s.successes.saturating_add(1);
            (s.consecutive_5xx, s.consecutive_gw) = (0, 0);
            return Ejection::None;
        }
        if matches!(status, 502..=504) && self.gateway_error(idx, now) == Ejection::Ejected {
            return Ejection::Ejected;
        }
        let s = &mut self.slots[idx];
        if !matches!(status, 502..=504) {
            s.consecutive_gw = 0;
        }
        s.consecutive_5xx += 1;
        if s.consecutive_5xx < o.consecutive_5xx || !s.healthy(now) {
            return Ejection::None;
        }
        s.consecutive_5xx = 0;
        self.eject_outlier(idx, now)
    }

    /// A 502/503/504 or a failed call on `idx`: `consecutive_gateway_errors` in a row eject it.
    fn gateway_error(&mut self, idx: usize, now: Instant) -> Ejection {
        let Some(o) = self.outlier.filter(|o| o.consecutive_gateway_errors > 0) else {
            return Ejection::None;
        };
        let s = &mut self.slots[idx];
        s.consecutive_gw += 1;
        if s.consecutive_gw < o.consecutive_gateway_errors || !s.healthy(now) {
            return Ejection::None;
        }
        (s.consecutive_gw, s.consecutive_5xx) = (0, 0);
        self.eject_outlier(idx, now)
    }

    /// Ejects outlier `idx` for `base_ejection_time` times its outlier ejections so far, at most
    /// `max_ejection_time`, within the safety floor.
    fn eject_outlier(&mut self, idx: usize, now: Instant) -> Ejection {
        let Some(o) = self.outlier else {
            return Ejection::None;
        };
        let times = self.slots[idx].outlier_ejections.saturating_add(1);
        let time = o
            .base_ejection_time
            .saturating_mul(times)
            .min(o.max_ejection_time);
        let others = (self.slots.iter().enumerate())
            .filter(|&(i, e)| i != idx && !e.healthy(now))
            .count() as u64;
        let ejection = self.eject(idx, time, others, now);
        if ejection == Ejection::Ejected {
            self.slots[idx].outlier_ejections = times;
        }
        ejection
    }

    /// Envoy's success-rate detector, run about once a second (the reaper): once per `interval`,
    /// among healthy endpoints with `success_rate_request_volume` calls since the last check (at
    /// least `success_rate_min_hosts` of them), an endpoint whose success rate is below the mean
    /// less `success_rate_stdev_factor` standard deviations is ejected. Returns the ejections
    /// made and spared.
    pub fn check_success_rates(&mut self, now: Instant) -> (u32, u32) {
        let Some(o) = self.outlier else {
            return (0, 0);
        };
        let last = *self.last_sr_check.get_or_insert(now);
        if now.saturating_duration_since(last) < o.interval {
            return (0, 0);
        }
        self.last_sr_check = Some(now);
        let rates: Vec<(usize, f64)> = (self.slots.iter().enumerate())
            .filter(|(_, s)| s.healthy(now) && s.calls >= o.success_rate_request_volume)
            .map(|(i, s)| (i, f64::from(s.successes) / f64::from(s.calls)))
            .collect();
        for s in &mut self.slots {
            (s.calls, s.successes) = (0, 0);
        }
        if rates.len() < o.success_rate_min_hosts as usize {
            return (0, 0);
        }
        let n = rates.len() as f64;
        let mean = rates.iter().map(|r| r.1).sum::<f64>() / n;
        let var = rates.iter().map(|r| (r.1 - mean).powi(2)).sum::<f64>() / n;
        let floor = mean - o.success_rate_stdev_factor * var.sqrt();
        let (mut ejected, mut spared) = (0, 0);
        for (i, rate) in rates {
            if rate < floor {
                match self.eject_outlier(i, now) {
                    Ejection::Ejected => ejected += 1,
                    Ejection::Spared => spared += 1,
                    Ejection::None => {}
                }
            }
        }
        (ejected, spared)
    }

    /// A successful exchange with `idx`: resets its failure count (does not end an ejection).
    pub fn report_success(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        s.fails = 0;
        s.window_start = None;
    }

    /// Takes over `old`'s passive health (failure counts, ejections, outlier counters) for the
    /// endpoints that stay (`map`: old index -> new index, by address), when the passive rules
    /// (`max_fails`, `fail_timeout`, outlier detection) are the same: a reload or a DNS change
    /// does not give an ejected endpoint its traffic back. In-flight counts stay with `old` (its
    /// requests end there).
    pub fn carry_passive(&mut self, old: &Balancer, map: impl Fn(usize) -> Option<usize>) {
        if (self.max_fails, self.fail_timeout, self.outlier)
            != (old.max_fails, old.fail_timeout, old.outlier)
        {
            return;
        }
        for (i, o) in old.slots.iter().enumerate() {
            let Some(s) = map(i).and_then(|j| self.slots.get_mut(j)) else {
                continue;
            };
            s.fails = o.fails;
            s.window_start = o.window_start;
            s.ejected_until = o.ejected_until;
            s.consecutive_5xx = o.consecutive_5xx;
            s.consecutive_gw = o.consecutive_gw;
            s.calls = o.calls;
            s.successes = o.successes;
            s.outlier_ejections = o.outlier_ejections;
        }
        self.last_sr_check = old.last_sr_check;
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the upstream has no endpoints.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Requests in flight to `idx` on this worker.
    pub fn in_flight(&self, idx: usize) -> u32 {
        self.slots[idx].in_flight
    }

    /// Whether `idx` is ejected at `now`.
    pub fn is_ejected(&self, idx: usize, now: Instant) -> bool {
        !self.slots[idx].healthy(now)
    }
}

/// wyrand: a fast 64-bit PRNG with good statistical quality.
#[inline]
fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) as u64) ^ (t as u64)
}

/// Fast, stable 64-bit hash for balancing keys: 8-byte little-endian blocks through a bijective
/// multiply-rotate round, the length, then the splitmix64 finaliser. Same input -> same output on
/// every run and platform (not DoS-resistant; it only spreads keys).
pub fn hash_key(bytes: &[u8]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    let mut blocks = bytes.chunks_exact(8);
    for b in &mut blocks {
        let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        h = (h ^ v).wrapping_mul(M).rotate_left(29);
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf))
            .wrapping_mul(M)
            .rotate_left(29);
    }
    mix64(h ^ bytes.len() as u64)
}

/// An endpoint's rendezvous salt: [`hash_key`] of its address as bytes (IP octets, then the port
/// big-endian), the same on every platform.
pub fn endpoint_salt(addr: std::net::SocketAddr) -> u64 {
    let mut b = [0u8; 18];
    let n = match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            b[..4].copy_from_slice(&ip.octets());
            4
        }
        std::net::IpAddr::V6(ip) => {
            b[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    b[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    hash_key(&b[..n + 2])
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
