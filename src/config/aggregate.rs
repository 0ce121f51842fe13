//! A route's fan-out target: `aggregate = [ { key, upstream, path, ... }, ... ]` and
//! `aggregate_timeout`.
//!
//! Owns reading the parts into an [`Aggregate`]: each part's upstream by name, its path
//! template (`transform::template`, placeholders from the route's path parameters, query,
//! headers and identity), method, the client headers it passes on, whether it is required, its
//! own timeout and body cap, and where its document goes in the merged result. Every problem
//! names its key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::{DurationValue, SizeValue};
use super::units::is_token;
use super::validate::Ctx;
use crate::transform::merge::Placement;
use crate::transform::template::{Kind, Template};

/// Most parts one aggregate may have.
pub const MAX_PARTS: usize = 16;
/// Default cap on one part's body.
pub const DEFAULT_PART_MAX_BODY: u64 = 1024 * 1024;
/// Default `aggregate_timeout`.
pub const DEFAULT_AGGREGATE_TIMEOUT_SECS: u64 = 5;

/// One part as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPart {
    pub key: Option<String>,
    pub upstream: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub headers: Option<Vec<String>>,
    pub required: Option<bool>,
    pub timeout: Option<DurationValue>,
    pub max_body: Option<SizeValue>,
    pub merge: Option<String>,
    pub append: Option<String>,
    pub cache_ttl: Option<DurationValue>,
}

/// One call of an aggregate.
#[derive(Debug, Clone)]
pub struct AggregatePart {
    /// The member of the merged document (and the part's name in errors).
    pub key: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Request target template (path and query).
    pub path: Template,
    /// Upper-case method (GET unless configured).
    pub method: String,
    /// Lower-cased client header names passed on to this part.
    pub headers: Vec<String>,
    /// A failed required part fails the whole request (502/504); an optional one becomes
    /// `null` plus an entry in `errors`.
    pub required: bool,
    /// The part's own deadline (within the route's `aggregate_timeout`).
    pub timeout: Option<Duration>,
    /// Largest body accepted from this part.
    pub max_body: usize,
    /// `cache_ttl`: the part's successful responses are kept in the worker's response cache
    /// this long (unless the upstream says shorter, `no-store` or `private`), keyed by what the
    /// part sends (target, passed headers, caller).
    pub cache_ttl: Option<Duration>,
    /// Under `key`, spliced into the root object (`merge = "root"`), or appended to a shared
    /// array (`append = "items"`).
    pub placement: Placement,
}

/// A route's fan-out: its parts, issued in parallel, and the whole request's deadline.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub parts: Vec<AggregatePart>,
    pub timeout: Duration,
}

/// `route.aggregate` and `route.aggregate_timeout` (`p`: the route).
pub(super) fn aggregate(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<Vec<RawPart>>,
    timeout: Option<DurationValue>,
    upstreams: &BTreeMap<String, usize>,
    params: &[&str],
) -> Option<Aggregate> {
    let ap = p.key("aggregate");
    let Some(raw) = raw else {
        if timeout.is_some() {
            cx.err(
                p.key("aggregate_timeout"),
                "only for a route with aggregate",
            );
        }
        return None;
    };
    let total = cx.duration(
        p.key("aggregate_timeout"),
        timeout,
        DEFAULT_AGGREGATE_TIMEOUT_SECS,
        false,
    );
    if raw.is_empty() || raw.len() > MAX_PARTS {
        cx.err(
            ap,
            format!("{} parts (expected 1 to {MAX_PARTS})", raw.len()),
        );
        return None;
    }
    let mut parts = Vec::new();
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in raw.into_iter().enumerate() {
        let pp = ap.index(i);
        let key = cx.required(
            pp.key("key"),
            r.key,
            "the member name of the part's document",
        );
        if let Some(k) = &key {
            if k.is_empty() || k == "errors" {
                cx.err(
                    pp.key("key"),
                    format!("\"{k}\" (\"errors\" lists failed parts; names must not be empty)"),
                );
            } else {
                cx.unique(&mut keys, &pp, "aggregate", k, i);
            }
        }
        let upstream = cx
            .required(
                pp.key("upstream"),
                r.upstream,
                "the name of an [[upstream]]",
            )
            .and_then(|u| {
                let found = upstreams.get(&u).copied();
                cx.check(
                    &pp.key("upstream"),
                    found.ok_or(format!("no upstream named \"{u}\"")),
                )
            });
        let path = cx
            .required(pp.key("path"), r.path, "a path like \"/users/{id}\"")
            .and_then(|t| {
                let parsed = match t.starts_with('/') {
                    true => Template::parse(&t, Kind::Url, params),
                    false => Err(format!("\"{t}\" must start with /")),
                };
                cx.check(&pp.key("path"), parsed)
            });
        let method = r.method.unwrap_or_else(|| "GET".into());
        if !is_token(&method) {
            cx.err(pp.key("method"), format!("invalid method \"{method}\""));
        }
        let mut headers = Vec::new();
        for (j, h) in r.headers.unwrap_or_default().iter().enumerate() {
            let lower = h.to_ascii_lowercase();
            if !is_token(h) {
                cx.err(
                    pp.key("headers").index(j),
                    format!("invalid header name \"{h}\""),
                );
            } else if crate::http::rewrite::is_managed_request_field(&lower) {
                let m = format!("\"{lower}\" is written by the gateway");
                cx.err(pp.key("headers").index(j), m);
            } else {
                headers.push(lower);
            }
        }
        let part_timeout = r
            .timeout
            .map(|t| cx.duration(pp.key("timeout"), Some(t), 1, false));
        let max_body = cx.size(pp.key("max_body"), r.max_body, DEFAULT_PART_MAX_BODY, 1);
        let cache_ttl = r
            .cache_ttl
            .map(|t| cx.duration(pp.key("cache_ttl"), Some(t), 1, false));
        let placement = match r.merge.as_deref() {
            None | Some("key") if r.append.is_some() => match r.append.as_deref() {
                Some(a) if !a.is_empty() && a != "errors" => Some(Placement::Append(a.into())),
                Some(a) => {
                    cx.err(
                        pp.key("append"),
                        format!("\"{a}\" (a member name other than \"errors\")"),
                    );
                    None
                }
                None => None,
            },
            None | Some("key") => key.clone().map(Placement::Key),
            Some("root") => Some(Placement::Root),
            Some(_) if r.append.is_some() => {
                cx.err(pp.key("merge"), "give merge or append, not both");
                None
            }
            Some(other) => {
                cx.err(
                    pp.key("merge"),
                    format!("\"{other}\" (expected \"key\" or \"root\")"),
                );
                None
            }
        };
        if let (Some(key), Some(upstream), Some(path), Some(placement)) =
            (key, upstream, path, placement)
        {
            parts.push(AggregatePart {
                key,
                upstream,
                path,
                method: method.to_ascii_uppercase(),
                headers,
                required: r.required.unwrap_or(true),
                timeout: part_timeout,
                max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
                placement,
                cache_ttl,
            });
        }
    }
    Some(Aggregate {
        parts,
        timeout: total,
    })
}
