//! Active health verdicts: what the process's prober (`probe.rs`) found, published to every
//! worker without a lock.
//!
//! Owns [`HealthBoard`] (one generation's verdicts: per upstream with a `[upstream.health_check]`,
//! one [`EndpointHealth`] per endpoint), carried in the generation's `Shared`. Data flow: the
//! prober is the only writer (one atomic store per verdict change, `Release`); each worker's
//! balancer holds an `Arc` of its upstream's [`UpstreamHealth`] and reads an endpoint's state with
//! one `Acquire` load when it picks. A reload builds a new board: an upstream whose config did not
//! change keeps its `Arc` (and so does the worker's reused runtime of it); a changed one gets a new
//! `Arc` whose endpoints start from the verdicts of the same addresses before, so a reload never
//! brings a down endpoint back untested.
//!
//! An endpoint starts healthy (nginx's default): the first probes run at once and take it out
//! after `unhealthy_threshold` failures. The state also records when an endpoint came back, for
//! slow start.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{Config, UpstreamConfig};

/// `state` of an endpoint the prober took out.
const DOWN: u64 = u64::MAX;

/// The instant verdict times count from (the first use in the process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One endpoint's verdict and probe counters.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    /// [`DOWN`]; or healthy, since this many milliseconds after [`epoch`] plus one (0: healthy
    /// from the start, so never ramping).
    state: AtomicU64,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Verdict changes: taken out, brought back.
    pub went_down: AtomicU64,
    pub came_up: AtomicU64,
}

impl EndpointHealth {
    /// The prober's verdict: true unless it took the endpoint out.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) != DOWN
    }

    /// When a healthy endpoint came back from being down (None: down, or up from the start).
    pub fn up_since(&self) -> Option<Instant> {
        match self.state.load(Ordering::Acquire) {
            0 | DOWN => None,
            ms => Some(epoch() + Duration::from_millis(ms - 1)),
        }
    }

    /// Records a verdict change (the prober's).
    pub(crate) fn set(&self, up: bool, now: Instant) {
        let state = if up {
            let ms = now.saturating_duration_since(epoch()).as_millis();
            u64::try_from(ms).unwrap_or(DOWN - 2).min(DOWN - 2) + 1
        } else {
            DOWN
        };
        self.state.store(state, Ordering::Release);
        let counter = if up { &self.came_up } else { &self.went_down };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of `prev`'s verdict and counters (a reload).
    fn carried(prev: &EndpointHealth) -> EndpointHealth {
        let copy = |a: &AtomicU64| AtomicU64::new(a.load(Ordering::Acquire));
        EndpointHealth {
            state: copy(&prev.state),
            checks_ok: copy(&prev.checks_ok),
            checks_failed: copy(&prev.checks_failed),
            went_down: copy(&prev.went_down),
            came_up: copy(&prev.came_up),
        }
    }
}

/// Verdicts for one upstream with a health check.
#[derive(Debug)]
pub struct UpstreamHealth {
    /// The upstream as configured (the probes' settings, endpoints, TLS and protocol).
    pub cfg: UpstreamConfig,
    /// Per endpoint, in `cfg.endpoints` order.
    pub endpoints: Box<[EndpointHealth]>,
}

impl UpstreamHealth {
    pub fn addr(&self, ep: usize) -> SocketAddr {
        self.cfg.endpoints[ep].addr
    }
}

/// One generation's verdicts, per upstream in config order (None: no health check).
#[derive(Debug, Default)]
pub struct HealthBoard(Vec<Option<Arc<UpstreamHealth>>>);

impl HealthBoard {
    /// The board for `cfg`; `prev` (the board before a reload) hands over what still applies.
    pub fn new(cfg: &Config, prev: Option<&HealthBoard>) -> HealthBoard {
        let before = |name: &str| {
            prev.and_then(|b| b.all().find(|h| h.cfg.name == name))
                .cloned()
        };
        HealthBoard(
            cfg.upstreams
                .iter()
                .map(|u| {
                    u.health_check.as_ref()?;
                    let old = before(&u.name);
                    if let Some(old) = old.as_ref().filter(|o| o.cfg == *u) {
                        return Some(old.clone());
                    }
                    let endpoints = (u.endpoints.iter())
                        .map(|e| {
                            let same = old.as_ref().and_then(|o| {
                                let i = o.cfg.endpoints.iter().position(|x| x.addr == e.addr)?;
                                Some(EndpointHealth::carried(&o.endpoints[i]))
                            });
                            same.unwrap_or_default()
                        })
                        .collect();
                    Some(Arc::new(UpstreamHealth {
                        cfg: u.clone(),
                        endpoints,
                    }))
                })
                .collect(),
        )
    }

    /// Upstream `i`'s verdicts (config order), if it has a health check.
    pub fn get(&self, i: usize) -> Option<Arc<UpstreamHealth>> {
        self.0.get(i)?.clone()
    }

    /// Every upstream with a health check.
    pub fn all(&self) -> impl Iterator<Item = &Arc<UpstreamHealth>> {
        self.0.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_return_time() {
        let e = EndpointHealth::default();
        assert!(
            e.is_up() && e.up_since().is_none(),
            "healthy from the start"
        );
        let t0 = Instant::now();
        e.set(false, t0);
        assert!(!e.is_up() && e.up_since().is_none());
        let t1 = t0 + Duration::from_secs(3);
        e.set(true, t1);
        assert!(e.is_up());
        let since = e.up_since().unwrap();
        assert!(
            since <= t1 && t1 - since < Duration::from_millis(2),
            "{since:?} vs {t1:?}"
        );
        assert_eq!(e.went_down.load(Ordering::Relaxed), 1);
        assert_eq!(e.came_up.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn reload_keeps_verdicts_by_address() {
        let text = |eps: &str| {
            format!("[[upstream]]\nname = \"a\"\nendpoints = [{eps}]\n[upstream.health_check]\npath = \"/h\"\n[[upstream]]\nname = \"b\"\nendpoints = [\"127.0.0.1:9\"]\n")
        };
        let c1 =
            crate::config::parse_str(&text("\"127.0.0.1:1\", \"127.0.0.1:2\""), "t.toml").unwrap();
        let b1 = HealthBoard::new(&c1, None);
        let a = c1.upstreams.iter().position(|u| u.name == "a").unwrap();
        let b = c1.upstreams.iter().position(|u| u.name == "b").unwrap();
        assert!(b1.get(b).is_none(), "no health check, no verdicts");
        b1.get(a).unwrap().endpoints[1].set(false, Instant::now());
        // unchanged: the same verdicts, shared
        let same = HealthBoard::new(&c1, Some(&b1));
        assert!(Arc::ptr_eq(&same.get(a).unwrap(), &b1.get(a).unwrap()));
        // an endpoint added in front: 127.0.0.1:2 is still down at its new index
        let c2 = crate::config::parse_str(
            &text("\"127.0.0.1:3\", \"127.0.0.1:1\", \"127.0.0.1:2\""),
            "t.toml",
        )
        .unwrap();
        let b2 = HealthBoard::new(&c2, Some(&b1));
        let a2 = c2.upstreams.iter().position(|u| u.name == "a").unwrap();
        let h = b2.get(a2).unwrap();
        let up: Vec<bool> = h.endpoints.iter().map(|e| e.is_up()).collect();
        assert_eq!(up, [true, true, false]);
    }
}
