//! Request-path normalisation: the one form of a path that routing decides on and the upstream sees.
//!
//! Owns [`normalize`] and its policy ([`PathPolicy`], [`EscapedSlashes`]). The connection driver calls
//! it on the path of every request (the query string is never touched) *before* route lookup, and
//! forwards the normalised path, so a route's protection cannot be sidestepped by a spelling of the
//! path that the route table does not match but the backend resolves to the same resource.
//!
//! What is normalised, in this order (RFC 3986 §6.2.2 and §5.2.4, nginx and Envoy semantics):
//! 1. **Percent-escapes**: escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded
//!    (`/%61dmin` -> `/admin`), every other escape has its hex digits upper-cased (`%2f` -> `%2F`).
//!    An escape that is not `%` + two hex digits, and `%00`, are errors.
//! 2. **Slash escapes** `%2F` and `%5C`, and a raw `\`: [`EscapedSlashes`] decides: `Reject` (the
//!    default, 400), `Decode` (each becomes a `/`, i.e. a segment separator, as Windows-style backends
//!    would read it) or `Keep` (forwarded as `%2F` / `%5C` / `\`, never a separator for routing).
//! 3. **Repeated slashes** are merged into one when `merge_slashes` is on (the default, like nginx).
//! 4. **Dot segments**: `.` segments are dropped and `..` removes the segment before it
//!    (`/a/./b/../c` -> `/a/c`); a path that would climb above the root (`/../etc`) is an error,
//!    never clamped. A trailing `.`/`..` leaves a trailing slash (`/a/b/..` -> `/a/`).
//!
//! Performance: [`normalize`] first scans for anything to do (`%`, `\`, `//`, a `.` segment); an
//! already normal path returns `Ok(false)` without touching `out`, so the common request neither
//! copies nor allocates. Otherwise the normal form is written into the caller's reusable buffer and
//! dot segments are removed in place.

/// What to do with `%2F`, `%5C` and `\` in a path (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// Forward as sent (upper-cased escapes); they never separate segments for routing.
    Keep,
    /// 400: such a path means different things to different backends.
    #[default]
    Reject,
    /// Each becomes `/`, then normalisation goes on.
    Decode,
}

impl EscapedSlashes {
    pub fn name(self) -> &'static str {
        match self {
            EscapedSlashes::Keep => "keep",
            EscapedSlashes::Reject => "reject",
            EscapedSlashes::Decode => "decode",
        }
    }
}

/// `[server] path_normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    /// Merge runs of `/` into one (nginx `merge_slashes on`).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathError(pub &'static str);

#[inline]
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Is there anything to normalise? Precise for the cases that matter: false only when `path` is
/// already in normal form under `policy`.
fn needs_work(path: &[u8], merge_slashes: bool) -> bool {
    let n = path.len();
    if n == 0 {
        return true;
    }
    let mut i = 0;
    while i < n {
        match path[i] {
            b'%' | b'\\' => return true,
            b'/' => {
                let next = path.get(i + 1).copied();
                if merge_slashes && next == Some(b'/') {
                    return true;
                }
                if next == Some(b'.') {
                    // "/." or "/.." as a whole segment
                    let after = path.get(i + 2).copied();
                    if matches!(after, None | Some(b'/')) {
                        return true;
                    }
                    if after == Some(b'.') && matches!(path.get(i + 3).copied(), None | Some(b'/'))
                    {
                        return true;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Normalises the path `path` (no query string; starts with `/`, or is empty for an absolute-form
/// target without a path, which means `/`). `Ok(false)`: already normal, `out` untouched.
/// `Ok(true)`: the normal form is in `out` (cleared first).
pub fn normalize(path: &[u8], policy: &PathPolicy, out: &mut Vec<u8>) -> Result<bool, PathError> {
    if path == b"*" || !needs_work(path, policy.merge_slashes) {
        return Ok(false);
    }
    out.clear();
    if path.is_empty() {
        out.push(b'/');
        return Ok(true);
    }
    decode_escapes(path, policy.escaped_slashes, out)?;
    remove_dot_segments(out, policy.merge_slashes)?;
    Ok(true)
}

/// Step 1 and 2: escapes and backslashes, from `path` into `out`.
fn decode_escapes(
    path: &[u8],
    slashes: EscapedSlashes,
    out: &mut Vec<u8>,
) -> Result<(), PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    path.get(i + 1).copied().and_then(hex_val),
                    path.get(i + 2).copied().and_then(hex_val),
                ) else {
                    return Err(PathError("invalid percent-escape in path"));
                };
                let v = hi << 4 | lo;
                if v == 0 {
                    return Err(PathError("NUL in path"));
                }
                if unreserved(v) {
                    out.push(v);
                } else if v == b'/' || v == b'\\' {
                    match slashes {
                        EscapedSlashes::Reject => {
                            return Err(PathError("encoded slash in path"));
                        }
                        EscapedSlashes::Decode => out.push(b'/'),
                        EscapedSlashes::Keep => {
                            out.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]])
                        }
                    }
                } else {
                    out.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]]);
                }
                i += 3;
                continue;
            }
            b'\\' => match slashes {
                EscapedSlashes::Reject => return Err(PathError("backslash in path")),
                EscapedSlashes::Decode => out.push(b'/'),
                EscapedSlashes::Keep => out.push(b'\\'),
            },
            0 => return Err(PathError("NUL in path")),
            _ => out.push(b),
        }
        i += 1;
    }
    if out.first() != Some(&b'/') {
        return Err(PathError("path must start with /"));
    }
    Ok(())
}

/// Steps 3 and 4, in place: `p` starts with `/`; every output segment is copied from the same or a
/// later position, so the write index never passes the read index.
fn remove_dot_segments(p: &mut Vec<u8>, merge_slashes: bool) -> Result<(), PathError> {
    let n = p.len();
    let mut w = 0; // output length
    let mut r = 0; // at the '/' opening the next segment
    while r < n {
        let start = r + 1;
        let end = memchr::memchr(b'/', &p[start..]).map_or(n, |i| start + i);
        let last = end == n;
        match &p[start..end] {
            b"." => {}
            b".." => {
                if w == 0 {
                    return Err(PathError("path climbs above the root"));
                }
                w = memchr::memrchr(b'/', &p[..w]).unwrap_or(0);
            }
            b"" if merge_slashes && !last => {}
            _ => {
                p.copy_within(r..end, w);
                w += end - r;
                r = end;
                continue;
            }
        }
        // a dropped segment: a final `.`/`..` leaves the directory form
        if last {
            p[w] = b'/';
            w += 1;
        }
        r = end;
    }
    p.truncate(w);
    if p.is_empty() {
        p.push(b'/');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str, policy: PathPolicy) -> Result<String, &'static str> {
        let mut out = Vec::new();
        match normalize(p.as_bytes(), &policy, &mut out) {
            Ok(false) => Ok(p.to_string()),
            Ok(true) => Ok(String::from_utf8(out).unwrap()),
            Err(e) => Err(e.0),
        }
    }

    fn d(p: &str) -> Result<String, &'static str> {
        norm(p, PathPolicy::default())
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c..d/.e/..f/",
            "/~user/x-y_z",
            "/a?b",
            "*",
        ] {
            let mut out = Vec::new();
            assert_eq!(
                normalize(p.as_bytes(), &PathPolicy::default(), &mut out),
                Ok(false),
                "{p}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn concrete_cases() {
        let cases = [
            ("", "/"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/%61dmin", "/admin"),
            ("/%41%42%7e%2d%2E%5f", "/AB~-._"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/.%2E/b", "/b"),
            ("/x%2fy%2Fz", "encoded slash in path"),
            ("/a%20b%3a", "/a%20b%3A"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/a/b/./../../c/", "/c/"),
            ("/a%", "invalid percent-escape in path"),
            ("/a%4", "invalid percent-escape in path"),
            ("/a%zz", "invalid percent-escape in path"),
            ("/a%00b", "NUL in path"),
            ("/..", "path climbs above the root"),
            ("/a/../../b", "path climbs above the root"),
            ("/%2e%2e/etc/passwd", "path climbs above the root"),
            ("/a\\b", "backslash in path"),
            ("/a%5cb", "encoded slash in path"),
        ];
        for (input, want) in cases {
            let got = d(input).unwrap_or_else(|e| e.to_string());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn slash_policies() {
        let keep = PathPolicy {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Keep,
        };
        let decode = PathPolicy {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Decode,
        };
        assert_eq!(norm("/a%2fb/../c", keep).unwrap(), "/c");
        assert_eq!(norm("/a%2f..%2fb", keep).unwrap(), "/a%2F..%2Fb");
        assert_eq!(norm("/a\\b", keep).unwrap(), "/a\\b");
        assert_eq!(norm("/a%2fb/../c", decode).unwrap(), "/a/c");
        assert_eq!(norm("/a%5C..%5cb", decode).unwrap(), "/b");
        assert_eq!(norm("/a\\\\b", decode).unwrap(), "/a/b");
        assert_eq!(norm("/..%2fx", decode), Err("path climbs above the root"));
    }

    #[test]
    fn merge_off_keeps_empty_segments() {
        let p = PathPolicy {
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::Reject,
        };
        assert_eq!(norm("/a//b", p).unwrap(), "/a//b");
        assert_eq!(norm("/a//b/../c", p).unwrap(), "/a//c");
        assert_eq!(norm("//", p).unwrap(), "//");
    }

    /// Normalisation is idempotent: the normal form of a normal form is itself (and is recognised
    /// as normal by the fast scan, so it costs nothing when the upstream is another coregate).
    #[test]
    fn idempotent() {
        for p in [
            "/a//b/./c/../%64%2a",
            "/x/%7E/..//y/",
            "//..//a/..",
            "/%2E%2e%2f",
        ] {
            for policy in [
                PathPolicy::default(),
                PathPolicy {
                    merge_slashes: true,
                    escaped_slashes: EscapedSlashes::Decode,
                },
                PathPolicy {
                    merge_slashes: false,
                    escaped_slashes: EscapedSlashes::Keep,
                },
            ] {
                if let Ok(once) = norm(p, policy) {
                    let mut out = Vec::new();
                    let again = normalize(once.as_bytes(), &policy, &mut out).unwrap();
                    let twice = if again {
                        String::from_utf8(out).unwrap()
                    } else {
                        once.clone()
                    };
                    assert_eq!(once, twice, "{p} {policy:?}");
                }
            }
        }
    }
}
