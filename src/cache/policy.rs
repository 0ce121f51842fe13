//! A route's cache policy (`cache = { ttl, ... }`), as the config compiled it.
//!
//! Owns [`CachePolicy`] and [`KeyPart`]: what makes two requests the same cache entry, how long a
//! response stays fresh when the upstream does not say, which statuses are kept, and the stale
//! windows. Read by `proxy/cache.rs` on every request of the route.

use std::time::Duration;

/// One thing besides method, host and normalised path that a cache key includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The whole query string, as received.
    Query,
    /// One query parameter (its raw value; absent and empty differ).
    QueryParam(String),
    /// A request header (lower-cased name; the first field's value).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The authenticated caller (subject, else consumer): per-user entries.
    Identity,
}

impl KeyPart {
    /// The config spelling (`key = [...]`).
    pub fn text(&self) -> String {
        match self {
            KeyPart::Query => "query".into(),
            KeyPart::QueryParam(n) => format!("query:{n}"),
            KeyPart::Header(n) => format!("header:{n}"),
            KeyPart::Cookie(n) => format!("cookie:{n}"),
            KeyPart::Identity => "identity".into(),
        }
    }
}

/// Response statuses kept by default (RFC 9110 §15.1 heuristically cacheable, less 206 and 405,
/// 414, 501 which a gateway route rarely wants pinned).
pub const DEFAULT_STATUSES: [u16; 8] = [200, 203, 204, 300, 301, 308, 404, 410];

/// The compiled `cache` table of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness when the upstream states none (no `Cache-Control` max-age/s-maxage, no
    /// `Expires`).
    pub ttl: Duration,
    /// Largest body stored; larger responses stream past the cache.
    pub max_entry: usize,
    /// What the key includes besides method, host and path (default: the query).
    pub key: Vec<KeyPart>,
    /// Request headers every entry varies on, besides the upstream's `Vary` (lower-cased).
    pub vary: Vec<String>,
    /// Serve a stale entry this long past its freshness while a refresh runs in the background
    /// (the upstream's `stale-while-revalidate` wins when it says).
    pub stale_while_revalidate: Duration,
    /// Serve a stale entry this long past its freshness when the upstream fails (error, 5xx,
    /// timeout, open breaker, full bulkhead); the upstream's `stale-if-error` wins when it says.
    pub stale_if_error: Duration,
    /// Statuses kept.
    pub statuses: Vec<u16>,
    /// Keep responses to authenticated requests under a key without `identity` even when the
    /// upstream does not mark them `public` (the route vouches they are the same for everyone).
    pub share_authenticated: bool,
    /// Concurrent misses for one key on a core wait for the first one's response.
    pub coalesce: bool,
    /// `shared = "redis"`: entries also live in Redis, for every core and node.
    pub shared: bool,
}

impl CachePolicy {
    /// The key includes the caller's identity: entries are per user.
    pub fn per_user(&self) -> bool {
        self.key.contains(&KeyPart::Identity)
    }
}
