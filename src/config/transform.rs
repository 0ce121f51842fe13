//! Route transforms: `response_fields`.
//!
//! Owns turning a route's raw transform keys into their compiled form (`transform::fields`),
//! each error naming the key and, for a list, the entry.

use super::position::KeyPath;
use super::validate::Ctx;
use crate::transform::fields::FieldSet;

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
