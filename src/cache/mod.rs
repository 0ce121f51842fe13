//! The response cache's engine: per-worker storage and RFC 9111 freshness, independent of the
//! pipeline (the adapter is `proxy/cache.rs`).
//!
//! - [`policy`]: a route's compiled `cache = { ... }` table.
//! - [`freshness`]: Cache-Control, HTTP dates, ages, freshness lifetimes and stale windows.
//! - [`store`]: one worker's byte-budgeted LRU store with TinyLFU admission, Vary variants, tags
//!   and purges.
//! - [`shared`]: the optional tier in Redis behind every worker's store (`shared = "redis"`).

pub mod freshness;
pub mod policy;
pub mod shared;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::http::head::ResponseHead;
use crate::runtime::drain::Drain;

/// A stored response: the upstream's head (without `Age`: the cache writes its own) and body.
#[derive(Debug)]
pub struct Stored {
    /// The response head bytes; `resp`'s spans point into them.
    pub head: Box<[u8]>,
    pub resp: ResponseHead,
    /// The body, without transfer framing.
    pub body: Box<[u8]>,
}

impl Stored {
    /// The first field named `name`.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.resp.header(&self.head, name)
    }
}

/// One stored response in the store.
pub type CachedEntry = Rc<store::Entry<Stored>>;

/// What a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every entry of this exact path (all hosts, routes, queries and variants).
    Path(Vec<u8>),
    /// Every entry whose path starts with this.
    Prefix(Vec<u8>),
    /// Every entry the upstream tagged so (`Cache-Tag` / `Surrogate-Key`).
    Tag(Vec<u8>),
    All,
}

/// One worker's cache: the store, and the misses being fetched now (for coalescing). Lives for
/// the worker's lifetime: a reload keeps what is stored (keys name their route).
#[derive(Default)]
pub struct CacheRt {
    pub store: RefCell<Option<store::Store<Stored>>>,
    /// Key -> signalled when the request fetching it is done (stored or not).
    pub inflight: RefCell<HashMap<Box<[u8]>, Rc<Drain>>>,
}

impl CacheRt {
    /// Sets the memory budget (a reload may change it); the store is created on first use.
    pub fn set_budget(&self, bytes: usize) -> usize {
        let mut st = self.store.borrow_mut();
        match st.as_mut() {
            Some(s) => s.set_budget(bytes),
            None => {
                *st = Some(store::Store::new(bytes));
                0
            }
        }
    }

    /// Removes what `p` names; returns how many entries went.
    pub fn purge(&self, p: &Purge) -> usize {
        let mut st = self.store.borrow_mut();
        let Some(s) = st.as_mut() else {
            return 0;
        };
        match p {
            Purge::Path(path) => {
                // keys start with the path and a NUL (`proxy/cache.rs`)
                let mut prefix = path.clone();
                prefix.push(0);
                s.purge_prefix(&prefix)
            }
            Purge::Prefix(prefix) => s.purge_prefix(prefix),
            Purge::Tag(tag) => s.purge_tag(tag),
            Purge::All => s.purge_all(),
        }
    }
}
