//! One access log line: the [`Record`] a worker fills in, and its JSON encoding.
//!
//! Owns the line format. `LogBuf::record` (in `mod.rs`) calls [`write_json_line`] with the worker's
//! reused buffer; the line is appended in place, so formatting allocates nothing once the buffer
//! has grown to its working size (numbers go through `itoa`, the time through a hand-written
//! civil-date conversion, the upstream endpoint is the text the upstream runtime keeps anyway).
//! Strings that are plain printable ASCII — nearly all of them — are copied in one piece after a
//! scan; only the others go through the escaping and UTF-8 repair path.
//!
//! Format: one JSON object per line, keys always present and always in this order:
//! `time request_id trace_id span_id parent_span_id client_ip method path route upstream status
//! bytes_in bytes_out duration_us upstream_us subject ratelimit waf waf_match`. `time` is RFC 3339 UTC with
//! milliseconds. Optional values are `null` when absent or empty: `trace_id`, `span_id`,
//! `parent_span_id`, `route`, `upstream`, `upstream_us`, `subject`, `ratelimit`, `waf`,
//! `waf_match`.
//!
//! Strings: `"` and `\` are escaped, control characters below 0x20 become `\n`, `\r`, `\t`, `\b`,
//! `\f` or `\u00XX` (lowercase hex), everything else valid UTF-8 is copied as is. **Invalid UTF-8**
//! (possible in `path`, `method` and the ids, which are raw request bytes) is replaced by U+FFFD,
//! one per maximal invalid sequence, exactly as `String::from_utf8_lossy` does: the line stays
//! valid UTF-8 and valid JSON, and a reader sees that the bytes were not text (an escape like
//! `\u00ff` would instead read as the character `ÿ`, indistinguishable from a real one).

/// What one finished request contributes to the access log. Borrowed from the worker's request
/// state: building one costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// Request start, wall clock, nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    pub request_id: &'a [u8],
    /// 32 lowercase hex characters, or empty.
    pub trace_id: &'a [u8],
    /// 16 hex characters (the gateway's span), or empty.
    pub span_id: &'a [u8],
    /// 16 hex characters, or empty.
    pub parent_span_id: &'a [u8],
    pub client_ip: &'a str,
    pub method: &'a [u8],
    /// The request target as received (may contain any bytes).
    pub path: &'a [u8],
    /// The matched route's name; empty when no route matched.
    pub route: &'a str,
    /// The endpoint that answered.
    /// `ip:port` of the endpoint that answered.
    pub upstream: Option<&'a str>,
    pub status: u16,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    pub total_us: u64,
    pub upstream_us: Option<u64>,
    /// The authenticated consumer.
    pub subject: Option<&'a str>,
    /// `""`, `"allowed"`, `"limited"` or `"quota_exceeded"`.
    pub ratelimit: &'a str,
    /// The WAF's verdict: `blocked:942100,941100` or `detected:...`; empty when no rule matched.
    pub waf: &'a str,
    /// The first value a WAF rule matched (`name=value`), only with the route's `log_payload`.
    pub waf_match: &'a str,
}

/// Appends `r` as one JSON object and a `\n` to `out`.
pub fn write_json_line(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, r.unix_ns);
    out.extend_from_slice(b"\",\"request_id\":");
    string(out, r.request_id);
    out.extend_from_slice(b",\"trace_id\":");
    opt_string(out, r.trace_id);
    out.extend_from_slice(b",\"span_id\":");
    opt_string(out, r.span_id);
    out.extend_from_slice(b",\"parent_span_id\":");
    opt_string(out, r.parent_span_id);
    out.extend_from_slice(b",\"client_ip\":");
    string(out, r.client_ip.as_bytes());
    out.extend_from_slice(b",\"method\":");
    string(out, r.method);
    out.extend_from_slice(b",\"path\":");
    string(out, r.path);
    out.extend_from_slice(b",\"route\":");
    opt_string(out, r.route.as_bytes());
    out.extend_from_slice(b",\"upstream\":");
    match r.upstream {
        Some(addr) => string(out, addr.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status\":");
    int(out, r.status);
    out.extend_from_slice(b",\"bytes_in\":");
    int(out, r.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    int(out, r.bytes_out);
    out.extend_from_slice(b",\"duration_us\":");
    int(out, r.total_us);
    out.extend_from_slice(b",\"upstream_us\":");
    match r.upstream_us {
        Some(us) => int(out, us),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"subject\":");
    opt_string(out, r.subject.unwrap_or("").as_bytes());
    out.extend_from_slice(b",\"ratelimit\":");
    opt_string(out, r.ratelimit.as_bytes());
    out.extend_from_slice(b",\"waf\":");
    opt_string(out, r.waf.as_bytes());
    out.extend_from_slice(b",\"waf_match\":");
    opt_string(out, r.waf_match.as_bytes());
    out.extend_from_slice(b"}\n");
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `null` for an empty value, else a JSON string.
fn opt_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        string(out, s);
    }
}

/// What a byte below 0x80 becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, else the
/// letter after a backslash.
const ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `s` as a quoted JSON string (see the module doc for escaping and invalid UTF-8).
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    // fast path: printable ASCII without `"` or `\` is its own JSON text
    if s.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        escape_valid(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    out.push(b'"');
}

/// Escapes valid UTF-8; runs of bytes that need no escape are copied at once.
fn escape_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let e = match ESCAPE.get(b as usize) {
            Some(&e) if e != 0 => e,
            // 0 or a byte of a multi-byte character: copied.
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        start = i + 1;
        if e == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(e);
        }
    }
    out.extend_from_slice(&s[start..]);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC; the Unix epoch never needs more than four year digits
/// within `u64` nanoseconds, which end in 2554).
pub(crate) fn write_time(out: &mut Vec<u8>, unix_ns: u64) {
    let secs = unix_ns / 1_000_000_000;
    let millis = (unix_ns % 1_000_000_000) / 1_000_000;
    let (y, m, d) = crate::ratelimit::window::civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    digits(out, y as u64, 4);
    out.push(b'-');
    digits(out, u64::from(m), 2);
    out.push(b'-');
    digits(out, u64::from(d), 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod % 3600 / 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, millis, 3);
    out.push(b'Z');
}

/// `n` zero-padded to `width` digits (`n` must fit).
fn digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: &Record<'_>) -> String {
        let mut out = Vec::new();
        write_json_line(&mut out, r);
        String::from_utf8(out).expect("lines are valid UTF-8")
    }

    fn json_string(s: &[u8]) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn sample() -> Record<'static> {
        Record {
            // 2026-11-23T16:07:47.123Z
            unix_ns: 1_795_450_067_123_456_789,
            request_id: b"req-1",
            trace_id: b"4bf92f3577b34da6a3ce929d0e0e4736",
            span_id: b"00f067aa0ba902b7",
            parent_span_id: b"",
            client_ip: "127.0.0.1",
            method: b"GET",
            path: b"/x?y=1",
            route: "users",
            upstream: Some("127.0.0.1:8081"),
            status: 200,
            bytes_in: 0,
            bytes_out: 12,
            total_us: 345,
            upstream_us: Some(300),
            subject: Some("alice"),
            ratelimit: "",
            waf: "",
            waf_match: "",
        }
    }

    #[test]
    fn exact_line() {
        assert_eq!(
            line(&sample()),
            "{\"time\":\"2026-11-23T16:07:47.123Z\",\"request_id\":\"req-1\",\
             \"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\",\
             \"parent_span_id\":null,\"client_ip\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/x?y=1\",\
             \"route\":\"users\",\"upstream\":\"127.0.0.1:8081\",\"status\":200,\"bytes_in\":0,\
             \"bytes_out\":12,\"duration_us\":345,\"upstream_us\":300,\"subject\":\"alice\",\
             \"ratelimit\":null,\"waf\":null,\"waf_match\":null}\n"
        );
    }

    #[test]
    fn parses_back_with_every_field_in_order() {
        let mut r = sample();
        r.path = b"/a\"b\\c\n\x01\x7f\xff\xfe/\xe2\x82\xac/\xe2\x82/caf\xc3\xa9";
        r.request_id = b"id\tx";
        r.client_ip = "::1";
        r.upstream = Some("[::1]:9000");
        r.ratelimit = "limited";
        r.subject = None;
        r.upstream_us = None;
        r.route = "";
        r.status = 429;
        r.bytes_in = u64::MAX;
        let text = line(&r);
        assert!(text.ends_with("}\n") && !text[..text.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = [
            "time",
            "request_id",
            "trace_id",
            "span_id",
            "parent_span_id",
            "client_ip",
            "method",
            "path",
            "route",
            "upstream",
            "status",
            "bytes_in",
            "bytes_out",
            "duration_us",
            "upstream_us",
            "subject",
            "ratelimit",
            "waf",
            "waf_match",
        ];
        // serde_json's map is sorted; the order on the line is checked by `exact_line`.
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(v["time"], "2026-11-23T16:07:47.123Z");
        assert_eq!(v["request_id"], "id\tx");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["parent_span_id"], serde_json::Value::Null);
        assert_eq!(v["client_ip"], "::1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], String::from_utf8_lossy(r.path).as_ref());
        assert_eq!(
            v["path"],
            "/a\"b\\c\n\u{1}\u{7f}\u{fffd}\u{fffd}/€/\u{fffd}/café"
        );
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["upstream"], "[::1]:9000");
        assert_eq!(v["status"], 429);
        assert_eq!(v["bytes_in"], u64::MAX);
        assert_eq!(v["bytes_out"], 12);
        assert_eq!(v["duration_us"], 345);
        assert_eq!(v["upstream_us"], serde_json::Value::Null);
        assert_eq!(v["subject"], serde_json::Value::Null);
        assert_eq!(v["ratelimit"], "limited");
    }

    #[test]
    fn escaping() {
        assert_eq!(json_string(b""), "\"\"");
        assert_eq!(json_string(b"plain /path?q=1"), "\"plain /path?q=1\"");
        assert_eq!(json_string(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            json_string(b"\n\r\t\x08\x0c\x00\x1b\x1f\x20"),
            r#""\n\r\t\b\f\u0000\u001b\u001f ""#
        );
        // DEL and non-ASCII text are valid JSON as they are.
        assert_eq!(json_string("\x7fé€😀".as_bytes()), "\"\x7fé€😀\"");
        // Invalid UTF-8: one U+FFFD per maximal invalid sequence, like `from_utf8_lossy`.
        assert_eq!(json_string(b"a\xffb"), "\"a\u{fffd}b\"");
        assert_eq!(json_string(b"\xe2\x82"), "\"\u{fffd}\"");
        assert_eq!(json_string(b"\xe2\x82\""), "\"\u{fffd}\\\"\"");
        assert_eq!(json_string(b"\xc0\x80"), "\"\u{fffd}\u{fffd}\"");
        // Every byte value round-trips through a JSON parser to the lossy string.
        let all: Vec<u8> = (0..=255u8).collect();
        let parsed: String = serde_json::from_str(&json_string(&all)).unwrap();
        assert_eq!(parsed, String::from_utf8_lossy(&all));
    }

    #[test]
    fn times() {
        let t = |ns: u64| {
            let mut out = Vec::new();
            write_time(&mut out, ns);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(t(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(999_999), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(1_000_000), "1970-01-01T00:00:00.001Z");
        // 2000-02-29 (leap day of a century leap year), last millisecond.
        assert_eq!(t(951_868_799_999_000_000), "2000-02-29T23:59:59.999Z");
        assert_eq!(t(1_795_450_067_123_000_000), "2026-11-23T16:07:47.123Z");
        assert_eq!(t(u64::MAX), "2554-07-21T23:34:33.709Z");
    }
}
