//! A route's edge-security settings in the rendered config: `waf`, `schema`, `validate_query`
//! and `validate_headers`, back in the file format (`render.rs` owns the rest and the helpers
//! these use).

use toml::Value;

use super::{int, path, s, strs, tbl};
use crate::validate::params::{ParamRule, ParamType};
use crate::waf::{Mode, OverLimit, Policy, Target};

pub(super) fn waf(p: &Policy) -> Value {
    let families = crate::waf::rules::Family::ALL
        .iter()
        .filter(|f| p.excluded_families & (1 << f.index()) != 0)
        .map(|f| Value::String(f.name().into()));
    let rules = |ids: &[u32], fams: u16| {
        let mut v: Vec<Value> = ids.iter().map(|&id| Value::Integer(id.into())).collect();
        let named = crate::waf::rules::Family::ALL
            .iter()
            .filter(|f| fams & (1 << f.index()) != 0);
        v.extend(named.map(|f| Value::String(f.name().into())));
        Value::Array(v)
    };
    let exclusions = p.exclusions.iter().map(|e| {
        let args = e.targets.iter().map(|t| {
            Value::String(match t {
                Target::Path => "path".into(),
                Target::Header(h) => format!("header:{h}"),
                Target::Cookie(c) => format!("cookie:{c}"),
                Target::Arg { name, prefix: true } => format!("{name}*"),
                Target::Arg {
                    name,
                    prefix: false,
                } => name.clone(),
            })
        });
        tbl([
            ("rules", Some(rules(&e.rules, e.families))),
            ("args", Some(Value::Array(args.collect()))),
        ])
    });
    let mut excluded: Vec<Value> = p
        .excluded_rules
        .iter()
        .map(|&id| Value::Integer(id.into()))
        .collect();
    excluded.extend(families);
    tbl([
        (
            "mode",
            s(if p.mode == Mode::Block {
                "block"
            } else {
                "detect"
            }),
        ),
        ("paranoia", int(p.paranoia)),
        ("threshold", int(p.threshold)),
        ("status", int(p.status)),
        ("exclude_rules", Some(Value::Array(excluded))),
        ("exclusions", Some(Value::Array(exclusions.collect()))),
        ("headers", strs(&p.headers)),
        ("body_limit", int(p.body_limit)),
        (
            "body_over_limit",
            s(if p.over_limit == OverLimit::Reject {
                "reject"
            } else {
                "partial"
            }),
        ),
        ("log_payload", Some(Value::Boolean(p.log_payload))),
    ])
}

/// `validate_query` / `validate_headers`: one table per declared name (None when there are none).
pub(super) fn params(rules: &[ParamRule]) -> Option<Value> {
    if rules.is_empty() {
        return None;
    }
    let table = rules.iter().map(|r| {
        let kind = match r.kind {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
        };
        let v = tbl([
            ("type", s(kind)),
            ("required", Some(Value::Boolean(r.required))),
            ("pattern", r.pattern.as_ref().and_then(|p| s(p.as_str()))),
            ("max_length", r.max_length.and_then(int)),
            ("min", r.min.map(Value::Float)),
            ("max", r.max.map(Value::Float)),
            ("values", r.values.as_ref().and_then(strs)),
        ]);
        (r.name.clone(), v)
    });
    Some(Value::Table(table.collect()))
}

/// `schema`: the file it was read from.
pub(super) fn schema(v: &crate::validate::Validation) -> Option<Value> {
    v.schema_file.as_deref().and_then(path)
}
