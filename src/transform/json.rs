//! Per-route JSON body transforms (`response_body = { drop = [..], rename = {..}, wrap = "data",
//! unwrap = "result" }`, the same for request bodies) and the per-request field selection
//! (`query_fields = "fields"`, `?fields=id,name,avatar.small`).
//!
//! Owns [`BodyTransform`] (the compiled ops) and [`fields_from_query`] (which builds a
//! [`FieldSet`] for [`super::fields::keep`]). Data flow, byte for byte as in `fields.rs`: the whole
//! document is validated by serde_json; `unwrap` walks down to the raw value at its path; `drop`
//! and `rename` run together in one descent that only enters members a path names (objects on the
//! way are rebuilt from raw member slices, everything else is copied verbatim); `wrap` writes
//! `{"<key>":` around the result. So numbers, strings, escapes (member names included) and member
//! order come out as the upstream wrote them; only the whitespace between members of the objects
//! we rebuild is dropped.
//!
//! Rules: paths are member names joined by `.` and, for `drop` and `rename`, name members of the
//! document after `unwrap`, as the upstream spelled them (before any rename); an array applies
//! `drop`/`rename` to each element and keeps non-object elements as they are; a path through a
//! scalar or a missing member does nothing. A renamed member keeps its position; an existing
//! member with the new name gives way (it is removed), unless it is renamed itself (so a swap
//! works). Where `unwrap` meets a duplicate name, the last one counts (as `JSON.parse` does). A
//! document that is not JSON, or whose `unwrap` path is missing or runs through a non-object, is
//! refused ([`NotJson`]): the caller passes the body through untouched.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::fields::{FieldSet, NotJson, PathError, MAX_DEPTH};

/// A compiled body transform: applied in the order unwrap -> drop -> rename -> wrap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyTransform {
    /// Dotted path whose value replaces the document.
    unwrap: Option<String>,
    /// Members to remove, compiled; `drop_given` is the list as configured.
    drop: FieldSet,
    drop_given: Vec<String>,
    /// Renames, as a tree by parent object; `rename_given` is the list as configured.
    rename: Renames,
    rename_given: Vec<(String, String)>,
    /// Member name the result is wrapped in.
    wrap: Option<String>,
}

/// The renames of one object, and those inside its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Renames {
    /// (old name, new name) of members of this object.
    here: Vec<(String, String)>,
    /// Member name, and the renames inside it.
    inner: Vec<(String, Renames)>,
}

impl Renames {
    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.inner.is_empty()
    }

    fn get(&self, name: &str) -> Option<&Renames> {
        self.inner
            .iter()
            .find_map(|(n, r)| (n == name).then_some(r))
    }

    fn new_name(&self, name: &str) -> Option<&str> {
        self.here
            .iter()
            .find_map(|(o, n)| (o == name).then_some(&**n))
    }

    /// The node for the object at `parent` (`None`: the document), created on the way.
    fn node_mut(&mut self, parent: Option<&str>) -> &mut Renames {
        let mut node = self;
        for seg in parent.into_iter().flat_map(|p| p.split('.')) {
            let i = match node.inner.iter().position(|(n, _)| n == seg) {
                Some(i) => i,
                None => {
                    node.inner.push((seg.to_owned(), Renames::default()));
                    node.inner.len() - 1
                }
            };
            node = &mut node.inner[i].1;
        }
        node
    }
}

/// Checks a dotted path's segments: none empty, at most [`MAX_DEPTH`] of them (deeper could
/// never match, and would only grow the compiled trees).
fn check_path(path: &str) -> Result<(), String> {
    if path.split('.').any(str::is_empty) {
        return Err(PathError::Empty.to_string());
    }
    if path.split('.').count() > MAX_DEPTH {
        return Err(format!("nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(())
}

impl BodyTransform {
    /// Sets the members to remove (replacing earlier ones); paths follow [`FieldSet::add`]:
    /// no empty segments, no duplicates, none inside another. Err: (index of the bad entry,
    /// message); `self` is then unchanged.
    pub fn set_drop(&mut self, paths: &[&str]) -> Result<(), (usize, String)> {
        let mut set = FieldSet::default();
        for (i, path) in paths.iter().enumerate() {
            check_path(path).map_err(|e| (i, e))?;
            set.add(path).map_err(|e| (i, e.to_string()))?;
        }
        self.drop = set;
        self.drop_given = paths.iter().map(|p| (*p).to_owned()).collect();
        Ok(())
    }

    /// Sets the renames (replacing earlier ones): (from, to) dotted paths with the same parent
    /// (`meta.ts` -> `meta.time`). A `from` listed twice, two renames to one name, or a rename
    /// to itself is an error. Err: (index of the bad pair, message); `self` is then unchanged.
    pub fn set_rename(&mut self, pairs: &[(&str, &str)]) -> Result<(), (usize, String)> {
        let mut tree = Renames::default();
        for (i, &(from, to)) in pairs.iter().enumerate() {
            let err = |msg: String| (i, msg);
            check_path(from).map_err(|e| err(format!("\"{from}\": {e}")))?;
            check_path(to).map_err(|e| err(format!("\"{to}\": {e}")))?;
            let (parent, old) = split_last(from);
            let (to_parent, new) = split_last(to);
            if parent != to_parent {
                let prefix = parent.map(|p| format!("{p}.")).unwrap_or_default();
                return Err(err(format!(
                    "a rename stays within one object: \"{to}\" must be \"{prefix}<new name>\""
                )));
            }
            if old == new {
                return Err(err(format!("\"{from}\" is renamed to itself")));
            }
            let node = tree.node_mut(parent);
            if node.here.iter().any(|(o, _)| o == old) {
                return Err(err(format!("\"{from}\" is renamed twice")));
            }
            if node.here.iter().any(|(_, n)| n == new) {
                return Err(err(format!("two renames to \"{to}\"")));
            }
            node.here.push((old.to_owned(), new.to_owned()));
        }
        self.rename = tree;
        self.rename_given = pairs.iter().map(|&(f, t)| (f.into(), t.into())).collect();
        Ok(())
    }

    /// Sets the member name the result is wrapped in (taken literally: a `.` is part of it).
    /// Err if empty.
    pub fn set_wrap(&mut self, key: &str) -> Result<(), String> {
        if key.is_empty() {
            return Err("empty member name".to_owned());
        }
        self.wrap = Some(key.to_owned());
        Ok(())
    }

    /// Sets the dotted path whose value replaces the document (`data.items`). Err on an empty
    /// segment or a path deeper than `MAX_DEPTH` (128).
    pub fn set_unwrap(&mut self, path: &str) -> Result<(), String> {
        check_path(path)?;
        self.unwrap = Some(path.to_owned());
        Ok(())
    }

    /// Whether no op is set.
    pub fn is_empty(&self) -> bool {
        self.unwrap.is_none()
            && self.drop_given.is_empty()
            && self.rename.is_empty()
            && self.wrap.is_none()
    }

    /// Transforms `input` into `out` (appended). Err(NotJson) when input is not JSON, or
    /// (unwrap) the path is missing / goes through a non-object, or an edited part nests deeper
    /// than `MAX_DEPTH`: the caller then passes the body through untouched; `out` is then as
    /// it was.
    pub fn apply(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), NotJson> {
        let start = out.len();
        self.write(input, out).inspect_err(|_| out.truncate(start))
    }

    fn write(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), NotJson> {
        let mut doc: &RawValue = serde_json::from_slice(input).map_err(|_| NotJson)?;
        if let Some(path) = &self.unwrap {
            for seg in path.split('.') {
                doc = member(doc, seg)?;
            }
        }
        if let Some(key) = &self.wrap {
            out.push(b'{');
            write_name(key, out);
            out.push(b':');
        }
        let drop = (!self.drop_given.is_empty()).then_some(&self.drop);
        let rename = (!self.rename.is_empty()).then_some(&self.rename);
        edit(doc, drop, rename, out, 0)?;
        if self.wrap.is_some() {
            out.push(b'}');
        }
        Ok(())
    }

    /// For config rendering: the drop paths as given.
    pub fn drop_paths(&self) -> Vec<String> {
        self.drop_given.clone()
    }

    /// For config rendering: the (from, to) rename pairs as given.
    pub fn renames(&self) -> Vec<(String, String)> {
        self.rename_given.clone()
    }

    /// For config rendering: the wrap key.
    pub fn wrap_key(&self) -> Option<&str> {
        self.wrap.as_deref()
    }

    /// For config rendering: the unwrap path.
    pub fn unwrap_path(&self) -> Option<&str> {
        self.unwrap.as_deref()
    }
}

/// `a.b.c` -> (Some("a.b"), "c"); `c` -> (None, "c").
fn split_last(path: &str) -> (Option<&str>, &str) {
    path.rsplit_once('.')
        .map_or((None, path), |(parent, name)| (Some(parent), name))
}

/// The value of member `name` of the object `raw` (the last one, if repeated).
fn member<'a>(raw: &'a RawValue, name: &str) -> Result<&'a RawValue, NotJson> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(NotJson);
    }
    members(text)?
        .into_iter()
        .rev()
        .find(|m| m.name == name)
        .map(|m| m.value)
        .ok_or(NotJson)
}

/// Writes `raw` with the `drop`ped members removed and the `rename`d ones renamed; `None`:
/// nothing to do at this level (`raw` is copied verbatim).
fn edit(
    raw: &RawValue,
    drop: Option<&FieldSet>,
    rename: Option<&Renames>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), NotJson> {
    let text = raw.get();
    if drop.is_none() && rename.is_none() {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Err(NotJson);
    }
    match text.as_bytes().first() {
        Some(b'{') => {
            // drop first, so that a dropped member neither is renamed nor gives way
            let mut kept = members(text)?;
            kept.retain(|m| !matches!(drop.and_then(|d| d.get(&m.name)), Some(None)));
            let new_name = |m: &Member<'_>| rename.and_then(|r| r.new_name(&m.name));
            // names a renamed member takes: an existing member of that name gives way
            let taken: Vec<&str> = kept.iter().filter_map(new_name).collect();
            out.push(b'{');
            let mut first = true;
            for m in &kept {
                let new = new_name(m);
                if new.is_none() && taken.iter().any(|t| *t == m.name) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                match new {
                    Some(name) => write_name(name, out),
                    None => out.extend_from_slice(m.raw.as_bytes()),
                }
                out.push(b':');
                let sub_drop = drop.and_then(|d| d.get(&m.name)).and_then(Option::as_ref);
                let sub_rename = rename.and_then(|r| r.get(&m.name));
                edit(m.value, sub_drop, sub_rename, out, depth + 1)?;
            }
            out.push(b'}');
        }
        Some(b'[') => {
            super::fields::array(text, out, |v, out| edit(v, drop, rename, out, depth + 1))?
        }
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// Writes `name` as a JSON string.
fn write_name(name: &str, out: &mut Vec<u8>) {
    // writing a str into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, name);
}

/// One member of an object: its name as written (quotes and escapes included), the name it
/// stands for, and its value unparsed.
struct Member<'a> {
    raw: &'a str,
    name: Cow<'a, str>,
    value: &'a RawValue,
}

/// The members of the object `text`, in document order.
fn members(text: &str) -> Result<Vec<Member<'_>>, NotJson> {
    let RawMembers(raw) = serde_json::from_str(text).map_err(|_| NotJson)?;
    raw.into_iter()
        .map(|(key, value)| {
            let raw = key.get();
            let name = match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(s) if !s.contains('\\') => Cow::Borrowed(s),
                _ => Cow::Owned(serde_json::from_str::<String>(raw).map_err(|_| NotJson)?),
            };
            Ok(Member { raw, name, value })
        })
        .collect()
}

/// An object's members in document order, names and values unparsed.
struct RawMembers<'a>(Vec<(&'a RawValue, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMembers<'de>, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<&'de RawValue, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(RawMembers(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses a `?fields=a,b.c` selection (the value already percent-decoded by the caller):
/// comma-separated dotted paths, whitespace around names trimmed, empty names skipped, at most
/// `max` paths (more => Err), duplicates/covered paths tolerated (a path inside one kept whole
/// is ignored, in either order). Err(message) for an empty selection or a bad path. The
/// result's [`FieldSet::paths`] come shortest first (the output of `keep` is in document order
/// regardless).
pub fn fields_from_query(value: &[u8], max: usize) -> Result<FieldSet, String> {
    let value = std::str::from_utf8(value).map_err(|_| "not UTF-8".to_owned())?;
    let mut paths = Vec::new();
    for path in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if paths.len() >= max {
            return Err(format!("more than {max} fields"));
        }
        check_path(path).map_err(|e| format!("\"{path}\": {e}"))?;
        paths.push(path);
    }
    if paths.is_empty() {
        return Err("no fields selected".to_owned());
    }
    // shortest first (stable): a member kept whole is in before any path inside it, whose
    // `Covered` is then ignored
    paths.sort_by_key(|p| p.split('.').count());
    let mut set = FieldSet::default();
    for path in paths {
        match set.add(path) {
            Ok(()) | Err(PathError::Duplicate | PathError::Covered(_)) => {}
            Err(e) => return Err(format!("\"{path}\": {e}")),
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::super::fields::keep;
    use super::*;

    /// A transform from its config; "" = op not set.
    fn tf(unwrap: &str, drop: &[&str], rename: &[(&str, &str)], wrap: &str) -> BodyTransform {
        let mut t = BodyTransform::default();
        t.set_drop(drop).unwrap();
        t.set_rename(rename).unwrap();
        // "" is refused, leaving the op unset
        let _ = (t.set_unwrap(unwrap), t.set_wrap(wrap));
        t
    }

    /// The output, or "NotJson" (then `out` must be as it was).
    fn run(t: &BodyTransform, input: &str) -> String {
        let mut out = b"x".to_vec();
        match t.apply(input.as_bytes(), &mut out) {
            Ok(()) => String::from_utf8_lossy(&out[1..]).into_owned(),
            Err(NotJson) => format!("NotJson{}", String::from_utf8_lossy(&out[1..])),
        }
    }

    /// Each case is `input => output`.
    fn check(t: &BodyTransform, cases: &[&str]) {
        for case in cases {
            let (input, want) = case.split_once(" => ").unwrap();
            assert_eq!(run(t, input), want, "{input}");
        }
    }

    #[test]
    fn drop_removes_members_byte_for_byte() {
        let doc = r#" { "internal" : 1, "n\u00e9v":"Ada \"L\"", "id":1.50e3,
            "meta":{"debug":[1],"ts":"t"}, "tags":[1, {"a": 2}] } "#;
        let want = r#"{"n\u00e9v":"Ada \"L\"","id":1.50e3,"meta":{"ts":"t"},"tags":[1, {"a": 2}]}"#;
        let t = tf("", &["internal", "meta.debug"], &[], "");
        assert_eq!(run(&t, doc), want);
        // an escaped name matches its unescaped spelling; each array element; scalars, missing
        // members and paths through scalars: nothing
        let t = tf("", &["név", "pw", "x.pw", "s.a"], &[], "");
        check(
            &t,
            &[
                r#"{"n\u00e9v":1,"a":2} => {"a":2}"#,
                r#"[{"pw":"a"},{"x":{"pw":1,"k":2}},3,[{"pw":0}],null] => [{},{"x":{"k":2}},3,[{}],null]"#,
                r#"{"s":"str","x":1} => {"s":"str","x":1}"#,
                r#" "str"  => "str""#,
            ],
        );
    }

    #[test]
    fn rename_keeps_position_nested_and_in_arrays() {
        let t = tf("", &[], &[("u_name", "name"), ("meta.ts", "meta.t")], "");
        check(
            &t,
            &[
                r#"{"u_name":"a","id":1,"meta":{"ts":5,"x":[1, 2]}} => {"name":"a","id":1,"meta":{"t":5,"x":[1, 2]}}"#,
                r#"[{"u_name":1},{"c":{"u_name":2}},7] => [{"name":1},{"c":{"u_name":2}},7]"#,
                // missing, or through a scalar: nothing
                r#"{"meta":1,"x":{"u_name":0}} => {"meta":1,"x":{"u_name":0}}"#,
            ],
        );
        // the old name may be escaped; the new one is escaped as needed; others stay verbatim
        let t = tf("", &[], &[("u_n", "q\"é")], "");
        check(
            &t,
            &[r#"{"u\u005fn":1,"\u0041":2} => {"q\"é":1,"\u0041":2}"#],
        );
        // renames inside a renamed member use its old name
        let t = tf("", &[], &[("m", "meta"), ("m.ts", "m.time")], "");
        check(&t, &[r#"{"m":{"ts":1}} => {"meta":{"time":1}}"#]);
    }

    #[test]
    fn rename_collision_replaces_the_existing_member() {
        let t = tf("", &[], &[("user_name", "name")], "");
        check(
            &t,
            &[
                r#"{"name":"old","user_name":"new","id":1} => {"name":"new","id":1}"#,
                // no from-member: the existing one stays
                r#"{"name":1} => {"name":1}"#,
            ],
        );
        // a target that is renamed away is no collision: a swap
        let t = tf("", &[], &[("a", "b"), ("b", "a")], "");
        check(&t, &[r#"{"a":1,"b":2} => {"b":1,"a":2}"#]);
    }

    #[test]
    fn unwrap_and_wrap() {
        let doc = r#"{"ok":true, "result" : {"data": {"items": [1, 2]}, "x":1}}"#;
        let want = r#"{"data": {"items": [1, 2]}, "x":1}"#;
        assert_eq!(run(&tf("result", &[], &[], ""), doc), want);
        assert_eq!(run(&tf("result.data.items", &[], &[], ""), doc), "[1, 2]");
        // the last of a repeated name counts; missing, or through a non-object: NotJson
        check(
            &tf("a.b", &[], &[], ""),
            &[
                r#"{"a":{"b":1,"b":2}} => 2"#,
                r#"{"a":{"c":1}} => NotJson"#,
                r#"{"a":[{"b":1}]} => NotJson"#,
                r#"{"a":"b"} => NotJson"#,
                r#"[1] => NotJson"#,
            ],
        );
        let t = tf("", &[], &[], "da\"ta");
        check(&t, &[r#" [1, {"a" : 2}]  => {"da\"ta":[1, {"a" : 2}]}"#]);
    }

    #[test]
    fn ops_apply_in_order_unwrap_drop_rename_wrap() {
        // drop "b" removes the original b before a is renamed to b
        let t = tf("result", &["b", "x.y"], &[("a", "b")], "data");
        let doc = r#"{"b":0,"result":{"a":1,"b":2,"x":{"y":3,"z":4}}}"#;
        assert_eq!(run(&t, doc), r#"{"data":{"b":1,"x":{"z":4}}}"#);
        // a dropped member is not renamed
        let t = tf("", &["a"], &[("a", "c")], "");
        check(&t, &[r#"{"a":1,"c":2} => {"c":2}"#]);
        // an empty transform copies the document
        check(&BodyTransform::default(), &[r#" {"a" : 1}  => {"a" : 1}"#]);
    }

    #[test]
    fn not_json_and_deep_nesting_are_refused_without_crashing() {
        let t = tf("", &["a"], &[("b", "c")], "w");
        for bad in ["", "{", "{} x", "<p>", "01", "{'a':1}", "[1,]", "\t"] {
            assert_eq!(run(&t, bad), "NotJson", "{bad}");
        }
        assert_eq!(t.apply(b"\xff", &mut Vec::new()), Err(NotJson));
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(run(&t, &deep), "NotJson");
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(run(&t, &ok), format!(r#"{{"w":{ok}}}"#));
        // only what we descend into counts: members dropped or copied whole may nest deep
        let deep_obj = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
        assert_eq!(run(&t, &deep_obj), r#"{"w":{}}"#);
        let doc = format!(r#"{{"x":{deep}}}"#);
        assert_eq!(run(&t, &doc), format!(r#"{{"w":{doc}}}"#));
    }

    #[test]
    fn builder_errors_and_rendering() {
        let e = |r: Result<(), (usize, String)>| r.map_err(|(i, e)| format!("{i}: {e}"));
        let mut t = BodyTransform::default();
        let inside = "inside \"a\", which is kept whole (list one or the other)";
        let empty = "empty field name (expected names joined by '.')";
        let stays = "a rename stays within one object";
        let deep = vec!["a"; MAX_DEPTH + 1].join(".");
        assert_eq!(e(t.set_drop(&["a", "a.b"])), Err(format!("1: {inside}")));
        assert_eq!(e(t.set_drop(&["a", "a"])), Err("1: listed twice".into()));
        assert_eq!(e(t.set_drop(&["x..y"])), Err(format!("0: {empty}")));
        let want = "0: nests deeper than 128 levels";
        assert_eq!(e(t.set_drop(&[&deep])), Err(want.into()));
        let want = format!("0: {stays}: \"c\" must be \"a.<new name>\"");
        assert_eq!(e(t.set_rename(&[("a.b", "c")])), Err(want));
        let want = format!("0: {stays}: \"a.c\" must be \"<new name>\"");
        assert_eq!(e(t.set_rename(&[("b", "a.c")])), Err(want));
        let r = t.set_rename(&[("m.a", "m.b"), ("m.a", "m.c")]);
        assert_eq!(e(r), Err("1: \"m.a\" is renamed twice".into()));
        let r = t.set_rename(&[("a", "c"), ("x", "y"), ("b", "c")]);
        assert_eq!(e(r), Err("2: two renames to \"c\"".into()));
        let want = "0: \"a\" is renamed to itself";
        assert_eq!(e(t.set_rename(&[("a", "a")])), Err(want.into()));
        let want = format!("0: \"a.\": {empty}");
        assert_eq!(e(t.set_rename(&[("a.", "a.b")])), Err(want));
        assert_eq!(t.set_wrap(""), Err("empty member name".into()));
        assert_eq!(t.set_unwrap("data..x"), Err(empty.into()));
        assert!(t.is_empty() && t == BodyTransform::default());

        let pairs = [("meta.ts", "meta.time"), ("id", "key")];
        let t = tf("result.items", &["x.y", "internal", "x.z"], &pairs, "data");
        assert!(!t.is_empty());
        assert_eq!(t.drop_paths(), ["x.y", "internal", "x.z"]);
        assert_eq!(t.renames(), pairs.map(|(f, t)| (f.into(), t.into())));
        assert_eq!(t.wrap_key(), Some("data"));
        assert_eq!(t.unwrap_path(), Some("result.items"));
    }

    #[test]
    fn fields_from_query_parses_and_tolerates() {
        let q = |v: &str| match fields_from_query(v.as_bytes(), 5) {
            Ok(set) => set.paths().join(","),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(q(" id , name,,avatar.small ,"), "id,name,avatar.small");
        assert_eq!(q("a,,b,c,d,e, ,"), "a,b,c,d,e");
        // duplicates, and covered paths either way round: the whole member wins
        assert_eq!(q("avatar.small,avatar,id,id"), "avatar,id");
        assert_eq!(q("a,a.b.c,a.b"), "a");
        assert_eq!(q("a.b.c,a.b.d,a.b"), "a.b");
        assert_eq!(q(" , ,"), "error: no fields selected");
        assert_eq!(q(""), "error: no fields selected");
        assert_eq!(q("a,b,c,d,e,f"), "error: more than 5 fields");
        let empty = "empty field name (expected names joined by '.')";
        assert_eq!(q("a,b..c"), format!("error: \"b..c\": {empty}"));
        assert_eq!(q(".a"), format!("error: \".a\": {empty}"));
        let deep = vec!["a"; MAX_DEPTH + 1].join(".");
        let want = format!("error: \"{deep}\": nests deeper than 128 levels");
        assert_eq!(q(&deep), want);
        assert_eq!(fields_from_query(b"a,\xff", 5), Err("not UTF-8".into()));
        // the set works with keep
        let set = fields_from_query(b"avatar.small, id,avatar", 5).unwrap();
        let mut out = Vec::new();
        keep(br#"{"id":1,"pw":2,"avatar":{"s":1}}"#, &set, &mut out).unwrap();
        assert_eq!(out, br#"{"id":1,"avatar":{"s":1}}"#);
    }
}
