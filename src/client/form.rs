//! Request-body and credential encoders for OAuth2 calls: `application/x-www-form-urlencoded`
//! bodies (RFC 7662 introspection requests) and HTTP Basic client authentication (RFC 6749 §2.3.1).

use base64::Engine as _;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `s` form-urlencoded: RFC 3986 unreserved bytes (`A-Z a-z 0-9 - . _ ~`) as they are,
/// space as `+`, every other byte (UTF-8 bytes included) as `%XX` with upper-case hex.
fn encode_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
}

/// `application/x-www-form-urlencoded` serialisation of `pairs`: `k1=v1&k2=v2`, each name and value
/// encoded as above, in the given order.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

/// An `Authorization` header value for HTTP Basic client authentication as RFC 6749 §2.3.1 wants
/// it: `Basic base64(urlencode(user) ":" urlencode(pass))`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    let mut creds = String::with_capacity(user.len() + pass.len() + 1);
    encode_into(&mut creds, user);
    creds.push(':');
    encode_into(&mut creds, pass);
    let mut out = String::from("Basic ");
    base64::engine::general_purpose::STANDARD.encode_string(creds.as_bytes(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_pairs() {
        assert_eq!(form_urlencode(&[]), "");
        assert_eq!(
            form_urlencode(&[
                ("token", "abc.DEF-123_~"),
                ("token_type_hint", "access_token")
            ]),
            "token=abc.DEF-123_~&token_type_hint=access_token"
        );
        assert_eq!(
            form_urlencode(&[("a b", "c&d=e+f/g?h%i*")]),
            "a+b=c%26d%3De%2Bf%2Fg%3Fh%25i%2A"
        );
        assert_eq!(form_urlencode(&[("k", ""), ("", "v")]), "k=&=v");
        assert_eq!(form_urlencode(&[("u", "é\n\0")]), "u=%C3%A9%0A%00");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        let enc = form_urlencode(&[("x", &all)]);
        assert!(enc.bytes().all(|b| b.is_ascii_graphic()));
        let v = &enc[2..];
        let mut dec = Vec::new();
        let b = v.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => dec.push(b' '),
                b'%' => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    dec.push(u8::from_str_radix(h, 16).unwrap());
                    i += 2;
                }
                c => dec.push(c),
            }
            i += 1;
        }
        assert_eq!(dec, all.as_bytes());
    }

    #[test]
    fn basic_auth_encodes_credentials_first() {
        // RFC 7617 example (nothing to escape)
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuK3Nlc2FtZQ=="
        );
        // "my client:p@ss:w" -> "my+client:p%40ss%3Aw"
        assert_eq!(
            basic_auth("my client", "p@ss:w"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("my+client:p%40ss%3Aw")
            )
        );
        assert_eq!(basic_auth("", ""), "Basic Og==");
    }
}
