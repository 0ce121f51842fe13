//! The compiled per-host route table ([`Bucket`]) and its parts.
//!
//! Owns the index structures behind [`super::Router`]; the per-route predicates and the precedence
//! order live in `rules.rs`. Routes are referred to by *rank* (`u32`, position in precedence order,
//! lower = more specific), so "best match" is always "lowest rank that fully matches", and every
//! candidate list is a rank-sorted `Vec<u32>` scanned until the first full match.
//!
//! A bucket answers, for one host class, in path-kind order (exact > template > prefix):
//! - exact paths: one [`SliceMap`] probe;
//! - templates: a segment [`Trie`] (a `SliceMap` of literal children, one shared `{param}` child,
//!   end / catch-all lists per node), walked depth-first; a subtree whose minimum rank cannot beat the
//!   best match found so far is skipped;
//! - prefixes: `SliceMap` probes for every prefix length that could match the path (the path itself,
//!   and both sides of each `/`), longest first, skipping lengths no prefix has (a bitset).
//!
//! Performance: no allocation on lookup; most misses cost a hash and a slot read (see `slice_map.rs`).

use super::rules::{split_segment, Cond, ReqMethod, Seg};
use super::slice_map::SliceMap;
use super::HeaderSource;

/// Per-lookup request context shared by all candidate scans.
pub(crate) struct Req<'a, H: HeaderSource> {
    pub(crate) conds: &'a [Cond],
    pub(crate) method: ReqMethod<'a>,
    pub(crate) headers: &'a H,
    /// Set when a candidate matched everything but the method (a 405 may be due).
    pub(crate) method_miss: bool,
}

impl<H: HeaderSource> Req<'_, H> {
    /// First full match in a rank-sorted list whose rank is below `limit`.
    #[inline]
    fn first(&mut self, cands: &[u32], limit: u32) -> Option<u32> {
        for &r in cands {
            if r >= limit {
                break;
            }
            let c = &self.conds[r as usize];
            if c.headers_ok(self.headers) {
                if c.methods.allows(self.method) {
                    return Some(r);
                }
                self.method_miss = true;
            }
        }
        None
    }
}

const NO_NODE: u32 = u32::MAX;

#[derive(Debug)]
struct Node {
    /// Literal children.
    lits: SliceMap<u32, false>,
    param: u32,
    /// Templates that end at this node.
    end: Vec<u32>,
    /// Templates whose `{*rest}` starts at this node.
    catch: Vec<u32>,
    /// Lowest rank anywhere in this subtree (for pruning).
    min_rank: u32,
}

impl Node {
    fn new() -> Node {
        Node {
            lits: SliceMap::default(),
            param: NO_NODE,
            end: Vec::new(),
            catch: Vec::new(),
            min_rank: u32::MAX,
        }
    }
}

/// Segment trie of path templates. Node 0 is the root (zero segments consumed).
#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![Node::new()],
        }
    }

    fn is_empty(&self) -> bool {
        self.nodes[0].min_rank == u32::MAX
    }

    /// Inserts in rank order (callers insert ascending ranks, so lists stay sorted).
    fn insert(&mut self, segs: &[Seg], rank: u32) {
        let mut n = 0usize;
        self.nodes[0].min_rank = self.nodes[0].min_rank.min(rank);
        for seg in segs {
            let existing = match seg {
                Seg::Catch => {
                    self.nodes[n].catch.push(rank);
                    return;
                }
                Seg::Param => self.nodes[n].param,
                Seg::Lit(l) => self.nodes[n].lits.get(l).copied().unwrap_or(NO_NODE),
            };
            let next = if existing == NO_NODE {
                let id = self.nodes.len() as u32;
                self.nodes.push(Node::new());
                match seg {
                    Seg::Lit(l) => *self.nodes[n].lits.get_or_insert_with(l, || id) = id,
                    _ => self.nodes[n].param = id,
                }
                id
            } else {
                existing
            };
            n = next as usize;
            self.nodes[n].min_rank = self.nodes[n].min_rank.min(rank);
        }
        self.nodes[n].end.push(rank);
    }

    /// Lowest-rank full match among templates matching `path`, if any.
    #[inline]
    fn best<H: HeaderSource>(&self, req: &mut Req<'_, H>, path: &[u8]) -> Option<u32> {
        let rest = path.strip_prefix(b"/")?;
        let mut best = u32::MAX;
        self.walk(0, Some(rest), req, &mut best);
        (best != u32::MAX).then_some(best)
    }

    /// `rest`: the unconsumed path after a `/`, or `None` when the path has been fully consumed.
    fn walk<H: HeaderSource>(
        &self,
        n: u32,
        rest: Option<&[u8]>,
        req: &mut Req<'_, H>,
        best: &mut u32,
    ) {
        let node = &self.nodes[n as usize];
        if node.min_rank >= *best {
            return;
        }
        let Some(rest) = rest else {
            if let Some(r) = req.first(&node.end, *best) {
                *best = r;
            }
            return;
        };
        if !rest.is_empty() {
            if let Some(r) = req.first(&node.catch, *best) {
                *best = r;
            }
        }
        let (seg, next) = split_segment(rest);
        if let Some(&child) = node.lits.get(seg) {
            self.walk(child, next, req, best);
        }
        if node.param != NO_NODE && !seg.is_empty() {
            self.walk(node.param, next, req, best);
        }
    }
}

/// Bitset of the prefix lengths present in a bucket, with their range.
#[derive(Debug, Default)]
struct LenSet {
    bits: Vec<u64>,
    min: usize,
    max: usize,
}

impl LenSet {
    fn insert(&mut self, n: usize) {
        if self.bits.is_empty() || n < self.min {
            self.min = n;
        }
        self.max = self.max.max(n);
        if self.bits.len() <= n / 64 {
            self.bits.resize(n / 64 + 1, 0);
        }
        self.bits[n / 64] |= 1 << (n % 64);
    }

    #[inline]
    fn contains(&self, n: usize) -> bool {
        self.bits
            .get(n / 64)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }
}

/// All routes of one host class (one exact host, one suffix, or no host).
#[derive(Debug)]
pub(crate) struct Bucket {
    exact: SliceMap<Vec<u32>, false>,
    trie: Trie,
    prefixes: SliceMap<Vec<u32>, false>,
    prefix_lens: LenSet,
}

/// A route's path condition as compiled into a bucket.
pub(crate) enum PathKey<'a> {
    Exact(&'a [u8]),
    Prefix(&'a [u8]),
    Template(&'a [Seg]),
}

impl Bucket {
    pub(crate) fn new() -> Bucket {
        Bucket {
            exact: SliceMap::default(),
            trie: Trie::new(),
            prefixes: SliceMap::default(),
            prefix_lens: LenSet::default(),
        }
    }

    /// Adds a route; must be called in ascending rank order.
    pub(crate) fn insert(&mut self, path: PathKey<'_>, rank: u32) {
        match path {
            PathKey::Exact(p) => self.exact.get_or_insert_with(p, Vec::new).push(rank),
            PathKey::Template(t) => self.trie.insert(t, rank),
            PathKey::Prefix(p) => {
                self.prefix_lens.insert(p.len());
                self.prefixes.get_or_insert_with(p, Vec::new).push(rank);
            }
        }
    }

    /// The best full match in this bucket, if any.
    #[inline]
    pub(crate) fn best<H: HeaderSource>(&self, req: &mut Req<'_, H>, path: &[u8]) -> Option<u32> {
        if !self.exact.is_empty() {
            if let Some(c) = self.exact.get(path) {
                if let Some(r) = req.first(c, u32::MAX) {
                    return Some(r);
                }
            }
        }
        if !self.trie.is_empty() {
            if let Some(r) = self.trie.best(req, path) {
                return Some(r);
            }
        }
        if self.prefixes.is_empty() {
            return None;
        }
        self.best_prefix(req, path)
    }

    /// Tries every prefix length that can match `path`, longest first: the whole path, then for each
    /// `/` at index i (right to left) the lengths i + 1 (prefix ending in `/`) and i (boundary).
    fn best_prefix<H: HeaderSource>(&self, req: &mut Req<'_, H>, path: &[u8]) -> Option<u32> {
        if let Some(r) = self.probe(req, path, path.len()) {
            return Some(r);
        }
        // Only slashes at i with min <= i + 1 and i <= max can yield a length in the set.
        let (min, max) = (self.prefix_lens.min, self.prefix_lens.max);
        let mut last = path.len();
        for i in (min.saturating_sub(1)..path.len().min(max + 1)).rev() {
            if path[i] != b'/' {
                continue;
            }
            // i + 1 was already probed when the previous '/' sat right after this one.
            if i + 1 < last {
                if let Some(r) = self.probe(req, path, i + 1) {
                    return Some(r);
                }
            }
            last = i;
            if let Some(r) = self.probe(req, path, i) {
                return Some(r);
            }
        }
        None
    }

    /// Candidates of the prefix `path[..len]`, if that prefix exists.
    #[inline(always)]
    fn probe<H: HeaderSource>(&self, req: &mut Req<'_, H>, path: &[u8], len: usize) -> Option<u32> {
        if !self.prefix_lens.contains(len) {
            return None;
        }
        let c = self.prefixes.get(&path[..len])?;
        req.first(c, u32::MAX)
    }

    /// True when no route was inserted.
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.trie.is_empty() && self.prefixes.is_empty()
    }
}
