//! The web application firewall: a route's [`Policy`] (from `waf = { ... }`, compiled at config
//! load) and the inspection of a request against it.
//!
//! Data flow: the pipeline's `Waf` filter (`proxy/filter.rs`) calls [`Policy::inspect_head`] in
//! the request phase, right after the IP rules and before authentication: the raw target, the
//! decoded path, every query argument (name and value), the inspected headers (`headers`, default
//! User-Agent and Referer) and every cookie. When the route's request body is inspectable (form,
//! multipart or JSON, `extract.rs`) the pipeline reads it (up to `body_limit`) and calls
//! [`Policy::inspect_body`] in the request_body phase. Each value goes through `detect.rs` (its
//! decoded forms, the rule set of the route's paranoia level, libinjection); every match that no
//! exclusion covers adds its severity to the request's anomaly score in [`Findings`]. At or above
//! `threshold`, `mode = "block"` answers `status` (403) with the request id and the matched rule
//! ids; `mode = "detect"` forwards the request and only logs and counts. Matched payloads are never
//! logged unless `log_payload = true`.

pub mod detect;
pub mod extract;
pub mod rules;

use extract::Source;
use rules::{Family, Part, RuleSet, RULES, SQLI_LIBINJECTION, XSS_LIBINJECTION};

/// What happens at or above the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer `status` (403) and never reach the upstream.
    Block,
    /// Forward, log and count.
    Detect,
}

/// What a body larger than `body_limit` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// The first `body_limit` bytes are inspected; the rest streams through unread.
    Partial,
    /// 413 before any of it is forwarded.
    Reject,
}

/// Where an exclusion applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An argument (query, form, multipart field or JSON path) by name; `prefix`: written `name*`.
    Arg {
        name: String,
        prefix: bool,
    },
    Header(String),
    Cookie(String),
    Path,
}

/// `exclusions = [{ rules = [...], args = [...] }]`: these rules (all when both lists are empty)
/// skip these targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub rules: Vec<u32>,
    /// Bit set of [`Family`] indexes.
    pub families: u16,
    pub targets: Vec<Target>,
}

/// A route's compiled WAF settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub paranoia: u8,
    /// Anomaly score at which the request is blocked (or counted, in detect mode).
    pub threshold: u32,
    pub status: u16,
    /// `exclude_rules`: rules (by id) and families (bit set) this route never runs.
    pub excluded_rules: Vec<u32>,
    pub excluded_families: u16,
    pub exclusions: Vec<Exclusion>,
    /// Lower-case names of the headers inspected as arguments (User-Agent is also checked
    /// against the scanner rules).
    pub headers: Vec<String>,
    pub body_limit: usize,
    pub over_limit: OverLimit,
    /// Put the first matched value (cut at 128 bytes) in the access log.
    pub log_payload: bool,
}

/// What inspection found in one request.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub score: u32,
    /// Matched rule ids, in order, without repeats (the first 8).
    pub rules: [u32; 8],
    pub n: usize,
    /// Bit set of matched [`Family`] indexes.
    pub families: u16,
    /// The first matched value, `where=value` (only with `log_payload`).
    pub sample: Option<String>,
    /// The body was looked at (or refused for its size).
    pub body_done: bool,
}

impl Findings {
    pub fn rules(&self) -> &[u32] {
        &self.rules[..self.n]
    }

    /// `941100,942100` for the log and the answer.
    pub fn rule_list(&self) -> String {
        let mut s = String::new();
        for (i, id) in self.rules().iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(itoa::Buffer::new().format(*id));
        }
        s
    }
}

/// Reused buffers for one connection's inspections.
#[derive(Default)]
pub struct Scratch {
    pub extract: extract::Scratch,
    pub forms: detect::Forms,
    decoded: Vec<u8>,
    memo: Memo,
}

/// The raw matches (before exclusions) of the last header and cookie values this connection
/// sent: User-Agent, Referer and cookies repeat on every request of a keep-alive connection, and
/// the tokenisers are the WAF's main cost. A value is found again only by comparing its bytes
/// exactly (never by a hash alone, which an attacker could collide), together with the part and
/// paranoia level it was scanned for.
#[derive(Default)]
struct Memo {
    slots: Vec<MemoSlot>,
    next: usize,
}

struct MemoSlot {
    part: Part,
    paranoia: u8,
    value: Vec<u8>,
    ids: Vec<u32>,
}

/// Values remembered per connection, and the longest one remembered.
const MEMO_SLOTS: usize = 8;
const MEMO_MAX: usize = 1024;

impl Memo {
    fn scan(
        &mut self,
        set: &RuleSet,
        paranoia: u8,
        part: Part,
        v: &[u8],
        forms: &mut detect::Forms,
        hit: &mut dyn FnMut(u32),
    ) {
        if v.len() > MEMO_MAX {
            return detect::scan(set, part, v, forms, hit);
        }
        let known = |s: &&MemoSlot| s.part == part && s.paranoia == paranoia && s.value == v;
        if let Some(slot) = self.slots.iter().find(known) {
            slot.ids.iter().for_each(|&id| hit(id));
            return;
        }
        let i = self.next % MEMO_SLOTS;
        self.next = self.next.wrapping_add(1);
        if i == self.slots.len() {
            self.slots.push(MemoSlot {
                part,
                paranoia,
                value: Vec::new(),
                ids: Vec::new(),
            });
        }
        let slot = &mut self.slots[i];
        (slot.part, slot.paranoia) = (part, paranoia);
        slot.value.clear();
        slot.value.extend_from_slice(v);
        slot.ids.clear();
        detect::scan(set, part, v, forms, &mut |id| {
            slot.ids.push(id);
            hit(id)
        });
    }
}

/// The family of rule `id`.
pub fn family_of(id: u32) -> Family {
    match id {
        SQLI_LIBINJECTION => Family::Sqli,
        XSS_LIBINJECTION => Family::Xss,
        _ => rules::index_of(id).map_or(Family::Protocol, |i| RULES[i].family),
    }
}

/// Rule id for a body that claims a type it is not (malformed JSON or multipart).
pub const MALFORMED_BODY: u32 = 920130;

impl Policy {
    fn set(&self) -> &'static RuleSet {
        RuleSet::get(self.paranoia)
    }

    /// Whether a request with these findings is over the threshold.
    pub fn over(&self, f: &Findings) -> bool {
        f.score >= self.threshold
    }

    /// The request phase: target, path, query, headers and cookies.
    pub fn inspect_head(
        &self,
        raw_target: &[u8],
        fields: &crate::http::view::Fields<'_>,
        s: &mut Scratch,
        out: &mut Findings,
    ) {
        let set = self.set();
        let (raw_path, query) = match memchr::memchr(b'?', raw_target) {
            Some(q) => (&raw_target[..q], &raw_target[q + 1..]),
            None => (raw_target, &b""[..]),
        };
        if !self.skips_all(Source::Path, b"") {
            let mut forms = std::mem::take(&mut s.forms);
            // the raw path only: the query's arguments are looked at decoded, one by one
            detect::scan(set, Part::Raw, raw_path, &mut forms, &mut |id| {
                self.hit(id, Source::Path, b"", raw_path, out)
            });
            let mut decoded = std::mem::take(&mut s.decoded);
            extract::percent_decode(raw_path, false, &mut decoded);
            detect::scan(set, Part::Path, &decoded, &mut forms, &mut |id| {
                self.hit(id, Source::Path, b"", &decoded, out)
            });
            s.decoded = decoded;
            s.forms = forms;
        }
        if !query.is_empty() {
            let mut forms = std::mem::take(&mut s.forms);
            extract::query(query, &mut s.extract, &mut |src, name, v| {
                self.arg(set, src, name, v, &mut forms, out)
            });
            s.forms = forms;
        }
        // header values repeat on every request of a connection: their raw matches are memoised
        let (mut forms, mut memo) = (std::mem::take(&mut s.forms), std::mem::take(&mut s.memo));
        for h in &self.headers {
            let name = h.as_bytes();
            for v in fields.all(name) {
                if self.skips_all(Source::HeaderValue, name) {
                    continue;
                }
                let mut hit = |id| self.hit(id, Source::HeaderValue, name, v, out);
                if h == "user-agent" {
                    memo.scan(set, self.paranoia, Part::Agent, v, &mut forms, &mut hit);
                }
                memo.scan(set, self.paranoia, Part::Args, v, &mut forms, &mut hit);
            }
        }
        for v in fields.all(b"cookie") {
            extract::cookies(v, &mut |src, name, v| {
                if !self.skips_all(src, name) {
                    let mut hit = |id| self.hit(id, src, name, v, out);
                    memo.scan(set, self.paranoia, Part::Args, v, &mut forms, &mut hit);
                }
            });
        }
        (s.forms, s.memo) = (forms, memo);
    }

    /// Whether the body of a request with this Content-Type is inspected (form, multipart, JSON).
    pub fn inspects(content_type: Option<&[u8]>) -> bool {
        body_kind(content_type).is_some()
    }

    /// The request_body phase: `body` is all of it, or its first `body_limit` bytes (`whole`
    /// false).
    pub fn inspect_body(
        &self,
        content_type: Option<&[u8]>,
        body: &[u8],
        whole: bool,
        s: &mut Scratch,
        out: &mut Findings,
    ) {
        out.body_done = true;
        let set = self.set();
        let mut forms = std::mem::take(&mut s.forms);
        let mut f =
            |src: Source, name: &[u8], v: &[u8]| self.arg(set, src, name, v, &mut forms, out);
        let malformed = match body_kind(content_type) {
            Some(BodyKind::Form) => {
                extract::form(body, &mut s.extract, &mut f);
                false
            }
            Some(BodyKind::Json) => extract::json(body, &mut s.extract, &mut f).is_err(),
            Some(BodyKind::Multipart) => {
                let ct = content_type.unwrap_or_default();
                match extract::boundary(ct) {
                    Some(b) => extract::multipart(body, b, &mut f).is_err(),
                    None => true,
                }
            }
            None => false,
        };
        s.forms = forms;
        if malformed && whole {
            self.hit(MALFORMED_BODY, Source::BodyValue, b"", b"", out);
        }
    }

    /// One argument (name or value) through the detectors.
    fn arg(
        &self,
        set: &RuleSet,
        src: Source,
        name: &[u8],
        v: &[u8],
        forms: &mut detect::Forms,
        out: &mut Findings,
    ) {
        if self.skips_all(src, name) {
            return;
        }
        detect::scan(set, Part::Args, v, forms, &mut |id| {
            self.hit(id, src, name, v, out)
        });
    }

    /// Records a match unless the route excludes it.
    fn hit(&self, id: u32, src: Source, name: &[u8], v: &[u8], out: &mut Findings) {
        let fam = family_of(id);
        if self.excluded_rules.contains(&id) || self.excluded_families & (1 << fam.index()) != 0 {
            return;
        }
        if self
            .exclusions
            .iter()
            .any(|e| e.covers_rule(id, fam) && e.targets.iter().any(|t| t.matches(src, name)))
        {
            return;
        }
        if out.rules().contains(&id) {
            return;
        }
        let severity = rules::index_of(id).map_or(5, |i| RULES[i].severity.score());
        out.score += severity;
        out.families |= 1 << fam.index();
        if out.n < out.rules.len() {
            out.rules[out.n] = id;
            out.n += 1;
        }
        if self.log_payload && out.sample.is_none() {
            let shown = &v[..v.len().min(128)];
            let mut s = String::from_utf8_lossy(name).into_owned();
            s.push('=');
            s.push_str(&String::from_utf8_lossy(shown));
            out.sample = Some(s);
        }
    }

    /// Whether an exclusion removes every rule from this target.
    fn skips_all(&self, src: Source, name: &[u8]) -> bool {
        self.exclusions.iter().any(|e| {
            e.rules.is_empty() && e.families == 0 && e.targets.iter().any(|t| t.matches(src, name))
        })
    }
}

impl Exclusion {
    fn covers_rule(&self, id: u32, fam: Family) -> bool {
        (self.rules.is_empty() && self.families == 0)
            || self.rules.contains(&id)
            || self.families & (1 << fam.index()) != 0
    }
}

impl Target {
    fn matches(&self, src: Source, name: &[u8]) -> bool {
        match self {
            Target::Path => src == Source::Path,
            Target::Header(h) => {
                src == Source::HeaderValue && name.eq_ignore_ascii_case(h.as_bytes())
            }
            Target::Cookie(c) => {
                matches!(src, Source::CookieName | Source::CookieValue) && name == c.as_bytes()
            }
            Target::Arg { name: n, prefix } => {
                let arg = matches!(
                    src,
                    Source::QueryName
                        | Source::QueryValue
                        | Source::BodyName
                        | Source::BodyValue
                        | Source::Filename
                );
                arg && match prefix {
                    true => name.starts_with(n.as_bytes()),
                    false => name == n.as_bytes(),
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum BodyKind {
    Form,
    Json,
    Multipart,
}

fn body_kind(content_type: Option<&[u8]>) -> Option<BodyKind> {
    let ct = content_type?;
    let essence = ct
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let is = |t: &[u8]| essence.eq_ignore_ascii_case(t);
    if is(b"application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else if is(b"multipart/form-data") {
        Some(BodyKind::Multipart)
    } else if is(b"application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"))
    {
        Some(BodyKind::Json)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
