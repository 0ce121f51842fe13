//! Upstreams as one worker sees them: endpoints, a balancer and connection pools each (idle
//! HTTP/1.1 connections, and multiplexed HTTP/2 connections, `h2/client.rs`).
//!
//! Owns: [`UpstreamRt`], built per worker from an `UpstreamConfig`. The balancer (`balance.rs`) picks an
//! endpoint and tracks passive health; the pool (`pool.rs`) keeps idle keep-alive connections. Both sit
//! behind `RefCell` because only this worker's tasks touch them, and borrows never cross an await.

pub mod adaptive;
pub mod balance;
pub mod breaker;
pub mod cluster_breaker;
pub mod health;
pub mod pool;
pub mod probe;
pub mod retry;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::config::UpstreamConfig;
use crate::metrics::UpstreamStats;

pub struct UpstreamRt {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    /// `ip:port` of each endpoint, sent as Host to HTTP/1.0 clients' requests that carried none.
    pub host_text: Vec<String>,
    pub balancer: RefCell<balance::Balancer>,
    pub pool: RefCell<pool::Pool>,
    /// HTTP/2 connections (`protocol = "http2"`, or `"auto"` where ALPN chose h2).
    pub h2: RefCell<crate::h2::client::H2Pool>,
    pub cfg: UpstreamConfig,
    /// This upstream's counters on this worker (kept across reloads by name).
    pub stats: Rc<UpstreamStats>,
    /// When this worker last logged a TLS handshake failure to this upstream (at most one line per
    /// `TLS_LOG_EVERY`: a broken certificate fails every connect).
    pub tls_logged: std::cell::Cell<Option<std::time::Instant>>,
    /// `[upstream.circuit_breaker]`, this worker's.
    pub breaker: Option<RefCell<breaker::Breaker>>,
    /// Requests in the exchange and those on a retry, for `[upstream.retry]`'s budget.
    pub retry_budget: retry::Budget,
    /// `[upstream.adaptive_concurrency]`, this worker's.
    pub adaptive: Option<RefCell<adaptive::AdaptiveLimit>>,
    /// `[upstream.retry] hedge_after`: when a GET's second try goes (for `"p95"`, this worker's
    /// p95 latency, refreshed each second once 100 calls are in; None until then).
    pub hedge_delay: std::cell::Cell<Option<std::time::Duration>>,
}

/// A call admitted under the adaptive limit; reports its latency ([`AdaptiveSlot::latency`]),
/// or gives its slot back as a failure when dropped without one.
pub struct AdaptiveSlot<'a>(Option<&'a UpstreamRt>);

impl AdaptiveSlot<'_> {
    /// The call got its response head after `took`.
    pub fn latency(mut self, took: std::time::Duration) {
        if let Some(up) = self.0.take() {
            up.adaptive_done(Some(took));
        }
    }
}

impl Drop for AdaptiveSlot<'_> {
    fn drop(&mut self) {
        if let Some(up) = self.0 {
            up.adaptive_done(None);
        }
    }
}

/// How a call the breaker admitted ended, for [`UpstreamRt::breaker_record`].
pub enum CallEnd {
    /// A response head arrived: its status, a trailers-only gRPC answer's `grpc-status`, and
    /// how long it took.
    Response(u16, Option<u8>, std::time::Duration),
    /// The upstream failed (connect, reset, timeout, a bad response).
    Failed,
    /// No verdict on the upstream (the client left or sent a bad body).
    NoVerdict,
}

impl UpstreamRt {
    /// `health`: the prober's verdicts for this upstream, when it has a health check.
    pub fn new(
        cfg: &UpstreamConfig,
        worker: usize,
        stats: Rc<UpstreamStats>,
        health: Option<std::sync::Arc<health::UpstreamHealth>>,
    ) -> Self {
        UpstreamRt {
            name: cfg.name.clone(),
            addrs: cfg.endpoints.iter().map(|e| e.addr).collect(),
            host_text: cfg.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            balancer: RefCell::new(balance::Balancer::new(cfg, worker as u64).with_health(health)),
            pool: RefCell::new(pool::Pool::new(
                cfg.endpoints.len(),
                cfg.max_idle_per_endpoint,
                cfg.idle_timeout,
            )),
            h2: RefCell::new(crate::h2::client::H2Pool::new(cfg.endpoints.len())),
            cfg: cfg.clone(),
            tls_logged: Default::default(),
            retry_budget: Default::default(),
            hedge_delay: std::cell::Cell::new(match cfg.retry.hedge_after {
                Some(retry::HedgeAfter::Fixed(d)) => Some(d),
                _ => None,
            }),
            adaptive: cfg.adaptive_concurrency.map(|a| {
                stats.adaptive_limit.set(i64::from(a.initial_limit));
                RefCell::new(adaptive::AdaptiveLimit::new(a))
            }),
            stats,
            breaker: cfg
                .circuit_breaker
                .clone()
                .map(|b| RefCell::new(breaker::Breaker::new(b, std::time::Instant::now()))),
        }
    }

    /// May a call go to the upstream? `Ok(trial)` (a half-open trial call), or `Err(retry_after)`
    /// while the breaker is open (counted as rejected). Always `Ok(false)` without a breaker.
    pub fn breaker_admit(&self) -> Result<bool, std::time::Duration> {
        let Some(b) = &self.breaker else {
            return Ok(false);
        };
        match b.borrow_mut().admit(std::time::Instant::now) {
            breaker::Admit::Yes => Ok(false),
            breaker::Admit::Trial => Ok(true),
            breaker::Admit::No(wait) => {
                self.stats.breaker_rejected.inc();
                Err(wait)
            }
        }
    }

    /// Feeds an admitted call's end to the breaker; trips and recoveries move the metrics.
    pub fn breaker_record(&self, now: std::time::Instant, end: CallEnd, trial: bool) {
        let Some(b) = &self.breaker else {
            return;
        };
        let mut b = b.borrow_mut();
        let before = b.state();
        let outcome = match end {
            CallEnd::Response(status, grpc, took) => b.outcome(status, grpc, took),
            CallEnd::Failed => breaker::Outcome {
                failed: true,
                slow: false,
            },
            CallEnd::NoVerdict => return b.abandon(trial),
        };
        match b.record(now, outcome, trial) {
            Some(breaker::State::Open) => {
                self.stats.breaker_trips.inc();
                if before == breaker::State::Closed {
                    self.stats.breaker_open.add(1);
                }
            }
            Some(breaker::State::Closed) => self.stats.breaker_open.add(-1),
            _ => {}
        }
    }

    /// A slot under the adaptive limit (a no-op slot without one), or None: shed the request.
    pub fn adaptive_admit(&self) -> Option<AdaptiveSlot<'_>> {
        let Some(a) = &self.adaptive else {
            return Some(AdaptiveSlot(None));
        };
        if a.borrow_mut().admit() {
            return Some(AdaptiveSlot(Some(self)));
        }
        self.stats.adaptive_shed.inc();
        None
    }

    fn adaptive_done(&self, took: Option<std::time::Duration>) {
        if let Some(a) = &self.adaptive {
            let mut a = a.borrow_mut();
            a.done(took);
            self.stats.adaptive_limit.set(i64::from(a.limit()));
        }
    }

    /// A trip published by another worker or node (cluster scope): open for `left` more.
    pub fn breaker_force_open(&self, now: std::time::Instant, left: std::time::Duration) {
        let Some(b) = &self.breaker else {
            return;
        };
        // `force_open` says whether it was closed: only then is this a trip here
        if b.borrow_mut().force_open(now, left) {
            self.stats.breaker_trips.inc();
            self.stats.breaker_open.add(1);
        }
    }

    /// Closes idle connections past their time, HTTP/1.1 and HTTP/2 (run about once a second).
    /// Also runs the outlier detector's success-rate check when it is due.
    pub fn reap(&self, now: std::time::Instant) {
        if self.cfg.retry.hedge_after == Some(retry::HedgeAfter::P95) {
            let p95 = self.stats.latency.quantile_us(0.95, 100);
            let p95 = p95.map(|us| std::time::Duration::from_micros(us.max(1)));
            self.hedge_delay.set(p95);
        }
        if self.cfg.outlier_detection.is_some() {
            let (ejected, spared) = self.balancer.borrow_mut().check_success_rates(now);
            self.stats.ejections.add(u64::from(ejected));
            self.stats.ejections_spared.add(u64::from(spared));
        }
        self.pool.borrow_mut().reap(now);
        self.h2.borrow_mut().reap(now, self.cfg.idle_timeout);
    }

    /// The next generation's runtime for `cfg`, given this upstream's runtime in the previous one
    /// (same name): reused whole when its config did not change; otherwise rebuilt, adopting
    /// idle connections to endpoints that remain and, piece by piece where that piece's config
    /// is the same, the state that took traffic to learn ([`UpstreamRt::carry`]).
    pub fn reloaded(
        prev: Option<&Rc<UpstreamRt>>,
        cfg: &UpstreamConfig,
        worker: usize,
        stats: Rc<UpstreamStats>,
        health: Option<std::sync::Arc<health::UpstreamHealth>>,
    ) -> Rc<UpstreamRt> {
        match prev {
            Some(p) if p.cfg == *cfg => p.clone(),
            Some(p) => {
                let next = UpstreamRt::new(cfg, worker, stats, health);
                let map = |ep: usize| next.addrs.iter().position(|a| *a == p.addrs[ep]);
                next.pool.borrow_mut().adopt(&mut p.pool.borrow_mut(), map);
                if next.cfg.protocol == p.cfg.protocol && next.cfg.tls == p.cfg.tls {
                    next.h2.borrow_mut().adopt(&mut p.h2.borrow_mut(), map);
                }
                next.carry(p, map);
                Rc::new(next)
            }
            None => Rc::new(UpstreamRt::new(cfg, worker, stats, health)),
        }
    }

    /// This runtime's breaker is not carried on (the upstream left the config, or its breaker
    /// settings changed): an open one leaves the open-breakers gauge, since what replaces it
    /// starts closed.
    pub fn breaker_left_behind(&self) {
        if let Some(b) = &self.breaker {
            if b.borrow().state() != breaker::State::Closed {
                self.stats.breaker_open.add(-1);
            }
        }
    }

    /// What a rebuilt upstream keeps from `prev` (`map`: old endpoint index -> new, by address):
    /// the endpoints' passive health (same passive rules), the circuit breaker (same
    /// `[upstream.circuit_breaker]`; an open one stays open), the adaptive limit (same
    /// `[upstream.adaptive_concurrency]`) and the p95 hedge delay (same `[upstream.retry]`). A
    /// DNS change that only moves endpoints keeps all of them.
    fn carry(&self, prev: &UpstreamRt, map: impl Fn(usize) -> Option<usize>) {
        (self.balancer.borrow_mut()).carry_passive(&prev.balancer.borrow(), map);
        match (&self.breaker, &prev.breaker) {
            (Some(b), Some(old)) if self.cfg.circuit_breaker == prev.cfg.circuit_breaker => {
                *b.borrow_mut() = old.borrow().successor();
            }
            _ => prev.breaker_left_behind(),
        }
        if let (Some(a), Some(old)) = (&self.adaptive, &prev.adaptive) {
            if self.cfg.adaptive_concurrency == prev.cfg.adaptive_concurrency {
                let next = old.borrow().successor();
                self.stats.adaptive_limit.set(i64::from(next.limit()));
                *a.borrow_mut() = next;
            }
        }
        if self.cfg.retry == prev.cfg.retry {
            self.hedge_delay.set(prev.hedge_delay.get());
        }
    }
}
