//! Process-wide budgets: fixed-size, lock-free tables of per-key state shared by every core.
//!
//! A [`KeyTable`] is an open-addressed array of slots, each a key fingerprint and one `u64` of
//! state, both atomics. Cores find a key's slot by probing a few neighbours; a slot whose state is
//! equivalent to "no state" (a full bucket, a quota counter from an older window) is free and may be
//! claimed by another key with one compare-and-swap on the fingerprint. Memory is therefore fixed
//! at start: 16 bytes per slot, two slots per configured `max_keys`, however many distinct keys
//! (client IPs, say) arrive. When all probed slots hold live state of other keys, the key shares the
//! first probed slot: limits get stricter for the keys that share, never looser.
//!
//! State words:
//! - rate limits: a GCRA `tat` (see `gcra.rs`), updated with CAS loops;
//! - quotas: `window tag (20 bits) << 44 | used (44 bits)`; a different tag reads as zero used.
//!
//! Races: a slot claimed by key B while a core is mid-update for the idle key A it replaces can
//! let that one update land on B's fresh state (at most one lease). Nothing else is approximate.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{self, Shape, Take};

/// Slots probed for a key before it shares one.
const PROBES: usize = 8;
const USED_BITS: u32 = 44;
/// Largest count a quota slot holds (16 TiB of bytes, or that many requests).
pub const USED_MAX: u64 = (1 << USED_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - USED_BITS)) - 1;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    word: AtomicU64,
}

/// A fixed table of per-key state words shared by all cores.
pub struct KeyTable {
    slots: Box<[Slot]>,
    mask: usize,
}

impl KeyTable {
    /// Room for `max_keys` live keys (two slots each, at least 16).
    pub fn new(max_keys: usize) -> KeyTable {
        let n = max_keys
            .saturating_mul(2)
            .clamp(16, 1 << 28)
            .next_power_of_two();
        KeyTable {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
        }
    }

    /// Bytes of shared memory the table holds.
    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// The slot of key fingerprint `fp` (non-zero), claiming a free one when the key has none.
    /// `free(word)` says whether a slot's state is the same as no state.
    pub fn find(&self, fp: u64, free: impl Fn(u64) -> bool) -> usize {
        let start = fp as usize & self.mask;
        let mut candidate = None;
        for i in 0..PROBES {
            let idx = (start + i) & self.mask;
            let slot = &self.slots[idx];
            let owner = slot.key.load(Ordering::Acquire);
            if owner == fp {
                return idx;
            }
            if candidate.is_none() && (owner == 0 || free(slot.word.load(Ordering::Acquire))) {
                candidate = Some((idx, owner));
            }
        }
        if let Some((idx, owner)) = candidate {
            let slot = &self.slots[idx];
            match slot
                .key
                .compare_exchange(owner, fp, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return idx,
                // another core claimed it first, maybe for this very key
                Err(now) if now == fp => return idx,
                Err(_) => return self.find_again(fp),
            }
        }
        start
    }

    /// After a lost claim race: the key's slot if it now has one, else the shared first slot.
    fn find_again(&self, fp: u64) -> usize {
        let start = fp as usize & self.mask;
        (0..PROBES)
            .map(|i| (start + i) & self.mask)
            .find(|&idx| self.slots[idx].key.load(Ordering::Acquire) == fp)
            .unwrap_or(start)
    }

    /// Whether slot `idx` still belongs to `fp`.
    pub fn owned_by(&self, idx: usize, fp: u64) -> bool {
        self.slots[idx].key.load(Ordering::Acquire) == fp
    }

    fn word(&self, idx: usize) -> &AtomicU64 {
        &self.slots[idx].word
    }

    // ---- rate limits (GCRA) ----

    /// Takes up to `want` (at least `min`) tokens from slot `idx`'s bucket.
    pub fn take(&self, idx: usize, shape: &Shape, now: u64, want: u64, min: u64) -> Take {
        let w = self.word(idx);
        let mut tat = w.load(Ordering::Acquire);
        loop {
            let t = gcra::take(shape, tat, now, want, min);
            if t.granted == 0 {
                return t;
            }
            match w.compare_exchange_weak(tat, t.tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return t,
                Err(cur) => tat = cur,
            }
        }
    }

    /// Returns unused leased tokens to slot `idx`'s bucket.
    pub fn give_back(&self, idx: usize, shape: &Shape, now: u64, tokens: u64) {
        let w = self.word(idx);
        let mut tat = w.load(Ordering::Acquire);
        loop {
            let back = gcra::give_back(shape, tat, now, tokens);
            if back == tat {
                return;
            }
            match w.compare_exchange_weak(tat, back, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(cur) => tat = cur,
            }
        }
    }

    /// The bucket state of slot `idx` (a plain load).
    pub fn tat(&self, idx: usize) -> u64 {
        self.word(idx).load(Ordering::Acquire)
    }

    // ---- quotas (window tag + used) ----

    /// Used units of slot `idx` in window `tag`.
    pub fn used(&self, idx: usize, tag: u64) -> u64 {
        unpack(self.word(idx).load(Ordering::Acquire), tag)
    }

    /// Leases up to `want` (at least `min`) units of `limit` in window `tag`: (granted, used after).
    pub fn lease(&self, idx: usize, tag: u64, limit: u64, want: u64, min: u64) -> (u64, u64) {
        let w = self.word(idx);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            let used = unpack(cur, tag);
            let left = limit.saturating_sub(used);
            if left < min.max(1) {
                return (0, used);
            }
            let grant = want.min(left);
            let next = pack(tag, used + grant);
            match w.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return (grant, used + grant),
                Err(c) => cur = c,
            }
        }
    }

    /// Adds `n` units in window `tag` whatever the limit (bytes already sent); returns used after.
    pub fn add(&self, idx: usize, tag: u64, n: u64) -> u64 {
        self.update(idx, tag, false, |used| used.saturating_add(n).min(USED_MAX))
    }

    /// Returns `n` leased, unused units of window `tag` (nothing if the window has moved on).
    pub fn refund(&self, idx: usize, tag: u64, n: u64) {
        self.update(idx, tag, true, |used| used.saturating_sub(n));
    }

    /// Applies `f` to the used count of window `tag`; a word of another window counts as 0, or is
    /// left alone when `same_window_only`.
    fn update(&self, idx: usize, tag: u64, same_window_only: bool, f: impl Fn(u64) -> u64) -> u64 {
        let w = self.word(idx);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            if same_window_only && stale(cur, tag) {
                return 0;
            }
            let used = f(unpack(cur, tag));
            match w.compare_exchange_weak(cur, pack(tag, used), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return used,
                Err(c) => cur = c,
            }
        }
    }
}

/// Whether a quota word belongs to a window other than `tag` (so its slot is free).
pub fn stale(word: u64, tag: u64) -> bool {
    word >> USED_BITS != tag & TAG_MASK
}

fn pack(tag: u64, used: u64) -> u64 {
    (tag & TAG_MASK) << USED_BITS | used.min(USED_MAX)
}

fn unpack(word: u64, tag: u64) -> u64 {
    if stale(word, tag) {
        0
    } else {
        word & USED_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;

    #[test]
    fn keys_get_their_own_slots_and_idle_slots_are_reused() {
        let t = KeyTable::new(4); // 16 slots
        let sh = Shape::new(10, S, 2, 1.0);
        let now = 10 * S;
        let a = t.find(7, |w| w <= now);
        assert_eq!(t.take(a, &sh, now, 2, 1).granted, 2);
        let b = t.find(7 + 16, |w| w <= now); // same start slot, different key
        assert_ne!(a, b);
        assert_eq!(t.find(7, |w| w <= now), a);
        assert_eq!(t.take(a, &sh, now, 1, 1).granted, 0, "a is empty");
        assert_eq!(t.take(b, &sh, now, 1, 1).granted, 1, "b is separate");
        // much later both buckets are full again: their slots are free for other keys
        let later = now + 60 * S;
        let c = t.find(7 + 32, |w| w <= later);
        assert_eq!(c, a, "idle slot reclaimed");
        assert!(!t.owned_by(a, 7));
    }

    #[test]
    fn a_full_neighbourhood_shares_a_slot() {
        let t = KeyTable::new(8);
        let sh = Shape::new(1, 3600 * S, 1, 1.0);
        let now = S;
        let mut seen = Vec::new();
        for k in 0..PROBES as u64 {
            let idx = t.find(3 + 16 * k, |w| w <= now);
            t.take(idx, &sh, now, 1, 1);
            seen.push(idx);
        }
        let extra = t.find(3 + 16 * 99, |w| w <= now);
        assert_eq!(extra, seen[0], "shares the first probed slot");
        assert_eq!(
            t.take(extra, &sh, now, 1, 1).granted,
            0,
            "stricter, not looser"
        );
        assert_eq!(t.bytes(), 16 * 16);
    }

    #[test]
    fn quota_words_reset_with_the_window() {
        let t = KeyTable::new(4);
        let idx = t.find(5, |w| stale(w, 100));
        assert_eq!(t.lease(idx, 100, 10, 4, 1), (4, 4));
        assert_eq!(t.lease(idx, 100, 10, 50, 1), (6, 10));
        assert_eq!(t.lease(idx, 100, 10, 1, 1), (0, 10));
        t.refund(idx, 100, 3);
        assert_eq!(t.used(idx, 100), 7);
        assert_eq!(t.add(idx, 100, 1000), 1007, "bytes may overdraw");
        assert_eq!(t.used(idx, 101), 0, "next window starts at zero");
        assert_eq!(t.lease(idx, 101, 10, 10, 1), (10, 10));
        t.refund(idx, 100, 5);
        assert_eq!(
            t.used(idx, 101),
            10,
            "a refund for an old window changes nothing"
        );
    }

    #[test]
    fn concurrent_takes_never_exceed_the_budget() {
        let t = Arc::new(KeyTable::new(4));
        let sh = Shape::new(1, 3600 * S, 10_000, 1.0); // no refill within the test
        let now = S;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let idx = t.find(42, |w| w <= now);
                    let mut got = 0;
                    for _ in 0..10_000 {
                        got += t.take(idx, &sh, now, 3, 1).granted;
                    }
                    got
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 10_000);
    }
}
