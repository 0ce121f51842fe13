//! JSON field selection (`response_fields = ["id", "name", "avatar.small"]`): keeps only the listed
//! members of a JSON document, the mobile-BFF case.
//!
//! Owns [`FieldSet`] (the compiled list, a tree of member names) and [`keep`]. Data flow: the whole
//! document is validated by serde_json and split into members as raw, unparsed slices
//! (`RawValue`); a member that is kept whole is copied byte for byte, a member named by a longer
//! path (`avatar.small`) is descended into. So numbers, escapes and the order of members come out
//! exactly as the upstream wrote them; only the whitespace between members of the objects we
//! rebuild is dropped.
//!
//! Rules: an object keeps the listed members, in the order the document has them (duplicates
//! included); an array applies the selection to each element (a list endpoint selects from each
//! item) and keeps non-object elements as they are; a path through a scalar (`avatar.small` where
//! `avatar` is a string) keeps nothing of that member; a listed member that is missing is simply
//! absent. A document that is not JSON is refused ([`NotJson`]): the caller passes it through
//! untouched. serde_json rather than simd-json: simd-json parses in place (it rewrites the input
//! while unescaping) and has no raw sub-slices, so it cannot copy members byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A compiled `response_fields` list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSet {
    /// Member name, and what to keep of it: `None` = the whole value.
    members: Vec<(String, Option<FieldSet>)>,
}

/// Why a path cannot go into a [`FieldSet`].
#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    /// Empty path, or an empty segment (`a..b`, `.a`, `a.`).
    Empty,
    /// Listed twice.
    Duplicate,
    /// Inside a member that another path keeps whole (`avatar.small` with `avatar`).
    Covered(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => f.write_str("empty field name (expected names joined by '.')"),
            PathError::Duplicate => f.write_str("listed twice"),
            PathError::Covered(whole) => {
                write!(
                    f,
                    "inside \"{whole}\", which is kept whole (list one or the other)"
                )
            }
        }
    }
}

impl FieldSet {
    /// Adds one dotted path. Paths are checked against each other in either order.
    pub fn add(&mut self, path: &str) -> Result<(), PathError> {
        if path.split('.').any(str::is_empty) {
            return Err(PathError::Empty);
        }
        let mut node = self;
        let mut walked = String::new();
        let mut segs = path.split('.').peekable();
        while let Some(seg) = segs.next() {
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(seg);
            let last = segs.peek().is_none();
            let at = node.members.iter().position(|(n, _)| n == seg);
            let i = match at {
                Some(i) => i,
                None => {
                    let sub = (!last).then(FieldSet::default);
                    node.members.push((seg.to_owned(), sub));
                    node.members.len() - 1
                }
            };
            match (&mut node.members[i].1, last, at.is_some()) {
                (_, true, false) => return Ok(()),
                (None, true, true) => return Err(PathError::Duplicate),
                (Some(_), true, true) => return Err(PathError::Covered(path.to_owned())),
                (None, false, _) => return Err(PathError::Covered(walked)),
                (Some(sub), false, _) => node = sub,
            }
        }
        Ok(())
    }

    /// The dotted paths, in the order they were added (for `/config`).
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect("", &mut out);
        out
    }

    fn collect(&self, prefix: &str, out: &mut Vec<String>) {
        for (name, sub) in &self.members {
            let path = format!("{prefix}{name}");
            match sub {
                None => out.push(path),
                Some(s) => s.collect(&format!("{path}."), out),
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Option<FieldSet>> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// The input is not a JSON document, or nests deeper than [`MAX_DEPTH`] where we descend.
#[derive(Debug, PartialEq, Eq)]
pub struct NotJson;

/// Writes `input` with only the members `set` selects into `out`.
pub fn keep(input: &[u8], set: &FieldSet, out: &mut Vec<u8>) -> Result<(), NotJson> {
    let raw: &RawValue = serde_json::from_slice(input).map_err(|_| NotJson)?;
    value(raw, set, out, 0)
}

/// Deepest nesting we descend into (serde_json skips raw values without a depth limit; our own
/// descent through nested arrays must not grow the stack without bound).
pub(crate) const MAX_DEPTH: usize = 128;

fn value(raw: &RawValue, set: &FieldSet, out: &mut Vec<u8>, depth: usize) -> Result<(), NotJson> {
    if depth >= MAX_DEPTH {
        return Err(NotJson);
    }
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let Members(members) = serde_json::from_str(text).map_err(|_| NotJson)?;
            out.push(b'{');
            let mut first = true;
            for (key, v) in members {
                let sub = match set.get(&key.0) {
                    None => continue,
                    Some(None) => None,
                    Some(Some(sub)) if is_container(v) => Some(sub),
                    // a path through a scalar selects nothing of it
                    Some(Some(_)) => continue,
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                key.write(out);
                out.push(b':');
                match sub {
                    None => out.extend_from_slice(v.get().as_bytes()),
                    Some(sub) => value(v, sub, out, depth + 1)?,
                }
            }
            out.push(b'}');
        }
        Some(b'[') => array(text, out, |v, out| value(v, set, out, depth + 1))?,
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// Writes the JSON array `text` to `out` with each item written by `item` (the walk the field
/// selection and the body edits share: what applies to an array applies to each of its items).
pub(crate) fn array(
    text: &str,
    out: &mut Vec<u8>,
    mut item: impl FnMut(&RawValue, &mut Vec<u8>) -> Result<(), NotJson>,
) -> Result<(), NotJson> {
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| NotJson)?;
    out.push(b'[');
    for (i, v) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(v, out)?;
    }
    out.push(b']');
    Ok(())
}

fn is_container(v: &RawValue) -> bool {
    matches!(v.get().as_bytes().first(), Some(b'{' | b'['))
}

/// A member name: borrowed when the document wrote it without escapes (then it is copied back
/// verbatim), owned (unescaped) otherwise.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl Key<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Cow::Borrowed(s) => {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
            // re-escaped by serde_json: the same name, possibly spelled differently
            Cow::Owned(s) => {
                let _ = serde_json::to_writer(&mut *out, s);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object's members in document order, values unparsed (also the aggregate merge's reader).
pub(crate) struct Members<'a>(pub(crate) Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(Members(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Members<'de>, A::Error> {
                Err(serde::de::Error::custom("expected an object"))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(paths: &[&str]) -> FieldSet {
        let mut s = FieldSet::default();
        for p in paths {
            s.add(p).unwrap();
        }
        s
    }

    fn run(paths: &[&str], input: &str) -> String {
        let mut out = Vec::new();
        keep(input.as_bytes(), &set(paths), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keeps_listed_members_in_document_order_byte_for_byte() {
        let doc = r#" {"secret":"x","name":"Ada \"L\"","id":1.50e3,"avatar":{"big":"b","small":"s"},"tags":[1, 2]} "#;
        assert_eq!(
            run(&["id", "avatar.small", "name"], doc),
            r#"{"name":"Ada \"L\"","id":1.50e3,"avatar":{"small":"s"}}"#
        );
        // a member kept whole keeps its inner spacing
        assert_eq!(run(&["tags"], doc), r#"{"tags":[1, 2]}"#);
    }

    #[test]
    fn arrays_select_from_each_item() {
        let doc = r#"[{"id":1,"pw":"a"},{"id":2,"pw":"b"},3,"s",null]"#;
        assert_eq!(run(&["id"], doc), r#"[{"id":1},{"id":2},3,"s",null]"#);
        let nested = r#"{"items":[{"id":1,"x":{"y":1,"z":2}}],"n":2}"#;
        assert_eq!(
            run(&["items.x.z", "n"], nested),
            r#"{"items":[{"x":{"z":2}}],"n":2}"#
        );
    }

    #[test]
    fn paths_through_scalars_and_missing_members_select_nothing() {
        assert_eq!(run(&["a.b", "c"], r#"{"a":"str","d":1}"#), "{}");
        assert_eq!(run(&["a"], "42"), "42");
    }

    #[test]
    fn escaped_names_match_their_unescaped_spelling_and_duplicates_are_kept() {
        assert_eq!(
            run(&["név", "a"], r#"{"n\u00e9v":1,"a":1,"a":2}"#),
            r#"{"név":1,"a":1,"a":2}"#
        );
    }

    #[test]
    fn not_json_is_refused() {
        for bad in ["", "{", "{\"a\":1} x", "<html>", "{\"a\":01}", "[1,]"] {
            let mut out = Vec::new();
            assert_eq!(
                keep(bad.as_bytes(), &set(&["a"]), &mut out),
                Err(NotJson),
                "{bad}"
            );
        }
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(
            keep(deep.as_bytes(), &set(&["a"]), &mut Vec::new()),
            Err(NotJson)
        );
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(run(&["a"], &ok), ok);
    }

    #[test]
    fn path_list_errors() {
        let mut s = set(&["avatar", "x.y"]);
        assert_eq!(
            s.add("avatar.small"),
            Err(PathError::Covered("avatar".into()))
        );
        assert_eq!(s.add("x"), Err(PathError::Covered("x".into())));
        assert_eq!(s.add("x.y"), Err(PathError::Duplicate));
        assert_eq!(s.add("a..b"), Err(PathError::Empty));
        assert_eq!(s.add(""), Err(PathError::Empty));
        assert_eq!(s.paths(), ["avatar", "x.y"]);
    }
}
