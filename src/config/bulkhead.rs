//! Bulkheads: `[[bulkhead]]` pools, and the concurrency keys of routes and upstreams
//! (`max_concurrent`, `max_queued`, `queue_timeout`), into [`ConcurrencyLimit`] and
//! [`BulkheadConfig`].
//!
//! Owns the defaults (no queue; a queued request waits at most 1 s) and the rules: limits 1 to
//! 1,000,000, queues up to 100,000, `max_queued`/`queue_timeout` only beside `max_concurrent`,
//! pool names unique, `key` one of `"tenant"`, `"consumer"`, `"client_ip"`. Every problem is
//! reported with its key.

use std::time::Duration;

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::DurationValue;
use super::validate::Ctx;

/// A concurrency limit with its wait queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    /// Requests in flight, whole process.
    pub max_concurrent: u32,
    /// Requests that may wait for a slot (0: none wait; past the limit is refused at once).
    pub max_queued: u32,
    /// The longest wait for a slot.
    pub queue_timeout: Duration,
}

/// What a `[[bulkhead]]` counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKey {
    /// One pool for every request of the routes that name it.
    Whole,
    /// One per identity tenant (else consumer, else subject; else client IP).
    Tenant,
    /// One per authenticated caller (subject, else consumer; else client IP).
    Consumer,
    /// One per client IP.
    ClientIp,
}

/// `[[bulkhead]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadConfig {
    pub name: String,
    pub limit: ConcurrencyLimit,
    pub key: PoolKey,
}

/// `[[bulkhead]]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBulkhead {
    pub name: Option<String>,
    pub max_concurrent: Option<i64>,
    pub max_queued: Option<i64>,
    pub queue_timeout: Option<DurationValue>,
    pub key: Option<String>,
}

/// `max_concurrent`, `max_queued` and `queue_timeout` of a route, an upstream or a pool (`p`: the
/// table holding them).
pub(super) fn limit(
    cx: &mut Ctx,
    p: &KeyPath,
    max_concurrent: Option<i64>,
    max_queued: Option<i64>,
    queue_timeout: Option<DurationValue>,
) -> Option<ConcurrencyLimit> {
    let Some(max) = max_concurrent else {
        if max_queued.is_some() {
            cx.err(p.key("max_queued"), "needs max_concurrent");
        }
        if queue_timeout.is_some() {
            cx.err(p.key("queue_timeout"), "needs max_concurrent");
        }
        return None;
    };
    Some(ConcurrencyLimit {
        max_concurrent: cx.int(p.key("max_concurrent"), Some(max), 1, 1, 1_000_000),
        max_queued: cx.int(p.key("max_queued"), max_queued, 0, 0, 100_000),
        queue_timeout: cx.duration(p.key("queue_timeout"), queue_timeout, 1, false),
    })
}

/// Every `[[bulkhead]]` table, in file order (invalid ones dropped after their errors).
pub(super) fn bulkheads(cx: &mut Ctx, raw: Vec<RawBulkhead>) -> Vec<BulkheadConfig> {
    let mut out: Vec<BulkheadConfig> = Vec::new();
    for (i, b) in raw.into_iter().enumerate() {
        let p = KeyPath::root().key("bulkhead").index(i);
        let name = cx.required(p.key("name"), b.name, "a unique name like \"standard\"");
        if b.max_concurrent.is_none() {
            cx.err(
                p.key("max_concurrent"),
                "required (requests in flight in this pool)",
            );
        }
        let limit = limit(cx, &p, b.max_concurrent, b.max_queued, b.queue_timeout);
        let key = match b.key.as_deref() {
            None => PoolKey::Whole,
            Some("tenant") => PoolKey::Tenant,
            Some("consumer") => PoolKey::Consumer,
            Some("client_ip") => PoolKey::ClientIp,
            Some(other) => {
                let m = format!(
                    "unknown key \"{other}\" (expected \"tenant\", \"consumer\" or \"client_ip\")"
                );
                cx.err(p.key("key"), m);
                PoolKey::Whole
            }
        };
        let (Some(name), Some(limit)) = (name, limit) else {
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            cx.err(p.key("name"), format!("duplicate bulkhead name \"{name}\""));
            continue;
        }
        out.push(BulkheadConfig { name, limit, key });
    }
    out
}

/// A route's `bulkheads = [...]`: indexes into `pools` (at most 2).
pub(super) fn route_pools(
    cx: &mut Ctx,
    p: &KeyPath,
    names: Option<Vec<String>>,
    pools: &[BulkheadConfig],
) -> Vec<usize> {
    let names = names.unwrap_or_default();
    if names.len() > 2 {
        cx.err(p.key("bulkheads"), "at most 2 pools per route");
    }
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate().take(2) {
        match pools.iter().position(|b| b.name == *n) {
            Some(_) if out.contains(&i) => {}
            Some(j) if out.contains(&j) => {
                cx.err(p.key("bulkheads").index(i), format!("\"{n}\" listed twice"))
            }
            Some(j) => out.push(j),
            None => cx.err(
                p.key("bulkheads").index(i),
                format!("no [[bulkhead]] named \"{n}\""),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::check_cases;

    #[test]
    fn bulkhead_rules() {
        let pools = "[[bulkhead]]\nname = \"standard\"\nmax_concurrent = 500\nmax_queued = 100\nqueue_timeout = \"200ms\"\n\
                     [[bulkhead]]\nname = \"tenants\"\nmax_concurrent = 20\nkey = \"tenant\"\n";
        let route =
            |r: &str| format!("{pools}[[route]]\npath_prefix = \"/x\"\nupstream = \"u\"\n{r}\n");
        check_cases(&[
            (&route("bulkheads = [\"standard\", \"tenants\"]\nmax_concurrent = 10\nmax_queued = 5\nqueue_timeout = \"50ms\""), &[]),
            (&route("bulkheads = [\"nope\"]"), &["route[0].bulkheads[0]: no [[bulkhead]] named \"nope\""]),
            (&route("bulkheads = [\"standard\", \"standard\"]"), &["route[0].bulkheads[1]: \"standard\" listed twice"]),
            (&route("max_queued = 5"), &["route[0].max_queued: needs max_concurrent"]),
            (&format!("{pools}[[bulkhead]]\nname = \"standard\"\nmax_concurrent = 1\n"), &["bulkhead[2].name: duplicate bulkhead name \"standard\""]),
            ("[[bulkhead]]\nname = \"b\"\n", &["bulkhead[0].max_concurrent: required (requests in flight in this pool)"]),
            ("[[bulkhead]]\nname = \"b\"\nmax_concurrent = 1\nkey = \"user\"\n", &["bulkhead[0].key: unknown key \"user\" (expected \"tenant\", \"consumer\" or \"client_ip\")"]),
        ]);
    }
}
