//! One value through the WAF's detectors: its decoded forms, the rule set, and libinjection.
//!
//! Owns [`scan`]. A value arrives decoded once by `extract.rs` (the way the backend sees it). A
//! backend may decode again, so each value is also looked at in the forms an evasion hides in
//! (`Forms`): percent-decoded again (double and triple encoding), HTML entities resolved
//! (`&#x3c;script`), JavaScript escapes resolved (`\u003c`, `\x27`), Unicode look-alikes folded to
//! ASCII (full-width `＜script＞`, typographic quotes), and SQL comments removed
//! (`UN/**/ION`). Each distinct form goes through the rule set's regex set for the value's part
//! (`rules.rs`) and, for argument values, through libinjection's SQL and HTML5 tokenisers.
//!
//! Cost: a value made only of word characters (ids, numbers, e-mail addresses, tokens) cannot
//! carry any pattern the rules look for and is skipped after one pass over its bytes; the
//! tokenisers run only on values holding a character or keyword they need (`worth_sqli`,
//! `worth_xss`). The forms live in reused buffers ([`Forms`]).

use libinjectionrs::{detect_sqli, detect_xss};

use super::rules::{Part, RuleSet, RULES, SQLI_LIBINJECTION, XSS_LIBINJECTION};

/// Reused buffers for a value's decoded forms (one per connection).
#[derive(Default)]
pub struct Forms {
    bufs: [Vec<u8>; 5],
}

/// Values longer than this are looked at only up to it (the body limit bounds bodies; this bounds
/// one value's cost).
const MAX_VALUE: usize = 16 * 1024;

/// Calls `hit(rule id)` for every rule that matches `value` (or one of its decoded forms) in part
/// `part`; a rule is reported once per value.
pub fn scan(set: &RuleSet, part: Part, value: &[u8], f: &mut Forms, hit: &mut dyn FnMut(u32)) {
    let value = &value[..value.len().min(MAX_VALUE)];
    if value.is_empty() || (part == Part::Args && plain(value)) {
        return;
    }
    let mut seen: u64 = 0;
    let mut seen_ids = [0u32; 8];
    let mut n_ids = 0usize;
    let mut report = |id: u32, hit: &mut dyn FnMut(u32)| {
        if seen_ids[..n_ids].contains(&id) {
            return;
        }
        if n_ids < seen_ids.len() {
            seen_ids[n_ids] = id;
            n_ids += 1;
        }
        hit(id);
    };
    let forms = decode_forms(value, f);
    let [b0, b1, b2, b3, b4] = &f.bufs;
    let bufs = [b0, b1, b2, b3, b4];
    let mut sqli_done = false;
    let mut xss_done = false;
    for k in 0..=forms.len() {
        let v: &[u8] = match k {
            0 => value,
            _ => &bufs[forms[k - 1]][..],
        };
        set.scan(part, v, &mut |i| {
            if seen & (1u64 << (i & 63)) == 0 {
                seen |= 1u64 << (i & 63);
                report(RULES[i].id, hit);
            }
        });
        if part != Part::Args {
            continue;
        }
        if set.libinjection_sqli && !sqli_done && worth_sqli(v) && detect_sqli(v).is_injection() {
            sqli_done = true;
            report(SQLI_LIBINJECTION, hit);
        }
        if set.libinjection_xss && !xss_done && worth_xss(v) && detect_xss(v).is_injection() {
            xss_done = true;
            report(XSS_LIBINJECTION, hit);
        }
    }
}

/// Only word characters (and `-_.@,+:` between them): nothing the rules look for fits in it.
fn plain(v: &[u8]) -> bool {
    // serialized Java objects (raw, base64, hex) look like words
    let magic = |m: &[u8]| v.len() >= m.len() && v[..m.len()].eq_ignore_ascii_case(m);
    if v[0] == b'.' || magic(b"ro0ab") || magic(b"aced0005") || magic(b"h4sib") {
        return false;
    }
    let mut prev = 0u8;
    for &b in v {
        let ok = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'@' | b',' | b'+' | b':')
            || (b == b'.' && prev != b'.');
        if !ok {
            return false;
        }
        prev = b;
    }
    true
}

/// Whether libinjection's SQL tokeniser can find anything: a quote, an operator or punctuation
/// SQL needs, or a statement keyword.
fn worth_sqli(v: &[u8]) -> bool {
    if v.iter().any(|b| b"'\"`;()=#*|&<>!/\\-".contains(b)) {
        return true;
    }
    const WORDS: [&[u8]; 12] = [
        b"union",
        b"select",
        b"exec",
        b"declare",
        b"waitfor",
        b"having",
        b"sleep",
        b"insert",
        b"delete",
        b"drop",
        b"update",
        b"shutdown",
    ];
    v.windows(4).any(|w| {
        let w = [
            w[0].to_ascii_lowercase(),
            w[1].to_ascii_lowercase(),
            w[2].to_ascii_lowercase(),
            w[3].to_ascii_lowercase(),
        ];
        WORDS.iter().any(|k| k[..4] == w)
    })
}

/// Whether libinjection's HTML5 tokeniser can find anything: markup or an attribute break.
fn worth_xss(v: &[u8]) -> bool {
    v.iter().any(|b| b"<>\"'`".contains(b))
}

/// Fills `f.bufs` with the value's other forms; returns which buffers hold distinct forms.
fn decode_forms(value: &[u8], f: &mut Forms) -> FormList {
    let mut list = FormList::default();
    let [pct, ent, js, uni, sql] = &mut f.bufs;
    // repeated percent-decoding: what a backend that decodes again would see
    let mut cur: &[u8] = value;
    if value.contains(&b'%') {
        let mut tmp = Vec::new();
        let mut rounds = 0;
        while rounds < 2 && cur.contains(&b'%') {
            if !super::extract::percent_decode(cur, false, &mut tmp) {
                break;
            }
            std::mem::swap(pct, &mut tmp);
            cur = &pct[..];
            rounds += 1;
        }
        if rounds > 0 {
            list.push(0);
        }
    }
    let base: &[u8] = if list.len() > 0 { &pct[..] } else { value };
    if base.contains(&b'&') && html_entities(base, ent) {
        list.push(1);
    }
    let base: &[u8] = if list.contains(1) { &ent[..] } else { base };
    if base.contains(&b'\\') && js_escapes(base, js) {
        list.push(2);
    }
    let base: &[u8] = if list.contains(2) { &js[..] } else { base };
    if !base.is_ascii() && fold_unicode(base, uni) {
        list.push(3);
    }
    let base: &[u8] = if list.contains(3) { &uni[..] } else { base };
    if memchr::memmem::find(base, b"/*").is_some() && strip_sql_comments(base, sql) {
        list.push(4);
    }
    list
}

/// Up to five buffer indexes, in order.
#[derive(Default)]
struct FormList {
    idx: [usize; 5],
    n: usize,
}

impl FormList {
    fn push(&mut self, i: usize) {
        self.idx[self.n] = i;
        self.n += 1;
    }
    fn len(&self) -> usize {
        self.n
    }
    fn contains(&self, i: usize) -> bool {
        self.idx[..self.n].contains(&i)
    }
}

impl std::ops::Index<usize> for FormList {
    type Output = usize;
    fn index(&self, k: usize) -> &usize {
        &self.idx[k]
    }
}

/// Resolves HTML character references (`&lt;`, `&#60;`, `&#x3c;`, with or without `;`, and the
/// named ones attackers use) into `out`; true when anything changed.
pub fn html_entities(s: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'&' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        let (ch, used) = if rest.first() == Some(&b'#') {
            numeric_ref(&rest[1..]).map_or((None, 0), |(c, n)| (Some(c), n + 1))
        } else {
            named_ref(rest).map_or((None, 0), |(c, n)| (Some(c), n))
        };
        match ch {
            Some(c) => {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                i += 1 + used;
                if s.get(i) == Some(&b';') {
                    i += 1;
                }
                changed = true;
            }
            None => {
                out.push(b'&');
                i += 1;
            }
        }
    }
    changed
}

fn numeric_ref(s: &[u8]) -> Option<(char, usize)> {
    let (hex, start) = match s.first() {
        Some(b'x' | b'X') => (true, 1),
        _ => (false, 0),
    };
    let mut v: u32 = 0;
    let mut i = start;
    while i < s.len() && i - start < 8 {
        let d = match (s[i] as char).to_digit(if hex { 16 } else { 10 }) {
            Some(d) => d,
            None => break,
        };
        v = v
            .saturating_mul(if hex { 16 } else { 10 })
            .saturating_add(d);
        i += 1;
    }
    if i == start {
        return None;
    }
    Some((char::from_u32(v).unwrap_or('\u{fffd}'), i))
}

fn named_ref(s: &[u8]) -> Option<(char, usize)> {
    const NAMED: [(&[u8], char); 20] = [
        (b"lt", '<'),
        (b"gt", '>'),
        (b"amp", '&'),
        (b"quot", '"'),
        (b"apos", '\''),
        (b"colon", ':'),
        (b"lpar", '('),
        (b"rpar", ')'),
        (b"sol", '/'),
        (b"bsol", '\\'),
        (b"semi", ';'),
        (b"equals", '='),
        (b"excl", '!'),
        (b"num", '#'),
        (b"period", '.'),
        (b"comma", ','),
        (b"grave", '`'),
        (b"newline", '\n'),
        (b"tab", '\t'),
        (b"nbsp", ' '),
    ];
    let end = s
        .iter()
        .take(8)
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(s.len().min(8));
    let name = &s[..end];
    NAMED
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, c)| (c, end))
}

/// Resolves JavaScript/JSON string escapes (`\uXXXX`, `\xHH`, `\'`, `\"`) into `out`.
fn js_escapes(s: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let hex = |h: &[u8]| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|t| u32::from_str_radix(t, 16).ok())
            };
            let decoded = match s[i + 1] {
                b'u' if i + 6 <= s.len() => hex(&s[i + 2..i + 6]).map(|v| (v, 6)),
                b'x' if i + 4 <= s.len() => hex(&s[i + 2..i + 4]).map(|v| (v, 4)),
                b'\'' | b'"' | b'\\' | b'/' => Some((s[i + 1] as u32, 2)),
                _ => None,
            };
            if let Some((v, n)) = decoded {
                let mut tmp = [0u8; 4];
                let c = char::from_u32(v).unwrap_or('\u{fffd}');
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                i += n;
                changed = true;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed
}

/// Folds Unicode look-alikes to ASCII: full-width forms (U+FF01-FF5E), typographic quotes, the
/// modifier apostrophe, division and set-minus slashes, and overlong UTF-8 encodings of ASCII
/// (`C0 AF` for `/`, what old decoders accepted); drops zero-width characters. Other invalid
/// UTF-8 becomes U+FFFD.
fn fold_unicode(s: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut changed = false;
    let mut plain = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let (b, b1, b2) = (s[i], s.get(i + 1).copied(), s.get(i + 2).copied());
        let cont = |x: Option<u8>| x.filter(|x| x & 0xC0 == 0x80);
        match (b, cont(b1), cont(b2)) {
            (0xC0 | 0xC1, Some(c1), _) => {
                plain.push(((b & 0x1F) << 6) | (c1 & 0x3F));
                i += 2;
                changed = true;
            }
            (0xE0, Some(c1), Some(c2)) if c1 < 0x82 => {
                plain.push(((c1 & 0x3F) << 6) | (c2 & 0x3F));
                i += 3;
                changed = true;
            }
            _ => {
                plain.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&plain);
    for c in text.chars() {
        let mapped = match c as u32 {
            0xFF01..=0xFF5E => Some(char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c)),
            0x2018 | 0x2019 | 0x201B | 0x2032 | 0x02BC | 0x02B9 => Some('\''),
            0x201C | 0x201D | 0x2033 => Some('"'),
            0x2215 | 0x2044 | 0x29F8 => Some('/'),
            0x2216 | 0xFE68 | 0x29F9 => Some('\\'),
            0x2039 | 0x2329 | 0x3008 | 0xFE64 => Some('<'),
            0x203A | 0x232A | 0x3009 | 0xFE65 => Some('>'),
            0x200B..=0x200D | 0xFEFF | 0x00AD => None,
            _ => {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                continue;
            }
        };
        changed = true;
        if let Some(m) = mapped {
            out.push(m as u8);
        }
    }
    changed
}

/// Removes `/* ... */` comments (MySQL's `/*! ... */` keeps its content), leaving a space.
fn strip_sql_comments(s: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'/' && s.get(i + 1) == Some(&b'*') {
            let end = memchr::memmem::find(&s[i + 2..], b"*/").map(|e| i + 2 + e);
            let body_start = if s.get(i + 2) == Some(&b'!') {
                Some(i + 3)
            } else {
                None
            };
            match (end, body_start) {
                (Some(e), Some(b)) => {
                    out.push(b' ');
                    let inner = &s[b..e];
                    let skip = inner.iter().take_while(|c| c.is_ascii_digit()).count();
                    out.extend_from_slice(&inner[skip..]);
                    out.push(b' ');
                    i = e + 2;
                }
                (Some(e), None) => {
                    i = e + 2;
                }
                (None, _) => i = s.len(),
            }
            changed = true;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(part: Part, v: &str) -> Vec<u32> {
        let mut out = Vec::new();
        scan(
            RuleSet::get(1),
            part,
            v.as_bytes(),
            &mut Forms::default(),
            &mut |id| out.push(id),
        );
        out
    }

    #[test]
    fn decoded_forms_reveal_evasions() {
        assert!(ids(Part::Args, "%2527 or 1=1--").contains(&SQLI_LIBINJECTION));
        assert!(ids(Part::Args, "&#x3c;script&#x3e;alert(1)&#x3c;/script&#x3e;").contains(&941110));
        assert!(ids(Part::Args, "\\u003cscript\\u003ealert(1)").contains(&941110));
        assert!(ids(Part::Args, "＜script＞alert(1)＜/script＞").contains(&941110));
        assert!(ids(Part::Args, "1 UN/**/ION SEL/**/ECT pass FROM users").contains(&942190));
        assert!(ids(Part::Args, "%252e%252e%252fetc%252fpasswd").contains(&930110));
    }

    #[test]
    fn plain_values_cost_nothing_and_pass() {
        assert!(plain(b"jane.doe@example.com"));
        assert!(plain(b"9b2f1c3e-1111-4c1d-9a7e-0a0b0c0d0e0f"));
        assert!(!plain(b"..secret"));
        assert!(!plain(b"a..b"));
        for v in [
            "Jane O'Brien",
            "it's O'Reilly's book",
            "**bold** and `code`",
            "5 < 6",
        ] {
            assert_eq!(ids(Part::Args, v), Vec::<u32>::new(), "{v}");
        }
    }

    #[test]
    fn entity_and_escape_decoders() {
        let mut out = Vec::new();
        assert!(html_entities(b"a&lt;b&#39;c&#x27&colon;", &mut out));
        assert_eq!(out, b"a<b'c':");
        assert!(!html_entities(b"salt & pepper", &mut out));
        assert!(js_escapes(b"\\x27\\u0027\\'", &mut out));
        assert_eq!(out, b"'''");
        assert!(strip_sql_comments(b"UN/**/ION/*!50000SELECT*/", &mut out));
        assert_eq!(out, b"UNION SELECT ");
    }
}
