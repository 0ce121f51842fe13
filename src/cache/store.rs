//! One worker's response store: byte-budgeted LRU, TinyLFU admission, Vary variants, tags, purge.
//!
//! Single-threaded (thread-per-core: each worker owns one; no locks). Entries live in a slab
//! (`slots`, free slots chained through `Slot::Free`) threaded on an intrusive doubly-linked LRU
//! list by index (head = least recently used). `map` takes a primary key to its variants' slots,
//! least recently used first; a variant is chosen by comparing the request's values of the
//! entry's Vary header names byte for byte (the caller normalises both sides).
//!
//! lookup: hash key -> one access recorded in the count-min sketch -> variant scan -> move to the
//! MRU end -> `Rc<Entry>` clone (no allocation). insert: dead entries go first (a min-heap of
//! death instants, re-checked against the entry's live `Freshness` before eviction) -> replace an
//! equal variant, or drop the key's oldest past `MAX_VARIANTS` -> if the LRU end must give way,
//! TinyLFU admission: the candidate's estimated frequency must beat every victim's, else
//! `Rejected` with nothing evicted -> evict -> link at the MRU end. Values are `Rc` so a response
//! already being served survives its eviction or purge.
//!
//! The sketch: 4 rows of saturating 4-bit counters (one `u8` each), width a power of two from
//! the budget, indexed by the map's randomly keyed hash so collisions cannot be aimed; every
//! 10 × width accesses all counters halve, so popularity fades.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::freshness::Freshness;

/// Most variants (distinct Vary values) kept per primary key.
pub const MAX_VARIANTS: usize = 8;
/// Bytes accounted per entry on top of the caller's weight, key (stored twice), Vary and tags.
pub const ENTRY_OVERHEAD: usize = 96;

const NIL: u32 = u32::MAX;

/// (lower-case request header name, the request's value or None when absent).
pub type VaryPair = (Box<[u8]>, Option<Box<[u8]>>);

/// One stored response variant.
#[derive(Debug)]
pub struct Entry<V> {
    /// Primary key bytes (opaque to the store).
    pub key: Box<[u8]>,
    /// The Vary header values this variant was stored for.
    pub vary: Box<[VaryPair]>,
    /// Purge tags.
    pub tags: Box<[Box<[u8]>]>,
    /// Freshness; callers update it after a revalidation.
    pub fresh: Cell<Freshness>,
    /// A background refresh is running (callers set/clear it).
    pub refreshing: Cell<bool>,
    /// Bytes accounted: caller weight + 2 × key + Vary + tags + `ENTRY_OVERHEAD`.
    pub weight: usize,
    /// The cached value.
    pub value: V,
}

/// Outcome of `Store::insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored; `evicted` entries were removed for it (dead, LRU, or the key's oldest variant;
    /// not an equal variant it replaced).
    Stored {
        /// Entries removed.
        evicted: usize,
    },
    /// TinyLFU said the candidate is less popular than what it would evict, or it is heavier
    /// than the whole budget / 8, or it is already dead (past `keep_for`).
    Rejected,
}

struct Node<V> {
    entry: Rc<Entry<V>>,
    prev: u32,
    next: u32,
    /// Sketch hash of the key.
    hash: u64,
    /// Insertion number: tells a death-heap item from one left by an earlier tenant of the slot.
    seq: u64,
}

enum Slot<V> {
    Used(Node<V>),
    /// Next free slot, or NIL.
    Free(u32),
}

/// A byte-budgeted response store for one worker.
pub struct Store<V> {
    slots: Vec<Slot<V>>,
    free: u32,
    head: u32,
    tail: u32,
    map: HashMap<Box<[u8]>, Vec<u32>>,
    deaths: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    sketch: Sketch,
    seq: u64,
    len: usize,
    bytes: usize,
    budget: usize,
}

impl<V> Store<V> {
    /// An empty store holding at most `budget_bytes` of accounted weight (0 stores nothing).
    pub fn new(budget_bytes: usize) -> Self {
        Store {
            slots: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            map: HashMap::new(),
            deaths: BinaryHeap::new(),
            sketch: Sketch::new(budget_bytes),
            seq: 0,
            len: 0,
            bytes: 0,
            budget: budget_bytes,
        }
    }

    /// Finds the variant of `key` whose Vary values equal the request's (`header(name)` gives
    /// the request's normalised value, None if absent) and which is not past keep_for at `now`;
    /// moves it to the MRU end. Always records one access of `key` in the frequency sketch (hit
    /// or miss). Does not allocate.
    pub fn lookup<'h>(
        &mut self,
        key: &[u8],
        now: Instant,
        header: &dyn Fn(&[u8]) -> Option<&'h [u8]>,
    ) -> Option<Rc<Entry<V>>> {
        self.sketch.record(self.map.hasher().hash_one(key));
        let list = self.map.get_mut(key)?;
        let slots = &self.slots;
        let pos = list.iter().rposition(|&i| match slots.get(i as usize) {
            Some(Slot::Used(n)) => {
                let e = &n.entry;
                !is_dead(&e.fresh.get(), now)
                    && e.vary.iter().all(|(h, v)| header(h) == v.as_deref())
            }
            _ => false,
        })?;
        let tail = list.get_mut(pos..)?;
        tail.rotate_left(1);
        let i = *tail.last()?;
        self.unlink(i);
        self.push_mru(i);
        self.node(i).map(|n| Rc::clone(&n.entry))
    }

    /// Stores a new variant (replacing one with the same key and equal vary values). `weight` =
    /// the caller's size of `value` in bytes. Evicts LRU entries until it fits; TinyLFU
    /// admission: if eviction is needed and the candidate's estimated frequency is not greater
    /// than an LRU victim's, Rejected and nothing is evicted (a replacement skips this check: its
    /// key is already resident). Dead entries (past keep_for) are evicted first regardless of
    /// admission. At most `MAX_VARIANTS` variants per key: the key's least recently used goes
    /// first.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        key: &[u8],
        vary: Vec<VaryPair>,
        tags: Vec<Box<[u8]>>,
        fresh: Freshness,
        weight: usize,
        value: V,
        now: Instant,
    ) -> Inserted {
        let mut evicted = self.evict_dead(now);
        let value_weight = weight;
        let mut weight = key.len().saturating_mul(2).saturating_add(ENTRY_OVERHEAD);
        for (name, v) in &vary {
            weight = weight.saturating_add(name.len() + v.as_ref().map_or(0, |v| v.len()));
        }
        for t in &tags {
            weight = weight.saturating_add(t.len());
        }
        let weight = weight.saturating_add(value_weight);
        let full = self.free == NIL && self.slots.len() >= NIL as usize;
        if weight > self.budget / 8 || is_dead(&fresh, now) || full {
            return Inserted::Rejected;
        }
        let hash = self.map.hasher().hash_one(key);
        // The equal variant this replaces, else the key's oldest when it is at MAX_VARIANTS.
        let (displaced, replacing) = match self.map.get(key) {
            None => (NIL, false),
            Some(list) => match list
                .iter()
                .find(|&&i| self.node(i).is_some_and(|n| *n.entry.vary == *vary))
            {
                Some(&i) => (i, true),
                None if list.len() >= MAX_VARIANTS => (list.first().copied().unwrap_or(NIL), false),
                None => (NIL, false),
            },
        };
        // Plan the LRU victims without touching anything, so a rejection evicts nothing.
        let freed = self.node(displaced).map_or(0, |n| n.entry.weight);
        let mut room = self.budget.saturating_sub(self.bytes).saturating_add(freed);
        let candidate = self.sketch.estimate(hash);
        let mut cur = self.head;
        while room < weight {
            let Some(n) = self.node(cur) else {
                return Inserted::Rejected;
            };
            if cur != displaced {
                if !replacing && self.sketch.estimate(n.hash) >= candidate {
                    return Inserted::Rejected;
                }
                room = room.saturating_add(n.entry.weight);
            }
            cur = n.next;
        }
        if self.remove(displaced) && !replacing {
            evicted += 1;
        }
        while self.bytes.saturating_add(weight) > self.budget && self.remove(self.head) {
            evicted += 1;
        }
        let entry = Rc::new(Entry {
            key: key.into(),
            vary: vary.into(),
            tags: tags.into(),
            fresh: Cell::new(fresh),
            refreshing: Cell::new(false),
            weight,
            value,
        });
        self.seq += 1;
        let (prev, next, seq) = (NIL, NIL, self.seq);
        let node = Slot::Used(Node {
            entry,
            prev,
            next,
            hash,
            seq,
        });
        let i = match self.slots.get_mut(self.free as usize) {
            Some(slot) => {
                let i = self.free;
                if let Slot::Free(next) = std::mem::replace(slot, node) {
                    self.free = next;
                }
                i
            }
            None => {
                self.slots.push(node);
                (self.slots.len() - 1) as u32
            }
        };
        self.push_mru(i);
        match self.map.get_mut(key) {
            Some(list) => list.push(i),
            None => drop(self.map.insert(key.into(), vec![i])),
        }
        if let Some(at) = death(&fresh) {
            self.deaths.push(Reverse((at, seq, i)));
        }
        self.len += 1;
        self.bytes += weight;
        if self.deaths.len() > 2 * self.len + 64 {
            self.rebuild_deaths();
        }
        Inserted::Stored { evicted }
    }

    /// Removes every variant of exactly `key`; returns how many.
    pub fn purge_key(&mut self, key: &[u8]) -> usize {
        let list = self.map.remove(key).unwrap_or_default();
        list.into_iter().filter(|&i| self.remove(i)).count()
    }

    /// Removes every entry whose key starts with `prefix` (O(n) scan); returns how many.
    pub fn purge_prefix(&mut self, prefix: &[u8]) -> usize {
        self.purge_where(|e| e.key.starts_with(prefix))
    }

    /// Removes every entry carrying `tag` (O(n) scan); returns how many.
    pub fn purge_tag(&mut self, tag: &[u8]) -> usize {
        self.purge_where(|e| e.tags.iter().any(|t| **t == *tag))
    }

    /// Removes everything (the frequency sketch is kept); returns how many entries.
    pub fn purge_all(&mut self) -> usize {
        let n = self.len;
        self.slots.clear();
        self.map.clear();
        self.deaths.clear();
        (self.free, self.head, self.tail, self.len, self.bytes) = (NIL, NIL, NIL, 0, 0);
        n
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Accounted bytes stored (never above `budget`).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Changes the budget (a reload); evicts LRU entries to fit; returns how many. The sketch
    /// is rebuilt (frequencies forgotten) when its width for the new budget differs.
    pub fn set_budget(&mut self, bytes: usize) -> usize {
        self.budget = bytes;
        if Sketch::width_for(bytes) != self.sketch.width() {
            self.sketch = Sketch::new(bytes);
        }
        let mut n = 0;
        while self.bytes > self.budget && self.remove(self.head) {
            n += 1;
        }
        n
    }

    fn node(&self, i: u32) -> Option<&Node<V>> {
        match self.slots.get(i as usize) {
            Some(Slot::Used(n)) => Some(n),
            _ => None,
        }
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node<V>> {
        match self.slots.get_mut(i as usize) {
            Some(Slot::Used(n)) => Some(n),
            _ => None,
        }
    }

    fn unlink(&mut self, i: u32) {
        let Some(&Node { prev, next, .. }) = self.node(i) else {
            return;
        };
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_mru(&mut self, i: u32) {
        let old = self.tail;
        if let Some(n) = self.node_mut(i) {
            (n.prev, n.next) = (old, NIL);
        }
        match self.node_mut(old) {
            Some(o) => o.next = i,
            None => self.head = i,
        }
        self.tail = i;
    }

    /// Unlinks and frees slot `i` and drops it from its key's list; false if `i` is not in use.
    fn remove(&mut self, i: u32) -> bool {
        self.unlink(i);
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return false;
        };
        if !matches!(slot, Slot::Used(_)) {
            return false;
        }
        let Slot::Used(node) = std::mem::replace(slot, Slot::Free(self.free)) else {
            return false;
        };
        self.free = i;
        self.len -= 1;
        self.bytes -= node.entry.weight;
        let key = &*node.entry.key;
        if let Some(list) = self.map.get_mut(key) {
            list.retain(|&j| j != i);
            if list.is_empty() {
                self.map.remove(key);
            }
        }
        true
    }

    fn purge_where(&mut self, pred: impl Fn(&Entry<V>) -> bool) -> usize {
        let hits: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.node(i).is_some_and(|n| pred(&n.entry)))
            .collect();
        hits.into_iter().filter(|&i| self.remove(i)).count()
    }

    /// Evicts entries whose death instant has passed; returns how many.
    fn evict_dead(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&Reverse((at, seq, i))) = self.deaths.peek() {
            if at > now {
                break;
            }
            self.deaths.pop();
            let Some(node) = self.node(i).filter(|n| n.seq == seq) else {
                continue; // the slot was freed or reused since
            };
            match death(&node.entry.fresh.get()) {
                Some(later) if later > now => self.deaths.push(Reverse((later, seq, i))),
                _ => n += usize::from(self.remove(i)),
            }
        }
        n
    }

    fn rebuild_deaths(&mut self) {
        let live = (0..self.slots.len() as u32).filter_map(|i| {
            let n = self.node(i)?;
            Some(Reverse((death(&n.entry.fresh.get())?, n.seq, i)))
        });
        self.deaths = live.collect();
    }
}

/// Past keep_for: never returned, evicted first.
fn is_dead(f: &Freshness, now: Instant) -> bool {
    f.age(now) >= f.keep_for()
}

/// The instant `is_dead` turns true (for `now` not before `stored_at`); None if unrepresentable.
fn death(f: &Freshness) -> Option<Instant> {
    let left = f.keep_for().saturating_sub(f.initial_age);
    f.stored_at.checked_add(Duration::from_secs(left))
}

/// Count-min sketch of key popularity: 4 rows of 4-bit saturating counters.
struct Sketch {
    counters: Box<[u8]>,
    mask: usize,
    seen: usize,
}

impl Sketch {
    fn width_for(budget: usize) -> usize {
        (budget / 512).clamp(256, 1 << 20).next_power_of_two()
    }

    fn new(budget: usize) -> Self {
        let width = Self::width_for(budget);
        let counters = vec![0; 4 * width].into_boxed_slice();
        Sketch {
            counters,
            mask: width - 1,
            seen: 0,
        }
    }

    fn width(&self) -> usize {
        self.mask + 1
    }

    fn cells(&self, hash: u64) -> [usize; 4] {
        std::array::from_fn(|row| {
            let x = (hash ^ (row as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            row * self.width() + ((x ^ (x >> 31)) as usize & self.mask)
        })
    }

    fn record(&mut self, hash: u64) {
        for i in self.cells(hash) {
            if let Some(c) = self.counters.get_mut(i) {
                *c = (*c + 1).min(15);
            }
        }
        self.seen += 1;
        if self.seen >= 10 * self.width() {
            self.counters.iter_mut().for_each(|c| *c >>= 1);
            self.seen = 0;
        }
    }

    fn estimate(&self, hash: u64) -> u8 {
        let counts = self
            .cells(hash)
            .map(|i| self.counters.get(i).copied().unwrap_or(0));
        counts.into_iter().min().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(t0: Instant, lifetime: u64) -> Freshness {
        Freshness {
            stored_at: t0,
            initial_age: 0,
            lifetime,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            must_revalidate: false,
        }
    }

    fn vary(pairs: &[(&str, Option<&str>)]) -> Vec<VaryPair> {
        let b = |s: &str| s.as_bytes().into();
        pairs.iter().map(|(n, v)| (b(n), v.map(b))).collect()
    }

    fn stored(evicted: usize) -> Inserted {
        Inserted::Stored { evicted }
    }

    fn tags(t: &[&str]) -> Vec<Box<[u8]>> {
        t.iter().map(|t| t.as_bytes().into()).collect()
    }

    fn none(_: &[u8]) -> Option<&'static [u8]> {
        None
    }

    /// Caller weight that makes an entry with a 2-byte key and no Vary/tags weigh `w`.
    fn w(total: usize) -> usize {
        total - ENTRY_OVERHEAD - 4
    }

    impl<V> Store<V> {
        fn check(&self) {
            let (mut n, mut bytes, mut prev, mut cur) = (0, 0, NIL, self.head);
            while let Some(node) = self.node(cur) {
                assert_eq!(node.prev, prev);
                let list = &self.map[&node.entry.key];
                assert!(list.contains(&cur) && list.len() <= MAX_VARIANTS);
                (n, bytes, prev, cur) = (n + 1, bytes + node.entry.weight, cur, node.next);
            }
            assert_eq!((prev, n, bytes), (self.tail, self.len, self.bytes));
            assert_eq!(self.map.values().map(Vec::len).sum::<usize>(), self.len);
            let (mut free, mut f) = (0, self.free);
            while let Some(Slot::Free(next)) = self.slots.get(f as usize) {
                (free, f) = (free + 1, *next);
            }
            assert_eq!(free + self.len, self.slots.len());
            assert!(self.bytes <= self.budget);
        }

        fn hits(&mut self, key: &str, times: usize, now: Instant) {
            for _ in 0..times {
                self.lookup(key.as_bytes(), now, &none);
            }
        }

        fn put(&mut self, key: &str, weight: usize, value: V, t0: Instant) -> Inserted {
            let f = fresh(t0, 100);
            self.insert(key.as_bytes(), vec![], vec![], f, weight, value, t0)
        }
    }

    #[test]
    fn hit_miss_and_vary_variants() {
        let t0 = Instant::now();
        let mut s = Store::new(1 << 20);
        assert!(s.lookup(b"k", t0, &none).is_none());
        let ae = |v| vary(&[("accept-encoding", v)]);
        let variants = [(Some("gzip"), "gz"), (Some("br"), "br"), (None, "none")];
        for (v, val) in variants.into_iter().chain([(Some(""), "empty")]) {
            assert_eq!(
                s.insert(b"k", ae(v), vec![], fresh(t0, 60), 10, val, t0),
                stored(0)
            );
        }
        let get = |s: &mut Store<&'static str>, v: Option<&'static str>| -> Option<&'static str> {
            let h = move |_: &[u8]| v.map(str::as_bytes);
            s.lookup(b"k", t0, &h).map(|e| e.value)
        };
        assert_eq!(get(&mut s, Some("gzip")), Some("gz"));
        assert_eq!(get(&mut s, Some("br")), Some("br"));
        assert_eq!(get(&mut s, None), Some("none")); // absent and empty are different values
        assert_eq!(get(&mut s, Some("")), Some("empty"));
        assert_eq!((get(&mut s, Some("zstd")), s.len()), (None, 4));
        let r = s.insert(b"k", ae(Some("gzip")), vec![], fresh(t0, 60), 10, "gz2", t0);
        assert_eq!(
            (r, s.len(), get(&mut s, Some("gzip"))),
            (stored(0), 4, Some("gz2"))
        );
        let e = s.lookup(b"k", t0 + Duration::from_secs(60), &none);
        assert!(e.is_none(), "past keep_for is a miss");
        s.check();
    }

    #[test]
    fn variant_cap_drops_least_recent() {
        let t0 = Instant::now();
        let mut s = Store::new(1 << 20);
        for i in 0..=MAX_VARIANTS {
            let v = vary(&[("x", Some(&i.to_string()))]);
            let want = stored(usize::from(i == MAX_VARIANTS));
            if i == MAX_VARIANTS {
                let one = |_: &[u8]| Some(&b"0"[..]);
                assert!(s.lookup(b"k", t0, &one).is_some()); // 0 becomes the most recent
            }
            assert_eq!(s.insert(b"k", v, vec![], fresh(t0, 60), 1, i, t0), want);
        }
        let has = |s: &mut Store<usize>, v: &'static [u8]| {
            s.lookup(b"k", t0, &move |_| Some(v)).is_some()
        };
        assert!(has(&mut s, b"0") && !has(&mut s, b"1") && has(&mut s, b"8"));
        assert_eq!(s.len(), MAX_VARIANTS);
        s.check();
    }

    #[test]
    fn lru_order_and_budget() {
        let t0 = Instant::now();
        let mut s = Store::new(8000);
        for k in ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"] {
            s.hits(k, 2, t0);
            assert_eq!(s.put(k, w(1000), (), t0), stored(0));
        }
        assert_eq!((s.len(), s.bytes()), (8, 8000));
        s.hits("a0", 1, t0); // a1 is now least recently used
        s.hits("b0", 5, t0);
        assert_eq!(s.put("b0", w(1000), (), t0), stored(1));
        assert!(s.lookup(b"a1", t0, &none).is_none() && s.lookup(b"a0", t0, &none).is_some());
        assert_eq!(s.bytes(), 8000);
        s.check();
        assert_eq!(s.put("zz", 1000, (), t0), Inserted::Rejected); // over budget / 8
        assert_eq!(Store::new(0).put("zz", 0, (), t0), Inserted::Rejected);
        assert_eq!(s.set_budget(4500), 4);
        assert_eq!((s.len(), s.bytes()), (4, 4000));
        s.check();
    }

    #[test]
    fn tinylfu_admission() {
        let t0 = Instant::now();
        let mut s = Store::new(8000);
        for i in 0..8 {
            let k = format!("p{i}");
            s.hits(&k, 6, t0);
            s.put(&k, w(1000), i, t0);
        }
        s.hits("w1", 1, t0); // a one-hit wonder
        assert_eq!(s.put("w1", w(1000), 99, t0), Inserted::Rejected);
        assert_eq!((s.len(), s.bytes()), (8, 8000));
        s.hits("ho", 12, t0);
        assert_eq!(s.put("ho", w(1000), 42, t0), stored(1));
        assert_eq!(s.lookup(b"ho", t0, &none).map(|e| e.value), Some(42));
        // a replacement of a resident variant is not subject to admission
        assert_eq!(s.put("w1", w(500), 1, t0), Inserted::Rejected);
        assert_eq!(s.put("ho", w(1000), 43, t0), stored(0));
        s.check();
    }

    #[test]
    fn dead_entries_go_first() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut s = Store::new(8000);
        for i in 0..8u64 {
            let k = format!("d{i}");
            s.hits(&k, 10, t0);
            let f = fresh(t0, if i % 2 == 0 { 10 } else { 1000 });
            s.insert(k.as_bytes(), vec![], vec![], f, w(1000), i, t0);
        }
        s.hits("d0", 5, at(5)); // the short-lived ones are popular and recently used
        assert_eq!(s.put("n0", w(1000), 8, at(20)), stored(4));
        assert_eq!((s.len(), s.bytes()), (5, 5000));
        let r = s.insert(b"n1", vec![], vec![], fresh(t0, 5), 1, 0, at(5));
        assert_eq!(r, Inserted::Rejected); // dead on arrival
                                           // a revalidated entry (fresh updated through the Cell) is not evicted on the old deadline
        let e = s.lookup(b"d1", at(20), &none).expect("d1");
        e.fresh.set(fresh(at(990), 1000));
        s.put("n2", 1, 0, at(1500));
        assert!(s.lookup(b"d1", at(1500), &none).is_some());
        assert!(s.lookup(b"d3", at(1500), &none).is_none());
        s.check();
    }

    #[test]
    fn purges_and_rc_survival() {
        let t0 = Instant::now();
        let mut s = Store::new(1 << 20);
        for (k, t) in [("/a/1", "x"), ("/a/2", "y"), ("/b/1", "x"), ("/b/2", "z")] {
            let (k, f) = (k.as_bytes(), fresh(t0, 60));
            s.insert(k, vec![], tags(&[t, "all"]), f, 5, k.len(), t0);
            s.insert(k, vary(&[("v", Some("1"))]), tags(&[t]), f, 5, 0, t0);
        }
        let kept = s.lookup(b"/a/1", t0, &none).expect("hit");
        assert_eq!(s.purge_key(b"/a/1"), 2);
        assert_eq!(s.purge_key(b"/a/1"), 0);
        assert_eq!((kept.value, &*kept.key), (4, &b"/a/1"[..])); // still readable after purge
        assert_eq!(s.purge_tag(b"x"), 2);
        assert_eq!(s.purge_prefix(b"/a/"), 2);
        assert_eq!((s.purge_tag(b"all"), s.len()), (1, 1));
        s.check();
        assert_eq!((s.purge_all(), s.len(), s.bytes()), (1, 0, 0));
        s.check();
        s.put("/a/1", 5, 1, t0);
        assert_eq!((s.purge_prefix(b""), s.bytes(), s.is_empty()), (1, 0, true));
        s.check();
    }

    #[test]
    fn randomized_invariants() {
        let t0 = Instant::now();
        let mut s: Store<u64> = Store::new(20_000);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000u64 {
            let r = next();
            let key = format!("/k{}", r % 64).into_bytes();
            let now = t0 + Duration::from_secs(step / 50);
            let val = ((r >> 8) % 3).to_string();
            let header = |_: &[u8]| Some(val.as_bytes());
            match (r >> 16) % 32 {
                0..=15 => drop(s.lookup(&key, now, &header)),
                16..=28 => {
                    let vary = vary(&[("a", Some(val.as_str()))][..(r & 1) as usize]);
                    let (tags, f) = (tags(&[&format!("t{}", r % 5)]), fresh(now, (r >> 24) % 300));
                    s.insert(&key, vary, tags, f, ((r >> 32) % 1500) as usize, step, now);
                }
                29 => drop(s.purge_key(&key)),
                30 => drop(s.purge_tag(format!("t{}", r % 5).as_bytes())),
                _ if r % 4 == 0 => drop(s.purge_prefix(&key[..3])),
                _ => drop(s.set_budget(5_000 + (r >> 40) as usize % 30_000)),
            }
            s.check();
        }
    }
}
