//! A route's request validation: `schema`, `validate_query` and `validate_headers` into a
//! [`Validation`].
//!
//! Owns the checks: the schema file is read (relative to the config file) and compiled at load
//! (a reload reads it again); each declared parameter is a table `{ type, required, pattern,
//! max_length, min, max, values }` with `type` one of "string" (default), "integer", "number",
//! "boolean", `pattern` a regular expression (compiled here; anchor it with `^...$` to match the
//! whole value), `min`/`max` only for numbers. Every problem names its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::position::KeyPath;
use super::validate::Ctx;
use crate::validate::params::{ParamRule, ParamType};
use crate::validate::schema::BodySchema;
use crate::validate::Validation;

/// One declared parameter or header as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawParam {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub required: Option<bool>,
    pub pattern: Option<String>,
    pub max_length: Option<i64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub values: Option<Vec<String>>,
}

/// The route keys as written.
pub(crate) struct RawValidation {
    pub schema: Option<String>,
    pub query: Option<BTreeMap<String, RawParam>>,
    pub headers: Option<BTreeMap<String, RawParam>>,
}

/// A route's validation (`p`: the route); None when it declares none.
pub(super) fn validation(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: RawValidation,
    base: &Path,
) -> Option<Arc<Validation>> {
    if raw.schema.is_none() && raw.query.is_none() && raw.headers.is_none() {
        return None;
    }
    let (schema, schema_file) = match raw.schema {
        None => (None, None),
        Some(file) => {
            let path = super::auth::resolve(base, &file);
            match BodySchema::load(&path) {
                Ok(s) => (Some(s), Some(path)),
                Err(m) => {
                    cx.err(p.key("schema"), m);
                    (None, None)
                }
            }
        }
    };
    let query = params(cx, &p.key("validate_query"), raw.query, false);
    let headers = params(cx, &p.key("validate_headers"), raw.headers, true);
    Some(Arc::new(Validation {
        schema,
        schema_file,
        query,
        headers,
    }))
}

fn params(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<BTreeMap<String, RawParam>>,
    header: bool,
) -> Vec<ParamRule> {
    let mut out = Vec::new();
    for (name, r) in raw.unwrap_or_default() {
        let pp = p.key(&name);
        if header && (name.is_empty() || !name.bytes().all(crate::http::head::is_token)) {
            cx.err(pp.clone(), format!("\"{name}\" is not a header name"));
        }
        let kind = match r.kind.as_deref() {
            None | Some("string") => ParamType::String,
            Some("integer") => ParamType::Integer,
            Some("number") => ParamType::Number,
            Some("boolean") => ParamType::Boolean,
            Some(other) => {
                let m = format!(
                    "\"{other}\": expected \"string\", \"integer\", \"number\" or \"boolean\""
                );
                cx.err(pp.key("type"), m);
                ParamType::String
            }
        };
        let numeric = matches!(kind, ParamType::Integer | ParamType::Number);
        for (key, v) in [("min", r.min), ("max", r.max)] {
            if v.is_some() && !numeric {
                cx.err(pp.key(key), "only for type \"integer\" or \"number\"");
            }
        }
        if let (Some(lo), Some(hi)) = (r.min, r.max) {
            if lo > hi {
                cx.err(pp.key("min"), format!("{lo} is greater than max {hi}"));
            }
        }
        let pattern = r.pattern.and_then(|pat| {
            let re = regex::RegexBuilder::new(&pat).size_limit(1 << 20).build();
            cx.check(
                &pp.key("pattern"),
                re.map_err(|e| format!("\"{pat}\": {e}")),
            )
        });
        let max_length = r
            .max_length
            .map(|n| cx.int(pp.key("max_length"), Some(n), 0usize, 1, 1 << 20));
        if r.values.as_ref().is_some_and(Vec::is_empty) {
            cx.err(
                pp.key("values"),
                "empty list (leave it out to allow any value)",
            );
        }
        let mut rule = ParamRule::new(
            if header {
                name.to_ascii_lowercase()
            } else {
                name
            },
            kind,
        );
        rule.required = r.required.unwrap_or(false);
        rule.pattern = pattern;
        rule.max_length = max_length;
        (rule.min, rule.max, rule.values) = (r.min, r.max, r.values);
        out.push(rule);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{errs, R, UP};
    use crate::config::parse_str;

    #[test]
    fn validation_keys_compile_and_errors_name_their_key() {
        let dir = std::env::temp_dir().join(format!("cg-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("order.json"),
            r#"{"type":"object","required":["qty"]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("bad.json"), r#"{"type":"strin"}"#).unwrap();
        let text = format!(
            "{UP}{R}schema = \"order.json\"\nvalidate_query = {{ page = {{ type = \"integer\", min = 1, required = true }} }}\n\
             validate_headers = {{ \"X-Tenant\" = {{ pattern = \"^[a-z]+$\", max_length = 32 }} }}\n"
        );
        let c = crate::config::parse_in(&text, "t.toml", &dir).unwrap();
        let v = c.routes[0].validation.as_ref().unwrap();
        assert!(v.schema.is_some());
        assert_eq!(
            (v.query[0].name.as_str(), v.query[0].required),
            ("page", true)
        );
        assert_eq!(v.headers[0].name, "x-tenant");
        assert!(parse_str(&format!("{UP}{R}"), "t.toml").unwrap().routes[0]
            .validation
            .is_none());
        let bad = format!(
            "{R}validate_query = {{ q = {{ type = \"text\", min = 1, pattern = \"(\" }}, n = {{ type = \"number\", min = 5, max = 1 }} }}\n\
             validate_headers = {{ \"bad header\" = {{ values = [] }} }}\n"
        );
        let e = errs(&bad);
        assert!(
            e.iter()
                .any(|m| m.starts_with("route[0].validate_query.q.type: \"text\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m
                    == "route[0].validate_query.q.min: only for type \"integer\" or \"number\""),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("route[0].validate_query.q.pattern: \"(\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "route[0].validate_query.n.min: 5 is greater than max 1"),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m
                == "route[0].validate_headers.\"bad header\": \"bad header\" is not a header name"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m
                    .starts_with("route[0].validate_headers.\"bad header\".values: empty list")),
            "{e:?}"
        );
        let bad_schema = format!("{UP}{R}schema = \"bad.json\"\n");
        let e = crate::config::parse_in(&bad_schema, "t.toml", &dir).unwrap_err();
        assert!(e.to_string().contains("route[0].schema"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
