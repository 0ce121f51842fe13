//! A route's response cache: `cache = { ttl, max_entry, key, vary, ... }`.
//!
//! Owns reading the raw table into a [`CachePolicy`] (`crate::cache::policy`), every problem
//! naming its key, and the server-wide per-core memory budget (`[server] cache_memory`).

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::{DurationValue, SizeValue};
use super::units::is_token;
use super::validate::Ctx;
use crate::cache::policy::{CachePolicy, KeyPart, DEFAULT_STATUSES};

/// Default `max_entry`.
pub const DEFAULT_MAX_ENTRY: u64 = 1024 * 1024;
/// Default `[server] cache_memory` (per worker).
pub const DEFAULT_CACHE_MEMORY: u64 = 64 * 1024 * 1024;

/// `cache = { ... }` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCache {
    pub ttl: Option<DurationValue>,
    pub max_entry: Option<SizeValue>,
    pub key: Option<Vec<String>>,
    pub vary: Option<Vec<String>>,
    pub stale_while_revalidate: Option<DurationValue>,
    pub stale_if_error: Option<DurationValue>,
    pub statuses: Option<Vec<i64>>,
    pub share_authenticated: Option<bool>,
    pub coalesce: Option<bool>,
    pub shared: Option<String>,
}

/// `route.cache` (`p`: the key).
pub(super) fn cache(cx: &mut Ctx, p: &KeyPath, raw: Option<RawCache>) -> Option<CachePolicy> {
    let r = raw?;
    let ttl = cx.required(p.key("ttl"), r.ttl, "a duration like \"30s\"");
    let ttl = ttl.map(|t| cx.duration(p.key("ttl"), Some(t), 0, false));
    let max_entry = cx.size(p.key("max_entry"), r.max_entry, DEFAULT_MAX_ENTRY, 1);
    let mut key = Vec::new();
    for (i, k) in r
        .key
        .unwrap_or_else(|| vec!["query".into()])
        .iter()
        .enumerate()
    {
        let kp = p.key("key").index(i);
        let part = match k.split_once(':') {
            None if k == "query" => Some(KeyPart::Query),
            None if k == "identity" => Some(KeyPart::Identity),
            Some(("query", n)) if !n.is_empty() => Some(KeyPart::QueryParam(n.into())),
            Some(("header", n)) if is_token(n) => Some(KeyPart::Header(n.to_ascii_lowercase())),
            Some(("cookie", n)) if is_token(n) => Some(KeyPart::Cookie(n.into())),
            _ => None,
        };
        match part {
            Some(part) if key.contains(&part) => cx.err(kp, format!("\"{k}\" listed twice")),
            Some(part) => key.push(part),
            None => cx.err(
                kp,
                format!(
                    "\"{k}\" (expected query, query:NAME, header:NAME, cookie:NAME or identity)"
                ),
            ),
        }
    }
    let mut vary: Vec<String> = Vec::new();
    for (i, v) in r.vary.unwrap_or_default().iter().enumerate() {
        let lower = v.to_ascii_lowercase();
        if !is_token(v) || lower == "*" {
            cx.err(
                p.key("vary").index(i),
                format!("\"{v}\" is not a header name"),
            );
        } else if vary.contains(&lower) {
            cx.err(p.key("vary").index(i), format!("\"{v}\" listed twice"));
        } else {
            vary.push(lower);
        }
    }
    let swr = cx.duration(
        p.key("stale_while_revalidate"),
        r.stale_while_revalidate,
        0,
        true,
    );
    let sie = cx.duration(p.key("stale_if_error"), r.stale_if_error, 0, true);
    let statuses = match r.statuses {
        None => DEFAULT_STATUSES.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let sp = p.key("statuses").index(i);
                match u16::try_from(*s) {
                    Ok(s @ 200..=599) if !(500..600).contains(&s) && s != 206 => out.push(s),
                    _ => cx.err(
                        sp,
                        format!("{s} (expected a final status 200-499 other than 206)"),
                    ),
                }
            }
            if list.is_empty() {
                cx.err(p.key("statuses"), "empty list (omit it for the defaults)");
            }
            out
        }
    };
    Some(CachePolicy {
        ttl: ttl?,
        max_entry: usize::try_from(max_entry).unwrap_or(usize::MAX),
        key,
        vary,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        statuses,
        share_authenticated: r.share_authenticated.unwrap_or(false),
        coalesce: r.coalesce.unwrap_or(true),
        shared: match r.shared.as_deref() {
            None => false,
            Some("redis") => true,
            Some(other) => {
                cx.err(p.key("shared"), format!("\"{other}\" (expected \"redis\")"));
                false
            }
        },
    })
}
