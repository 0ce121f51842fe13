//! Endpoints and `[dns]` in the rendered config: a `dns_refresh = "ttl"` upstream shows its
//! endpoints as written (names re-resolve; the addresses in use are in `/stats` and `/metrics`),
//! any other upstream the addresses resolved at load. `[dns]` appears when it is not the default
//! (`render.rs` owns the rest and the helpers used here).

use toml::Value;

use super::{duration, int, list, s, tbl};
use crate::config::dns::DnsConfig;
use crate::config::model::UpstreamConfig;

/// `endpoints` and `dns_refresh` of an upstream.
pub(super) fn endpoints(u: &UpstreamConfig) -> (Value, Option<Value>) {
    let one = |addr: String, weight: u32| tbl([("addr", s(addr)), ("weight", int(weight))]);
    match &u.discovery {
        Some(specs) => (
            list(specs.iter().map(|e| one(e.to_string(), e.weight)).collect()),
            s("ttl"),
        ),
        None => (
            list(
                u.endpoints
                    .iter()
                    .map(|e| one(e.addr.to_string(), e.weight))
                    .collect(),
            ),
            None,
        ),
    }
}

/// `[dns]`, unless every key has its default.
pub(super) fn dns(d: &DnsConfig) -> Option<Value> {
    if *d == DnsConfig::default() {
        return None;
    }
    let servers = d
        .servers
        .iter()
        .map(|a| Value::String(a.to_string()))
        .collect();
    Some(tbl([
        ("servers", Some(list(servers))),
        ("timeout", duration(d.timeout)),
        ("attempts", int(d.attempts)),
        ("min_ttl", duration(d.min_ttl)),
        ("max_ttl", duration(d.max_ttl)),
    ]))
}
