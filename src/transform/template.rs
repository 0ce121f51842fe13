//! Value templates: `"{identity.subject}"` in header transforms,
//! `"/orders?user={id}&limit={query.limit}"` in aggregation part paths.
//!
//! Owns [`Template`] (parsed once, at config load), the [`Source`] of placeholder values (the
//! request, implemented by the caller) and [`query_param`]. Data flow: [`Template::parse`] splits
//! the text into literal pieces (checked here, copied verbatim when rendering) and placeholders,
//! each tagged with the context it sits in; [`Template::render`] asks the [`Source`] for each
//! placeholder's bytes and encodes them for that context, so a value can never change the shape
//! of what it lands in:
//!
//! - URL, path context (before the first literal `?`): everything but unreserved, sub-delims, `:`
//!   and `@` is percent-encoded (`/`, `?`, `#`, `%`, space, controls, non-ASCII), and a value that is
//!   exactly `.` or `..` becomes `%2E` / `%2E%2E`: a value stays inside its segment.
//! - URL, query context (after it): everything but unreserved is percent-encoded.
//! - Header: controls other than tab become spaces, then surrounding whitespace is trimmed.
//!
//! Values are opaque bytes: one that is already percent-encoded (`%2F`) is encoded again
//! (`%252F`), so the [`Source`] hands over decoded values.

use std::borrow::Cow;

/// Where placeholder values come from: the request being handled.
pub trait Source {
    /// Path parameter `name` of the route's `path_template`, percent-decoded
    /// ([`percent_decode`]).
    fn param(&self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// Query parameter `name`: its first occurrence, decoded (see [`query_param`]).
    fn query(&self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// Request header `name` (matched case-insensitively).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Fact `name` about the authenticated caller (subject, consumer, tenant, tier, a claim header).
    fn identity(&self, name: &str) -> Option<&[u8]>;
    /// The request id.
    fn request_id(&self) -> &[u8];
    /// The client's IP address, as text.
    fn client_ip(&self) -> &[u8];
    /// The request method.
    fn method(&self) -> &[u8];
    /// The request path, without the query.
    fn path(&self) -> &[u8];
}

/// What a template renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request target: pieces before the first literal `?` are path context, after it query
    /// context.
    Url,
    /// A header value.
    Header,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Vec<Piece>,
}

/// A placeholder had no value: its text as written, e.g. `{query.limit}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Missing(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text, `{{`/`}}` already unescaped.
    Lit(String),
    /// A placeholder; `text` is its source spelling (for [`Missing`]).
    Var { var: Var, ctx: Ctx, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Param(String),
    Query(String),
    Header(String),
    Identity(String),
    RequestId,
    ClientIp,
    Method,
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    UrlPath,
    UrlQuery,
    Header,
}

const EXPECTED: &str = "(expected {name}, {query.NAME}, {header.NAME}, {identity.NAME}, \
                        {request_id}, {client_ip}, {method}, {path})";

impl Template {
    /// Parses `text`; `params` are the path parameter names of the route's template.
    pub fn parse(text: &str, kind: Kind, params: &[&str]) -> Result<Template, String> {
        let b = text.as_bytes();
        let mut ctx = match kind {
            Kind::Url => Ctx::UrlPath,
            Kind::Header => Ctx::Header,
        };
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < b.len() {
            match (b[i], b.get(i + 1)) {
                (b'{', Some(b'{')) => {
                    lit.push('{');
                    i += 2;
                }
                (b'}', Some(b'}')) => {
                    lit.push('}');
                    i += 2;
                }
                (b'{', _) => {
                    let close = b[i + 1..].iter().position(|&c| c == b'{' || c == b'}');
                    let Some(j) = close.map(|n| i + 1 + n).filter(|&j| b[j] == b'}') else {
                        return Err(format!(
                            "unclosed '{{' at byte {i} (write '{{{{' for a literal brace)"
                        ));
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    let var = placeholder(&text[i + 1..j], params)?;
                    let text = text[i..=j].to_owned();
                    pieces.push(Piece::Var { var, ctx, text });
                    i = j + 1;
                }
                (b'}', _) => {
                    return Err(format!(
                        "stray '}}' at byte {i} (write '}}}}' for a literal brace)"
                    ));
                }
                _ => {
                    let end = b[i..]
                        .iter()
                        .position(|&c| c == b'{' || c == b'}')
                        .map_or(b.len(), |n| i + n);
                    let run = &text[i..end];
                    check_literal(run, i, kind)?;
                    if ctx == Ctx::UrlPath && run.contains('?') {
                        ctx = Ctx::UrlQuery;
                    }
                    lit.push_str(run);
                    i = end;
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
        })
    }

    /// True when it has no placeholders (rendering is a copy).
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Lit(_)))
    }

    /// Appends the rendered value to `out`. A placeholder with no value => Err(Missing), `out`
    /// restored to its length before the call.
    pub fn render(&self, src: &dyn Source, out: &mut Vec<u8>) -> Result<(), Missing> {
        let start = out.len();
        for piece in &self.pieces {
            let (var, ctx, text) = match piece {
                Piece::Lit(s) => {
                    out.extend_from_slice(s.as_bytes());
                    continue;
                }
                Piece::Var { var, ctx, text } => (var, *ctx, text),
            };
            let value: Option<Cow<'_, [u8]>> = match var {
                Var::Param(n) => src.param(n),
                Var::Query(n) => src.query(n),
                Var::Header(n) => src.header(n).map(Cow::Borrowed),
                Var::Identity(n) => src.identity(n).map(Cow::Borrowed),
                Var::RequestId => Some(Cow::Borrowed(src.request_id())),
                Var::ClientIp => Some(Cow::Borrowed(src.client_ip())),
                Var::Method => Some(Cow::Borrowed(src.method())),
                Var::Path => Some(Cow::Borrowed(src.path())),
            };
            let Some(value) = value else {
                out.truncate(start);
                return Err(Missing(text.clone()));
            };
            match ctx {
                Ctx::UrlPath if matches!(&*value, b"." | b"..") => {
                    value.iter().for_each(|_| out.extend_from_slice(b"%2E"));
                }
                Ctx::UrlPath => encode(&value, keep_in_path, out),
                Ctx::UrlQuery => encode(&value, is_unreserved, out),
                Ctx::Header => header_value(&value, out),
            }
        }
        Ok(())
    }

    /// The source text (for config rendering).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The placeholder `inner` (between the braces). A path parameter shadows a built-in of the
/// same name (`{path}` in a route with `path_template = "/files/{path}"`).
fn placeholder(inner: &str, params: &[&str]) -> Result<Var, String> {
    if params.contains(&inner) {
        return Ok(Var::Param(inner.to_owned()));
    }
    match inner {
        "request_id" => return Ok(Var::RequestId),
        "client_ip" => return Ok(Var::ClientIp),
        "method" => return Ok(Var::Method),
        "path" => return Ok(Var::Path),
        _ => {}
    }
    let named = |prefix: &str, valid: fn(u8) -> bool, what: &str| {
        let name = inner.strip_prefix(prefix)?;
        Some(if !name.is_empty() && name.bytes().all(valid) {
            Ok(name.to_owned())
        } else {
            Err(format!("invalid name in \"{{{inner}}}\" (expected {what})"))
        })
    };
    if let Some(n) = named(
        "query.",
        |c| !c.is_ascii_control(),
        "a query parameter name",
    ) {
        return n.map(Var::Query);
    }
    if let Some(n) = named("header.", is_tchar, "a header name") {
        return n.map(Var::Header);
    }
    let ident = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-');
    if let Some(n) = named("identity.", ident, "[A-Za-z0-9_.-]+") {
        return n.map(Var::Identity);
    }
    let bare = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-');
    if inner.is_empty() || !inner.bytes().all(bare) {
        return Err(format!("unknown placeholder \"{{{inner}}}\" {EXPECTED}"));
    }
    if params.is_empty() {
        return Err(format!(
            "unknown path parameter \"{inner}\" (the route has no path parameters)"
        ));
    }
    Err(format!(
        "unknown path parameter \"{inner}\" (the route's template has: {})",
        params.join(", ")
    ))
}

/// Checks literal text starting at byte `at` of the template.
fn check_literal(run: &str, at: usize, kind: Kind) -> Result<(), String> {
    for (n, c) in run.char_indices() {
        let bad = match kind {
            Kind::Url => c.is_ascii_control() || matches!(c, ' ' | '#') || !c.is_ascii(),
            Kind::Header => c.is_ascii_control() && c != '\t',
        };
        if bad {
            let place = match kind {
                Kind::Url => "a URL (percent-encode it)",
                Kind::Header => "a header value",
            };
            return Err(format!(
                "{c:?} at byte {} is not allowed in {place}",
                at + n
            ));
        }
    }
    Ok(())
}

/// RFC 3986 unreserved.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Unreserved, sub-delims, `:` and `@`: a path segment's own characters.
fn keep_in_path(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// RFC 9110 token character.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn encode(value: &[u8], keep: fn(u8) -> bool, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in value {
        if keep(c) {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
    }
}

/// Controls other than tab become spaces; surrounding whitespace (after that) is dropped.
fn header_value(value: &[u8], out: &mut Vec<u8>) {
    let ctl = |c: u8| (c < 0x20 && c != b'\t') || c == 0x7f;
    let blank = |c: &u8| *c == b' ' || *c == b'\t' || ctl(*c);
    let start = value.iter().position(|c| !blank(c)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|c| !blank(c))
        .map_or(start, |n| n + 1);
    out.extend(
        value[start..end]
            .iter()
            .map(|&c| if ctl(c) { b' ' } else { c }),
    );
}

/// The first value of parameter `name` in `query` (the query string without its `?`), decoded:
/// `+` is a space, `%XY` the byte it names, a malformed `%` kept as is. Names are compared
/// decoded too. Borrowed from `query` when nothing needed decoding.
pub fn query_param<'q>(query: &'q [u8], name: &str) -> Option<Cow<'q, [u8]>> {
    let pair = query.split(|&c| c == b'&').find(|pair| {
        let key = pair.split(|&c| c == b'=').next().unwrap_or_default();
        Decode(key).eq(name.bytes())
    })?;
    let value = pair
        .iter()
        .position(|&c| c == b'=')
        .map_or(&[][..], |n| &pair[n + 1..]);
    if value.iter().any(|&c| c == b'%' || c == b'+') {
        Some(Cow::Owned(Decode(value).collect()))
    } else {
        Some(Cow::Borrowed(value))
    }
}

/// Percent-decodes a path segment (`+` stays `+`; a malformed `%` is kept as is); borrowed when
/// nothing needs decoding.
pub fn percent_decode(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'%') {
        return Cow::Borrowed(v);
    }
    // `+` is literal in a path: hide it from the form decoder
    let mut out = Vec::with_capacity(v.len());
    for (i, piece) in v.split(|&c| c == b'+').enumerate() {
        if i > 0 {
            out.push(b'+');
        }
        out.extend(Decode(piece));
    }
    Cow::Owned(out)
}

/// Form-decodes a byte string lazily.
struct Decode<'a>(&'a [u8]);

impl Iterator for Decode<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let hex = |c: u8| {
            char::from(c)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        };
        let (&c, rest) = self.0.split_first()?;
        let (byte, rest) = match (c, rest) {
            (b'+', _) => (b' ', rest),
            (b'%', [h, l, tail @ ..]) => match (hex(*h), hex(*l)) {
                (Some(h), Some(l)) => (h << 4 | l, tail),
                _ => (c, rest),
            },
            _ => (c, rest),
        };
        self.0 = rest;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Req {
        params: Vec<(&'static str, &'static [u8])>,
        query: &'static [u8],
        headers: Vec<(&'static str, &'static [u8])>,
        identity: Vec<(&'static str, &'static [u8])>,
    }

    impl Source for Req {
        fn param(&self, name: &str) -> Option<Cow<'_, [u8]>> {
            self.params
                .iter()
                .find(|p| p.0 == name)
                .map(|p| Cow::Borrowed(p.1))
        }
        fn query(&self, name: &str) -> Option<Cow<'_, [u8]>> {
            query_param(self.query, name)
        }
        fn header(&self, name: &str) -> Option<&[u8]> {
            let mut h = self.headers.iter();
            h.find(|p| p.0.eq_ignore_ascii_case(name)).map(|p| p.1)
        }
        fn identity(&self, name: &str) -> Option<&[u8]> {
            self.identity.iter().find(|p| p.0 == name).map(|p| p.1)
        }
        fn request_id(&self) -> &[u8] {
            b"r-1"
        }
        fn client_ip(&self) -> &[u8] {
            b"10.0.0.1"
        }
        fn method(&self) -> &[u8] {
            b"GET"
        }
        fn path(&self) -> &[u8] {
            b"/a/b"
        }
    }

    fn req_with(
        params: &[(&'static str, &'static [u8])],
        headers: &[(&'static str, &'static [u8])],
    ) -> Req {
        let (params, headers) = (params.to_vec(), headers.to_vec());
        Req {
            params,
            headers,
            ..Req::default()
        }
    }

    fn render(text: &str, kind: Kind, params: &[&str], req: &Req) -> Result<Vec<u8>, Missing> {
        let t = Template::parse(text, kind, params).unwrap();
        let mut out = b"pre:".to_vec();
        t.render(req, &mut out)?;
        Ok(out[4..].to_vec())
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let (u, h) = (Kind::Url, Kind::Header);
        let cases: [(&str, Kind, &[&str]); 15] = [
            ("/x/{idd}", u, &["a", "b"]),
            ("/x/{id}", u, &[]),
            ("{foo.bar}", u, &[]),
            ("a{}", u, &[]),
            ("/ab{id", u, &["id"]),
            ("{a{b}", u, &["b"]),
            ("/a}b", u, &[]),
            ("{query.}", u, &[]),
            ("{header.a b}", u, &[]),
            ("{identity.a/b}", u, &[]),
            ("/a b", u, &[]),
            ("/{{x#", u, &[]),
            ("/é", u, &[]),
            ("x\r\n{method}", h, &[]),
            ("x\0", h, &[]),
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|(text, kind, params)| Template::parse(text, *kind, params).unwrap_err())
            .collect();
        let want = r#"unknown path parameter "idd" (the route's template has: a, b)
unknown path parameter "id" (the route has no path parameters)
unknown placeholder "{foo.bar}" (expected {name}, {query.NAME}, {header.NAME}, {identity.NAME}, {request_id}, {client_ip}, {method}, {path})
unknown placeholder "{}" (expected {name}, {query.NAME}, {header.NAME}, {identity.NAME}, {request_id}, {client_ip}, {method}, {path})
unclosed '{' at byte 3 (write '{{' for a literal brace)
unclosed '{' at byte 0 (write '{{' for a literal brace)
stray '}' at byte 2 (write '}}' for a literal brace)
invalid name in "{query.}" (expected a query parameter name)
invalid name in "{header.a b}" (expected a header name)
invalid name in "{identity.a/b}" (expected [A-Za-z0-9_.-]+)
' ' at byte 2 is not allowed in a URL (percent-encode it)
'#' at byte 4 is not allowed in a URL (percent-encode it)
'é' at byte 1 is not allowed in a URL (percent-encode it)
'\r' at byte 1 is not allowed in a header value
'\0' at byte 1 is not allowed in a header value"#;
        assert_eq!(got.join("\n"), want);
        assert!(Template::parse("a\tb é", h, &[]).is_ok());
    }

    #[test]
    fn renders_every_placeholder_and_literal_braces() {
        let req = Req {
            params: vec![("id", b"42")],
            query: b"limit=5&x=1",
            headers: vec![("X-Tenant", b"acme")],
            identity: vec![("subject", b"u1"), ("claims.org", b"o")],
        };
        let t = "{{{id}}}|{query.limit}|{header.x-tenant}|{identity.subject}|\
                 {identity.claims.org}|{request_id}|{client_ip}|{method}|{path}";
        let got = render(t, Kind::Header, &["id"], &req).unwrap();
        assert_eq!(got, b"{42}|5|acme|u1|o|r-1|10.0.0.1|GET|/a/b");
        let tpl = Template::parse(t, Kind::Header, &["id"]).unwrap();
        assert_eq!(tpl.text(), t);
        assert!(!tpl.is_literal());
        let lit = Template::parse("/a/{{b}}?c", Kind::Url, &[]).unwrap();
        assert!(lit.is_literal());
        assert_eq!(
            render("/a/{{b}}?c", Kind::Url, &[], &req),
            Ok(b"/a/{b}?c".to_vec())
        );
        // a route parameter named like a built-in shadows it
        let req = req_with(&[("path", b"p")], &[]);
        assert_eq!(
            render("{path}", Kind::Url, &["path"], &req),
            Ok(b"p".to_vec())
        );
    }

    #[test]
    fn url_values_are_encoded_for_their_context() {
        let values: [&'static [u8]; 10] = [
            b"../x",
            b"a/b",
            b"%2F",
            b"?x=1#y",
            b"a b\r\n",
            b"\xff\xfe\x00",
            b"!$&'()*+,;=:@~",
            b".",
            b"..",
            b"...",
        ];
        let got: Vec<String> = values
            .iter()
            .map(|v| {
                let req = req_with(&[("v", v)], &[]);
                let got = render("/u/{v}/o?a={v}&b=1", Kind::Url, &["v"], &req).unwrap();
                String::from_utf8(got).unwrap()
            })
            .collect();
        // dot-segments are encoded in path context only; longer dot runs are not segments
        let want = r"/u/..%2Fx/o?a=..%2Fx&b=1
/u/a%2Fb/o?a=a%2Fb&b=1
/u/%252F/o?a=%252F&b=1
/u/%3Fx=1%23y/o?a=%3Fx%3D1%23y&b=1
/u/a%20b%0D%0A/o?a=a%20b%0D%0A&b=1
/u/%FF%FE%00/o?a=%FF%FE%00&b=1
/u/!$&'()*+,;=:@~/o?a=%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A%40~&b=1
/u/%2E/o?a=.&b=1
/u/%2E%2E/o?a=..&b=1
/u/.../o?a=...&b=1";
        assert_eq!(got.join("\n"), want);
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let h =
            |v: &'static [u8], t: &str| render(t, Kind::Header, &[], &req_with(&[], &[("h", v)]));
        let evil = b" \tv1\r\nX-Admin: 1\0\x7f\t \r\n";
        assert_eq!(h(evil, "[{header.h}]"), Ok(b"[v1  X-Admin: 1]".to_vec()));
        assert_eq!(h(b"\xff\xfe ok", "{header.h}"), Ok(b"\xff\xfe ok".to_vec()));
        assert_eq!(h(b"\r\n", "a{header.h}b"), Ok(b"ab".to_vec()));
    }

    #[test]
    fn missing_value_restores_out() {
        let req = req_with(&[("id", b"1")], &[]);
        let t = Template::parse("/o/{id}?limit={query.limit}", Kind::Url, &["id"]).unwrap();
        let mut out = b"keep".to_vec();
        assert_eq!(
            t.render(&req, &mut out),
            Err(Missing("{query.limit}".into()))
        );
        assert_eq!(out, b"keep");
        for text in ["{header.h}", "{identity.tier}", "{id}"] {
            let t = Template::parse(text, Kind::Header, &["id"]).unwrap();
            assert_eq!(
                t.render(&Req::default(), &mut out),
                Err(Missing(text.into()))
            );
            assert_eq!(out, b"keep");
        }
    }

    #[test]
    fn query_param_decodes_the_first_occurrence() {
        let q = b"a=1&b=x+y%20z&a=2&c&d=%zz%4&e=%41%2b&f%5B0%5D=k&g=";
        assert!(matches!(query_param(q, "a"), Some(Cow::Borrowed(b"1"))));
        assert_eq!(query_param(q, "b").as_deref(), Some(&b"x y z"[..]));
        assert!(matches!(query_param(q, "c"), Some(Cow::Borrowed(b""))));
        assert_eq!(query_param(q, "d").as_deref(), Some(&b"%zz%4"[..]));
        assert_eq!(query_param(q, "e").as_deref(), Some(&b"A+"[..]));
        assert!(matches!(query_param(q, "f[0]"), Some(Cow::Borrowed(b"k"))));
        assert!(matches!(query_param(q, "g"), Some(Cow::Borrowed(b""))));
        assert_eq!(query_param(q, "z"), None);
        assert_eq!(query_param(b"", "a"), None);
        assert_eq!(query_param(b"%ff=%ff", "a"), None);
        assert_eq!(query_param(b"a=%ff%", "a").as_deref(), Some(&b"\xff%"[..]));
    }
}
