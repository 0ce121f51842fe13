//! Aggregation merge: the responses of a fan-out's parts become one JSON document.
//!
//! Owns [`Placement`], [`Outcome`], [`Part`] and [`merge`]. Data flow: each part's body is
//! validated by serde_json as a raw, unparsed value (`RawValue`); a [`Placement::Key`] part's body
//! goes under its name byte for byte, a [`Placement::Root`] part's object is split into members
//! (names and raw values, as in `fields.rs`) that are spliced into the result. Members are
//! collected in order (a later member of the same name replaces the earlier one's value, in the
//! earlier one's place), then written, followed by `"errors"` when a part failed. Numbers, escapes
//! and spacing inside values are the upstream's own; nothing is re-serialised but member names
//! that were written with escapes.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

use super::fields::{Key, Members as Object};

/// Where a part's document goes in the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The part's document under this member name of the result.
    Key(String),
    /// The part's top-level object members spliced into the result (a later part's member
    /// replaces an earlier one of the same name, at the earlier position).
    Root,
    /// The part's document appended to the array under this member name (a document that is
    /// itself an array adds its items); parts appending to one name share one array, in part
    /// order, placed where the first of them would be. A failed part adds nothing.
    Append(String),
}

/// What a part brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The part's JSON body.
    Json(&'a [u8]),
    /// The part failed: `status` the part's HTTP status or 0 for none, `error` a short token
    /// (timeout, upstream_error, bad_status, not_json, too_large, circuit_open, ...).
    Failed {
        /// The part's HTTP status, 0 when there was none.
        status: u16,
        /// Why it failed, a short token.
        error: &'a str,
    },
}

/// One part of an aggregation, as it finished.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The part's name (used in `"errors"`).
    pub name: &'a str,
    /// Where its document goes.
    pub placement: &'a Placement,
    /// Its body, or why there is none.
    pub outcome: Outcome<'a>,
}

/// Deepest nesting a body may have: the merged document then nests at most 127 levels, which
/// serde_json's default recursion limit (128) accepts. Raw values are skipped by serde_json
/// without a depth limit, so this is checked here.
const MAX_BODY_DEPTH: usize = 126;

/// Writes `{ ...members..., "errors": [...] }` into `out`; returns the indexes of the parts that
/// failed (including bodies that are not JSON) for the caller's required/optional policy.
///
/// A Key part writes `"name": <body>` (the body's bytes as the upstream wrote them, surrounding
/// whitespace trimmed), or `"name": null` when it failed. A Root part's members are copied raw
/// (names without escapes verbatim, escaped ones re-escaped by serde_json); a failed Root part
/// contributes nothing. A body that is not JSON (for Root: not an object), or nests deeper than
/// 126 levels, fails with error `not_json`, status 0. `"errors"` is present only when a
/// part failed: `[{"part":"orders","status":504,"error":"timeout"}, ...]` (`"status"` omitted when
/// 0), in part order, after all other members; it then replaces any member a part wrote under that
/// name.
pub fn merge(parts: &[Part<'_>], out: &mut Vec<u8>) -> Vec<usize> {
    let arrays = appended(parts);
    let mut members = Members::default();
    let mut failed = Vec::new();
    let mut errors: Vec<(&str, u16, &str)> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let body = match part.outcome {
            Outcome::Json(body) => parse(body, part.placement),
            Outcome::Failed { status, error } => Err((status, error)),
        };
        match body {
            Ok(Body::Key(name, raw)) => members.put(Cow::Borrowed(name), Name::Plain, Some(raw)),
            Ok(Body::Append(name)) => {
                let array = arrays
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| a.as_str());
                members.put(Cow::Borrowed(name), Name::Plain, array);
            }
            Ok(Body::Root(list)) => {
                for (key, raw) in list {
                    let spelling = match key.0 {
                        Cow::Borrowed(_) => Name::Verbatim,
                        Cow::Owned(_) => Name::Plain,
                    };
                    members.put(key.0, spelling, Some(raw.get()));
                }
            }
            Err((status, error)) => {
                failed.push(i);
                errors.push((part.name, status, error));
                match part.placement {
                    Placement::Key(name) => members.put(Cow::Borrowed(name), Name::Plain, None),
                    Placement::Append(name) if !members.at.contains_key(name.as_str()) => {
                        let array = arrays
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, a)| a.as_str());
                        members.put(Cow::Borrowed(name), Name::Plain, array);
                    }
                    _ => {}
                }
            }
        }
    }
    if !errors.is_empty() {
        members.remove("errors");
    }
    out.push(b'{');
    let mut first = true;
    for (name, spelling, value) in members.list.iter().flatten() {
        if !first {
            out.push(b',');
        }
        first = false;
        write_name(name, *spelling, out);
        out.push(b':');
        out.extend_from_slice(value.unwrap_or("null").as_bytes());
    }
    if !errors.is_empty() {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"errors\":[");
        for (n, (part, status, error)) in errors.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"part\":");
            write_name(part, Name::Plain, out);
            if status != 0 {
                out.extend_from_slice(format!(",\"status\":{status}").as_bytes());
            }
            out.extend_from_slice(b",\"error\":");
            write_name(error, Name::Plain, out);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
    failed
}

/// The arrays of [`Placement::Append`] parts, one per name (`[]` when none of its parts brought a
/// document): the raw documents (an array's items) joined in part order.
fn appended(parts: &[Part<'_>]) -> Vec<(String, String)> {
    let mut arrays: Vec<(String, Vec<&str>)> = Vec::new();
    for part in parts {
        let Placement::Append(name) = part.placement else {
            continue;
        };
        let at = match arrays.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                arrays.push((name.clone(), Vec::new()));
                arrays.len() - 1
            }
        };
        let Outcome::Json(body) = part.outcome else {
            continue;
        };
        let Ok(raw) = serde_json::from_slice::<&RawValue>(body) else {
            continue;
        };
        let text = raw.get();
        if depth(text) > MAX_BODY_DEPTH {
            continue;
        }
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) if text.starts_with('[') => {
                arrays[at].1.extend(items.iter().map(|i| i.get()))
            }
            _ => arrays[at].1.push(text),
        }
    }
    arrays
        .into_iter()
        .map(|(n, items)| (n, format!("[{}]", items.join(","))))
        .collect()
}

/// A body that passed validation.
enum Body<'a> {
    /// Member name, raw document.
    Key(&'a str, &'a str),
    /// The object's members.
    Root(Vec<(Key<'a>, &'a RawValue)>),
    /// Goes into the array of this name (built by [`appended`]).
    Append(&'a str),
}

/// How a member name is written: as it appeared in a body (already JSON-escaped, verbatim), or
/// a plain string serde_json escapes.
#[derive(Debug, Clone, Copy)]
enum Name {
    Verbatim,
    Plain,
}

/// `Err((0, "not_json"))` unless `body` is JSON (an object for Root) within the depth limit.
fn parse<'a>(body: &'a [u8], placement: &'a Placement) -> Result<Body<'a>, (u16, &'static str)> {
    const NOT_JSON: (u16, &str) = (0, "not_json");
    let raw: &RawValue = serde_json::from_slice(body).map_err(|_| NOT_JSON)?;
    let text = raw.get();
    if depth(text) > MAX_BODY_DEPTH {
        return Err(NOT_JSON);
    }
    match placement {
        Placement::Key(name) => Ok(Body::Key(name, text)),
        Placement::Root if text.starts_with('{') => {
            let Object(list) = serde_json::from_str(text).map_err(|_| NOT_JSON)?;
            Ok(Body::Root(list))
        }
        Placement::Root => Err(NOT_JSON),
        Placement::Append(name) => Ok(Body::Append(name)),
    }
}

/// The nesting depth of valid JSON `text` (0 for a scalar).
fn depth(text: &str) -> usize {
    let (mut max, mut now, mut in_str, mut escaped) = (0, 0usize, false, false);
    for &c in text.as_bytes() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                now += 1;
                max = max.max(now);
            }
            b'}' | b']' => now = now.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn write_name(name: &str, spelling: Name, out: &mut Vec<u8>) {
    match spelling {
        Name::Verbatim => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        // serializing a str into a Vec cannot fail
        Name::Plain => {
            let _ = serde_json::to_writer(&mut *out, name);
        }
    }
}

/// The result's members in order; a slot is emptied (None) when its member is removed.
#[derive(Default)]
struct Members<'a> {
    list: Vec<Option<Member<'a>>>,
    /// Unescaped name => slot in `list`.
    at: HashMap<Cow<'a, str>, usize>,
}

/// Name, its spelling, raw value (None: `null`).
type Member<'a> = (Cow<'a, str>, Name, Option<&'a str>);

impl<'a> Members<'a> {
    /// Adds a member, or replaces the value (and spelling) of one of the same name in place.
    fn put(&mut self, name: Cow<'a, str>, spelling: Name, value: Option<&'a str>) {
        if let Some(slot) = self.at.get(&name).and_then(|&i| self.list.get_mut(i)) {
            *slot = Some((name, spelling, value));
            return;
        }
        self.at.insert(name.clone(), self.list.len());
        self.list.push(Some((name, spelling, value)));
    }

    fn remove(&mut self, name: &str) {
        if let Some(slot) = self.at.remove(name).and_then(|i| self.list.get_mut(i)) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Placement {
        Placement::Key(name.into())
    }

    /// Merges; checks the output is JSON serde_json accepts.
    fn run(parts: &[Part<'_>]) -> (String, Vec<usize>) {
        let mut out = b"x".to_vec();
        let failed = merge(parts, &mut out);
        let text = String::from_utf8(out[1..].to_vec()).unwrap();
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&text);
        assert!(parsed.is_ok(), "not JSON: {text}");
        (text, failed)
    }

    fn json<'a>(name: &'a str, placement: &'a Placement, body: &'a str) -> Part<'a> {
        Part {
            name,
            placement,
            outcome: Outcome::Json(body.as_bytes()),
        }
    }

    #[test]
    fn key_parts_are_copied_byte_for_byte() {
        let (a, b, c) = (key("user"), key("n"), key("s"));
        let user = " \n{ \"name\" : \"Ad\\u00e9 \\\"L\\\"\", \"big\": 12345678901234567890123, \"f\": 1.50e3 }\t\r\n";
        let (out, failed) = run(&[
            json("user", &a, user),
            json("n", &b, "12345678901234567890123"),
            json("s", &c, "\"\\ud83d\\ude00\""),
        ]);
        assert_eq!(
            out,
            "{\"user\":{ \"name\" : \"Ad\\u00e9 \\\"L\\\"\", \"big\": 12345678901234567890123, \"f\": 1.50e3 },\
             \"n\":12345678901234567890123,\"s\":\"\\ud83d\\ude00\"}"
        );
        assert!(failed.is_empty());
    }

    #[test]
    fn root_parts_splice_members_and_later_ones_replace_in_place() {
        let (r, k) = (Placement::Root, key("extra"));
        let (out, _) = run(&[
            json("a", &r, r#"{"id": 1, "name":"a", "tags" : [1, 2]}"#),
            json("e", &k, "true"),
            json("b", &r, r#"{"name":"b","id":2e0,"more":{}}"#),
            json("c", &r, r#"{"extra":null, "id":3, "id":4}"#),
        ]);
        assert_eq!(
            out,
            r#"{"id":4,"name":"b","tags":[1, 2],"extra":null,"more":{}}"#
        );
    }

    #[test]
    fn escaped_member_names_are_re_escaped_and_match_their_plain_spelling() {
        let r = Placement::Root;
        let (out, _) = run(&[
            json("a", &r, r#"{"n\u00e9v":1,"plain\"q":2,"a\/b":3}"#),
            json("b", &r, r#"{"név":9,"x\ty":4}"#),
        ]);
        assert_eq!(out, r#"{"név":9,"plain\"q":2,"a/b":3,"x\ty":4}"#);
        // a Key part's name is escaped by serde_json
        let k = key("we\"ird\n");
        let (out, _) = run(&[json("w", &k, "1")]);
        assert_eq!(out, r#"{"we\"ird\n":1}"#);
    }

    #[test]
    fn failed_parts_become_null_and_errors() {
        let (u, o, r) = (key("user"), key("orders"), Placement::Root);
        let parts = [
            json("user", &u, r#"{"id":1}"#),
            Part {
                name: "orders",
                placement: &o,
                outcome: Outcome::Failed {
                    status: 504,
                    error: "timeout",
                },
            },
            Part {
                name: "prefs",
                placement: &r,
                outcome: Outcome::Failed {
                    status: 0,
                    error: "circuit_open",
                },
            },
        ];
        let (out, failed) = run(&parts);
        assert_eq!(
            out,
            r#"{"user":{"id":1},"orders":null,"errors":[{"part":"orders","status":504,"error":"timeout"},{"part":"prefs","error":"circuit_open"}]}"#
        );
        assert_eq!(failed, [1, 2]);
    }

    #[test]
    fn bodies_that_are_not_json_fail_as_not_json() {
        let (k, r) = (key("k"), Placement::Root);
        for bad in [
            "",
            "   ",
            "{",
            "{\"a\":1} x",
            "<html>",
            "[1,]",
            "\u{feff}{}",
            "{\"a\":01}",
        ] {
            let (out, failed) = run(&[json("p", &k, bad), json("q", &r, bad)]);
            assert_eq!(
                out,
                r#"{"k":null,"errors":[{"part":"p","error":"not_json"},{"part":"q","error":"not_json"}]}"#,
                "{bad:?}"
            );
            assert_eq!(failed, [0, 1]);
        }
        let invalid_utf8 = [b'"', 0xff, b'"'];
        let parts = [Part {
            name: "p",
            placement: &k,
            outcome: Outcome::Json(&invalid_utf8),
        }];
        assert_eq!(run(&parts).1, [0]);
    }

    #[test]
    fn root_part_must_be_an_object() {
        let r = Placement::Root;
        for body in ["[1]", "1", "\"s\"", "null"] {
            let (out, failed) = run(&[json("p", &r, body)]);
            assert_eq!(out, r#"{"errors":[{"part":"p","error":"not_json"}]}"#);
            assert_eq!(failed, [0]);
        }
        assert_eq!(run(&[json("p", &r, " {} ")]).0, "{}");
    }

    #[test]
    fn empty_parts_list_is_an_empty_object() {
        assert_eq!(run(&[]), ("{}".to_owned(), vec![]));
    }

    #[test]
    fn nesting_is_limited_to_what_serde_json_reads_back() {
        let (k, r) = (key("k"), Placement::Root);
        let ok = "[".repeat(126) + &"]".repeat(126);
        assert_eq!(run(&[json("p", &k, &ok)]).0, format!("{{\"k\":{ok}}}"));
        let deep = "[".repeat(127) + &"]".repeat(127);
        assert_eq!(run(&[json("p", &k, &deep)]).1, [0]);
        let huge = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
        assert_eq!(run(&[json("p", &r, &huge)]).1, [0]);
        // brackets inside strings do not count
        let s = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(run(&[json("p", &r, &s)]).1.is_empty());
    }

    #[test]
    fn errors_member_is_the_gateways_when_a_part_failed() {
        let (r, k) = (Placement::Root, key("x"));
        let body = r#"{"errors":["upstream's"],"a":1}"#;
        let (out, _) = run(&[json("r", &r, body)]);
        assert_eq!(out, body);
        let failed = Part {
            name: "x",
            placement: &k,
            outcome: Outcome::Failed {
                status: 502,
                error: "bad_status",
            },
        };
        let (out, _) = run(&[json("r", &r, body), failed]);
        assert_eq!(
            out,
            r#"{"a":1,"x":null,"errors":[{"part":"x","status":502,"error":"bad_status"}]}"#
        );
    }

    #[test]
    fn append_parts_share_one_array() {
        let a = Placement::Append("items".into());
        let k = Placement::Key("meta".into());
        let parts = [
            Part {
                name: "p1",
                placement: &a,
                outcome: Outcome::Json(br#"[{"id":1}, {"id":2}]"#),
            },
            Part {
                name: "m",
                placement: &k,
                outcome: Outcome::Json(b"{}"),
            },
            Part {
                name: "p2",
                placement: &a,
                outcome: Outcome::Failed {
                    status: 503,
                    error: "bad_status",
                },
            },
            Part {
                name: "p3",
                placement: &a,
                outcome: Outcome::Json(br#"{"id": 3}"#),
            },
        ];
        let mut out = Vec::new();
        assert_eq!(merge(&parts, &mut out), [2]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"items":[{"id":1},{"id":2},{"id": 3}],"meta":{},"errors":[{"part":"p2","status":503,"error":"bad_status"}]}"#
        );
        let only_failed = [Part {
            name: "x",
            placement: &a,
            outcome: Outcome::Failed {
                status: 0,
                error: "timeout",
            },
        }];
        let mut out = Vec::new();
        merge(&only_failed, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"items":[],"errors":[{"part":"x","error":"timeout"}]}"#
        );
    }
}
