//! `http://` and `https://` URLs for the one-shot client: parsing and the pieces a request needs.
//!
//! Owns: splitting `http[s]://host[:port]/path?query` into the scheme (TLS or not), the host to
//! resolve (also the name an https server's certificate must match), the port (80 or 443 unless
//! given), the text of the Host header (the authority exactly as written) and the request target
//! (origin-form). Anything the client cannot send as is is rejected here with a one-line reason:
//! other schemes, user info, bad ports, whitespace, control or non-ASCII characters (they must be
//! percent-encoded by whoever wrote the URL). A `#fragment` is dropped, as browsers do.

use std::fmt;
use std::net::Ipv6Addr;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https://`: the exchange runs over TLS.
    https: bool,
    /// Host to resolve: a name, an IPv4 literal or an IPv6 literal without brackets.
    host: String,
    port: u16,
    /// `host[:port]` as written in the URL (brackets kept): the Host header.
    authority: String,
    /// Path and query, starting with `/`.
    target: String,
}

impl Url {
    /// Parses `http[s]://host[:port][/path][?query][#fragment]`.
    pub fn parse(s: &str) -> Result<Url, String> {
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("URL contains whitespace or control characters".into());
        }
        if !s.is_ascii() {
            return Err("URL contains non-ASCII characters (percent-encode them)".into());
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!(
                "{s:?} has no scheme (expected http://host[:port]/path)"
            ));
        };
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(format!(
                "unsupported URL scheme {scheme:?} (only http and https are supported)"
            ));
        };
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let (host, port) = parse_authority(authority, if https { 443 } else { 80 })?;
        let tail = match tail.find('#') {
            Some(i) => &tail[..i],
            None => tail,
        };
        let target = match tail.as_bytes().first() {
            None => "/".to_owned(),
            Some(b'?') => format!("/{tail}"),
            Some(_) => tail.to_owned(),
        };
        Ok(Url {
            https,
            host,
            port,
            authority: authority.to_owned(),
            target,
        })
    }

    /// Whether the URL is `https://`: TLS, with the server's certificate checked against
    /// [`Url::host`].
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Host to resolve (IPv6 literals without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port to connect to (80 for http, 443 for https, unless the URL names one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host[:port]` exactly as written: the Host header's value.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request target: path and query, always starting with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.target
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.target)
    }
}

impl std::str::FromStr for Url {
    type Err = String;
    fn from_str(s: &str) -> Result<Url, String> {
        Url::parse(s)
    }
}

/// `host[:port]` -> (host to resolve, port), `default_port` when none is given.
fn parse_authority(a: &str, default_port: u16) -> Result<(String, u16), String> {
    if a.is_empty() {
        return Err("URL has no host".into());
    }
    if a.contains('@') {
        return Err("user info in URLs is not supported (send credentials in a header)".into());
    }
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let Some((lit, after)) = v6.split_once(']') else {
            return Err(format!("unterminated IPv6 literal in {a:?}"));
        };
        if lit.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 literal [{lit}]"));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("unexpected {p:?} after IPv6 literal")),
            },
        };
        (lit, port)
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return Err("URL has no host".into());
    }
    if !a.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p)?,
    };
    Ok((host.to_owned(), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("empty port after ':'".into());
    }
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?}"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p} out of range (1-65535)")),
        Ok(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_usual_shapes() {
        let u = ok("http://idp.example.com/.well-known/jwks.json");
        assert_eq!(u.host(), "idp.example.com");
        assert_eq!(u.port(), 80);
        assert_eq!(u.authority(), "idp.example.com");
        assert_eq!(u.path_and_query(), "/.well-known/jwks.json");

        let u = ok("HTTP://127.0.0.1:8080/oauth/introspect?x=1&y=%20");
        assert_eq!(u.host(), "127.0.0.1");
        assert_eq!(u.port(), 8080);
        assert_eq!(u.authority(), "127.0.0.1:8080");
        assert_eq!(u.path_and_query(), "/oauth/introspect?x=1&y=%20");
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:8080/oauth/introspect?x=1&y=%20"
        );

        let u = ok("http://[::1]:9000/a");
        assert_eq!(u.host(), "::1");
        assert_eq!(u.port(), 9000);
        assert_eq!(u.authority(), "[::1]:9000");

        assert!(!u.is_https());

        let u = ok("http://[fe80::1]");
        assert_eq!(
            (u.host(), u.port(), u.path_and_query()),
            ("fe80::1", 80, "/")
        );
    }

    #[test]
    fn https_defaults_to_443() {
        let u = ok("HTTPS://idp.example.com/jwks");
        assert!(u.is_https());
        assert_eq!((u.host(), u.port()), ("idp.example.com", 443));
        assert_eq!(u.authority(), "idp.example.com");
        assert_eq!(u.to_string(), "https://idp.example.com/jwks");
        let u = ok("https://[::1]:8443");
        assert_eq!((u.host(), u.port(), u.path_and_query()), ("::1", 8443, "/"));
        assert_eq!(u.to_string(), "https://[::1]:8443/");
        assert_eq!(ok("https://h:80/").port(), 80);
        assert_eq!(ok("http://h:443/").port(), 443);
    }

    #[test]
    fn fills_in_path_and_drops_fragment() {
        assert_eq!(ok("http://h").path_and_query(), "/");
        assert_eq!(ok("http://h:81").path_and_query(), "/");
        assert_eq!(ok("http://h?q=1").path_and_query(), "/?q=1");
        assert_eq!(ok("http://h/p#frag").path_and_query(), "/p");
        assert_eq!(ok("http://h#frag").path_and_query(), "/");
        assert_eq!(
            ok("http://Host-1.Example_x:65535/").authority(),
            "Host-1.Example_x:65535"
        );
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        let err = |s: &str| Url::parse(s).expect_err(s);
        assert_eq!(
            err("ftp://h/"),
            "unsupported URL scheme \"ftp\" (only http and https are supported)"
        );
        assert!(err("https://u@h/").contains("user info"));
        assert!(err("idp.example.com/jwks").contains("no scheme"));
        assert!(err("http://").contains("no host"));
        assert!(err("http:///path").contains("no host"));
        assert!(err("http://:80/").contains("no host"));
        assert!(err("http://user:pw@h/").contains("user info"));
        assert!(err("http://h:/").contains("empty port"));
        assert!(err("http://h:0/").contains("out of range"));
        assert!(err("http://h:65536/").contains("out of range"));
        assert!(err("http://h:123456/").contains("invalid port"));
        assert!(err("http://h:8a/").contains("invalid port"));
        assert!(err("http://h:80:81/").contains("invalid port"));
        assert!(err("http://h /").contains("whitespace"));
        assert!(err("http://h/a\tb").contains("whitespace"));
        assert!(err("http://h/\r\nX: y").contains("control"));
        assert!(err("http://h/é").contains("non-ASCII"));
        assert!(err("http://h%41/").contains("invalid host"));
        assert!(err("http://[::1/").contains("unterminated"));
        assert!(err("http://[nope]/").contains("invalid IPv6"));
        assert!(err("http://[::1]x/").contains("after IPv6"));
        assert!(err("http://[::1]:/").contains("empty port"));
        assert!(err("").contains("no scheme"));
    }
}
