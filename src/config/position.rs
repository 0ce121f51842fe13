//! Key paths and where they are in the source text.
//!
//! Validation and the unknown-key collector describe every problem with a [`KeyPath`]
//! (`upstream[1].endpoints[0].weight`). `mod.rs` parses the text once more with `toml_edit` (which
//! keeps byte spans) and asks [`locate`] for the byte offset of that path, then [`line_col`] turns
//! the offset into 1-based line and column. Serde type errors come the other way round: they carry a
//! span, and [`path_at`] finds the key path of the innermost value containing it.

use std::fmt;
use std::ops::Range;

use toml_edit::{Array, ArrayOfTables, ImDocument, InlineTable, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root to a key or array element, written `route[2].headers.x-canary`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    /// Converts a `serde_ignored` path (which has no notion of our `[i]` syntax) into ours.
    pub fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        use serde_ignored::Path;
        match path {
            Path::Root => KeyPath::root(),
            Path::Seq { parent, index } => KeyPath::from_ignored(parent).index(*index),
            Path::Map { parent, key } => KeyPath::from_ignored(parent).key(key),
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => KeyPath::from_ignored(parent),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A borrowed view of any container (or leaf) in the document, so one walk handles both the
/// `[table]`/`[[array]]` forms and the inline `{ }`/`[ ]` forms.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Inline(&'a InlineTable),
    Tables(&'a ArrayOfTables),
    Array(&'a Array),
    Leaf,
}

impl<'a> Node<'a> {
    fn of_item(item: &'a Item) -> Self {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::Value(v) => Node::of_value(v),
            Item::None => Node::Leaf,
        }
    }

    fn of_value(value: &'a Value) -> Self {
        match value {
            Value::InlineTable(t) => Node::Inline(t),
            Value::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }

    /// The child named by `seg` and the offset that names it (its key, or the element itself).
    fn child(self, seg: &Seg) -> Option<(Node<'a>, Option<usize>)> {
        match (self, seg) {
            (Node::Table(t), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some((Node::of_item(item), start(key.span())))
            }
            (Node::Inline(t), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some((Node::of_item(item), start(key.span())))
            }
            (Node::Tables(a), Seg::Index(i)) => {
                let t = a.get(*i)?;
                Some((Node::Table(t), start(t.span())))
            }
            (Node::Array(a), Seg::Index(i)) => {
                let v = a.get(*i)?;
                Some((Node::of_value(v), start(v.span())))
            }
            _ => None,
        }
    }

    /// Where a missing key inside this node is reported: a table's header, an inline table's `{`.
    fn header(self) -> Option<usize> {
        match self {
            Node::Table(t) => start(t.span()),
            Node::Inline(t) => start(t.span()),
            _ => None,
        }
    }
}

fn start(span: Option<Range<usize>>) -> Option<usize> {
    span.map(|s| s.start)
}

/// Byte offset of what `path` names: the key for a key, the value for an array element. When the
/// path leaves the document (a missing key), the header of the deepest existing table (the root
/// table has none: `None`).
pub(crate) fn locate(doc: &ImDocument<&str>, path: &KeyPath) -> Option<usize> {
    let mut node = Node::of_item(doc.as_item());
    let mut found = None;
    // The root table's span is `0..`; a key missing from the root has no sensible position.
    let mut anchor = None;
    for seg in &path.0 {
        match node.child(seg) {
            Some((child, at)) => {
                node = child;
                found = at;
                anchor = child.header().or(at);
            }
            None => return anchor,
        }
    }
    found
}

/// The key path of the innermost key or array element whose value span contains `offset`
/// (used to name the key of a serde type error, which only knows its span).
pub(crate) fn path_at(doc: &ImDocument<&str>, offset: usize) -> KeyPath {
    let mut best = (KeyPath::root(), usize::MAX);
    walk(
        Node::of_item(doc.as_item()),
        &KeyPath::root(),
        offset,
        &mut best,
    );
    best.0
}

fn walk(node: Node<'_>, path: &KeyPath, offset: usize, best: &mut (KeyPath, usize)) {
    let mut consider = |child: Node<'_>, child_path: KeyPath, spans: &[Option<Range<usize>>]| {
        for span in spans.iter().flatten() {
            if span.contains(&offset) || span.start == offset {
                let len = span.end - span.start;
                if len <= best.1 {
                    *best = (child_path.clone(), len);
                }
            }
        }
        walk(child, &child_path, offset, best);
    };
    match node {
        Node::Table(t) => {
            for (k, item) in t.iter() {
                let key = t.key(k).and_then(|k| k.span());
                consider(Node::of_item(item), path.key(k), &[item.span(), key]);
            }
        }
        Node::Inline(t) => {
            for (k, v) in t.iter() {
                let key = t.key(k).and_then(|k| k.span());
                consider(Node::of_value(v), path.key(k), &[v.span(), key]);
            }
        }
        Node::Tables(a) => {
            for (i, t) in a.iter().enumerate() {
                consider(Node::Table(t), path.index(i), &[t.span()]);
            }
        }
        Node::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                consider(Node::of_value(v), path.index(i), &[v.span()]);
            }
        }
        Node::Leaf => {}
    }
}

/// 1-based (line, column) of a byte offset; the column counts characters, not bytes.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, ConfigError};

    fn errors(text: &str) -> Vec<ConfigError> {
        parse_str(text, "t.toml").expect_err("should fail").0
    }

    /// (line, "path: message") per error.
    fn summary(text: &str) -> Vec<(Option<usize>, String)> {
        let e = errors(text);
        e.into_iter()
            .map(|e| (e.line, format!("{}: {}", e.path, e.message)))
            .collect()
    }

    const DOC: &str = "[server]\nlisten = [\"a\", \"b\"]\n\n[[upstream]]\nname = \"x\"\n[[upstream]]\n\
                       endpoints = [{ addr = \"c\", weight = 2 }]\n[admin]\nlisten = \"é\"\nsub.k = 1\n";

    fn at(path: KeyPath) -> Option<(usize, usize)> {
        let doc = ImDocument::parse(DOC).unwrap();
        locate(&doc, &path).map(|o| line_col(DOC, o))
    }

    #[test]
    fn key_path_display() {
        let p = KeyPath::root()
            .key("upstream")
            .index(1)
            .key("endpoints")
            .index(0)
            .key("weight");
        assert_eq!(p.to_string(), "upstream[1].endpoints[0].weight");
        let h = KeyPath::root()
            .key("route")
            .index(2)
            .key("headers")
            .key("x.y");
        assert_eq!(h.to_string(), "route[2].headers.\"x.y\"");
    }

    #[test]
    fn locate_keys_elements_and_missing_keys() {
        let r = KeyPath::root();
        assert_eq!(at(r.key("server").key("listen")), Some((2, 1)));
        assert_eq!(at(r.key("server").key("listen").index(1)), Some((2, 16)));
        assert_eq!(at(r.key("upstream").index(1)), Some((6, 1)));
        assert_eq!(
            at(r.key("upstream")
                .index(1)
                .key("endpoints")
                .index(0)
                .key("weight")),
            Some((7, 28))
        );
        assert_eq!(at(r.key("admin").key("listen")), Some((9, 1)));
        assert_eq!(at(r.key("admin").key("sub").key("k")), Some((10, 5)));
        // Missing keys: the header of the deepest existing table, or none at the root.
        assert_eq!(
            at(r.key("upstream").index(0).key("endpoints")),
            Some((4, 1))
        );
        assert_eq!(
            at(r.key("upstream")
                .index(1)
                .key("endpoints")
                .index(0)
                .key("zz")),
            Some((7, 14))
        );
        assert_eq!(at(r.key("admin").key("sub").key("zz")), Some((10, 1)));
        assert_eq!(at(r.key("route")), None);
    }

    #[test]
    fn path_of_a_span() {
        let doc = ImDocument::parse(DOC).unwrap();
        let path_of = |needle: &str| path_at(&doc, DOC.find(needle).unwrap()).to_string();
        assert_eq!(path_of("\"b\""), "server.listen[1]");
        assert_eq!(path_of("2 }"), "upstream[1].endpoints[0].weight");
        assert_eq!(path_of("\"x\""), "upstream[0].name");
        assert_eq!(path_of("\"é\""), "admin.listen");
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_col("a = \"é\"\nb", 0), (1, 1));
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\n", 99), (2, 1));
    }

    #[test]
    fn missing_keys_point_at_their_table_header() {
        let text = "[server]\nworkers = 1\n\n[[upstream]]\nname = \"u\"\n\n[admin]\n";
        assert_eq!(
            summary(text),
            vec![
                (Some(4), "upstream[0].endpoints: missing (expected a list of addresses like [\"127.0.0.1:9001\"])".into()),
                (Some(7), "admin.listen: missing (expected an address like \"127.0.0.1:9901\")".into()),
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = errors("[server]\nworkers = 1\n[route\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (Some(3), Some(7)));
        assert!(e[0].path.is_empty());
        assert!(!e[0].message.contains('\n'));

        let e = errors("[server]\nworkers = 1\nworkers = 2\n");
        assert_eq!(e[0].line, Some(3));
        assert!(e[0].message.contains("duplicate key"), "{}", e[0].message);
    }
}
