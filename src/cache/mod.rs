//! The response cache's engine: per-worker storage and RFC 9111 freshness, independent of the
//! pipeline (the adapter is `proxy/cache.rs`).
//!
//! - [`policy`]: a route's compiled `cache = { ... }` table.
//! - [`freshness`]: Cache-Control, HTTP dates, ages, freshness lifetimes and stale windows.
//! - [`store`]: one worker's byte-budgeted LRU store with TinyLFU admission, Vary variants, tags
//!   and purges.

pub mod freshness;
pub mod policy;
pub mod store;
