//! RFC 9111 freshness mechanics for a shared cache: pure functions, no clocks of their own.
//!
//! A response head flows through here once, at store time: `CacheControl::parse` over every
//! Cache-Control line, `parse_http_date` over Date/Expires, `parse_delta` over Age; the result is
//! a `Received`, from which `explicit_lifetime` (§4.2.1) and `initial_age` (§4.2.3) give the
//! numbers frozen into a `Freshness`. The store keeps that `Freshness` in a `Cell`; every lookup
//! then asks `staleness` (fresh / stale-while-revalidate / stale-if-error / expired) against the
//! monotonic clock and `request_accepts` for the request's own directives (§5.2.1). Wall-clock
//! seconds appear only in `Received`; after that, ages advance by `Instant` so a stepped system
//! clock cannot make stored responses younger or older.
//!
//! Every parser takes arbitrary bytes (non-UTF-8 included) and never panics: numbers saturate at
//! 2^31 (§1.2.2), malformed freshness inputs read as "stale", malformed extensions as "absent".

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Largest delta-seconds kept; larger values saturate to it (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

/// Parsed Cache-Control of one message (request or response), all field lines combined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`, plain or qualified (`no-cache="Set-Cookie"` counts as plain).
    pub no_cache: bool,
    /// `private`, plain or qualified (counts as plain).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `max-age`; invalid or conflicting duplicates read as `Some(0)`.
    pub max_age: Option<u64>,
    /// `s-maxage`; invalid or conflicting duplicates read as `Some(0)`.
    pub s_maxage: Option<u64>,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate` (RFC 5861); invalid ignored, duplicates keep the smallest.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861); invalid ignored, duplicates keep the smallest.
    pub stale_if_error: Option<u64>,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// `min-fresh` (request); invalid ignored, duplicates keep the largest.
    pub min_fresh: Option<u64>,
    /// max-stale: Some(None) = any staleness, Some(Some(n)) = n seconds
    /// (request; invalid argument ignored, duplicates keep the most restrictive).
    pub max_stale: Option<Option<u64>>,
}

/// A directive's argument as it appeared.
#[derive(Clone, Copy)]
enum Arg<'a> {
    /// No `=`.
    Absent,
    /// token, or quoted-string between its quotes (escapes still in place).
    Value(&'a [u8]),
    /// `=` with nothing usable after it, or junk after the argument.
    Bad,
}

impl CacheControl {
    /// Parses every Cache-Control field line of a message (each a comma-separated list).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut cc = CacheControl::default();
        for line in lines {
            cc.parse_line(line);
        }
        cc
    }

    fn parse_line(&mut self, s: &[u8]) {
        let mut i = 0;
        while i < s.len() {
            let start = skip(s, i, |b| is_ows(b) || b == b',');
            let end = skip(s, start, is_tchar);
            i = skip(s, end, is_ows);
            let mut arg = Arg::Absent;
            if s.get(i) == Some(&b'=') {
                let v = skip(s, i + 1, is_ows);
                let (a, e) = match s.get(v) {
                    Some(b'"') => match scan_quoted(s, v + 1) {
                        (q, true) => (s.get(v + 1..q).map(Arg::Value), q + 1),
                        (q, false) => (Some(Arg::Bad), q),
                    },
                    _ => (None, skip(s, v, is_tchar)),
                };
                let token = s.get(v..e).filter(|t| !t.is_empty());
                arg = a.or(token.map(Arg::Value)).unwrap_or(Arg::Bad);
                i = skip(s, e, is_ows);
            }
            if i < s.len() && s.get(i) != Some(&b',') {
                arg = Arg::Bad;
                i = skip_element(s, i);
            }
            match s.get(start..end) {
                Some(name) if !name.is_empty() => self.apply(name, arg),
                _ => {}
            }
        }
    }

    fn apply(&mut self, name: &[u8], arg: Arg) {
        let mut buf = [0u8; 22]; // longest known name: stale-while-revalidate
        let Some(lower) = buf.get_mut(..name.len()) else {
            return;
        };
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        let d = arg_delta(arg);
        match &*lower {
            b"no-store" => self.no_store = true,
            b"no-cache" => self.no_cache = true,
            b"private" => self.private = true,
            b"public" => self.public = true,
            b"must-revalidate" => self.must_revalidate = true,
            b"proxy-revalidate" => self.proxy_revalidate = true,
            b"only-if-cached" => self.only_if_cached = true,
            b"max-age" => merge_strict(&mut self.max_age, d),
            b"s-maxage" => merge_strict(&mut self.s_maxage, d),
            b"stale-while-revalidate" => merge_with(&mut self.stale_while_revalidate, d, u64::min),
            b"stale-if-error" => merge_with(&mut self.stale_if_error, d, u64::min),
            b"min-fresh" => merge_with(&mut self.min_fresh, d, u64::max),
            b"max-stale" if d.is_some() || matches!(arg, Arg::Absent) => {
                self.max_stale = Some(match (self.max_stale, d) {
                    (Some(Some(a)), b) => Some(b.map_or(a, |b| a.min(b))),
                    (_, b) => b,
                });
            }
            _ => {}
        }
    }
}

/// max-age / s-maxage: invalid => 0; a second, different value => 0 (§4.2.1).
fn merge_strict(slot: &mut Option<u64>, v: Option<u64>) {
    let v = v.unwrap_or(0);
    *slot = Some(match *slot {
        Some(old) if old != v => 0,
        _ => v,
    });
}

/// Extension directives: invalid => this occurrence ignored; duplicates combined by `pick`.
fn merge_with(slot: &mut Option<u64>, v: Option<u64>, pick: fn(u64, u64) -> u64) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |old| pick(old, v)));
    }
}

/// A quoted delta-seconds is accepted (§5.2: recipients take both forms), without escapes.
fn arg_delta(arg: Arg) -> Option<u64> {
    match arg {
        Arg::Value(v) => digits(v),
        Arg::Absent | Arg::Bad => None,
    }
}

/// delta-seconds = 1*DIGIT, saturating at `DELTA_MAX`.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let add = |n: u64, b: &u8| n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    Some(v.iter().fold(0, add).min(DELTA_MAX))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Index of the first byte at or after `i` that fails `keep` (or the length).
fn skip(s: &[u8], mut i: usize, keep: fn(u8) -> bool) -> usize {
    while s.get(i).is_some_and(|&b| keep(b)) {
        i += 1;
    }
    i
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// From just after an opening quote: (index of the closing quote, true) or (len, false).
fn scan_quoted(s: &[u8], mut i: usize) -> (usize, bool) {
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return (i, true),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    (s.len(), false)
}

/// Skips to the next comma outside a quoted-string (or the end).
fn skip_element(s: &[u8], mut i: usize) -> usize {
    while let Some(&b) = s.get(i) {
        match b {
            b',' => return i,
            b'"' => i = scan_quoted(s, i + 1).0.saturating_add(1),
            _ => i += 1,
        }
    }
    s.len()
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Parses an Age field value (delta-seconds; saturating); None when invalid.
pub fn parse_delta(v: &[u8]) -> Option<u64> {
    digits(trim_ows(v))
}

const DAYS: &[u8] = b"SunMonTueWedThuFriSat";
const MONTHS: &[u8] = b"JanFebMarAprMayJunJulAugSepOctNovDec";
const LONG_DAYS: &str = "Sunday Monday Tuesday Wednesday Thursday Friday Saturday";
/// Layouts: w weekday, o month, d day digit, e day digit or leading space, y year digit,
/// h/i/s hour/minute/second digits; anything else is literal.
const IMF_FIXDATE: &[u8] = b"www, dd ooo yyyy hh:ii:ss GMT";
const ASCTIME: &[u8] = b"www ooo ed hh:ii:ss yyyy";
/// RFC 850 after its long weekday name.
const RFC850_TAIL: &[u8] = b", dd-ooo-yy hh:ii:ss GMT";
/// 9999-12-31T23:59:59Z, the last instant IMF-fixdate's 4-digit year can write.
const MAX_WRITABLE: u64 = 253_402_300_799;

/// Parses an HTTP-date (IMF-fixdate, obsolete RFC 850 with two-digit year per RFC 9110 §5.6.7,
/// asctime) to Unix seconds; None when invalid or before 1970. Names and "GMT" are
/// case-sensitive (§5.6.7); the weekday must be a valid name but is not checked against the date.
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    parse_date_at(v, now.map_or(0, |d| d.as_secs()))
}

/// Fields matched by `scan`: [year, day, hour, minute, second], month and weekday text.
#[derive(Default)]
struct Parts {
    n: [u64; 5],
    month: [u8; 3],
    wday: [u8; 3],
}

/// Matches `v` against a layout (same length, byte for byte).
fn scan(v: &[u8], layout: &[u8]) -> Option<Parts> {
    if v.len() != layout.len() {
        return None;
    }
    let mut p = Parts::default();
    let (mut mi, mut wi) = (0, 0);
    for (&b, &c) in v.iter().zip(layout) {
        let slot = match c {
            b'y' => 0,
            b'e' if b == b' ' && p.n[1] == 0 => continue,
            b'd' | b'e' => 1,
            b'h' => 2,
            b'i' => 3,
            b's' => 4,
            b'o' => {
                *p.month.get_mut(mi)? = b;
                mi += 1;
                continue;
            }
            b'w' => {
                *p.wday.get_mut(wi)? = b;
                wi += 1;
                continue;
            }
            _ if b == c => continue,
            _ => return None,
        };
        if !b.is_ascii_digit() {
            return None;
        }
        p.n[slot] = p.n[slot] * 10 + u64::from(b - b'0');
    }
    Some(p)
}

/// `parse_http_date` with the current time given, for the RFC 850 two-digit year: read as the
/// year within 50 years of now, the past side winning ties ((now-50, now+50]).
fn parse_date_at(v: &[u8], now: u64) -> Option<u64> {
    let v = trim_ows(v);
    let p = match scan(v, IMF_FIXDATE).or_else(|| scan(v, ASCTIME)) {
        Some(p) if DAYS.chunks(3).any(|d| d == p.wday) => p,
        Some(_) => return None,
        None => {
            let (wday, tail) = v.split_at(v.iter().position(|&b| b == b',')?);
            if !LONG_DAYS.split(' ').any(|d| d.as_bytes() == wday) {
                return None;
            }
            let mut p = scan(tail, RFC850_TAIL)?;
            let this_year = civil_from_days(now / 86_400).0;
            p.n[0] += this_year - this_year % 100;
            if p.n[0] > this_year + 50 {
                p.n[0] -= 100;
            } else if p.n[0] + 50 <= this_year {
                p.n[0] += 100;
            }
            p
        }
    };
    let [year, day, h, m, s] = p.n;
    let month = MONTHS.chunks(3).position(|x| x == p.month)? as u64 + 1;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let max_day = match month {
        2 => 28 + u64::from(leap),
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if year < 1970 || day == 0 || day > max_day || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day) - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 0000-03-01 (proleptic Gregorian) for year >= 1, month 1..=12, day 1..=31
/// (H. Hinnant's days_from_civil, shifted so every intermediate stays unsigned).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y / 400, y % 400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe
}

/// (year, month, day) for days since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// Writes Unix seconds as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); times past
/// 9999-12-31T23:59:59Z are written as that instant.
pub fn write_http_date(unix: u64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let t = unix.min(MAX_WRITABLE);
    let (days, secs) = (t / 86_400, t % 86_400);
    let (year, month, day) = civil_from_days(days);
    let name = |list: &'static [u8], i: u64| list.chunks(3).nth(i as usize).unwrap_or_default();
    let (wday, mon) = (
        name(DAYS, (days + 4) % 7),
        name(MONTHS, month.wrapping_sub(1)),
    );
    out.extend_from_slice(wday);
    out.extend_from_slice(b", ");
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let _ = write!(out, "{day:02} ");
    out.extend_from_slice(mon);
    let _ = write!(out, " {year:04} {h:02}:{m:02}:{s:02} GMT"); // Vec<u8> writes cannot fail
}

/// What a response says about its own freshness, and the times around its receipt.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The response's Cache-Control.
    pub cc: &'a CacheControl,
    /// Parsed Date header (unix secs).
    pub date: Option<u64>,
    /// Raw Expires header value (None if absent).
    pub expires: Option<&'a [u8]>,
    /// Parsed Age header.
    pub age: Option<u64>,
    /// Unix secs when the request was sent.
    pub request_time: u64,
    /// Unix secs when the response head arrived.
    pub response_time: u64,
}

/// Explicit freshness lifetime for a shared cache (§4.2.1): s-maxage, else max-age, else
/// Expires − Date (Date missing: response_time). An Expires that does not parse (incl. "0") =
/// already expired => Some(0). None: the response states none.
pub fn explicit_lifetime(r: &Received) -> Option<u64> {
    if let Some(s) = r.cc.s_maxage {
        return Some(s);
    }
    if let Some(m) = r.cc.max_age {
        return Some(m);
    }
    let expires = r.expires?;
    let date = r.date.unwrap_or(r.response_time);
    Some(parse_http_date(expires).map_or(0, |e| e.saturating_sub(date)))
}

/// corrected_initial_age per §4.2.3 (apparent_age, corrected_age_value = age + response_delay,
/// max of both). A missing Date counts as response_time (apparent_age 0).
pub fn initial_age(r: &Received) -> u64 {
    let apparent = r
        .response_time
        .saturating_sub(r.date.unwrap_or(r.response_time));
    let delay = r.response_time.saturating_sub(r.request_time);
    let corrected = r.age.unwrap_or(0).saturating_add(delay);
    apparent.max(corrected)
}

/// Freshness facts of one stored response. Copy; lives in a Cell in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Monotonic time the response was received / last validated.
    pub stored_at: Instant,
    /// Seconds old when received.
    pub initial_age: u64,
    /// Seconds it is fresh for, counted from age 0.
    pub lifetime: u64,
    /// Seconds past lifetime it may be served while a refresh runs.
    pub stale_while_revalidate: u64,
    /// Seconds past lifetime it may be served when the origin fails.
    pub stale_if_error: u64,
    /// must-revalidate / proxy-revalidate / s-maxage: never served stale (§4.2.4, §5.2.2.2,
    /// overrides both stale extensions).
    pub must_revalidate: bool,
}

/// Where a stored response stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// age < lifetime.
    Fresh,
    /// within stale-while-revalidate
    Revalidate,
    /// past that, within stale-if-error only
    IfError,
    /// beyond both
    Expired,
}

impl Freshness {
    /// Freshness of a response received per `r`, stored at `stored_at`: lifetime is
    /// `explicit_lifetime(r)`, else `heuristic` (§4.2.2, the caller's choice). A response
    /// `no-cache` gets lifetime 0 and must_revalidate (§5.2.2.4: never used unvalidated).
    pub fn from_received(r: &Received, stored_at: Instant, heuristic: u64) -> Self {
        let cc = r.cc;
        let lifetime = explicit_lifetime(r).unwrap_or(heuristic);
        Freshness {
            stored_at,
            initial_age: initial_age(r),
            lifetime: if cc.no_cache { 0 } else { lifetime },
            stale_while_revalidate: cc.stale_while_revalidate.unwrap_or(0),
            stale_if_error: cc.stale_if_error.unwrap_or(0),
            must_revalidate: cc.must_revalidate
                || cc.proxy_revalidate
                || cc.no_cache
                || cc.s_maxage.is_some(),
        }
    }

    /// current_age in whole seconds at `now` (initial_age + resident time; saturating; `now`
    /// before stored_at counts 0).
    pub fn age(&self, now: Instant) -> u64 {
        let resident = now.saturating_duration_since(self.stored_at).as_secs();
        self.initial_age.saturating_add(resident)
    }

    /// Fresh while age < lifetime; Revalidate while age < lifetime + swr; IfError while
    /// age < lifetime + sie; else Expired. must_revalidate => anything not Fresh is Expired.
    pub fn staleness(&self, now: Instant) -> Staleness {
        let age = self.age(now);
        if age < self.lifetime {
            Staleness::Fresh
        } else if self.must_revalidate {
            Staleness::Expired
        } else if age < self.lifetime.saturating_add(self.stale_while_revalidate) {
            Staleness::Revalidate
        } else if age < self.lifetime.saturating_add(self.stale_if_error) {
            Staleness::IfError
        } else {
            Staleness::Expired
        }
    }

    /// For stale-if-error specifically (the windows are independent): true when fresh, or
    /// !must_revalidate && age < lifetime + stale_if_error.
    pub fn usable_on_error(&self, now: Instant) -> bool {
        let age = self.age(now);
        age < self.lifetime
            || (!self.must_revalidate && age < self.lifetime.saturating_add(self.stale_if_error))
    }

    /// Seconds the entry may stay in a cache at all (lifetime + max(swr, sie)), for eviction
    /// of dead entries: dead once `age(now) >= keep_for()`.
    pub fn keep_for(&self) -> u64 {
        let stale = self.stale_while_revalidate.max(self.stale_if_error);
        self.lifetime.saturating_add(stale)
    }
}

/// Whether a request's own Cache-Control lets a stored response of this freshness answer it
/// (§5.2.1): no-cache => false; age > max-age => false; fewer than min-fresh seconds of
/// freshness left => false; stale and max-stale present => within it and not must_revalidate.
/// A stale response with no max-stale is left to the response's own windows
/// (`Freshness::staleness`), so this returns true for it.
pub fn request_accepts(req: &CacheControl, f: &Freshness, now: Instant) -> bool {
    let age = f.age(now);
    let left = f.lifetime.saturating_sub(age);
    if req.no_cache
        || req.max_age.is_some_and(|m| age > m)
        || req.min_fresh.is_some_and(|m| left < m)
    {
        return false;
    }
    if age < f.lifetime {
        return true;
    }
    match req.max_stale {
        None => true,
        Some(_) if f.must_revalidate => false,
        Some(None) => true,
        Some(Some(n)) => age - f.lifetime <= n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cc(s: &str) -> CacheControl {
        CacheControl::parse([s.as_bytes()])
    }

    #[test]
    fn parses_directives() {
        let c = cc(" Public ,MAX-AGE = 60,, s-maxage=30 ,\tmust-revalidate ,no-store");
        assert!(c.public && c.must_revalidate && c.no_store && !c.private);
        assert_eq!((c.max_age, c.s_maxage), (Some(60), Some(30)));
        let c = CacheControl::parse([&b"private"[..], b"", b"stale-if-error=5, max-stale"]);
        assert_eq!((c.private, c.stale_if_error), (true, Some(5)));
        assert_eq!(c.max_stale, Some(None));
        assert_eq!(cc(" , ,, "), CacheControl::default());
        // quoted commas do not split; qualified forms count as plain
        let c = cc(r#"no-cache="Set-Cookie, max-age=1", private="a\"b,c", max-age="7""#);
        assert_eq!((c.no_cache, c.private, c.max_age), (true, true, Some(7)));
        assert!(!cc(r#"x="abc, no-store"#).no_store); // unterminated quote runs to the end
        assert!(cc("no-store\"x\", public").public && cc("no-store\"x\"").no_store);
    }

    #[test]
    fn invalid_duplicate_and_huge_numbers() {
        let zero = r#"max-age|max-age=|max-age=-1|max-age=1.5|max-age=5 x|max-age="1\2"|max-age=5,max-age=6,max-age=5"#;
        for v in zero.split('|') {
            assert_eq!(cc(v).max_age, Some(0), "{v}");
        }
        assert_eq!(cc("s-maxage=abc").s_maxage, Some(0));
        assert_eq!(cc("max-age=5, max-age=5").max_age, Some(5));
        let two = CacheControl::parse([&b"max-age=5"[..], b"max-age=9"]);
        assert_eq!(two.max_age, Some(0));
        let c = cc("stale-while-revalidate=x, stale-if-error, min-fresh=, max-stale=q");
        assert_eq!(c, CacheControl::default());
        let c = cc("stale-while-revalidate=9, stale-while-revalidate=3, min-fresh=1, min-fresh=4");
        assert_eq!((c.stale_while_revalidate, c.min_fresh), (Some(3), Some(4)));
        for (v, want) in [
            ("max-stale, max-stale=5", 5),
            ("max-stale=5, max-stale", 5),
            ("max-stale=5, max-stale=2", 2),
        ] {
            assert_eq!(cc(v).max_stale, Some(Some(want)), "{v}");
        }
        let c = cc("max-age=99999999999999999999999999999999, stale-if-error=2147483649");
        assert_eq!([c.max_age, c.stale_if_error], [Some(DELTA_MAX); 2]);
        assert_eq!(parse_delta(b"18446744073709551616"), Some(DELTA_MAX));
        assert_eq!(parse_delta(b" 42 "), Some(42));
        assert!(["", "4 2", "+1", "0x1"]
            .iter()
            .all(|v| parse_delta(v.as_bytes()).is_none()));
    }

    #[test]
    fn junk_never_panics() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"=\",\\ \tamx-:GMT0123456789\xff\x80";
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v: Vec<u8> = (0..x % 32)
                .map(|i| alphabet[((x >> i) % alphabet.len() as u64) as usize])
                .collect();
            let _ = CacheControl::parse([v.as_slice(), b"\xc3\x28 max-age=\xff"]);
            let _ = (parse_http_date(&v), parse_delta(&v));
        }
    }

    #[test]
    fn known_dates() {
        let n = 784_111_777;
        let good = "Sun, 06 Nov 1994 08:49:37 GMT|Sunday, 06-Nov-94 08:49:37 GMT|Sun Nov  6 08:49:37 1994|Sun Nov 06 08:49:37 1994| Sun, 06 Nov 1994 08:49:37 GMT ";
        for v in good.split('|') {
            assert_eq!(parse_http_date(v.as_bytes()), Some(n), "{v}");
        }
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        let d = |v: &str| parse_http_date(v.as_bytes());
        assert_eq!(d("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
        assert_eq!(d("Thu, 31 Dec 2099 23:59:59 GMT"), Some(4_102_444_799));
        let bad = "Sun, 06 Nov 1994 08:49:37 UTC|Sun, 06 nov 1994 08:49:37 GMT|Sun, 29 Feb 1900 00:00:00 GMT|Sun, 31 Apr 2001 00:00:00 GMT|Sun, 00 Nov 1994 08:49:37 GMT|Sun, 06 Nov 1994 24:00:00 GMT|Sun, 06 Nov 1969 08:49:37 GMT|Xyz, 06 Nov 1994 08:49:37 GMT|Sun, 06 Nov 1994 08:49:37|Funday, 06-Nov-94 08:49:37 GMT|Sunday, 06-Nov-94 08:49:37|Sun Nov 6  08:49:37 1994|Sun Nov 0  08:49:37 1994|0|";
        for v in bad.split('|') {
            assert_eq!(parse_http_date(v.as_bytes()), None, "{v}");
        }
        let mut out = Vec::new();
        write_http_date(n, &mut out);
        write_http_date(u64::MAX, &mut out);
        assert_eq!(
            out,
            b"Sun, 06 Nov 1994 08:49:37 GMTFri, 31 Dec 9999 23:59:59 GMT"
        );
    }

    #[test]
    fn rfc850_two_digit_year_window() {
        let y2026 = 1_767_225_600; // 2026-01-01
        let at = |d: &str| parse_date_at(d.as_bytes(), y2026);
        assert_eq!(at("Monday, 01-Jan-76 00:00:00 GMT"), Some(3_345_062_400)); // 2076: +50y kept
        assert_eq!(at("Thursday, 01-Jan-77 00:00:00 GMT"), Some(220_924_800)); // 2077 => 1977
        assert_eq!(at("Wednesday, 01-Jan-25 00:00:00 GMT"), Some(1_735_689_600));
    }

    #[test]
    fn date_round_trip() {
        let (mut x, mut out) = (0x2545_f491_4f6c_dd1du64, Vec::new());
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = (x % (MAX_WRITABLE + 1)) >> (i % 40);
            out.clear();
            write_http_date(t, &mut out);
            assert_eq!(parse_date_at(&out, t), Some(t), "{t}");
        }
    }

    const NOW: u64 = 2_000_000_000;

    fn rx<'a>(c: &'a CacheControl, date: Option<u64>, expires: Option<&'a str>) -> Received<'a> {
        let expires = expires.map(str::as_bytes);
        Received {
            cc: c,
            date,
            expires,
            age: None,
            request_time: NOW,
            response_time: NOW,
        }
    }

    #[test]
    fn explicit_lifetime_precedence() {
        let (exp, date) = (Some("Sun, 06 Nov 1994 08:50:37 GMT"), Some(784_111_777));
        let lt = |c: &str, date, exp| explicit_lifetime(&rx(&cc(c), date, exp));
        assert_eq!(lt("max-age=10, s-maxage=20", date, exp), Some(20));
        assert_eq!(lt("max-age=10", date, exp), Some(10));
        assert_eq!(lt("public", date, exp), Some(60));
        assert_eq!(lt("public", date, Some("0")), Some(0));
        assert_eq!(lt("public", date, None), None);
        assert_eq!(lt("public", None, exp), Some(0)); // Date missing: response_time, long after
        let c = cc("");
        let r = Received {
            response_time: 784_111_777 - 5,
            ..rx(&c, None, exp)
        };
        assert_eq!(explicit_lifetime(&r), Some(65));
    }

    #[test]
    fn initial_age_math() {
        let c = CacheControl::default();
        // apparent_age; age + response_delay; Date in the future; saturation
        let cases = [(None, None, 100, 100, 0), (Some(90), None, 100, 100, 10)];
        let more = [
            (Some(90), Some(30), 98, 100, 32),
            (Some(200), None, 100, 103, 3),
        ];
        for (date, age, request_time, response_time, want) in cases.into_iter().chain(more) {
            let r = Received {
                date,
                age,
                request_time,
                response_time,
                ..rx(&c, None, None)
            };
            assert_eq!(initial_age(&r), want);
        }
        let r = Received {
            age: Some(u64::MAX),
            request_time: 0,
            ..rx(&c, None, None)
        };
        assert_eq!(initial_age(&r), u64::MAX);
    }

    fn fr(t0: Instant, lifetime: u64, swr: u64, sie: u64, must_revalidate: bool) -> Freshness {
        let (stale_while_revalidate, stale_if_error) = (swr, sie);
        Freshness {
            stored_at: t0,
            initial_age: 5,
            lifetime,
            stale_while_revalidate,
            stale_if_error,
            must_revalidate,
        }
    }

    #[test]
    fn staleness_windows() {
        use Staleness::*;
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let f = fr(t0, 10, 5, 20, false); // age 5 at t0
        let before = t0.checked_sub(Duration::from_secs(1)).unwrap_or(t0);
        assert_eq!((f.age(at(0)), f.age(before)), (5, 5));
        let got: Vec<_> = [4, 5, 9, 10, 24, 25].map(|s| f.staleness(at(s))).into();
        let want = [Fresh, Revalidate, Revalidate, IfError, IfError, Expired];
        assert_eq!(got, want);
        assert!(
            f.usable_on_error(at(7)) && f.usable_on_error(at(24)) && !f.usable_on_error(at(25))
        );
        assert_eq!(f.keep_for(), 30);
        let g = fr(t0, 10, 20, 3, false); // swr wider than sie: IfError never reached
        let (a, b) = (g.staleness(at(24)), g.staleness(at(25)));
        assert_eq!((a, b), (Revalidate, Expired));
        assert!(!g.usable_on_error(at(8)));
        let m = fr(t0, 10, 5, 20, true);
        assert_eq!((m.staleness(at(4)), m.staleness(at(5))), (Fresh, Expired));
        assert!(m.usable_on_error(at(4)) && !m.usable_on_error(at(5)));
        let big = fr(t0, u64::MAX, u64::MAX, 0, false);
        assert_eq!((big.keep_for(), big.staleness(at(1))), (u64::MAX, Fresh));
    }

    #[test]
    fn from_received_maps_directives() {
        let t0 = Instant::now();
        let f = |c: &str, date| Freshness::from_received(&rx(&cc(c), date, None), t0, 7);
        let a = f(
            "max-age=60, stale-while-revalidate=5, stale-if-error=9",
            Some(NOW - 10),
        );
        let mut want = fr(t0, 60, 5, 9, false);
        want.initial_age = 10;
        assert_eq!(a, want);
        assert!(f("s-maxage=60", None).must_revalidate);
        assert!(f("proxy-revalidate", None).must_revalidate);
        assert_eq!(f("public", None).lifetime, 7);
        let n = f("max-age=60, no-cache", None);
        assert_eq!((n.lifetime, n.must_revalidate), (0, true));
    }

    #[test]
    fn request_directives() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let f = fr(t0, 10, 0, 0, false); // age 5 at t0, stale from t0+5
        let ok = |c: &str, f: &Freshness, s| request_accepts(&cc(c), f, at(s));
        assert!(ok("", &f, 0) && ok("max-age=5", &f, 0) && ok("min-fresh=5", &f, 0));
        assert!(!ok("no-cache", &f, 0) && !ok("max-age=4", &f, 0) && !ok("max-age=0", &f, 0));
        assert!(!ok("min-fresh=6", &f, 0) && !ok("min-fresh=1", &f, 5));
        assert!(ok("", &f, 8)); // stale, no max-stale: left to staleness()
        assert!(ok("max-stale", &f, 1000) && ok("max-stale=3", &f, 8) && !ok("max-stale=3", &f, 9));
        let m = fr(t0, 10, 0, 0, true);
        assert!(ok("max-stale", &m, 4) && !ok("max-stale", &m, 5));
    }
}
