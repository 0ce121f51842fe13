//! A route's backend-for-frontend settings in the rendered config: `cache`, `aggregate`,
//! `request_headers` / `response_headers`, `request_body` / `response_body`, `query_fields`,
//! `status_overrides`, back in the file format (`render.rs` owns the rest and the helpers these
//! use).

use toml::Value;

use super::{duration, int, s, tbl, Config};
use crate::cache::policy::CachePolicy;
use crate::config::aggregate::Aggregate;
use crate::config::transform::{BodyTransforms, StatusOverride};
use crate::transform::headers::HeaderOps;
use crate::transform::json::BodyTransform;
use crate::transform::merge::Placement;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

pub(super) fn header_ops(o: &HeaderOps) -> Value {
    let map = |pairs: &[(Box<[u8]>, crate::transform::template::Template)]| {
        (!pairs.is_empty()).then(|| {
            let t = pairs
                .iter()
                .map(|(n, v)| (text(n), Value::String(v.text().into())));
            Value::Table(t.collect())
        })
    };
    tbl([
        ("set", map(&o.set)),
        ("add", map(&o.add)),
        (
            "remove",
            (!o.remove.is_empty()).then(|| strings(o.remove.iter().map(|n| text(n)))),
        ),
        (
            "rename",
            (!o.rename.is_empty()).then(|| {
                let t = o
                    .rename
                    .iter()
                    .map(|(f, t)| (text(f), Value::String(text(t))));
                Value::Table(t.collect())
            }),
        ),
    ])
}

pub(super) fn cache(c: &CachePolicy) -> Value {
    tbl([
        ("ttl", duration(c.ttl)),
        ("max_entry", int(c.max_entry as u64)),
        ("key", Some(strings(c.key.iter().map(|k| k.text())))),
        ("vary", Some(strings(c.vary.iter().cloned()))),
        ("stale_while_revalidate", duration(c.stale_while_revalidate)),
        ("stale_if_error", duration(c.stale_if_error)),
        (
            "statuses",
            Some(Value::Array(
                c.statuses
                    .iter()
                    .map(|&s| Value::Integer(s.into()))
                    .collect(),
            )),
        ),
        (
            "share_authenticated",
            Some(Value::Boolean(c.share_authenticated)),
        ),
        ("coalesce", Some(Value::Boolean(c.coalesce))),
        ("shared", c.shared.then(|| Value::String("redis".into()))),
    ])
}

pub(super) fn aggregate(cfg: &Config, a: &Aggregate) -> Value {
    let parts = a.parts.iter().map(|p| {
        tbl([
            ("key", s(&p.key)),
            ("upstream", s(&cfg.upstreams[p.upstream].name)),
            ("path", s(p.path.text())),
            ("method", s(&p.method)),
            (
                "headers",
                (!p.headers.is_empty()).then(|| strings(p.headers.iter().cloned())),
            ),
            ("required", Some(Value::Boolean(p.required))),
            ("timeout", p.timeout.and_then(duration)),
            ("max_body", int(p.max_body as u64)),
            ("cache_ttl", p.cache_ttl.and_then(duration)),
            (
                "merge",
                s(match p.placement {
                    Placement::Root => "root",
                    Placement::Key(_) | Placement::Append(_) => "key",
                })
                .filter(|_| !matches!(p.placement, Placement::Append(_))),
            ),
            (
                "append",
                match &p.placement {
                    Placement::Append(a) => s(a),
                    _ => None,
                },
            ),
        ])
    });
    Value::Array(parts.collect())
}

pub(super) fn body(t: &BodyTransform) -> Value {
    let drop = t.drop_paths();
    let renames = t.renames();
    tbl([
        ("unwrap", t.unwrap_path().and_then(s)),
        ("drop", (!drop.is_empty()).then(|| strings(drop))),
        (
            "rename",
            (!renames.is_empty()).then(|| {
                Value::Table(
                    renames
                        .into_iter()
                        .map(|(f, t)| (f, Value::String(t)))
                        .collect(),
                )
            }),
        ),
        ("wrap", t.wrap_key().and_then(s)),
    ])
}

pub(super) fn overrides(b: &BodyTransforms) -> Option<Value> {
    let one = |o: &StatusOverride| {
        let mut v = super::fallback(&o.answer);
        if let Value::Table(t) = &mut v {
            let list = o.statuses.iter().map(|&s| Value::Integer(s.into()));
            t.insert("statuses".into(), Value::Array(list.collect()));
        }
        v
    };
    (!b.overrides.is_empty()).then(|| Value::Array(b.overrides.iter().map(one).collect()))
}
