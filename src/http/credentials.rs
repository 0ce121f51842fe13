//! Removing a credential the upstream must not see from the places besides its own header: one
//! cookie of the Cookie header(s) and one query parameter of the request target.
//!
//! Owns: [`Hidden`] (which cookie and which query parameter to drop, borrowed from the route's auth
//! policy), [`strip_query_param`] (edits the upstream target in place) and [`push_cookie_header`]
//! (writes a Cookie field without the credential cookie, or nothing when no cookie remains).
//!
//! Flow: the connection driver builds the upstream target (`router::rewrite_target`), then asks
//! [`Hidden::strip_target`] to drop the parameter; `rewrite::write_upstream_request` hands each
//! Cookie field to [`push_cookie_header`]. Names match exactly as `auth::token` reads them (cookie
//! and parameter names are case-sensitive, the query is compared still percent-encoded), so what the
//! gateway accepts as a credential is exactly what it removes, every occurrence of it.
//!
//! Performance: no allocation. The target is compacted in place; the Cookie field is written
//! straight into the output buffer (rolled back when it ends up empty). Routes whose policy forwards
//! the credential (or have no policy) carry an empty [`Hidden`] and do no work at all.

/// A cookie and a query parameter that carry a credential to remove (`None`: nothing there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hidden<'a> {
    pub cookie: Option<&'a [u8]>,
    pub query: Option<&'a [u8]>,
}

impl Hidden<'_> {
    /// Drops the credential's query parameter from the upstream target.
    pub fn strip_target(&self, target: &mut Vec<u8>) {
        if let Some(name) = self.query {
            strip_query_param(target, name);
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Is `pair` (`name=value`, untrimmed) the cookie `name`?
fn is_cookie(pair: &[u8], name: &[u8]) -> bool {
    let pair = trim(pair);
    match pair.iter().position(|&b| b == b'=') {
        Some(eq) => trim(&pair[..eq]) == name,
        None => false,
    }
}

/// Appends the Cookie field `field_name: value` without cookie `name` (every occurrence). The other
/// cookies keep their bytes (each trimmed) and their order, joined by `"; "`; a field left with no
/// cookie is not written at all. A field that does not hold `name` is copied unchanged.
pub fn push_cookie_header(out: &mut Vec<u8>, field_name: &[u8], value: &[u8], name: &[u8]) {
    let pairs = value.split(|&b| b == b';');
    if !pairs.clone().any(|p| is_cookie(p, name)) {
        push(out, field_name, value);
        return;
    }
    let mark = out.len();
    out.extend_from_slice(field_name);
    out.extend_from_slice(b": ");
    let start = out.len();
    for pair in pairs {
        let kept = trim(pair);
        if kept.is_empty() || is_cookie(pair, name) {
            continue;
        }
        if out.len() > start {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(kept);
    }
    if out.len() == start {
        out.truncate(mark);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

fn push(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Removes every `name` / `name=...` parameter from the query of `target`, in place. The other
/// parameters keep their bytes and order (empty ones included); a query left empty loses its `?`.
/// Returns whether anything was removed.
pub fn strip_query_param(target: &mut Vec<u8>, name: &[u8]) -> bool {
    let Some(q) = target.iter().position(|&b| b == b'?') else {
        return false;
    };
    let len = target.len();
    let (mut read, mut write) = (q + 1, q + 1);
    let mut removed = false;
    let mut first = true;
    loop {
        let end = target[read..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(len, |i| read + i);
        let pair = &target[read..end];
        let key = &pair[..pair.iter().position(|&b| b == b'=').unwrap_or(pair.len())];
        if key == name {
            removed = true;
        } else {
            if !first {
                target[write] = b'&';
                write += 1;
            }
            target.copy_within(read..end, write);
            write += end - read;
            first = false;
        }
        if end == len {
            break;
        }
        read = end + 1;
    }
    if removed {
        // nothing left but separators of removed parameters: drop the query altogether
        let rest = &target[q + 1..write];
        target.truncate(if rest.is_empty() { q } else { write });
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(target: &str, name: &str) -> (String, bool) {
        let mut t = target.as_bytes().to_vec();
        let removed = strip_query_param(&mut t, name.as_bytes());
        (String::from_utf8(t).unwrap(), removed)
    }

    #[test]
    fn query_parameter_removed_rest_kept_byte_for_byte() {
        let q = |t: &str| query(t, "access_token").0;
        assert_eq!(q("/x?access_token=abc"), "/x");
        assert_eq!(q("/x?a=1&access_token=abc&b=%20+2"), "/x?a=1&b=%20+2");
        assert_eq!(q("/x?access_token=abc&b=2"), "/x?b=2");
        assert_eq!(q("/x?b=2&access_token=abc"), "/x?b=2");
        // every occurrence, with or without a value
        assert_eq!(
            q("/x?access_token=1&a=&access_token&c=3&access_token=2"),
            "/x?a=&c=3"
        );
        assert_eq!(q("/x?access_token=1&access_token=2"), "/x");
        // empty parameters and odd bytes of the others stay as they were
        assert_eq!(q("/x?a=1&&b=2&access_token=z"), "/x?a=1&&b=2");
        assert_eq!(q("/x?=v&a==b&access_token=t"), "/x?=v&a==b");
        // names match exactly: other case, prefixes, encoded forms and values are not the name
        assert_eq!(
            query(
                "/x?Access_token=1&access_tokens=2&a=access_token",
                "access_token"
            ),
            (
                "/x?Access_token=1&access_tokens=2&a=access_token".into(),
                false
            )
        );
        assert_eq!(
            query("/x?access%5Ftoken=1", "access_token"),
            ("/x?access%5Ftoken=1".into(), false)
        );
        // no query, an empty query
        assert_eq!(query("/x", "access_token"), ("/x".into(), false));
        assert_eq!(query("/x?", "access_token"), ("/x?".into(), false));
        assert_eq!(query("/?access_token=", "access_token"), ("/".into(), true));
    }

    fn cookie(value: &str, name: &str) -> String {
        let mut out = b"before\r\n".to_vec();
        push_cookie_header(&mut out, b"Cookie", value.as_bytes(), name.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn cookie_removed_others_kept() {
        assert_eq!(
            cookie("theme=dark; session=tok; lang=en", "session"),
            "before\r\nCookie: theme=dark; lang=en\r\n"
        );
        assert_eq!(
            cookie("session=tok;theme=dark", "session"),
            "before\r\nCookie: theme=dark\r\n"
        );
        // every occurrence; stray separators go with it
        assert_eq!(
            cookie("session=a; x=1;; session=b ;", "session"),
            "before\r\nCookie: x=1\r\n"
        );
        // nothing left: no field at all
        assert_eq!(cookie("session=tok", "session"), "before\r\n");
        assert_eq!(cookie(" session=a ; session = b", "session"), "before\r\n");
        // not there: the field is copied untouched (spacing included)
        assert_eq!(
            cookie("theme=dark;lang=en ", "session"),
            "before\r\nCookie: theme=dark;lang=en \r\n"
        );
        // names are case-sensitive and whole; a value equal to the name is not the name
        assert_eq!(
            cookie("Session=1; sessionx=2; a=session", "session"),
            "before\r\nCookie: Session=1; sessionx=2; a=session\r\n"
        );
    }

    #[test]
    fn empty_hidden_leaves_target_alone() {
        let mut t = b"/x?access_token=1".to_vec();
        Hidden::default().strip_target(&mut t);
        assert_eq!(t, b"/x?access_token=1");
        let h = Hidden {
            cookie: None,
            query: Some(b"access_token"),
        };
        h.strip_target(&mut t);
        assert_eq!(t, b"/x");
    }
}
