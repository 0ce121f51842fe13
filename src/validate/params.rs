//! Declarative checks on query parameters and request headers.
//!
//! A route declares [`ParamRule`]s (built by the config layer, once per config generation);
//! [`check_query`] and [`check_headers`] run them per request and push a [`Problem`] for each
//! failure. Neither allocates while every value passes: percent-decoding happens in a stack buffer
//! (a heap buffer only for names or values over 256 bytes that contain escapes), and messages and
//! pointers are only built for failures.
//!
//! Each occurrence of a value gets at most one problem, from the first failing check in this order:
//! UTF-8, `max_length`, the type, `min`/`max`, `pattern`, `values`.
//!
//! Patterns are matched with [`Regex::is_match`] against the whole decoded value, and nothing
//! anchors them: a pattern meant to cover the whole value must say so itself (`^[a-z]+$`; without
//! the anchors `[a-z]+` accepts any value containing a lowercase letter).

use regex::Regex;

use super::{push_pointer_segment, Location, Problem};

/// The type a query parameter or header value must parse as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any (UTF-8) value.
    String,
    /// Optional sign (`+` or `-`) then ASCII digits; any length.
    Integer,
    /// A finite decimal number as Rust's `f64` parser reads it (`1`, `-0.5`, `1e3`, `.5`); not
    /// `inf` or `NaN`.
    Number,
    /// `true` or `false`, lowercase only.
    Boolean,
}

/// One declarative check.
#[derive(Debug, Clone)]
pub struct ParamRule {
    /// The parameter name (compared after percent-decoding) or header name (looked up by the
    /// caller, case-insensitively).
    pub name: String,
    /// Whether at least one occurrence must be present. An empty value (`?a=` or `?a`) is present.
    pub required: bool,
    /// The type every occurrence must parse as.
    pub kind: ParamType,
    /// Must match each value ([`Regex::is_match`]: unanchored unless the pattern anchors itself).
    pub pattern: Option<Regex>,
    /// The longest value, in bytes after decoding.
    pub max_length: Option<usize>,
    /// The smallest value; only for [`ParamType::Integer`] and [`ParamType::Number`], ignored for
    /// the other types.
    pub min: Option<f64>,
    /// The largest value; only for [`ParamType::Integer`] and [`ParamType::Number`], ignored for
    /// the other types.
    pub max: Option<f64>,
    /// An enumeration: the value must equal one of these exactly.
    pub values: Option<Vec<String>>,
}

impl ParamRule {
    /// An optional rule of type `kind` with no further constraints.
    pub fn new(name: impl Into<String>, kind: ParamType) -> ParamRule {
        ParamRule {
            name: name.into(),
            required: false,
            kind,
            pattern: None,
            max_length: None,
            min: None,
            max: None,
            values: None,
        }
    }
}

/// Checks a raw query string (without the `?`).
///
/// Pairs are separated by `&` (empty pairs are skipped) and split at the first `=`; a pair without
/// `=` has an empty value. Names and values are percent-decoded, `+` as a space, before checking;
/// an invalid escape stays literal. A parameter given more than once is checked at each
/// occurrence. Problems use [`Location::Query`] and pointer `/<name>`; a missing required
/// parameter gives "required query parameter is missing".
pub fn check_query(rules: &[ParamRule], query: &[u8], problems: &mut Vec<Problem>) {
    if rules.is_empty() {
        return;
    }
    // Bit i: rule i matched some pair (rules past 64 are looked for again afterwards).
    let mut seen: u64 = 0;
    let mut name_buf = Scratch::new();
    let mut value_buf = Scratch::new();
    for (raw_name, raw_value) in pairs(query) {
        let name = name_buf.decode(raw_name);
        if !rules.iter().any(|rule| rule.name.as_bytes() == name) {
            continue;
        }
        let value = value_buf.decode(raw_value);
        for (i, rule) in rules.iter().enumerate() {
            if rule.name.as_bytes() != name {
                continue;
            }
            if i < 64 {
                seen |= 1 << i;
            }
            if let Some(message) = check_value(rule, value) {
                problems.push(Problem {
                    location: Location::Query,
                    pointer: pointer(&rule.name, false),
                    message,
                });
            }
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        if !rule.required {
            continue;
        }
        let present = if i < 64 {
            seen & (1 << i) != 0
        } else {
            pairs(query).any(|(raw_name, _)| name_buf.decode(raw_name) == rule.name.as_bytes())
        };
        if !present {
            problems.push(Problem {
                location: Location::Query,
                pointer: pointer(&rule.name, false),
                message: "required query parameter is missing".to_owned(),
            });
        }
    }
}

/// How [`check_headers`] reads headers: `lookup(name, visit)` calls `visit` once with each value of
/// the header `name` (matched case-insensitively), in order, and not at all when it is absent.
pub type HeaderLookup<'a> = dyn FnMut(&str, &mut dyn FnMut(&[u8])) + 'a;

/// Checks request headers.
///
/// `headers(name, visit)` must call `visit` once with each value of the header `name` (matched
/// case-insensitively by the caller; not at all when absent). Values are checked as given, without
/// decoding, after trimming spaces and tabs at both ends; a comma-separated list is one value.
/// Problems use [`Location::Header`] and pointer `/<name>` with the name lowercased; a missing
/// required header gives "required header is missing".
///
/// The callback shape (rather than returning a `Vec` of values) keeps the passing path free of
/// allocation.
pub fn check_headers(
    rules: &[ParamRule],
    headers: &mut HeaderLookup<'_>,
    problems: &mut Vec<Problem>,
) {
    for rule in rules {
        let mut count = 0usize;
        headers(&rule.name, &mut |value| {
            count += 1;
            if let Some(message) = check_value(rule, trim_ows(value)) {
                problems.push(Problem {
                    location: Location::Header,
                    pointer: pointer(&rule.name, true),
                    message,
                });
            }
        });
        if count == 0 && rule.required {
            problems.push(Problem {
                location: Location::Header,
                pointer: pointer(&rule.name, true),
                message: "required header is missing".to_owned(),
            });
        }
    }
}

/// The first failing check of `rule` on one (decoded) value, as a message.
fn check_value(rule: &ParamRule, value: &[u8]) -> Option<String> {
    let Ok(value) = std::str::from_utf8(value) else {
        return Some("is not valid UTF-8".to_owned());
    };
    if let Some(max_length) = rule.max_length {
        if value.len() > max_length {
            return Some(format!("longer than {max_length} bytes"));
        }
    }
    let number = match rule.kind {
        ParamType::String => None,
        ParamType::Integer => {
            let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Some("must be an integer".to_owned());
            }
            value.parse::<f64>().ok()
        }
        ParamType::Number => match value.parse::<f64>() {
            Ok(number) if number.is_finite() => Some(number),
            _ => return Some("must be a number".to_owned()),
        },
        ParamType::Boolean => {
            if value != "true" && value != "false" {
                return Some("must be true or false".to_owned());
            }
            None
        }
    };
    if let Some(number) = number {
        if let Some(min) = rule.min.filter(|&min| number < min) {
            return Some(format!("must be at least {min}"));
        }
        if let Some(max) = rule.max.filter(|&max| number > max) {
            return Some(format!("must be at most {max}"));
        }
    }
    if let Some(pattern) = rule.pattern.as_ref().filter(|re| !re.is_match(value)) {
        return Some(format!("does not match pattern {}", pattern.as_str()));
    }
    if let Some(values) = &rule.values {
        if !values.iter().any(|allowed| allowed == value) {
            return Some(format!("must be one of: {}", values.join(", ")));
        }
    }
    None
}

/// `/<name>` as a JSON pointer, optionally lowercased (header names).
fn pointer(name: &str, lowercase: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if lowercase {
        push_pointer_segment(&name.to_ascii_lowercase(), &mut out);
    } else {
        push_pointer_segment(name, &mut out);
    }
    out
}

/// The non-empty `name=value` pairs of a raw query, split at the first `=`.
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        })
}

/// `value` without leading and trailing spaces and tabs (HTTP's optional whitespace).
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |last| last + 1);
    value.get(start..end).unwrap_or_default()
}

/// Where percent-decoded bytes go: a stack buffer, or the heap for long inputs.
struct Scratch {
    stack: [u8; 256],
    heap: Vec<u8>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            stack: [0; 256],
            heap: Vec::new(),
        }
    }

    /// `raw` percent-decoded (`+` as space, invalid escapes literal); `raw` itself when it holds
    /// nothing to decode.
    fn decode<'a>(&'a mut self, raw: &'a [u8]) -> &'a [u8] {
        if !raw.iter().any(|&b| b == b'%' || b == b'+') {
            return raw;
        }
        if raw.len() <= self.stack.len() {
            // Decoding never lengthens, so every byte fits.
            let mut len = 0;
            percent_decode(raw, |b| {
                if let Some(slot) = self.stack.get_mut(len) {
                    *slot = b;
                    len += 1;
                }
            });
            self.stack.get(..len).unwrap_or_default()
        } else {
            self.heap.clear();
            percent_decode(raw, |b| self.heap.push(b));
            &self.heap
        }
    }
}

/// Emits `raw` percent-decoded: `%XY` (hex, either case) as one byte, `+` as a space, a `%` not
/// followed by two hex digits as itself.
fn percent_decode(raw: &[u8], mut emit: impl FnMut(u8)) {
    let mut rest = raw;
    loop {
        rest = match rest {
            [] => return,
            [b'+', tail @ ..] => {
                emit(b' ');
                tail
            }
            [b'%', hi, lo, tail @ ..] if hex(*hi) < 16 && hex(*lo) < 16 => {
                emit(hex(*hi) << 4 | hex(*lo));
                tail
            }
            [b, tail @ ..] => {
                emit(*b);
                tail
            }
        };
    }
}

/// The value of a hex digit, or 16 for any other byte.
fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 16,
    }
}
