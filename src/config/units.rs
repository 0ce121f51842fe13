//! The syntax of single values: durations, byte sizes, and the string forms validation checks
//! (addresses, hosts, paths, path templates, names, HTTP tokens, `hash_key`).
//!
//! `validate.rs` hands each value here (every `*_timeout` to [`parse_duration`], every size to
//! [`parse_size`], ...) and gets the typed value or a short, lower-case message saying what was
//! expected. The caller prefixes the key path, so messages here never name the key. Only the two
//! unit parsers are public; the rest is crate-internal.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::model::{HashKey, HostMatch, TemplateSegment};

const ADDR_FORMS: &str = "expected ip:port, [v6]:port or host:port";
const DURATION_UNITS: &str = "ms, s, m or h";
const SIZE_UNITS: &str = "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB";

/// Parses `"250ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1h"`: a non-negative decimal number (optional fraction)
/// immediately followed by one of the units `ms`, `s`, `m`, `h`. A bare number is an error.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let expected = format!("expected a number with unit {DURATION_UNITS}, like \"10s\"");
    if text.is_empty() {
        return Err(format!("empty duration ({expected})"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ns: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => {
            return Err(format!(
                "invalid duration \"{s}\": missing unit ({expected})"
            ))
        }
        other => {
            return Err(format!(
                "invalid duration \"{s}\": unknown unit \"{other}\" ({expected})"
            ))
        }
    };
    // `1`, `1.5`; not `.5`, `1.` or `1.2.3`.
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int_part) || !digits(frac_part) {
        return Err(format!("invalid duration \"{s}\" ({expected})"));
    }
    let out_of_range = || format!("duration \"{s}\" is too large");
    let int: u128 = int_part.parse().map_err(|_| out_of_range())?;
    let mut nanos = int.checked_mul(unit_ns).ok_or_else(out_of_range)?;
    // Sub-nanosecond digits are dropped; 18 digits keep the arithmetic far from overflow.
    let frac_digits = &frac_part[..frac_part.len().min(18)];
    let frac: u128 = frac_digits.parse().map_err(|_| out_of_range())?;
    nanos += frac * unit_ns / 10u128.pow(frac_digits.len() as u32);
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| out_of_range())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Parses a byte size: a plain integer (`"512"`) or an integer followed by a unit: decimal `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or binary `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let expected = format!("expected an integer with optional unit {SIZE_UNITS}, like \"10MiB\"");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("invalid size \"{s}\" ({expected})"));
    }
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other if other.starts_with('.') => {
            return Err(format!("invalid size \"{s}\": not an integer ({expected})"))
        }
        other => {
            return Err(format!(
                "invalid size \"{s}\": unknown unit \"{other}\" ({expected})"
            ))
        }
    };
    let too_large = || format!("size \"{s}\" is too large");
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier).ok_or_else(too_large)
}

/// Upstream and route names: non-empty, `[A-Za-z0-9_.-]`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name \"{name}\" (expected letters, digits, _, . or -)"
        ))
    }
}

/// An HTTP token (RFC 9110 `tchar`s): method and header names.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A request path, prefix or template: starts with `/`, visible ASCII, no query or fragment.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("\"{path}\" must start with \"/\""));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        return Err(format!(
            "invalid path \"{path}\" (expected visible ASCII without spaces, ? or #)"
        ));
    }
    Ok(())
}

/// `/api/users/{id}/files/{*rest}` -> segments.
pub(crate) fn parse_template(template: &str) -> Result<Vec<TemplateSegment>, String> {
    let body = &template[1..];
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = body.split('/').collect();
    let mut segments = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(format!(
                "empty segment in \"{template}\" (no \"//\" or trailing \"/\")"
            ));
        }
        let Some(inner) = part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            if part.contains(['{', '}']) {
                return Err(format!(
                    "segment \"{part}\" mixes text and a parameter \
                     (expected literal text or a whole {{name}})"
                ));
            }
            segments.push(TemplateSegment::Literal((*part).to_owned()));
            continue;
        };
        let (name, catch_all) = match inner.strip_prefix('*') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let expected = "{name} or {*name}, name of letters, digits, _";
            return Err(format!(
                "invalid parameter \"{part}\" (expected {expected})"
            ));
        }
        if names.contains(&name) {
            return Err(format!("duplicate parameter name \"{name}\""));
        }
        names.push(name);
        if catch_all && i + 1 != parts.len() {
            return Err(format!("catch-all \"{part}\" must be the last segment"));
        }
        segments.push(if catch_all {
            TemplateSegment::CatchAll(name.to_owned())
        } else {
            TemplateSegment::Param(name.to_owned())
        });
    }
    Ok(segments)
}

/// `api.example.com` -> exact, `*.example.com` -> suffix `.example.com`; lower-cased, no port.
pub(crate) fn parse_host(host: &str) -> Result<HostMatch, String> {
    let h = host.to_ascii_lowercase();
    if h == "*" {
        return Err("\"*\" alone is not allowed (omit host to match any host)".to_owned());
    }
    if let Some(v6) = h.strip_prefix('[') {
        return match v6.strip_suffix(']').map(str::parse::<std::net::Ipv6Addr>) {
            Some(Ok(_)) => Ok(HostMatch::Exact(h)),
            _ if v6.contains("]:") => Err(format!("host \"{host}\" must not include a port")),
            _ => Err(format!(
                "invalid host \"{host}\" (expected a name like api.example.com)"
            )),
        };
    }
    if h.contains(':') {
        return Err(format!("host \"{host}\" must not include a port"));
    }
    let (name, wildcard) = match h.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (h.as_str(), false),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        let hint = if name.contains('*') {
            "\"*\" only as a leading \"*.\", like *.example.com"
        } else {
            "a name like api.example.com"
        };
        return Err(format!("invalid host \"{host}\" (expected {hint})"));
    }
    Ok(if wildcard {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(h)
    })
}

/// `ip:port`, `[v6]:port`, or `host:port` resolved now (first address).
pub(crate) fn resolve_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let invalid = || format!("invalid address \"{s}\" ({ADDR_FORMS})");
    let (host, port) = s.rsplit_once(':').ok_or_else(invalid)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !host_ok {
        return Err(invalid());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port in \"{s}\" (expected 0 to 65535)"))?;
    // config loading runs on the main or control thread, never on a worker
    #[allow(clippy::disallowed_methods)]
    let addrs = (host, port).to_socket_addrs();
    match addrs {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("cannot resolve \"{s}\": no addresses found")),
        Err(e) => Err(format!("cannot resolve \"{s}\": {e}")),
    }
}

/// `hash_key`: `"client_ip"` or `"header:<name>"` (name lower-cased).
pub(crate) fn parse_hash_key(key: &str) -> Result<HashKey, String> {
    match key {
        "client_ip" => return Ok(HashKey::ClientIp),
        "identity" => return Ok(HashKey::Identity),
        _ => {}
    }
    match key.strip_prefix("header:") {
        Some(name) if is_token(name) => Ok(HashKey::Header(name.to_ascii_lowercase())),
        Some(name) => Err(format!(
            "invalid header name \"{name}\" (expected an HTTP token like x-user-id)"
        )),
        None => Err(format!(
            "invalid hash_key \"{key}\" (expected \"header:<name>\", \"client_ip\" or \"identity\")"
        )),
    }
}

/// A header condition's value: visible ASCII and spaces.
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    if value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("invalid header value (expected visible ASCII characters and spaces)".to_owned())
    }
}

/// `host_rewrite`: a host name, optionally with `:port`.
pub(crate) fn check_host_rewrite(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid host \"{host}\" (expected a host name, optionally with :port)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::tests::{check_cases, R};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.0000000001s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
    }

    #[test]
    fn bad_durations() {
        let missing = parse_duration("10").unwrap_err();
        assert!(missing.contains("missing unit") && missing.contains("ms, s, m or h"));
        assert!(parse_duration("10x")
            .unwrap_err()
            .contains("unknown unit \"x\""));
        assert!(parse_duration("10us")
            .unwrap_err()
            .contains("unknown unit \"us\""));
        for bad in [
            "", "s", "-1s", "1.s", ".5s", "1..5s", "1.2.3s", "1 s", "1e3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("99999999999999999999999h")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("18446744073709551615h")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("10KiB"), Ok(10 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes() {
        assert!(parse_size("10kb")
            .unwrap_err()
            .contains("unknown unit \"kb\""));
        for bad in ["", "KiB", "-1", "1.5MiB", "10 MiB", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("16777216TiB").unwrap_err().contains("too large"));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn hosts() {
        let exact = |h: &str| Ok(HostMatch::Exact(h.into()));
        assert_eq!(parse_host("API.example.com"), exact("api.example.com"));
        assert_eq!(
            parse_host("*.Example.com"),
            Ok(HostMatch::Suffix(".example.com".into()))
        );
        assert_eq!(parse_host("[::1]"), exact("[::1]"));
        assert_eq!(parse_host("10.0.0.1"), exact("10.0.0.1"));
        assert!(parse_host("[::1]:80")
            .unwrap_err()
            .contains("must not include a port"));
        for bad in [
            "", "*", "*.", "a.*.com", "*a.com", "a..com", "a com", "a.com.", "[zz]", "a/b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn templates() {
        use TemplateSegment::*;
        let t = parse_template("/a/{id}/b/{*rest_1}").unwrap();
        let expected = [
            Literal("a".into()),
            Param("id".into()),
            Literal("b".into()),
            CatchAll("rest_1".into()),
        ];
        assert_eq!(t, expected);
        assert_eq!(parse_template("/"), Ok(vec![]));
        for bad in [
            "/a/{*r}/b",
            "/{id}/{id}",
            "/{id}/{*id}",
            "/a/x{id}",
            "/a//b",
            "/a/",
            "/{}",
            "/{a-b}",
            "/{*}",
            "/{{a}}",
        ] {
            assert!(parse_template(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn addresses_and_tokens() {
        assert_eq!(resolve_addr("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(
            resolve_addr("127.0.0.1:0"),
            Ok("127.0.0.1:0".parse().unwrap())
        );
        assert!(resolve_addr("localhost:80").unwrap().ip().is_loopback());
        assert!(resolve_addr("127.0.0.1")
            .unwrap_err()
            .contains("expected ip:port, [v6]:port or host:port"));
        assert!(resolve_addr("::1:80").is_err());
        assert!(resolve_addr("host:99999")
            .unwrap_err()
            .contains("invalid port"));
        let unresolvable = resolve_addr("no-such-host.invalid:80").unwrap_err();
        assert!(
            unresolvable.starts_with("cannot resolve \"no-such-host.invalid:80\""),
            "{unresolvable}"
        );
        assert!(is_token("x-user_id.v2") && is_token("GET") && !is_token("") && !is_token("a:b"));
        assert!(
            check_name("users.v2-b_c").is_ok()
                && check_name("a b").is_err()
                && check_name("").is_err()
        );
        assert!(
            check_path("/a/b%20c").is_ok()
                && check_path("a").is_err()
                && check_path("/a?b").is_err()
        );
    }

    /// `[[upstream]] protocol`: "http1", "http2" or "auto".
    #[test]
    fn upstream_protocol_values() {
        let up = |p: &str| {
            format!(
                "[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\nprotocol = \"{p}\"\n"
            )
        };
        check_cases(&[
            (&up("http1"), &[]),
            (&up("http2"), &[]),
            (&up("auto"), &[]),
            (&up("h3"), &["upstream[1].protocol: unknown protocol \"h3\" (expected \"http1\", \"http2\" or \"auto\")"]),
        ]);
    }

    /// The rules above, checked end to end through validation.
    #[test]
    fn route_value_rules() {
        check_cases(&[
            (&format!("{R}path = \"/a\"\npath_prefix = \"/b\""), &["route[0].path_prefix: only one of path, path_prefix and path_template is allowed"]),
            (&format!("{R}path = \"a\""), &["route[0].path: \"a\" must start with \"/\""]),
            (&format!("{R}path_template = \"/a/{{*r}}/b\""), &["route[0].path_template: catch-all \"{*r}\" must be the last segment"]),
            (&format!("{R}host = \"*\""), &["route[0].host: \"*\" alone is not allowed (omit host to match any host)"]),
            (&format!("{R}host = \"a.com:80\""), &["route[0].host: host \"a.com:80\" must not include a port"]),
            (
                &format!("{R}methods = [\"GET\", \"get\", \"G T\"]"),
                &["route[0].methods[1]: duplicate method \"GET\"", "route[0].methods[2]: invalid method \"G T\" (expected a token like GET)"],
            ),
            (&format!("{R}methods = []"), &["route[0].methods: empty list (omit methods to allow any method)"]),
            (
                &format!("{R}headers = {{ \"x y\" = \"1\", ok = \"\\u0001\" }}"),
                &[
                    "route[0].headers.\"x y\": invalid header name \"x y\" (expected a token like x-canary)",
                    "route[0].headers.ok: invalid header value (expected visible ASCII characters and spaces)",
                ],
            ),
            (&format!("{R}headers = {{ A = \"1\", a = \"2\" }}"), &["route[0].headers.a: duplicate header \"a\""]),
            (
                &format!("{R}strip_prefix = \"/a\"\nrewrite_prefix = {{ from = \"/a\", to = \"/b\" }}"),
                &["route[0].rewrite_prefix: not allowed together with strip_prefix"],
            ),
            (
                &format!("{R}rewrite_prefix = {{ from = \"a\" }}"),
                // A missing key points at its table: here the inline table's "{", before "from".
                &["route[0].rewrite_prefix.to: missing (expected \"\" or a path starting with \"/\")", "route[0].rewrite_prefix.from: \"a\" must start with \"/\""],
            ),
            (&format!("{R}rewrite_prefix = {{ from = \"/a\", to = \"b\" }}"), &["route[0].rewrite_prefix.to: \"b\" must start with \"/\""]),
            (&format!("{R}strip_prefix = \"api\""), &["route[0].strip_prefix: \"api\" must start with \"/\""]),
            (&format!("{R}host_rewrite = \"a b\""), &["route[0].host_rewrite: invalid host \"a b\" (expected a host name, optionally with :port)"]),
            ("[[route]]\nupstream = \"x\"\nmax_body = -1", &["route[0].upstream: no upstream named \"x\"", "route[0].max_body: must not be negative"]),
            ("[[route]]\npath = \"/\"", &["route[0].upstream: missing (expected the name of an [[upstream]])"]),
        ]);
    }
}
