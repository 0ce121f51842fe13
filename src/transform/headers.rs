//! Header transforms: `request_headers = { set, add, remove, rename }` and the same for
//! `response_headers`.
//!
//! Owns [`HeaderOps`], one side's compiled operations, and how they apply. Data flow, request
//! side: the names the operations replace go into the upstream head writer's strip list
//! ([`HeaderOps::strip`]: the client's copies never reach the upstream), and the lines they add
//! are rendered per request ([`HeaderOps::render`], values from `transform::template`) and
//! appended to the upstream head. Response side: the same strip list drops the upstream's copies
//! when the client's head is written (also for a cached response), and the rendered lines join
//! the response phase's extra header lines; `set`/`add` apply to the gateway's own answers too.
//!
//! Semantics: `remove` drops every field of that name; `set` drops them and adds one with the
//! template's value (skipped when a placeholder has no value, so the field is then absent);
//! `add` appends a field, keeping what was there; `rename = { from = "to" }` moves every value of
//! `from` under `to` (any `to` that was there is dropped). Names compare ASCII
//! case-insensitively; fields the gateway manages itself (framing, hop-by-hop, `Host`,
//! `X-Request-Id`, forwarding) are refused by the config.

use super::template::{Source, Template};

/// Calls its second argument with each value of the original head's fields named by the first.
pub type Values<'a> = dyn FnMut(&[u8], &mut dyn FnMut(&[u8])) + 'a;

/// A `rename` pair: (from, to), lower-cased.
pub type Rename = (Box<[u8]>, Box<[u8]>);

/// One side's header operations.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    /// (lower-cased name, value) fields set (replacing any with that name).
    pub set: Vec<(Box<[u8]>, Template)>,
    /// (lower-cased name, value) fields appended.
    pub add: Vec<(Box<[u8]>, Template)>,
    /// Lower-cased names removed.
    pub remove: Vec<Box<[u8]>>,
    /// (from, to), lower-cased.
    pub rename: Vec<Rename>,
    /// Every name whose fields are dropped from the original head: removed, set, renamed (both
    /// names).
    strip: Box<[Box<[u8]>]>,
}

impl HeaderOps {
    /// Builds the strip list once the operations are in.
    pub fn finish(mut self) -> Self {
        let mut strip: Vec<Box<[u8]>> = Vec::new();
        let names = self.remove.iter().chain(self.set.iter().map(|(n, _)| n));
        let renamed = self.rename.iter().flat_map(|(f, t)| [f, t]);
        for n in names.chain(renamed) {
            if !strip.contains(n) {
                strip.push(n.clone());
            }
        }
        self.strip = strip.into_boxed_slice();
        self
    }

    /// Names whose fields are dropped from the head the operations apply to.
    pub fn strip(&self) -> &[Box<[u8]>] {
        &self.strip
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.strip.is_empty() && self.add.is_empty()
    }

    /// Appends `name: value\r\n` lines for `set` and `add` (a template with a missing value adds
    /// nothing), then the renamed fields: `values(from, push)` calls `push` with each value of
    /// the original head's fields named `from`.
    pub fn render(&self, src: &dyn Source, values: &mut Values<'_>, out: &mut Vec<u8>) {
        for (name, t) in self.set.iter().chain(&self.add) {
            let start = out.len();
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            if t.render(src, out).is_err() {
                out.truncate(start);
                continue;
            }
            out.extend_from_slice(b"\r\n");
        }
        self.write_renamed(values, out);
    }

    /// Appends the renamed fields: `values(from, push)` calls `push` with each value of the
    /// original head's fields named `from`.
    pub fn write_renamed(&self, values: &mut Values<'_>, out: &mut Vec<u8>) {
        for (from, to) in &self.rename {
            values(from, &mut |v: &[u8]| {
                out.extend_from_slice(to);
                out.extend_from_slice(b": ");
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
            });
        }
    }
}

/// Whether `name` is in a strip list (ASCII case-insensitive).
pub fn stripped(strip: &[Box<[u8]>], name: &[u8]) -> bool {
    strip.iter().any(|s| s.eq_ignore_ascii_case(name))
}
