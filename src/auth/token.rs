//! Finding the credential in a request: `Authorization: Bearer`, a named header, a cookie or a
//! query parameter, in that order of configuration (the first configured source that is present
//! wins; the Bearer header is the default when no header is named).
//!
//! Reads the request view's fields in place (no allocation). A credential sent twice in the same
//! place (two Authorization headers) is ambiguous and refused rather than guessed.

use super::jwt::Reject;
use crate::config::auth::TokenSource;
use crate::http::view::Fields;

/// The credential bytes, or why there is none usable.
pub fn extract<'a>(
    src: &TokenSource,
    fields: &Fields<'a>,
    target: &'a [u8],
) -> Result<&'a [u8], Reject> {
    let header_name: &[u8] = match &src.header {
        Some(h) => h.as_bytes(),
        None => b"authorization",
    };
    let mut found = None;
    for v in fields.all(header_name) {
        if found.is_some() {
            return Err(Reject::Malformed);
        }
        found = Some(v);
    }
    if let Some(v) = found {
        return if src.header.is_some() {
            non_empty(trim(v))
        } else {
            bearer(v)
        };
    }
    if let Some(name) = &src.cookie {
        if let Some(v) = cookie(fields, name.as_bytes()) {
            return non_empty(v);
        }
    }
    if let Some(name) = &src.query {
        if let Some(v) = query_param(target, name.as_bytes()) {
            return non_empty(v);
        }
    }
    Err(Reject::Missing)
}

fn non_empty(v: &[u8]) -> Result<&[u8], Reject> {
    if v.is_empty() {
        Err(Reject::Missing)
    } else {
        Ok(v)
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &v[s..e]
}

/// `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
fn bearer(v: &[u8]) -> Result<&[u8], Reject> {
    let v = trim(v);
    if v.len() > 7 && v[..6].eq_ignore_ascii_case(b"bearer") && v[6] == b' ' {
        let t = trim(&v[7..]);
        if t.is_empty() || t.contains(&b' ') {
            return Err(Reject::Malformed);
        }
        return Ok(t);
    }
    Err(Reject::Missing)
}

/// The value of cookie `name` in any Cookie header.
pub(crate) fn cookie<'a>(fields: &Fields<'a>, name: &[u8]) -> Option<&'a [u8]> {
    fields
        .all(b"cookie")
        .flat_map(|v| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
        })
}

/// The raw (still percent-encoded) value of query parameter `name`. Tokens are base64url or hex
/// in practice, which need no decoding.
pub(crate) fn query_param<'a>(target: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let q = target.iter().position(|&b| b == b'?')?;
    target[q + 1..].split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        (&pair[..eq] == name).then(|| pair.get(eq + 1..).unwrap_or(&[]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, HeadLimits, RequestHead};

    fn run(src: &TokenSource, raw: &str) -> Result<Vec<u8>, Reject> {
        let limits = HeadLimits {
            max_request_line: 8192,
            max_header_bytes: 65536,
            max_headers: 100,
        };
        let buf = raw.as_bytes();
        let mut head = RequestHead::default();
        parse_request(buf, &limits, &mut head).unwrap().unwrap();
        let fields = Fields::H1 { head: &head, buf };
        extract(src, &fields, head.target(buf)).map(|v| v.to_vec())
    }

    #[test]
    fn sources() {
        let d = TokenSource::default();
        let r = |s: &str| format!("GET /x?access_token=q1&b=2 HTTP/1.1\r\nHost: h\r\n{s}\r\n");
        assert_eq!(
            run(&d, &r("Authorization: Bearer abc\r\n")).unwrap(),
            b"abc"
        );
        assert_eq!(
            run(&d, &r("authorization: bearer   abc \r\n")).unwrap(),
            b"abc"
        );
        assert_eq!(
            run(&d, &r("Authorization: Basic abc\r\n")),
            Err(Reject::Missing)
        );
        assert_eq!(run(&d, &r("")), Err(Reject::Missing));
        assert_eq!(
            run(
                &d,
                &r("Authorization: Bearer a\r\nAuthorization: Bearer b\r\n")
            ),
            Err(Reject::Malformed)
        );
        let all = TokenSource {
            header: Some("x-token".into()),
            cookie: Some("sid".into()),
            query: Some("access_token".into()),
            forward: true,
        };
        assert_eq!(run(&all, &r("X-Token: t1\r\n")).unwrap(), b"t1");
        assert_eq!(run(&all, &r("Cookie: a=1; sid=c1\r\n")).unwrap(), b"c1");
        assert_eq!(run(&all, &r("")).unwrap(), b"q1");
    }
}
