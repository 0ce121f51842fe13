//! A route's web application firewall: `waf = { mode, paranoia, ... }` into a [`waf::Policy`].
//!
//! Owns the checks: `mode` "block" | "detect" (default block), `paranoia` 1-4 (default 1),
//! `threshold` 1-100 (default 5: one critical match), `status` 400-599 (default 403),
//! `exclude_rules` (rule ids or family names), `exclusions = [{ rules, args }]` (`args` entries:
//! an argument name, `name*` for a prefix, `header:NAME`, `cookie:NAME` or `path`), `headers`
//! (inspected besides cookies; default User-Agent and Referer), `body_limit` (default 128 KiB),
//! `body_over_limit` "partial" | "reject", `log_payload`. Every problem names its key and entry.
//! Compiling a policy also compiles its paranoia level's rule set, so the first request pays
//! nothing.

use serde::{Deserialize, Deserializer};

use super::position::KeyPath;
use super::raw::{Scalar, ScalarVisitor, SizeValue};
use super::validate::Ctx;
use crate::waf::rules::{self, Family, RuleSet};
use crate::waf::{Exclusion, Mode, OverLimit, Policy, Target};

/// `waf = { ... }` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWaf {
    pub mode: Option<String>,
    pub paranoia: Option<i64>,
    pub threshold: Option<i64>,
    pub status: Option<i64>,
    pub exclude_rules: Option<Vec<RuleRef>>,
    pub exclusions: Option<Vec<RawExclusion>>,
    pub headers: Option<Vec<String>>,
    pub body_limit: Option<SizeValue>,
    pub body_over_limit: Option<String>,
    pub log_payload: Option<bool>,
}

/// One `exclusions` entry as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawExclusion {
    pub rules: Option<Vec<RuleRef>>,
    pub args: Option<Vec<String>>,
}

/// A rule id (`942100`, or `"942100"`) or a family name (`"sqli"`).
#[derive(Debug)]
pub(crate) struct RuleRef(Scalar);

impl<'de> Deserialize<'de> for RuleRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(
            "a rule id like 942100 or a family like \"sqli\"",
        ))
        .map(RuleRef)
    }
}

/// Default `body_limit`: ModSecurity's `SecRequestBodyNoFilesLimit`.
pub const DEFAULT_BODY_LIMIT: u64 = 128 * 1024;

/// `route.waf` (`p`: the key).
pub(super) fn waf(cx: &mut Ctx, p: &KeyPath, raw: Option<RawWaf>) -> Option<Policy> {
    let w = raw?;
    let mode = match w.mode.as_deref() {
        None | Some("block") => Mode::Block,
        Some("detect") => Mode::Detect,
        Some(other) => {
            cx.err(
                p.key("mode"),
                format!("\"{other}\": expected \"block\" or \"detect\""),
            );
            Mode::Block
        }
    };
    let over_limit = match w.body_over_limit.as_deref() {
        None | Some("partial") => OverLimit::Partial,
        Some("reject") => OverLimit::Reject,
        Some(other) => {
            let m = format!("\"{other}\": expected \"partial\" or \"reject\"");
            cx.err(p.key("body_over_limit"), m);
            OverLimit::Partial
        }
    };
    let paranoia = cx.int(p.key("paranoia"), w.paranoia, 1u8, 1, 4);
    let (excluded_rules, excluded_families) = rule_refs(
        cx,
        &p.key("exclude_rules"),
        w.exclude_rules.unwrap_or_default(),
    );
    let mut exclusions = Vec::new();
    for (i, e) in w.exclusions.unwrap_or_default().into_iter().enumerate() {
        let ep = p.key("exclusions").index(i);
        let (rules, families) = rule_refs(cx, &ep.key("rules"), e.rules.unwrap_or_default());
        let args = cx.required(ep.key("args"), e.args, "a list of argument names");
        let Some(args) = args else { continue };
        if args.is_empty() {
            cx.err(
                ep.key("args"),
                "empty list (name the arguments the rules skip)",
            );
        }
        let targets = args
            .iter()
            .enumerate()
            .filter_map(|(j, a)| cx.check(&ep.key("args").index(j), target(a)))
            .collect();
        exclusions.push(Exclusion {
            rules,
            families,
            targets,
        });
    }
    let headers = match w.headers {
        None => vec!["user-agent".into(), "referer".into()],
        Some(h) => {
            for (i, name) in h.iter().enumerate() {
                if name.is_empty() || !name.bytes().all(crate::http::head::is_token) {
                    cx.err(
                        p.key("headers").index(i),
                        format!("\"{name}\" is not a header name"),
                    );
                }
            }
            h.into_iter().map(|n| n.to_ascii_lowercase()).collect()
        }
    };
    let body_limit = cx.size(p.key("body_limit"), w.body_limit, DEFAULT_BODY_LIMIT, 1);
    let body_limit = usize::try_from(body_limit.min(64 << 20)).unwrap_or(64 << 20);
    // compiled now, not on the first request
    let _ = RuleSet::get(paranoia);
    Some(Policy {
        mode,
        paranoia,
        threshold: cx.int(p.key("threshold"), w.threshold, 5u32, 1, 100),
        status: cx.int(p.key("status"), w.status, 403u16, 400, 599),
        excluded_rules,
        excluded_families,
        exclusions,
        headers,
        body_limit,
        over_limit,
        log_payload: w.log_payload.unwrap_or(false),
    })
}

/// Rule ids and family names (`p`: the list's key) into ids and a family bit set.
fn rule_refs(cx: &mut Ctx, p: &KeyPath, refs: Vec<RuleRef>) -> (Vec<u32>, u16) {
    let (mut ids, mut families) = (Vec::new(), 0u16);
    for (i, RuleRef(r)) in refs.into_iter().enumerate() {
        let text = match r {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(s) => s,
        };
        if let Some(f) = Family::by_name(&text) {
            families |= 1 << f.index();
            continue;
        }
        match text.parse::<u32>() {
            Ok(id) if rules::known(id) || id == crate::waf::MALFORMED_BODY => ids.push(id),
            _ => {
                let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                let m = format!(
                    "\"{text}\" is neither a rule id nor a family ({})",
                    names.join(", ")
                );
                cx.err(p.index(i), m);
            }
        }
    }
    (ids, families)
}

/// An `args` entry into a [`Target`].
fn target(a: &str) -> Result<Target, String> {
    if a == "path" {
        return Ok(Target::Path);
    }
    if let Some(h) = a.strip_prefix("header:") {
        return match h.is_empty() {
            true => Err("header: needs a header name".into()),
            false => Ok(Target::Header(h.to_ascii_lowercase())),
        };
    }
    if let Some(c) = a.strip_prefix("cookie:") {
        return match c.is_empty() {
            true => Err("cookie: needs a cookie name".into()),
            false => Ok(Target::Cookie(c.into())),
        };
    }
    let (name, prefix) = match a.strip_suffix('*') {
        Some(n) => (n, true),
        None => (a, false),
    };
    if name.is_empty() && !prefix {
        return Err("empty argument name".into());
    }
    Ok(Target::Arg {
        name: name.into(),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{errs, R, UP};
    use crate::config::parse_str;
    use crate::waf::{Mode, OverLimit, Target};

    #[test]
    fn waf_tables_compile_and_every_error_names_its_key() {
        let ok = format!(
            "{UP}{R}waf = {{ mode = \"detect\", paranoia = 2, threshold = 10, status = 406, \
             exclude_rules = [942100, \"xss\"], headers = [\"User-Agent\", \"X-Search\"], \
             body_limit = \"64KiB\", body_over_limit = \"reject\", log_payload = true, \
             exclusions = [{{ rules = [\"sqli\"], args = [\"search\", \"user.*\", \"header:referer\", \"cookie:s\", \"path\"] }}] }}\n"
        );
        let c = parse_str(&ok, "t.toml").unwrap();
        let w = c.routes[0].waf.as_ref().unwrap();
        assert_eq!(
            (w.mode, w.paranoia, w.threshold, w.status),
            (Mode::Detect, 2, 10, 406)
        );
        assert_eq!(w.excluded_rules, [942100]);
        assert_eq!(
            (w.body_limit, w.over_limit, w.log_payload),
            (65536, OverLimit::Reject, true)
        );
        assert_eq!(w.headers, ["user-agent", "x-search"]);
        assert_eq!(
            w.exclusions[0].targets[1],
            Target::Arg {
                name: "user.".into(),
                prefix: true
            }
        );
        let plain = parse_str(&format!("{UP}{R}waf = {{ mode = \"block\" }}\n"), "t.toml").unwrap();
        let w = plain.routes[0].waf.as_ref().unwrap();
        assert_eq!(
            (w.paranoia, w.threshold, w.status, w.body_limit),
            (1, 5, 403, 131072)
        );
        let bad = format!(
            "{R}waf = {{ mode = \"log\", paranoia = 5, exclude_rules = [1, \"sql\"], \
             body_over_limit = \"drop\", exclusions = [{{ rules = [\"rce\"] }}, {{ args = [\"header:\"] }}] }}\n"
        );
        assert_eq!(
            errs(&bad),
            [
                "route[0].waf.mode: \"log\": expected \"block\" or \"detect\"",
                "route[0].waf.paranoia: must be between 1 and 4, got 5",
                "route[0].waf.exclude_rules[0]: \"1\" is neither a rule id nor a family (scanner, protocol, traversal, rce, php, ssti, xss, sqli, java, nosql)",
                "route[0].waf.exclude_rules[1]: \"sql\" is neither a rule id nor a family (scanner, protocol, traversal, rce, php, ssti, xss, sqli, java, nosql)",
                "route[0].waf.body_over_limit: \"drop\": expected \"partial\" or \"reject\"",
                "route[0].waf.exclusions[0].args: missing (expected a list of argument names)",
                "route[0].waf.exclusions[1].args[0]: header: needs a header name",
            ]
        );
    }
}
