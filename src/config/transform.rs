//! Route transforms: `response_fields`, `request_headers`, `response_headers`, `request_body`,
//! `response_body`, `query_fields`, `status_overrides`.
//!
//! Owns turning a route's raw transform keys into their compiled form (`transform::fields`,
//! `transform::headers` with `transform::template` values), each error naming the key and, for a
//! list or table, the entry.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::position::KeyPath;
use super::units::is_token;
use super::validate::Ctx;
use crate::transform::fields::FieldSet;
use crate::transform::headers::HeaderOps;
use crate::transform::json::BodyTransform;
use crate::transform::template::{Kind, Template};

/// `request_headers = { set, add, remove, rename }` (and `response_headers`) as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHeaderOps {
    pub set: Option<BTreeMap<String, String>>,
    pub add: Option<BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
    pub rename: Option<BTreeMap<String, String>>,
}

/// Which head a route's header operations change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// Fields the gateway manages itself on each side: a transform may not touch them.
fn managed(side: Side, name: &str) -> Option<&'static str> {
    const FRAMING: [&str; 8] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    ];
    if FRAMING.contains(&name) {
        return Some("framing and hop-by-hop fields are the gateway's");
    }
    if name == "x-request-id" {
        return Some("the gateway sets the request id");
    }
    match (side, name) {
        (Side::Request, "host") => Some("use host_rewrite"),
        (Side::Request, "x-forwarded-for" | "x-forwarded-proto" | "forwarded" | "traceparent") => {
            Some("the gateway writes the forwarding and trace fields")
        }
        _ => None,
    }
}

/// A route's `request_headers` or `response_headers` (`p`: the key); `params`: the route's
/// path parameters, for templates.
pub(super) fn header_ops(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<RawHeaderOps>,
    side: Side,
    params: &[&str],
) -> Option<std::sync::Arc<HeaderOps>> {
    let raw = raw?;
    let given = [
        raw.set.as_ref().map(|m| m.len()),
        raw.add.as_ref().map(|m| m.len()),
    ]
    .into_iter()
    .chain([
        raw.remove.as_ref().map(|l| l.len()),
        raw.rename.as_ref().map(|m| m.len()),
    ])
    .flatten()
    .sum::<usize>();
    if given == 0 {
        cx.err(
            p.clone(),
            "no operations (expected set, add, remove or rename)",
        );
        return None;
    }
    let mut ops = HeaderOps::default();
    let mut seen: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut name = |cx: &mut Ctx, kp: KeyPath, n: &str, op: &'static str| -> Option<Box<[u8]>> {
        let lower = n.to_ascii_lowercase();
        if !is_token(n) {
            cx.err(
                kp,
                format!("invalid header name \"{n}\" (expected a token like x-api-version)"),
            );
            return None;
        }
        if let Some(why) = managed(side, &lower) {
            cx.err(kp, format!("\"{lower}\": {why}"));
            return None;
        }
        // `add` may repeat a name; every other pair of operations on one name is ambiguous
        match seen.get(&lower) {
            Some(&prev) if !(prev == "add" && op == "add") => {
                cx.err(kp, format!("\"{lower}\" is also in {prev}"));
                return None;
            }
            _ => {
                seen.insert(lower.clone(), op);
            }
        }
        Some(lower.into_bytes().into_boxed_slice())
    };
    for (op, table) in [("set", raw.set), ("add", raw.add)] {
        for (n, v) in table.unwrap_or_default() {
            let kp = p.key(op).key(&n);
            let Some(lower) = name(cx, kp.clone(), &n, op) else {
                continue;
            };
            let t = Template::parse(&v, Kind::Header, params);
            let Some(t) = cx.check(&kp, t) else {
                continue;
            };
            match op {
                "set" => ops.set.push((lower, t)),
                _ => ops.add.push((lower, t)),
            }
        }
    }
    for (i, n) in raw.remove.unwrap_or_default().iter().enumerate() {
        if let Some(lower) = name(cx, p.key("remove").index(i), n, "remove") {
            ops.remove.push(lower);
        }
    }
    for (from, to) in raw.rename.unwrap_or_default() {
        let kp = p.key("rename").key(&from);
        let f = name(cx, kp.clone(), &from, "rename");
        let t = name(cx, kp, &to, "rename");
        if let (Some(f), Some(t)) = (f, t) {
            ops.rename.push((f, t));
        }
    }
    Some(std::sync::Arc::new(ops.finish()))
}

/// A route's `response_fields` (`p`: the route).
pub(super) fn response_fields(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<Vec<String>>,
) -> Option<FieldSet> {
    let raw = raw?;
    let fp = p.key("response_fields");
    if raw.is_empty() {
        cx.err(
            fp,
            "empty list (omit response_fields to relay responses whole)",
        );
        return None;
    }
    let mut set = FieldSet::default();
    for (i, path) in raw.iter().enumerate() {
        if let Err(e) = set.add(path) {
            cx.err(fp.index(i), format!("\"{path}\": {e}"));
        }
    }
    Some(set)
}

/// `request_body` / `response_body = { drop, rename, wrap, unwrap }` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBodyTransform {
    pub drop: Option<Vec<String>>,
    pub rename: Option<BTreeMap<String, String>>,
    pub wrap: Option<String>,
    pub unwrap: Option<String>,
}

/// One `status_overrides` entry as written: the upstream statuses it replaces, and the answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOverride {
    pub statuses: Option<Vec<i64>>,
    pub status: Option<i64>,
    pub body: Option<String>,
    pub body_file: Option<String>,
    pub content_type: Option<String>,
}

/// A route's raw body keys, taken out of the route table together.
pub(crate) struct RawBodyKeys {
    pub request_body: Option<RawBodyTransform>,
    pub response_body: Option<RawBodyTransform>,
    pub query_fields: Option<String>,
    pub status_overrides: Option<Vec<RawOverride>>,
}

/// Most fields a `?fields=` selection may list.
pub const MAX_QUERY_FIELDS: usize = 64;

/// A route's JSON body transforms and status overrides.
#[derive(Debug, Clone, Default)]
pub struct BodyTransforms {
    /// Applied to JSON request bodies (read whole, under `max_body`) before they go upstream.
    pub request: Option<BodyTransform>,
    /// Applied to successful JSON responses (under the 1 MiB response-body cap).
    pub response: Option<BodyTransform>,
    /// `query_fields = "fields"`: a `?fields=a,b.c` parameter selects response members per
    /// request (the parameter is still forwarded).
    pub query_fields: Option<String>,
    /// Upstream statuses answered with the gateway's own document instead (the upstream's body
    /// is dropped with its connection).
    pub overrides: Vec<StatusOverride>,
}

/// `status_overrides = [{ statuses = [500, 503], status = 502, body = "...", content_type }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOverride {
    pub statuses: Vec<u16>,
    pub answer: super::fallback::Fallback,
}

/// A route's `request_body`, `response_body`, `query_fields`, `status_overrides` (`p`: the
/// route); None when it has none of them.
pub(super) fn body_transforms(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: RawBodyKeys,
    base: &std::path::Path,
) -> Option<std::sync::Arc<BodyTransforms>> {
    let request = raw
        .request_body
        .map(|r| body_transform(cx, &p.key("request_body"), r));
    let response = raw
        .response_body
        .map(|r| body_transform(cx, &p.key("response_body"), r));
    let query_fields = raw.query_fields.filter(|q| {
        let ok = !q.is_empty()
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !ok {
            cx.err(
                p.key("query_fields"),
                format!("\"{q}\" (expected a query parameter name like \"fields\")"),
            );
        }
        ok
    });
    let mut overrides = Vec::new();
    let mut seen: Vec<u16> = Vec::new();
    for (i, o) in raw
        .status_overrides
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let op = p.key("status_overrides").index(i);
        let mut statuses = Vec::new();
        let list = cx.required(
            op.key("statuses"),
            o.statuses,
            "upstream statuses like [500, 503]",
        );
        for (j, s) in list.unwrap_or_default().iter().enumerate() {
            match u16::try_from(*s) {
                Ok(s @ 200..=599) if seen.contains(&s) => cx.err(
                    op.key("statuses").index(j),
                    format!("{s} is already overridden"),
                ),
                Ok(s @ 200..=599) => {
                    seen.push(s);
                    statuses.push(s);
                }
                _ => cx.err(
                    op.key("statuses").index(j),
                    format!("{s} (expected 200-599)"),
                ),
            }
        }
        let fb = super::fallback::RawFallback {
            status: o.status,
            body_file: o.body_file,
            body: o.body,
            content_type: o.content_type,
        };
        if let Some(answer) = super::fallback::fallback(cx, &op, Some(fb), base) {
            overrides.push(StatusOverride {
                statuses,
                answer: (*answer).clone(),
            });
        }
    }
    let t = BodyTransforms {
        request: request.flatten(),
        response: response.flatten(),
        query_fields,
        overrides,
    };
    let any = t.request.is_some() || t.response.is_some() || t.query_fields.is_some();
    (any || !t.overrides.is_empty()).then(|| std::sync::Arc::new(t))
}

/// One `request_body` / `response_body` table (`p`: its key).
fn body_transform(cx: &mut Ctx, p: &KeyPath, raw: RawBodyTransform) -> Option<BodyTransform> {
    let given = raw.drop.as_ref().is_some_and(|d| !d.is_empty())
        || raw.rename.as_ref().is_some_and(|r| !r.is_empty())
        || raw.wrap.is_some()
        || raw.unwrap.is_some();
    if !given {
        cx.err(
            p.clone(),
            "no operations (expected drop, rename, wrap or unwrap)",
        );
        return None;
    }
    let mut t = BodyTransform::default();
    if let Some(list) = &raw.drop {
        let paths: Vec<&str> = list.iter().map(String::as_str).collect();
        if let Err((i, m)) = t.set_drop(&paths) {
            cx.err(p.key("drop").index(i), format!("\"{}\": {m}", paths[i]));
        }
    }
    if let Some(map) = &raw.rename {
        let pairs: Vec<(&str, &str)> = map.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        if let Err((i, m)) = t.set_rename(&pairs) {
            cx.err(p.key("rename").key(pairs[i].0), m);
        }
    }
    if let Some(w) = &raw.wrap {
        if let Err(m) = t.set_wrap(w) {
            cx.err(p.key("wrap"), m);
        }
    }
    if let Some(u) = &raw.unwrap {
        if let Err(m) = t.set_unwrap(u) {
            cx.err(p.key("unwrap"), m);
        }
    }
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{errs, R, UP};
    use crate::config::parse_str;

    #[test]
    fn response_fields_compile_and_errors_name_the_entry() {
        let ok = format!("{UP}{R}response_fields = [\"id\", \"avatar.small\"]\n");
        let c = parse_str(&ok, "t.toml").unwrap();
        let set = c.routes[0].response_fields.as_ref().unwrap();
        assert_eq!(set.paths(), ["id", "avatar.small"]);
        let plain = parse_str(&format!("{UP}{R}"), "t.toml").unwrap();
        assert!(plain.routes[0].response_fields.is_none());
        let bad =
            format!("{R}response_fields = [\"avatar\", \"avatar.small\", \"a..b\", \"avatar\"]\n");
        assert_eq!(
            errs(&bad),
            [
                "route[0].response_fields[1]: \"avatar.small\": inside \"avatar\", which is kept whole (list one or the other)",
                "route[0].response_fields[2]: \"a..b\": empty field name (expected names joined by '.')",
                "route[0].response_fields[3]: \"avatar\": listed twice",
            ]
        );
        assert_eq!(
            errs(&format!("{R}response_fields = []\n")),
            ["route[0].response_fields: empty list (omit response_fields to relay responses whole)"]
        );
    }
}
