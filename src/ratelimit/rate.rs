//! Rate-limit admission for one policy and key: the local lease first, then the shared budget.
//!
//! Common case: the key's local entry holds at least `cost` leased tokens; they are spent with no
//! shared memory touched. Otherwise a core leases `max(L, need)` tokens (at least `need`) from the
//! gateway table with one CAS, or from Redis with one script call. A refusal remembers when the
//! shared bucket will next hold `need` tokens, so a flood of refused requests costs no atomics
//! until then. Tokens of an evicted entry go straight back to where they came from.
//!
//! Redis leases are coalesced per core and key: while one is in flight, other requests for the
//! key wait for it ([`LeaseWait`]) and then spend from what it brought, so an overloaded key costs
//! one round trip per batch per core, not one per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::cluster;
use super::local::Entry;
use super::{LimitsRt, Step};

/// What the local entry says about a request.
enum LocalAnswer {
    Done(Step),
    /// A lease of at least this many tokens is needed.
    Lease(u64),
    /// A Redis lease for the key is in flight on this core: wait for it, then ask again.
    Wait,
}

impl LimitsRt {
    /// Answers from the local entry of `fp` when it can, else says a lease is needed (or is
    /// already in flight).
    // Inlined: out of line, the answer came back through memory and reading it stalled on store
    // forwarding (about an eighth of a whole `admit` on the hot-path bench).
    #[inline(always)]
    fn rate_local(&self, p: usize, fp: u64, cost: u64, now: u64) -> LocalAnswer {
        let r = &self.shared.rates[p];
        let mut local = self.rates[p].borrow_mut();
        let (e, evicted) = local.entry(fp);
        e.last = now;
        if e.units >= cost {
            e.units -= cost;
            let shared_left = if e.fallback {
                r.fallback.available(e.seen, now)
            } else {
                r.shape.available(e.seen, now)
            };
            let reset_ns = r.shape.until_full(e.seen, now);
            let remaining = e.units + shared_left;
            drop(local);
            if let Some(ev) = evicted {
                self.rate_evicted(p, ev, now);
            }
            return LocalAnswer::Done(Step::Granted {
                remaining,
                reset_ns,
            });
        }
        if e.leasing {
            return LocalAnswer::Wait;
        }
        if e.deny_until > now {
            let step = Step::Denied {
                retry_ns: e.deny_until.saturating_sub(now).max(r.shape.interval),
                reset_ns: r.shape.until_full(e.seen, now),
            };
            drop(local);
            if let Some(ev) = evicted {
                self.rate_evicted(p, ev, now);
            }
            return LocalAnswer::Done(step);
        }
        let need = cost - e.units;
        drop(local);
        if let Some(ev) = evicted {
            self.rate_evicted(p, ev, now);
        }
        LocalAnswer::Lease(need)
    }

    /// Applies a lease's outcome to the local entry of `fp`.
    fn rate_settle(&self, p: usize, fp: u64, cost: u64, now: u64, lease: Lease) -> Step {
        let r = &self.shared.rates[p];
        let mut local = self.rates[p].borrow_mut();
        let (e, evicted) = local.entry(fp);
        let step = if lease.granted == 0 {
            // a refusal from the outage share is not remembered: Redis may be back sooner. Under
            // overload the next lease waits for half a lease of refill, so each lease gets a batch
            // (the tokens wait in the shared bucket: none are lost while it is below its burst)
            if !lease.fallback {
                let batch = (r.lease / 2).saturating_mul(r.shape.interval);
                e.deny_until = lease.retry_at.max(now + batch);
            }
            e.seen = lease.seen;
            Step::Denied {
                retry_ns: lease.retry_at.saturating_sub(now),
                reset_ns: lease.full_in,
            }
        } else {
            // the entry may have been spent by another request while a Redis lease was in flight
            let total = e.units + lease.granted;
            let spend = cost.min(total);
            e.units = total - spend;
            e.seen = lease.seen;
            e.global = lease.global;
            e.fallback = lease.fallback;
            e.deny_until = 0;
            e.last = now;
            Step::Granted {
                remaining: e.units + lease.remaining,
                reset_ns: lease.full_in,
            }
        };
        if lease.granted > 0 {
            local.touch_active(fp);
        }
        drop(local);
        if let Some(ev) = evicted {
            self.rate_evicted(p, ev, now);
        }
        step
    }

    /// Gateway scope: the local lease, else one CAS on the shared bucket.
    pub(super) fn rate_gateway(&self, p: usize, fp: u64, cost: u64, now: u64) -> Step {
        let need = match self.rate_local(p, fp, cost, now) {
            LocalAnswer::Done(step) => return step,
            // gateway leases never await, so no lease is ever in flight
            LocalAnswer::Lease(need) => need,
            LocalAnswer::Wait => cost,
        };
        let lease = self.lease_table(p, fp, need, now, false);
        self.rate_settle(p, fp, cost, now, lease)
    }

    /// Cluster scope: the local lease, else a Redis lease; the node's local share while Redis is
    /// unreachable.
    pub(super) async fn rate_cluster(&self, p: usize, fp: u64, cost: u64, mut now: u64) -> Step {
        let need = loop {
            match self.rate_local(p, fp, cost, now) {
                LocalAnswer::Done(step) => return step,
                LocalAnswer::Lease(need) => break need,
                LocalAnswer::Wait => {
                    LeaseWait { rt: self, p, fp }.await;
                    now = super::now_ns();
                }
            }
        };
        let r = &self.shared.rates[p];
        let redis = self.redis.as_ref().expect("cluster scope needs [redis]");
        if self.use_fallback() {
            let lease = self.lease_table(p, fp, need, now, true);
            return self.rate_settle(p, fp, cost, now, lease);
        }
        let mut rkey = self.redis_key(b"rl:", &r.cfg.name, None);
        let want = r.lease.max(need);
        if let Some(e) = self.rates[p].borrow_mut().get_mut(fp) {
            e.leasing = true;
        }
        // clears `leasing` and wakes the waiters however this request ends (even if dropped)
        let _guard = LeaseGuard { rt: self, p, fp };
        self.metrics.rates[p].leases.inc();
        let got =
            cluster::rate_lease(redis, &self.shared.scripts, &rkey, &r.shape, want, need).await;
        let lease = match got {
            Ok(l) => Lease {
                granted: l.granted,
                retry_at: now + l.wait_ns,
                seen: now + l.full_in_ns.min(r.shape.tau),
                remaining: l.remaining,
                full_in: l.full_in_ns,
                global: 0,
                fallback: false,
            },
            Err(e) => {
                self.redis_failed(&e);
                let lease = self.lease_table(p, fp, need, now, true);
                return self.rate_settle(p, fp, cost, now, lease);
            }
        };
        if lease.granted > 0 {
            let mut local = self.rates[p].borrow_mut();
            let (e, _) = local.entry(fp);
            if e.redis_key.is_empty() {
                std::mem::swap(&mut e.redis_key, &mut rkey);
            }
        }
        self.rate_settle(p, fp, cost, now, lease)
    }

    /// Leases from the gateway table (or, `fallback`, from this node's share of a cluster budget).
    fn lease_table(&self, p: usize, fp: u64, need: u64, now: u64, fallback: bool) -> Lease {
        let r = &self.shared.rates[p];
        let shape = if fallback { &r.fallback } else { &r.shape };
        let idx = r.table.find(fp, |tat| tat <= now);
        // while Redis is down, no batching: the fallback path is for outages only
        let want = if fallback { need } else { r.lease.max(need) };
        self.metrics.rates[p].leases.inc();
        let t = r.table.take(idx, shape, now, want, need);
        let seen = if t.granted > 0 {
            t.tat
        } else {
            r.table.tat(idx)
        };
        Lease {
            granted: t.granted,
            retry_at: t.retry_at,
            seen,
            remaining: shape.available(seen, now),
            full_in: shape.until_full(seen, now),
            global: idx as u32,
            fallback,
        }
    }

    /// Returns the unused tokens of an entry that left the local cache.
    pub(super) fn rate_evicted(&self, p: usize, ev: Entry, now: u64) {
        if ev.units == 0 {
            return;
        }
        let r = &self.shared.rates[p];
        self.metrics.rates[p].returned.add(ev.units);
        if !ev.redis_key.is_empty() && !ev.fallback {
            self.spawn_rate_return(p, ev);
            return;
        }
        let shape = if ev.fallback { &r.fallback } else { &r.shape };
        if r.table.owned_by(ev.global as usize, ev.fp) {
            r.table.give_back(ev.global as usize, shape, now, ev.units);
        }
    }

    /// `prefix` + kind + policy name + `:` + [window start `:`] + the key text in `scratch`.
    pub(super) fn redis_key(&self, kind: &[u8], policy: &str, window: Option<u64>) -> Vec<u8> {
        let prefix = self
            .shared
            .redis
            .as_ref()
            .map_or("", |r| r.cfg.key_prefix.as_str());
        let text = self.scratch.borrow();
        let mut k = Vec::with_capacity(prefix.len() + policy.len() + text.len() + 24);
        k.extend_from_slice(prefix.as_bytes());
        k.extend_from_slice(kind);
        k.extend_from_slice(policy.as_bytes());
        k.push(b':');
        if let Some(w) = window {
            k.extend_from_slice(itoa::Buffer::new().format(w).as_bytes());
            k.push(b':');
        }
        super::key::push_redis_key(&mut k, &text);
        k
    }
}

/// A lease's outcome, from the table or from Redis.
struct Lease {
    granted: u64,
    /// When nothing was granted: when `need` tokens will be there.
    retry_at: u64,
    /// The shared bucket's `tat` (Redis: reconstructed as now + time to full).
    seen: u64,
    /// Tokens left in the shared bucket.
    remaining: u64,
    /// ns until the shared bucket is full.
    full_in: u64,
    global: u32,
    fallback: bool,
}

/// Ends a key's in-flight Redis lease on this core: clears the flag and wakes waiting requests.
struct LeaseGuard<'a> {
    rt: &'a LimitsRt,
    p: usize,
    fp: u64,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.rt.rates[self.p].borrow_mut().get_mut(self.fp) {
            e.leasing = false;
        }
        let mut waiters = self.rt.lease_waiters.borrow_mut();
        let mut i = 0;
        while i < waiters.len() {
            if waiters[i].0 == (self.p, self.fp) {
                waiters.swap_remove(i).1.wake();
            } else {
                i += 1;
            }
        }
    }
}

/// Resolves once no Redis lease for the key is in flight on this core.
struct LeaseWait<'a> {
    rt: &'a LimitsRt,
    p: usize,
    fp: u64,
}

impl Future for LeaseWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let leasing = self.rt.rates[self.p]
            .borrow_mut()
            .get_mut(self.fp)
            .is_some_and(|e| e.leasing);
        if !leasing {
            return Poll::Ready(());
        }
        self.rt
            .lease_waiters
            .borrow_mut()
            .push(((self.p, self.fp), cx.waker().clone()));
        Poll::Pending
    }
}
