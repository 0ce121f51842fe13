//! Quota admission and byte charging for one policy and key, per fixed UTC window.
//!
//! A core leases a batch of the window's units (requests, or bytes) and spends them locally. A
//! request quota spends one unit at admission; a byte quota only needs a unit left at admission
//! and is charged the response body's bytes afterwards ([`LimitsRt::charge`]); bytes past the
//! lease are added to the shared count (gateway scope at once, cluster scope by the sweep). A
//! window that ran out is remembered locally, so refused requests cost nothing until it ends.
//! Cluster quotas count in Redis; while Redis is down each node counts its local share and
//! remembers the usage, which the sweep adds to Redis once it is back.

use super::cluster::{self, QuotaOp};
use super::local::Entry;
use super::table::stale;
use super::window::Span;
use super::{Charge, LimitsRt, Output, Step, Taken};
use crate::config::limits::QuotaUnit;

/// Seconds a Redis quota counter outlives its window.
const TTL_SLACK_S: u64 = 60;

impl LimitsRt {
    /// The local entry's answer, or `Err` when a lease is needed.
    fn quota_local(
        &self,
        q: usize,
        fp: u64,
        span: &Span,
        now: u64,
        out: &mut Output,
    ) -> Result<Step, ()> {
        let qs = &self.shared.quotas[q];
        let mut local = self.quotas[q].borrow_mut();
        let (e, evicted) = local.entry(fp);
        if e.window != span.index {
            e.window = span.index;
            e.units = 0;
            e.deny_until = 0;
            e.seen = 0;
        }
        e.last = now;
        let step = if e.units >= 1 {
            self.spend(q, e, span, out);
            Ok(Step::Granted {
                remaining: e.units + qs.cfg.limit.saturating_sub(e.seen),
                reset_ns: 0,
            })
        } else if e.deny_until == span.index + 1 {
            Ok(Step::Denied {
                retry_ns: 0,
                reset_ns: 0,
            })
        } else {
            Err(())
        };
        drop(local);
        if let Some(ev) = evicted {
            self.quota_evicted(q, ev);
        }
        step
    }

    /// Spends the request's unit (request quotas) or records the charge (byte quotas).
    fn spend(&self, q: usize, e: &mut Entry, span: &Span, out: &mut Output) {
        match self.shared.quotas[q].cfg.unit {
            QuotaUnit::Requests => {
                e.units -= 1;
                out.taken.push(Taken::Quota {
                    q: q as u16,
                    fp: e.fp,
                    window: span.index,
                });
            }
            QuotaUnit::Bytes => out.charges.push(Charge {
                quota: q as u16,
                fp: e.fp,
                global: e.global,
                window: span.index,
            }),
        }
    }

    /// Applies a lease (`granted` units, the shared count `used` after it) to the entry of `fp`.
    fn quota_settle(
        &self,
        q: usize,
        fp: u64,
        span: &Span,
        lease: (u64, u64),
        global: u32,
        out: &mut Output,
    ) -> Step {
        let qs = &self.shared.quotas[q];
        let (granted, used) = lease;
        let mut local = self.quotas[q].borrow_mut();
        let (e, evicted) = local.entry(fp);
        if e.window != span.index {
            e.window = span.index;
            e.units = 0;
        }
        e.seen = used;
        e.global = global;
        let step = if granted == 0 && e.units == 0 {
            e.deny_until = span.index + 1;
            Step::Denied {
                retry_ns: 0,
                reset_ns: 0,
            }
        } else {
            e.units += granted;
            self.spend(q, e, span, out);
            Step::Granted {
                remaining: e.units + qs.cfg.limit.saturating_sub(used),
                reset_ns: 0,
            }
        };
        if granted > 0 {
            local.touch_active(fp);
        }
        drop(local);
        if let Some(ev) = evicted {
            self.quota_evicted(q, ev);
        }
        step
    }

    /// Gateway scope: the local lease, else one CAS on the shared counter.
    pub(super) fn quota_gateway(
        &self,
        q: usize,
        fp: u64,
        span: &Span,
        now: u64,
        out: &mut Output,
    ) -> Step {
        if let Ok(step) = self.quota_local(q, fp, span, now, out) {
            return step;
        }
        let qs = &self.shared.quotas[q];
        let idx = qs.table.find(fp, |w| stale(w, span.index));
        self.metrics.quotas[q].leases.inc();
        let lease = qs.table.lease(idx, span.index, qs.cfg.limit, qs.lease, 1);
        self.quota_settle(q, fp, span, lease, idx as u32, out)
    }

    /// Cluster scope: the local lease, else a Redis lease; this node's share while Redis is down.
    pub(super) async fn quota_cluster(
        &self,
        q: usize,
        fp: u64,
        span: &Span,
        now: u64,
        out: &mut Output,
    ) -> Step {
        if let Ok(step) = self.quota_local(q, fp, span, now, out) {
            return step;
        }
        let qs = &self.shared.quotas[q];
        let rkey = self.redis_key(b"q:", &qs.cfg.name, Some(span.start));
        let ttl = span.secs() + TTL_SLACK_S;
        if !self.use_fallback() {
            let redis = self.redis.as_ref().expect("cluster scope needs [redis]");
            self.metrics.quotas[q].leases.inc();
            let op = QuotaOp::Lease {
                limit: qs.cfg.limit,
            };
            match cluster::quota(redis, &self.shared.scripts, &rkey, op, qs.lease, ttl).await {
                Ok(lease) => {
                    self.remember_key(q, fp, span, rkey);
                    return self.quota_settle(q, fp, span, lease, 0, out);
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        // Redis is down: count this node's share directly (no batching) and remember the usage
        let idx = qs.table.find(fp, |w| stale(w, span.index));
        let bytes = qs.cfg.unit == QuotaUnit::Bytes;
        let (granted, used) = if bytes {
            let used = qs.table.used(idx, span.index);
            (u64::from(used < qs.fallback_limit), used)
        } else {
            qs.table.lease(idx, span.index, qs.fallback_limit, 1, 1)
        };
        if granted == 0 {
            return Step::Denied {
                retry_ns: 0,
                reset_ns: 0,
            };
        }
        if bytes {
            self.remember_key(q, fp, span, rkey);
            out.charges.push(Charge {
                quota: q as u16,
                fp,
                global: idx as u32,
                window: span.index,
            });
        } else {
            self.pend(&rkey, 1, ttl);
        }
        Step::Granted {
            remaining: qs.fallback_limit.saturating_sub(used),
            reset_ns: 0,
        }
    }

    /// Keeps the Redis key of a cluster entry (for returns and byte debts).
    fn remember_key(&self, q: usize, fp: u64, span: &Span, rkey: Vec<u8>) {
        let mut local = self.quotas[q].borrow_mut();
        if let Some(e) = local.get_mut(fp) {
            if e.window == span.index && e.redis_key != rkey {
                e.redis_key = rkey;
            }
        }
    }

    /// Charges a finished response's body bytes to its byte quotas.
    pub fn charge(&self, charges: &[Charge], bytes: u64) {
        let unix = super::unix_s();
        for c in charges {
            let q = c.quota as usize;
            let qs = &self.shared.quotas[q];
            let mut local = self.quotas[q].borrow_mut();
            let cluster = qs.cfg.scope == crate::config::limits::Scope::Cluster;
            let rest = match local.get_mut(c.fp) {
                Some(e) if e.window == c.window => {
                    let from_lease = e.units.min(bytes);
                    e.units -= from_lease;
                    if cluster {
                        e.debt += bytes - from_lease;
                        0
                    } else {
                        bytes - from_lease
                    }
                }
                _ if cluster => 0,
                _ => bytes,
            };
            if cluster {
                local.touch_active(c.fp);
            }
            drop(local);
            // a window that ended mid-response charges the window the response ended in
            let window = super::window::locate(qs.cfg.window, unix)
                .index
                .max(c.window);
            if rest > 0 && qs.table.owned_by(c.global as usize, c.fp) {
                qs.table.add(c.global as usize, window, rest);
            }
        }
    }

    /// Returns an evicted entry's unused units (gateway scope) or leaves them to expire with the
    /// window (cluster scope; its byte debt is added to Redis by a spawned call).
    pub(super) fn quota_evicted(&self, q: usize, ev: Entry) {
        let qs = &self.shared.quotas[q];
        self.metrics.quotas[q].returned.add(ev.units);
        if qs.cfg.scope == crate::config::limits::Scope::Gateway {
            if ev.units > 0 && qs.table.owned_by(ev.global as usize, ev.fp) {
                qs.table.refund(ev.global as usize, ev.window, ev.units);
            }
            return;
        }
        self.spawn_quota_flush(q, ev);
    }
}
