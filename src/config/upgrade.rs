//! A route's `upgrades`: the HTTP/1.1 `Upgrade` protocols besides WebSocket it passes on.
//!
//! Owns checking the list: tokens (RFC 9110 §5.6.2, an optional `/version`), lower-cased, no
//! duplicates, not `websocket` (that is `websocket = true`) and not `h2c` (HTTP/2 is spoken
//! directly, never upgraded to).

use super::position::KeyPath;
use super::validate::Ctx;

/// Is `t` a protocol token, `name` or `name/version`?
fn token(t: &str) -> bool {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let mut parts = t.splitn(2, '/');
    let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.chars().all(tchar));
    let name = parts.next();
    ok(name) && parts.next().is_none_or(|v| ok(Some(v)))
}

/// `route.upgrades` (`p`: the key).
pub(super) fn upgrades(cx: &mut Ctx, p: &KeyPath, raw: Option<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, t) in raw.unwrap_or_default().into_iter().enumerate() {
        let lower = t.to_ascii_lowercase();
        if !token(&t) {
            cx.err(
                p.index(i),
                format!("\"{t}\" is not a protocol token (like \"foo\" or \"foo/2\")"),
            );
        } else if lower == "websocket" {
            cx.err(p.index(i), "use websocket = true for WebSocket");
        } else if lower == "h2c" {
            cx.err(
                p.index(i),
                "h2c upgrades are not supported (clients speak h2c with prior knowledge)",
            );
        } else if out.contains(&lower) {
            cx.err(p.index(i), format!("duplicate protocol \"{t}\""));
        } else {
            out.push(lower);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{errs, R, UP};
    use crate::config::parse_str;

    #[test]
    fn tokens_are_checked_and_lower_cased() {
        let c = parse_str(
            &format!("{UP}{R}upgrades = [\"Foo\", \"bar/2\"]\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.routes[0].upgrades, ["foo", "bar/2"]);
        assert_eq!(
            errs(&format!("{R}upgrades = [\"websocket\", \"h2c\", \"a b\", \"x\", \"X\", \"y/\"]\n")),
            [
                "route[0].upgrades[0]: use websocket = true for WebSocket",
                "route[0].upgrades[1]: h2c upgrades are not supported (clients speak h2c with prior knowledge)",
                "route[0].upgrades[2]: \"a b\" is not a protocol token (like \"foo\" or \"foo/2\")",
                "route[0].upgrades[4]: duplicate protocol \"X\"",
                "route[0].upgrades[5]: \"y/\" is not a protocol token (like \"foo\" or \"foo/2\")",
            ]
        );
    }
}
