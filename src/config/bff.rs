//! A route's backend-for-frontend keys, read before the route itself (which consumes the raw
//! table): `request_headers`, `response_headers`, `cache`, `aggregate` (with
//! `aggregate_timeout`), `request_body`, `response_body`, `query_fields` and `status_overrides`.
//!
//! Owns gathering them into [`Bff`]; each key's own reading lives with it (`transform.rs`,
//! `cache.rs`, `aggregate.rs`). Path parameters of the route's `path_template` are parsed here
//! once, for the templates.

use std::collections::BTreeMap;

use super::position::KeyPath;
use super::raw::RawRoute;
use super::validate::Ctx;

/// A route's BFF keys, compiled before the route itself (which consumes the raw table).
pub(super) struct Bff {
    pub request_headers: Option<std::sync::Arc<crate::transform::headers::HeaderOps>>,
    pub response_headers: Option<std::sync::Arc<crate::transform::headers::HeaderOps>>,
    pub cache: Option<crate::cache::policy::CachePolicy>,
    pub aggregate: Option<super::aggregate::Aggregate>,
    pub body: Option<std::sync::Arc<super::transform::BodyTransforms>>,
}

/// `request_headers`, `response_headers`, `cache`, `aggregate` of route `p`. An aggregate route
/// names no `upstream` (its parts do): the first part's upstream is filled in for the route.
pub(super) fn bff(
    cx: &mut Ctx,
    p: &KeyPath,
    r: &mut RawRoute,
    upstreams: &BTreeMap<String, usize>,
    base: &std::path::Path,
) -> Bff {
    use super::transform::{header_ops, Side};
    let template = r
        .path_template
        .as_deref()
        .filter(|t| t.starts_with('/'))
        .and_then(|t| super::units::parse_template(t).ok())
        .unwrap_or_default();
    let params: Vec<&str> = template
        .iter()
        .filter_map(|s| match s {
            super::TemplateSegment::Param(n) | super::TemplateSegment::CatchAll(n) => {
                Some(n.as_str())
            }
            super::TemplateSegment::Literal(_) => None,
        })
        .collect();
    let (req, resp) = (r.request_headers.take(), r.response_headers.take());
    let request_headers = header_ops(cx, &p.key("request_headers"), req, Side::Request, &params);
    let response_headers = header_ops(
        cx,
        &p.key("response_headers"),
        resp,
        Side::Response,
        &params,
    );
    let cache = super::cache::cache(cx, &p.key("cache"), r.cache.take());
    let (parts, total) = (r.aggregate.take(), r.aggregate_timeout.take());
    let aggregate = super::aggregate::aggregate(cx, p, parts, total, upstreams, &params);
    if let Some(agg) = &aggregate {
        if r.upstream.is_some() {
            cx.err(
                p.key("upstream"),
                "a route has either upstream or aggregate",
            );
        } else {
            // a part that failed validation was reported already: any upstream stands in
            let first = agg.parts.first().map(|f| f.upstream);
            let name = upstreams.iter().find(|(_, &i)| Some(i) == first);
            r.upstream = name.or(upstreams.iter().next()).map(|(n, _)| n.clone());
        }
        if cache.is_some() {
            cx.err(p.key("cache"), "an aggregate route's parts are cached by their own routes' upstream calls: not here");
        }
    }
    let raw_body = super::transform::RawBodyKeys {
        request_body: r.request_body.take(),
        response_body: r.response_body.take(),
        query_fields: r.query_fields.take(),
        status_overrides: r.status_overrides.take(),
    };
    let body = super::transform::body_transforms(cx, p, raw_body, base);
    Bff {
        request_headers,
        response_headers,
        cache,
        aggregate,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{errs, R};

    #[test]
    fn bff_keys_report_every_problem_by_key() {
        let bad = format!(
            "{R}cache = {{ ttl = \"0s\", key = [\"query\", \"bogus\", \"query\"], vary = [\"a b\"], statuses = [206, 500] }}\n"
        );
        assert_eq!(
            errs(&bad),
            [
                "route[0].cache.ttl: must be greater than 0",
                "route[0].cache.key[1]: \"bogus\" (expected query, query:NAME, header:NAME, cookie:NAME or identity)",
                "route[0].cache.key[2]: \"query\" listed twice",
                "route[0].cache.vary[0]: \"a b\" is not a header name",
                "route[0].cache.statuses[0]: 206 (expected a final status 200-499 other than 206)",
                "route[0].cache.statuses[1]: 500 (expected a final status 200-499 other than 206)",
            ]
        );
        assert_eq!(
            errs(&format!("{R}cache = {{ max_entry = \"1KiB\" }}\n")),
            ["route[0].cache.ttl: missing (expected a duration like \"30s\")"]
        );
        let agg = "[[route]]\npath_template = \"/d/{id}\"\nupstream = \"u\"\naggregate = [\n  { key = \"a\", upstream = \"u\", path = \"/x/{nope}\" },\n  { key = \"a\", upstream = \"v\", path = \"x\", merge = \"deep\" },\n  { key = \"errors\", upstream = \"u\", path = \"/e\" },\n]\n";
        assert_eq!(
            errs(agg),
            [
                "route[0].upstream: a route has either upstream or aggregate",
                "route[0].aggregate[0].path: unknown path parameter \"nope\" (the route's template has: id)",
                "route[0].aggregate[1].name: duplicate name \"a\" (also aggregate[0])",
                "route[0].aggregate[1].upstream: no upstream named \"v\"",
                "route[0].aggregate[1].path: \"x\" must start with /",
                "route[0].aggregate[1].merge: \"deep\" (expected \"key\" or \"root\")",
                "route[0].aggregate[2].key: \"errors\" (\"errors\" lists failed parts; names must not be empty)",
            ]
        );
        let body = format!("{R}response_body = {{ rename = {{ \"a.b\" = \"c\" }} }}\nquery_fields = \"a b\"\nrequest_body = {{}}\n");
        assert_eq!(
            errs(&body),
            [
                "route[0].response_body.rename.\"a.b\": a rename stays within one object: \"c\" must be \"a.<new name>\"",
                "route[0].query_fields: \"a b\" (expected a query parameter name like \"fields\")",
                "route[0].request_body: no operations (expected drop, rename, wrap or unwrap)",
            ]
        );
    }
}
