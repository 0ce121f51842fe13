//! The per-worker sweep (every 100 ms): unused leases flow back, byte debts are counted, Redis is
//! probed while down, and usage counted during an outage is added to Redis once it is back.
//!
//! Only entries that received units since they were last emptied are visited (`Local::active`),
//! so a quiet gateway does no work here. Redis calls run on this task, never on a request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cluster::{self, QuotaOp};
use super::local::Entry;
use super::{now_ns, unix_s, LimitsRt, LimitsShared, IDLE_RETURN_NS, PROBE_INTERVAL_NS};
use crate::config::limits::Scope;
use crate::redis::RedisClient;

/// One return of units to a shared budget, collected while the local cache is borrowed.
struct Back {
    entry: Entry,
    /// Window the entry's units belong to is over: drop units, keep debt.
    expired: bool,
}

impl LimitsRt {
    /// One sweep round.
    pub async fn sweep(&self) {
        let now = now_ns();
        self.probe_redis(now).await;
        for p in 0..self.rates.len() {
            for b in self.collect(&self.rates[p], now, None) {
                self.rate_return(p, b.entry, now).await;
            }
        }
        let unix = unix_s();
        for q in 0..self.quotas.len() {
            let window = super::window::locate(self.shared.quotas[q].cfg.window, unix).index;
            for b in self.collect(&self.quotas[q], now, Some(window)) {
                self.quota_return(q, b).await;
            }
        }
    }

    /// Takes the units of idle entries (and every byte debt) out of a local cache.
    fn collect(
        &self,
        cache: &std::cell::RefCell<super::local::Local>,
        now: u64,
        window: Option<u64>,
    ) -> Vec<Back> {
        let mut local = cache.borrow_mut();
        let mut out = Vec::new();
        let active = std::mem::take(&mut local.active);
        let mut keep = Vec::with_capacity(active.len());
        for idx in active {
            let e = local.slot_mut(idx);
            let expired = window.is_some_and(|w| e.window != w);
            let idle = now.saturating_sub(e.last) >= IDLE_RETURN_NS;
            if (idle || expired) && e.units > 0 || e.debt > 0 {
                let units = if idle || expired {
                    std::mem::take(&mut e.units)
                } else {
                    0
                };
                let debt = std::mem::take(&mut e.debt);
                let mut entry = e.clone();
                entry.units = units;
                entry.debt = debt;
                out.push(Back { entry, expired });
            }
            if e.units > 0 {
                keep.push(idx);
            }
        }
        local.active = keep;
        out
    }

    async fn rate_return(&self, p: usize, e: Entry, now: u64) {
        let r = &self.shared.rates[p];
        if r.cfg.scope == Scope::Gateway || e.fallback || e.redis_key.is_empty() {
            self.rate_evicted(p, e, now);
            return;
        }
        self.metrics.rates[p].returned.add(e.units);
        if let Some(redis) = &self.redis {
            let res =
                cluster::rate_return(redis, &self.shared.scripts, &e.redis_key, &r.shape, e.units)
                    .await;
            if let Err(err) = res {
                self.redis_failed(&err);
            }
        }
    }

    async fn quota_return(&self, q: usize, b: Back) {
        let qs = &self.shared.quotas[q];
        let mut e = b.entry;
        if b.expired {
            e.units = 0;
        }
        if qs.cfg.scope == Scope::Gateway {
            self.quota_evicted(q, e);
            return;
        }
        self.metrics.quotas[q].returned.add(e.units);
        if e.redis_key.is_empty() {
            return;
        }
        let Some(redis) = &self.redis else { return };
        let ttl = super::window::locate(qs.cfg.window, unix_s()).secs() + 60;
        if e.debt > 0 {
            if self.use_fallback() {
                let idx = qs.table.find(e.fp, |w| super::table::stale(w, e.window));
                qs.table.add(idx, e.window, e.debt);
                self.pend(&e.redis_key, e.debt, ttl);
            } else if let Err(err) = cluster::quota(
                redis,
                &self.shared.scripts,
                &e.redis_key,
                QuotaOp::Add,
                e.debt,
                ttl,
            )
            .await
            {
                self.redis_failed(&err);
                self.pend(&e.redis_key, e.debt, ttl);
            }
        }
        if e.units > 0 && !self.use_fallback() {
            let op = QuotaOp::Refund;
            let res = cluster::quota(redis, &self.shared.scripts, &e.redis_key, op, e.units, ttl);
            if let Err(err) = res.await {
                self.redis_failed(&err);
            }
        }
    }

    /// An evicted cluster quota entry: its debt and unused units are settled on a spawned task.
    pub(super) fn spawn_quota_flush(&self, q: usize, e: Entry) {
        let (Some(redis), false) = (self.redis.clone(), e.redis_key.is_empty()) else {
            return;
        };
        let shared: Arc<LimitsShared> = self.shared.clone();
        let ttl = super::window::locate(shared.quotas[q].cfg.window, unix_s()).secs() + 60;
        monoio::spawn(async move {
            let s = &shared.scripts;
            if e.debt > 0 {
                let _ = cluster::quota(&redis, s, &e.redis_key, QuotaOp::Add, e.debt, ttl).await;
            }
            if e.units > 0 {
                let _ =
                    cluster::quota(&redis, s, &e.redis_key, QuotaOp::Refund, e.units, ttl).await;
            }
        });
    }

    /// An evicted cluster rate-limit entry: its unused tokens go back on a spawned task.
    pub(super) fn spawn_rate_return(&self, p: usize, e: Entry) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let shared: Arc<LimitsShared> = self.shared.clone();
        monoio::spawn(async move {
            let shape = shared.rates[p].shape;
            let _ =
                cluster::rate_return(&redis, &shared.scripts, &e.redis_key, &shape, e.units).await;
        });
    }

    /// While Redis is down, one core at a time probes it every second; when it answers, the
    /// outage ends (logged once) and this core's outage usage is added to Redis.
    async fn probe_redis(&self, now: u64) {
        let (Some(state), Some(redis)) = (&self.shared.redis, &self.redis) else {
            return;
        };
        if state.down.load(Ordering::Acquire) {
            let due = state.next_probe.load(Ordering::Acquire);
            let next = now + PROBE_INTERVAL_NS;
            let mine = now >= due
                && state
                    .next_probe
                    .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if mine && ping(redis).await && state.down.swap(false, Ordering::AcqRel) {
                eprintln!(
                    "coregate: redis {} reachable again; cluster limits are shared again",
                    state.cfg.addr
                );
            }
        }
        let down = state.down.load(Ordering::Acquire);
        self.metrics.redis_fallback.set(i64::from(down));
        if down || self.pending.borrow().is_empty() {
            return;
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let mut failed = false;
        for (key, (units, ttl)) in pending {
            if failed {
                self.pend(&key, units, ttl);
                continue;
            }
            let res = cluster::quota(redis, &self.shared.scripts, &key, QuotaOp::Add, units, ttl);
            if let Err(err) = res.await {
                self.redis_failed(&err);
                self.pend(&key, units, ttl);
                failed = true;
            }
        }
    }
}

async fn ping(redis: &RedisClient) -> bool {
    redis.cmd(&[b"PING"]).await.is_ok()
}
