//! Route bulkheads (`[[route]] max_concurrent`): requests in flight on a route, counted for the
//! whole process.
//!
//! Owns [`Bulkheads`] (one counter per route that has a limit, shared by every worker through the
//! config generation's `Shared`) and [`Permit`]. Data flow: the upstream target asks
//! [`Bulkheads::enter`] before anything else; a permit is one `fetch_add` on the route's counter
//! and gives the slot back when dropped (the request's end, however it ends). A full route answers
//! at once: its fallback, or 503 with `Retry-After`, never a wait. Lock-free: one atomic add and
//! one subtract per request on limited routes, nothing on others. A reload carries each counter
//! over by route name, so requests still in flight under the old config keep counting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::Config;

/// Per route (config order): its in-flight counter, if it has `max_concurrent`.
#[derive(Debug, Default)]
pub struct Bulkheads(Vec<Option<Arc<AtomicU32>>>);

/// One request's slot on a limited route.
pub struct Permit<'a>(&'a AtomicU32);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkheads {
    /// Counters for `cfg`'s limited routes; a route of the same name in `prev` (the config
    /// before a reload) hands over its counter.
    pub fn new(cfg: &Config, prev: Option<(&Config, &Bulkheads)>) -> Bulkheads {
        let carried = |name: &str| {
            let (old_cfg, old) = prev?;
            let i = old_cfg.routes.iter().position(|r| r.name == name)?;
            old.0.get(i)?.clone()
        };
        Bulkheads(
            cfg.routes
                .iter()
                .map(|r| {
                    r.max_concurrent?;
                    Some(carried(&r.name).unwrap_or_default())
                })
                .collect(),
        )
    }

    /// A slot on route `route` (limit `max`), or None when it is full.
    pub fn enter(&self, route: usize, max: u32) -> Option<Permit<'_>> {
        let counter = self.0.get(route)?.as_deref()?;
        if counter.fetch_add(1, Ordering::AcqRel) >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit(counter))
    }

    /// Requests in flight on `route` now (0 for routes without a limit).
    pub fn in_flight(&self, route: usize) -> u32 {
        self.0
            .get(route)
            .and_then(|c| c.as_deref())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_up_to_the_limit_and_back_on_drop() {
        let b = Bulkheads(vec![None, Some(Arc::default())]);
        assert!(b.enter(0, 1).is_none(), "no counter: the caller never asks");
        let p1 = b.enter(1, 2).unwrap();
        let p2 = b.enter(1, 2).unwrap();
        assert!(b.enter(1, 2).is_none(), "full");
        assert_eq!(b.in_flight(1), 2, "a refused entry leaves no count");
        drop(p1);
        let _p3 = b.enter(1, 2).unwrap();
        drop(p2);
        assert_eq!(b.in_flight(1), 1);
    }
}
