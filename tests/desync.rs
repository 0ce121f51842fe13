//! Replays every case of the http-desync-guardian vectors (`tests/vectors/http-desync/*.yaml`,
//! vendored with their Apache-2.0 LICENSE and NOTICE) against the gateway with a recording
//! upstream and checks each tier's rule: Severe -> 400, connection closed, nothing reached the
//! upstream; Ambiguous -> the same rejection, or forwarded as one message with unambiguous
//! framing; Compliant/Acceptable -> forwarded (2xx from the mock), unless the gateway's documented
//! strict rules (header name not a token, CTL in a value, Transfer-Encoding other than exactly
//! `chunked`, CL+TE, bad or repeated Content-Length) demand a 400 (501 for a valid coding list
//! ending in `chunked`, as nginx answers), or the request line itself is outside HTTP/1.x grammar
//! (version, raw non-ASCII/space/unsafe bytes in the target), where either is fine (505 for the
//! version).
//!
//! How a case becomes bytes: the request line is `METHOD SP URI SP VERSION` (no `SP VERSION`
//! when the version is empty); YAML strings are decoded with each char below U+0100 as one byte
//! (so "\x85" is byte 0x85, as the vectors intend) and others as UTF-8; `Host: desync.test` is
//! added first when the case has no `Host` (the vectors leave it out; without it every
//! HTTP/1.1 case would be a 400); a body follows that matches the case's exact-name framing
//! headers (a small chunked body when `Transfer-Encoding` is present, N bytes for one numeric
//! `Content-Length`); then a pipelined `GET /sentinel` on the same connection, so a gateway that
//! read the body differently from the upstream shows up as a mangled or missing sentinel.

mod common;
use common::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Case {
    name: String,
    uri: String,
    method: String,
    version: String,
    headers: Option<Vec<HeaderSpec>>,
    expected: Expected,
}

#[derive(Deserialize)]
struct HeaderSpec {
    name: String,
    value: serde_yaml::Value,
}

#[derive(Deserialize)]
struct Expected {
    tier: String,
}

/// YAML string -> wire bytes (chars below U+0100 as single bytes).
fn bytes_of(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for ch in s.chars() {
        if (ch as u32) < 0x100 {
            out.push(ch as u32 as u8);
        } else {
            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    out
}

struct Vector {
    file: String,
    name: String,
    tier: String,
    method: Vec<u8>,
    uri: Vec<u8>,
    version: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

fn load_cases() -> Vec<Vector> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/http-desync");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let cases: Vec<Case> =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", f.display()));
        for c in cases {
            let headers = c
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|h| {
                    let v = match h.value {
                        serde_yaml::Value::String(s) => s,
                        serde_yaml::Value::Number(n) => n.to_string(),
                        serde_yaml::Value::Null => String::new(),
                        other => panic!("{}: header value {other:?}", c.name),
                    };
                    (bytes_of(&h.name), bytes_of(&v))
                })
                .collect();
            out.push(Vector {
                file: f.file_name().unwrap().to_string_lossy().into_owned(),
                name: c.name,
                tier: c.expected.tier,
                method: bytes_of(&c.method),
                uri: bytes_of(&c.uri),
                version: bytes_of(&c.version),
                headers,
            });
        }
    }
    out
}

fn named<'a>(c: &'a Vector, name: &str) -> Vec<&'a [u8]> {
    c.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
        .collect()
}

fn trimmed(v: &[u8]) -> String {
    String::from_utf8_lossy(trim_ows(v)).into_owned()
}

const SENTINEL: &[u8] = b"GET /sentinel HTTP/1.1\r\nHost: desync.test\r\n\r\n";

fn request_bytes(c: &Vector) -> Vec<u8> {
    let mut out = c.method.clone();
    out.push(b' ');
    out.extend_from_slice(&c.uri);
    if !c.version.is_empty() {
        out.push(b' ');
        out.extend_from_slice(&c.version);
    }
    out.extend_from_slice(b"\r\n");
    if named(c, "host").is_empty() {
        out.extend_from_slice(b"Host: desync.test\r\n");
    }
    for (n, v) in &c.headers {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let (te, cl) = (named(c, "transfer-encoding"), named(c, "content-length"));
    if !te.is_empty() {
        out.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    } else if let [one] = cl.as_slice() {
        if let Ok(n) = trimmed(one).parse::<usize>() {
            out.extend(vec![b'x'; n.min(16 << 20)]);
        }
    }
    out.extend_from_slice(SENTINEL);
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Transfer codings of a list of Transfer-Encoding values, trimmed and lower-cased.
fn codings<S: AsRef<[u8]>>(values: &[S]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_ref())
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A coding list a recipient frames unambiguously: `chunked` last and only once.
fn ends_in_single_chunked(codings: &[String]) -> bool {
    codings.last().is_some_and(|c| c == "chunked")
        && codings.iter().filter(|c| *c == "chunked").count() == 1
}

/// A strict rule of the gateway contract that makes this request a 400. With `allow_codings`,
/// a Transfer-Encoding list that ends in a single `chunked` (e.g. "gzip, chunked") is let
/// through.
fn contract_rejects(c: &Vector, allow_codings: bool) -> Option<&'static str> {
    if c.headers
        .iter()
        .any(|(n, _)| n.is_empty() || !n.iter().all(|&b| is_tchar(b)))
    {
        return Some("header name not a token");
    }
    if c.headers
        .iter()
        .any(|(_, v)| v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f))
    {
        return Some("CTL in a header value");
    }
    let (te, cl) = (named(c, "transfer-encoding"), named(c, "content-length"));
    if !te.is_empty() && !cl.is_empty() {
        return Some("Content-Length with Transfer-Encoding");
    }
    let exactly_chunked = te.len() == 1 && codings(&te) == ["chunked"];
    let codings_ok = allow_codings && ends_in_single_chunked(&codings(&te));
    if !(te.is_empty() || exactly_chunked || codings_ok) {
        return Some("Transfer-Encoding other than exactly chunked");
    }
    if cl.len() > 1
        || cl
            .iter()
            .any(|v| trimmed(v).is_empty() || !trimmed(v).bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("several or invalid Content-Length");
    }
    None
}

/// A request line outside plain HTTP/1.x grammar, where rejecting is as good as forwarding.
fn request_line_oddity(c: &Vector) -> Option<&'static str> {
    if c.version != b"HTTP/1.1" && c.version != b"HTTP/1.0" {
        return Some("version is not HTTP/1.0 or HTTP/1.1");
    }
    if !c.method.iter().all(|&b| is_tchar(b)) {
        return Some("method is not a token");
    }
    if c.uri.is_empty()
        || c.uri
            .iter()
            .any(|&b| !(0x21..0x7f).contains(&b) || b"\"<>\\^`{|}".contains(&b))
    {
        return Some("request-target empty or with raw bytes URIs do not allow");
    }
    None
}

#[derive(Clone, Copy, PartialEq)]
enum Rule {
    /// 400, closed, nothing upstream.
    Reject,
    Forward,
    /// Either; a status besides 400 that also counts as a rejection (505 for a request line
    /// outside HTTP/1.x, 501 for a transfer coding the gateway does not implement).
    Either(Option<u16>),
}

/// The rule for a case and its label. The vectors call "gzip, chunked" and repeated TE headers
/// Compliant, while the gateway answers a valid coding before `chunked` with 501 (nginx does the
/// same; README): where only that applies, a 501 rejection passes as well as forwarding.
fn rule_for(c: &Vector) -> (Rule, String) {
    let only_codings = contract_rejects(c, false).is_some() && contract_rejects(c, true).is_none();
    let also = if request_line_oddity(c).is_some() {
        Some(505)
    } else if only_codings {
        Some(501)
    } else {
        None
    };
    match c.tier.as_str() {
        "Severe" => (Rule::Reject, "Severe".into()),
        "Ambiguous" => (Rule::Either(also), "Ambiguous".into()),
        _ => match (
            contract_rejects(c, false),
            contract_rejects(c, true),
            request_line_oddity(c),
        ) {
            (Some(why), None, _) => (
                Rule::Either(Some(501)),
                format!("{} + contract vs vectors: {why}", c.tier),
            ),
            (Some(why), Some(_), _) => (Rule::Reject, format!("{} + contract: {why}", c.tier)),
            (None, _, Some(why)) => (Rule::Either(Some(505)), format!("{} + {why}", c.tier)),
            (None, _, None) => (Rule::Forward, c.tier.clone()),
        },
    }
}

/// What happened to one case.
struct Seen {
    /// "forwarded", "rejected 400", "gateway NNN", "no response".
    outcome: String,
    problems: Vec<String>,
}

fn run_case(gw: &Gateway, rec: &Upstream, c: &Vector, rule: Rule) -> Seen {
    rec.clear();
    let bytes = request_bytes(c);
    let mut client = Client::connect(gw.addr);
    let mut w = client.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = w.write_all(&bytes);
    });
    let method = if c.method == b"HEAD" { "HEAD" } else { "GET" };
    let first = client.try_read_response(method, None);
    let mut problems = Vec::new();
    let (outcome, forwarded, status) = match &first {
        Ok(r) if r.has("x-upstream") => ("forwarded".to_string(), true, r.status),
        Ok(r) if r.status == 400 => ("rejected 400".to_string(), false, 400),
        Ok(r) => (format!("gateway {}", r.status), false, r.status),
        Err(e) => {
            problems.push(format!("no response: {e}"));
            ("no response".to_string(), false, 0)
        }
    };
    // The second response (to the sentinel), or the connection closing.
    let second = if forwarded {
        Some(client.try_read_response("GET", None))
    } else {
        if status != 0
            && client.closed_within(secs(5)) != CloseOutcome::Closed
            && rule == Rule::Reject
        {
            problems.push("connection not closed after the rejection".into());
        }
        None
    };
    let _ = writer.join();
    // Sync: a fresh request through the same (single) worker lands after anything the case caused.
    let sync = get(gw.addr, "/sync", "desync.test");
    if sync.status != 200 {
        problems.push(format!("sync request got {}", sync.status));
    }
    let recs: Vec<Recorded> = rec
        .requests()
        .into_iter()
        .filter(|r| r.target != "/sync")
        .collect();

    let rejected_ok =
        !forwarded && (status == 400 || matches!(rule, Rule::Either(Some(also)) if also == status));
    match rule {
        Rule::Reject if !rejected_ok => problems.push(format!("want 400, got {outcome}")),
        Rule::Forward if !forwarded => problems.push(format!("want forwarded, got {outcome}")),
        Rule::Either(also) if !forwarded && !rejected_ok => {
            let also = also.map_or(String::new(), |s| format!(" (or {s})"));
            problems.push(format!("want 400{also} or forwarded, got {outcome}"))
        }
        _ => {}
    }
    if !forwarded {
        if !recs.is_empty() {
            let what: Vec<&str> = recs.iter().map(|r| r.target.as_str()).collect();
            problems.push(format!("rejected, yet the upstream received {what:?}"));
        }
        return Seen { outcome, problems };
    }
    if !(200..300).contains(&status) {
        problems.push(format!("forwarded but answered {status}"));
    }
    match recs.first() {
        None => problems.push("forwarded, yet the upstream recorded nothing".into()),
        Some(r) => {
            let (cl, te) = (
                r.header_all("content-length"),
                r.header_all("transfer-encoding"),
            );
            // Ambiguous cases must arrive as plain `chunked`; Compliant/Acceptable ones may keep
            // a coding list ending in a single `chunked` (see `rule_for`).
            let te_ok = te.is_empty()
                || (te.len() == 1
                    && (te[0] == "chunked"
                        || (c.tier != "Ambiguous" && ends_in_single_chunked(&codings(&te)))));
            if cl.len() > 1 || !te_ok || (!cl.is_empty() && !te.is_empty()) {
                problems.push(format!(
                    "ambiguous framing upstream: Content-Length {cl:?} Transfer-Encoding {te:?}"
                ));
            }
            if let Some(e) = &r.framing_error {
                problems.push(format!("upstream could not frame it: {e}"));
            }
            if !r.malformed_lines.is_empty() {
                problems.push(format!(
                    "malformed header lines upstream: {:?}",
                    r.malformed_lines
                ));
            }
        }
    }
    match second {
        Some(Ok(s)) if s.status == 200 && s.has("x-upstream") => {
            if recs.len() != 2 || recs[1].target != "/sentinel" {
                let what: Vec<&str> = recs.iter().map(|r| r.target.as_str()).collect();
                problems.push(format!(
                    "want the case then /sentinel upstream, saw {what:?}"
                ));
            }
        }
        Some(Ok(s)) => problems.push(format!(
            "sentinel answered {} {:?}: the body was read differently",
            s.status,
            s.body_str()
        )),
        // Closing after an ambiguous message instead of reusing the connection is allowed.
        Some(Err(_)) | None => {
            if recs.len() != 1 {
                problems.push(format!(
                    "connection closed but the upstream saw {} requests",
                    recs.len()
                ));
            }
        }
    }
    Seen { outcome, problems }
}

#[test]
fn replay_http_desync_vectors() {
    let cases = load_cases();
    assert!(
        cases.len() >= 150,
        "expected ~159 vectors, found {}",
        cases.len()
    );
    let rec = Upstream::recording("rec");
    let cfg = config(
        "header_timeout = \"2s\"\nclient_body_timeout = \"2s\"",
        &(upstream_toml("rec", &[rec.addr], "retries = 0")
            + &route_toml("all", "rec", "path_prefix = \"/\"\nmax_body = \"32MiB\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, &["--workers", "1"]);
        // DESYNC_VERBOSE=1 prints every case's outcome.
        let verbose = std::env::var_os("DESYNC_VERBOSE").is_some();
        let mut table: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut failures = Vec::new();
        for c in &cases {
            let (rule, label) = rule_for(c);
            let seen = run_case(&gw, &rec, c, rule);
            *table
                .entry((c.tier.clone(), seen.outcome.clone()))
                .or_default() += 1;
            if verbose {
                eprintln!(
                    "[{driver}] {:<13} {:<45} {:<13} {:?}",
                    seen.outcome, label, c.file, c.name
                );
            }
            if !seen.problems.is_empty() {
                failures.push(format!(
                    "{} / {:?} [{label}]: {}",
                    c.file,
                    c.name,
                    seen.problems.join("; ")
                ));
            }
        }
        let mut summary = format!(
            "[{driver}] desync summary ({} cases)\n{:<12} {:<16} {:>5}\n",
            cases.len(),
            "tier",
            "outcome",
            "count"
        );
        for ((tier, outcome), n) in &table {
            summary += &format!("{tier:<12} {outcome:<16} {n:>5}\n");
        }
        eprintln!("{summary}");
        assert!(
            failures.is_empty(),
            "{summary}\n[{driver}] {} cases broke their tier's rule:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}
