//! Bulkheads: concurrency limits with bounded wait queues, counted for the whole process.
//!
//! Owns [`Bulkheads`] (every pool of one config generation, shared by all workers through
//! `Shared`) and [`Permits`] (one request's slots). Pools:
//! - a route's own (`[[route]] max_concurrent`, named `route:<name>`),
//! - `[[bulkhead]]` pools routes name in `bulkheads` (so a critical route's pool keeps capacity
//!   a flood on standard routes cannot take), counted whole or per tenant, consumer or client IP
//!   (hashed into [`KEY_SLOTS`] counters: two keys that share a slot share its limit),
//! - an upstream's (`[[upstream]] max_concurrent`, `upstream:<name>`), for every route to it.
//!
//! Data flow: the upstream target calls [`Bulkheads::enter`] before anything else. Each of the
//! route's pools (in that order) gives a slot with one `fetch_add` on its counter, or, when full,
//! the request joins the pool's queue if `max_queued` allows and waits up to `queue_timeout` for a
//! slot; otherwise (or when the wait runs out) the slots taken so far go back and the route answers
//! its fallback or 503 with `Retry-After`. A request never waits without a bound. Waiting is
//! event-driven on the worker: a permit of a queued pool dropped on this worker wakes its local
//! waiters, and waiters also look every [`CROSS_WORKER_POLL`] for slots freed on other workers.
//! Routes without pools do no work at all. A reload carries each pool's counters over by name,
//! so requests in flight under the old config keep counting.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::config::bulkhead::{ConcurrencyLimit, PoolKey};
use crate::config::Config;

/// Counters of a keyed pool (per tenant, consumer or client IP).
pub const KEY_SLOTS: usize = 4096;
/// How often a queued request looks for a slot freed on another worker.
const CROSS_WORKER_POLL: Duration = Duration::from_millis(2);
/// Most pools one route counts in: its own, two named, its upstream's.
const MAX_POOLS: usize = 4;

/// One pool's counters (shared across generations by name).
#[derive(Debug)]
pub struct Counters {
    /// In flight: one counter, or [`KEY_SLOTS`] for a keyed pool.
    slots: Box<[AtomicU32]>,
    queued: AtomicU32,
    rejected: AtomicU64,
}

impl Counters {
    fn new(keyed: bool) -> Counters {
        let n = if keyed { KEY_SLOTS } else { 1 };
        Counters {
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
            queued: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
struct Pool {
    name: String,
    limit: ConcurrencyLimit,
    key: PoolKey,
    counters: Arc<Counters>,
}

/// What a keyed pool keys on, for one request.
pub struct Who<'a> {
    pub tenant: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub client_ip: &'a str,
}

/// Every pool of one generation, and each route's pools.
#[derive(Debug, Default)]
pub struct Bulkheads {
    pools: Vec<Pool>,
    /// Per route (config order): indexes into `pools`.
    routes: Vec<Vec<usize>>,
}

/// One request's slots; dropping it gives them back.
pub struct Permits<'a>([Option<Permit<'a>>; MAX_POOLS]);

struct Permit<'a> {
    counter: &'a AtomicU32,
    /// The pool has a queue: wake this worker's waiters on release.
    notify: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        if self.notify {
            WAITERS.with(|w| {
                for waker in w.borrow_mut().drain(..) {
                    waker.wake();
                }
            });
        }
    }
}

thread_local! {
    /// Requests on this worker waiting in a bulkhead queue.
    static WAITERS: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Resolves after the first release on this worker since it was first polled.
struct Released(bool);

impl Future for Released {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        WAITERS.with(|w| {
            let mut w = w.borrow_mut();
            // a waiter looks again every CROSS_WORKER_POLL: keep one waker per task, not one
            // per look
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        });
        Poll::Pending
    }
}

/// Leaves the queue count when the wait ends, however it ends.
struct InQueue<'a>(&'a AtomicU32);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn try_take(counter: &AtomicU32, max: u32) -> bool {
    if counter.fetch_add(1, Ordering::AcqRel) >= max {
        counter.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

fn hash(s: &str) -> usize {
    crate::upstream::balance::hash_key(s.as_bytes()) as usize % KEY_SLOTS
}

impl Pool {
    fn counter(&self, who: &Who) -> &AtomicU32 {
        let slot = match self.key {
            PoolKey::Whole => return &self.counters.slots[0],
            PoolKey::Tenant => hash(who.tenant.or(who.consumer).unwrap_or(who.client_ip)),
            PoolKey::Consumer => hash(who.consumer.unwrap_or(who.client_ip)),
            PoolKey::ClientIp => hash(who.client_ip),
        };
        &self.counters.slots[slot]
    }

    /// A slot, waiting in the queue when the pool has one; None when refused.
    async fn enter(&self, who: &Who<'_>) -> Option<Permit<'_>> {
        let l = self.limit;
        let counter = self.counter(who);
        let notify = l.max_queued > 0;
        if try_take(counter, l.max_concurrent) {
            return Some(Permit { counter, notify });
        }
        let queued = &self.counters.queued;
        if !notify || !try_take(queued, l.max_queued) {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let _in_queue = InQueue(queued);
        let deadline = monoio::time::Instant::now() + l.queue_timeout;
        loop {
            let now = monoio::time::Instant::now();
            if now >= deadline {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let wait = (deadline - now).min(CROSS_WORKER_POLL);
            let _ = monoio::time::timeout(wait, Released(false)).await;
            if try_take(counter, l.max_concurrent) {
                return Some(Permit { counter, notify });
            }
        }
    }
}

impl Bulkheads {
    /// The pools of `cfg`; a pool of the same name in `prev` (the generation before a reload)
    /// hands over its counters.
    pub fn new(cfg: &Config, prev: Option<&Bulkheads>) -> Bulkheads {
        let mut pools: Vec<Pool> = Vec::new();
        let mut add = |name: String, limit: ConcurrencyLimit, key: PoolKey| {
            let keyed = key != PoolKey::Whole;
            let carried = prev
                .and_then(|p| p.pools.iter().find(|o| o.name == name && (o.key == key)))
                .map(|o| o.counters.clone());
            pools.push(Pool {
                counters: carried.unwrap_or_else(|| Arc::new(Counters::new(keyed))),
                name,
                limit,
                key,
            });
            pools.len() - 1
        };
        let named: Vec<usize> = (cfg.bulkheads.iter())
            .map(|b| add(b.name.clone(), b.limit, b.key))
            .collect();
        let upstreams: Vec<Option<usize>> = (cfg.upstreams.iter())
            .map(|u| {
                Some(add(
                    format!("upstream:{}", u.name),
                    u.bulkhead?,
                    PoolKey::Whole,
                ))
            })
            .collect();
        let routes = (cfg.routes.iter())
            .map(|r| {
                let own = r
                    .bulkhead
                    .map(|l| add(format!("route:{}", r.name), l, PoolKey::Whole));
                own.into_iter()
                    .chain(r.pools.iter().map(|&i| named[i]))
                    .chain(upstreams.get(r.upstream).copied().flatten())
                    .collect()
            })
            .collect();
        Bulkheads { pools, routes }
    }

    /// Slots in every pool of `route`, or None (refused: every slot taken is given back).
    pub async fn enter(&self, route: usize, who: &Who<'_>) -> Option<Permits<'_>> {
        let mut permits = Permits([None, None, None, None]);
        let Some(list) = self.routes.get(route) else {
            return Some(permits);
        };
        for (slot, &i) in permits.0.iter_mut().zip(list) {
            *slot = Some(self.pools[i].enter(who).await?);
        }
        Some(permits)
    }

    /// Whether `route` counts in any pool.
    pub fn guards(&self, route: usize) -> bool {
        self.routes.get(route).is_some_and(|l| !l.is_empty())
    }

    /// Per pool: name, requests in flight, requests queued, requests refused so far.
    pub fn snapshot(&self) -> Vec<(String, u64, u64, u64)> {
        (self.pools.iter())
            .map(|p| {
                let c = &p.counters;
                let in_flight = c.slots.iter().map(|s| u64::from(s.load(Ordering::Relaxed)));
                (
                    p.name.clone(),
                    in_flight.sum(),
                    u64::from(c.queued.load(Ordering::Relaxed)),
                    c.rejected.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::parse_str(
            &format!("[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n{text}"),
            "t.toml",
        )
        .unwrap()
    }

    const WHO: Who = Who {
        tenant: None,
        consumer: None,
        client_ip: "10.0.0.1",
    };

    #[test]
    fn permits_up_to_the_limit_and_back_on_drop() {
        let b = Bulkheads::new(
            &cfg("[[route]]\npath_prefix = \"/a\"\nupstream = \"u\"\nmax_concurrent = 2\n[[route]]\npath_prefix = \"/b\"\nupstream = \"u\"\n"),
            None,
        );
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        rt.unwrap().block_on(async {
            assert!(b.guards(0) && !b.guards(1));
            let p1 = b.enter(0, &WHO).await.unwrap();
            let p2 = b.enter(0, &WHO).await.unwrap();
            assert!(b.enter(0, &WHO).await.is_none(), "full");
            assert_eq!(b.snapshot()[0].1, 2, "a refused entry leaves no count");
            assert_eq!(b.snapshot()[0].3, 1);
            drop(p1);
            let _p3 = b.enter(0, &WHO).await.unwrap();
            drop(p2);
            assert_eq!(b.snapshot()[0].1, 1);
            let _free = b.enter(1, &WHO).await.unwrap();
        });
    }

    #[test]
    fn a_queued_request_gets_the_next_slot_or_times_out() {
        let b = Bulkheads::new(
            &cfg("[[route]]\npath_prefix = \"/a\"\nupstream = \"u\"\nmax_concurrent = 1\nmax_queued = 1\nqueue_timeout = \"50ms\"\n"),
            None,
        );
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        rt.unwrap().block_on(async {
            let held = b.enter(0, &WHO).await.unwrap();
            let t = std::time::Instant::now();
            assert!(
                b.enter(0, &WHO).await.is_none(),
                "no slot within the queue timeout"
            );
            assert!(t.elapsed() >= Duration::from_millis(45));
            // a release wakes the waiter at once
            let waiting = b.enter(0, &WHO);
            let release = async {
                monoio::time::sleep(Duration::from_millis(5)).await;
                drop(held);
            };
            let (got, ()) = monoio::join!(waiting, release);
            assert!(got.is_some());
            assert_eq!(b.snapshot()[0].2, 0, "the queue is empty again");
        });
    }

    #[test]
    fn keyed_pools_count_each_key_and_reload_keeps_counts() {
        let text = "[[bulkhead]]\nname = \"per-ip\"\nmax_concurrent = 1\nkey = \"client_ip\"\n[[route]]\npath_prefix = \"/a\"\nupstream = \"u\"\nbulkheads = [\"per-ip\"]\n";
        let b = Bulkheads::new(&cfg(text), None);
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        rt.unwrap().block_on(async {
            let _a = b.enter(0, &WHO).await.unwrap();
            assert!(b.enter(0, &WHO).await.is_none(), "the same IP is full");
            let other = Who {
                client_ip: "10.0.0.2",
                ..WHO
            };
            let _o = b.enter(0, &other).await.unwrap();
            let next = Bulkheads::new(&cfg(text), Some(&b));
            assert!(next.enter(0, &WHO).await.is_none(), "carried over by name");
        });
    }
}
