//! One core's share of a policy: a direct-mapped cache of leased tokens (or quota units) per key.
//!
//! Owned by one worker behind a `RefCell`; nothing here is shared or atomic. A request whose key
//! has enough leased units left is answered from its slot alone. A slot holds one key at a time:
//! when another key maps to it, the old key's unused units are handed back to the caller to
//! return to the shared budget. Slots that received a lease are remembered in `active`, so the
//! sweep that returns units from quiet keys visits only those.

/// Cached state of one key on this core.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    /// Key fingerprint; 0 = empty.
    pub fp: u64,
    /// Slot of the key in the shared table (gateway scope, and cluster fallback).
    pub global: u32,
    /// Leased units not yet spent.
    pub units: u64,
    /// Rate limits: the shared bucket's `tat` after our last lease. Quotas: the used count then.
    pub seen: u64,
    /// Rate limits: no lease can succeed before this (ns). Quotas: the window exhausted.
    pub deny_until: u64,
    /// When the key was last used (ns).
    pub last: u64,
    /// Quotas: the window index `units` belong to.
    pub window: u64,
    /// Units spent beyond the lease (response bytes), not yet added to the shared count.
    pub debt: u64,
    /// Cluster scope: the Redis key of this entry's budget (kept for returns).
    pub redis_key: Vec<u8>,
    /// Whether the units came from the local fallback budget (Redis was down).
    pub fallback: bool,
    /// A Redis lease for this key is in flight on this core.
    pub leasing: bool,
}

/// The cache.
pub struct Local {
    slots: Box<[Entry]>,
    mask: usize,
    /// Slot indices that may hold units or debt.
    pub active: Vec<u32>,
}

impl Local {
    /// A cache of `size` slots (rounded up to a power of two, at least 16).
    pub fn new(size: usize) -> Local {
        let n = size.clamp(16, 1 << 20).next_power_of_two();
        Local {
            slots: vec![Entry::default(); n].into_boxed_slice(),
            mask: n - 1,
            active: Vec::new(),
        }
    }

    /// The slot index for `fp`.
    #[inline]
    pub fn index(&self, fp: u64) -> usize {
        (fp >> 32) as usize & self.mask
    }

    /// The entry of `fp`; when another key held the slot, its entry is returned as evicted (its
    /// units and debt must go back to the shared budget) and the slot is reset for `fp`.
    #[inline]
    pub fn entry(&mut self, fp: u64) -> (&mut Entry, Option<Entry>) {
        let idx = self.index(fp);
        let slot = &mut self.slots[idx];
        if slot.fp == fp {
            return (slot, None);
        }
        let old = std::mem::replace(
            slot,
            Entry {
                fp,
                ..Entry::default()
            },
        );
        let evicted = (old.fp != 0 && (old.units > 0 || old.debt > 0)).then_some(old);
        (slot, evicted)
    }

    /// The entry of `fp` if this cache holds it.
    pub fn get_mut(&mut self, fp: u64) -> Option<&mut Entry> {
        let idx = self.index(fp);
        let slot = &mut self.slots[idx];
        (slot.fp == fp).then_some(slot)
    }

    /// Marks slot `idx` as possibly holding units.
    pub fn touch_active(&mut self, fp: u64) {
        let idx = self.index(fp) as u32;
        if !self.active.contains(&idx) {
            self.active.push(idx);
        }
    }

    pub fn slot_mut(&mut self, idx: u32) -> &mut Entry {
        &mut self.slots[idx as usize]
    }

    /// Bytes of memory the cache holds (slots only).
    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_evicts_the_old_one_with_its_units() {
        let mut l = Local::new(16);
        let a = 5u64 << 32;
        let b = (5u64 << 32) | 1; // same slot
        let (e, ev) = l.entry(a);
        assert!(ev.is_none());
        e.units = 7;
        e.redis_key.extend_from_slice(b"k:a");
        l.touch_active(a);
        let (e, ev) = l.entry(a);
        assert_eq!(e.units, 7);
        assert!(ev.is_none());
        let (e, ev) = l.entry(b);
        assert_eq!((e.fp, e.units), (b, 0));
        assert!(e.redis_key.is_empty());
        let ev = ev.expect("a had units");
        assert_eq!(
            (ev.fp, ev.units, ev.redis_key.as_slice()),
            (a, 7, &b"k:a"[..])
        );
        assert!(l.get_mut(a).is_none());
        assert_eq!(l.active, vec![5]);
    }
}
