//! What a verified client certificate tells routes and upstreams: [`client_cert`] reads the
//! end-entity certificate rustls verified into a [`ClientCert`] (fingerprint, subject, SANs).
//!
//! Everything here ends up in request headers (`X-Client-Cert-Fingerprint`,
//! `X-Client-Cert-Subject`) and in route allow-lists, so the text is printable ASCII only: the
//! subject escapes anything else as RFC 4514 `\XX` hex, and a SAN that is not printable ASCII is
//! left out (it could not match an allow-list entry anyway). Garbage input gives `None`, never a
//! panic. Called once per TLS connection that presented a certificate, not per request.

use std::fmt::Write;
use std::net::IpAddr;

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::pem;

/// A verified client certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the certificate's DER, lower-case hex (64 characters).
    pub fingerprint: String,
    /// The subject as an RFC 4514 string, most specific first: `CN=client-a,O=Acme`.
    pub subject: String,
    /// subjectAltName entries as text, in certificate order: DNS names, e-mail addresses, URIs and
    /// IP addresses.
    pub sans: Vec<String>,
}

impl ClientCert {
    /// Whether any SAN is in `allowed` (ASCII case-insensitive: DNS names and e-mail domains are).
    pub fn has_any_san(&self, allowed: &[String]) -> bool {
        self.sans
            .iter()
            .any(|s| allowed.iter().any(|a| a.eq_ignore_ascii_case(s)))
    }
}

/// The facts of a DER certificate; `None` when it does not parse (or has bytes after it).
pub fn client_cert(der: &[u8]) -> Option<ClientCert> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let text = match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_owned())
                }
                GeneralName::IPAddress(b) => ip_text(b),
                _ => None,
            };
            if let Some(t) =
                text.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            {
                sans.push(t);
            }
        }
    }
    Some(ClientCert {
        fingerprint: pem::fingerprint(der),
        subject: rfc4514(cert.subject()),
        sans,
    })
}

fn ip_text(b: &[u8]) -> Option<String> {
    let ip = match b.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(b).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(b).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

/// RFC 4514: RDNs last to first, joined by `,`; attributes of one RDN joined by `+`.
fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(&mut out, atv);
        }
    }
    out
}

/// RFC 4514 section 3's short names; any other type is written as its dotted OID.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn attribute(out: &mut String, atv: &AttributeTypeAndValue<'_>) {
    let oid = atv.attr_type().to_id_string();
    match short_name(&oid) {
        Some(s) => out.push_str(s),
        None => out.push_str(&oid),
    }
    out.push('=');
    let value = atv.attr_value();
    let text = match value.tag() {
        Tag::BmpString => {
            let units: Vec<u16> = (value.data.chunks_exact(2))
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => atv.as_str().ok().map(str::to_owned),
    };
    match text {
        Some(t) => escape(out, &t),
        None => {
            // RFC 4514 2.4: `#` and the hex of the value's BER encoding.
            out.push('#');
            let data = value.data;
            let mut der = vec![value.tag().0 as u8];
            match data.len() {
                n @ 0..=127 => der.push(n as u8),
                n => {
                    let len = (n as u64).to_be_bytes();
                    let skip = len.iter().take_while(|&&b| b == 0).count();
                    der.push(0x80 | (8 - skip) as u8);
                    der.extend_from_slice(&len[skip..]);
                }
            }
            der.extend_from_slice(data);
            out.push_str(&pem::hex(&der));
        }
    }
}

/// RFC 4514 2.4 escaping, plus `\XX` for every byte that is not printable ASCII (so the result is
/// safe in a header value).
fn escape(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (i, b) in value.bytes().enumerate() {
        let special = matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\')
            || (i == 0 && (b == b'#' || b == b' '))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(b as char);
        } else if b.is_ascii_graphic() || b == b' ' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testcerts;

    #[test]
    fn facts_of_an_rcgen_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["client-a.example".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-a");
        params.subject_alt_names.extend([
            rcgen::SanType::Rfc822Name("a@example.com".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://acme/client-a".try_into().unwrap()),
            rcgen::SanType::IpAddress("10.0.0.7".parse().unwrap()),
            rcgen::SanType::IpAddress("::1".parse().unwrap()),
        ]);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der();
        let c = client_cert(der).unwrap();
        assert_eq!(c.fingerprint.len(), 64);
        assert_eq!(c.fingerprint, testcerts::sha256_hex(der));
        assert!(c
            .fingerprint
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(c.subject, "CN=client-a,O=Acme");
        assert_eq!(
            c.sans,
            [
                "client-a.example",
                "a@example.com",
                "spiffe://acme/client-a",
                "10.0.0.7",
                "::1"
            ]
        );
        assert!(c.has_any_san(&["CLIENT-A.example".into()]));
        assert!(!c.has_any_san(&["client-b.example".into()]));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(client_cert(b""), None);
        assert_eq!(client_cert(b"\x30\x82\xff\xff garbage"), None);
        assert_eq!(client_cert(&[0x30; 64]), None);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a".to_string()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        for cut in [1, der.len() / 2, der.len() - 1] {
            assert_eq!(client_cert(&der[..cut]), None, "cut at {cut}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(client_cert(&trailing), None);
        // Every single-byte corruption either parses or is None; none panics.
        for i in 0..der.len() {
            let mut d = der.clone();
            d[i] ^= 0xff;
            let _ = client_cert(&d);
        }
    }

    #[test]
    fn subject_escaping() {
        let mut out = String::new();
        escape(&mut out, "#a,b+c\"d\\e<f>g;h ");
        assert_eq!(out, "\\#a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\ ");
        let mut out = String::new();
        escape(&mut out, "a\r\nb\u{e9}");
        assert_eq!(out, "a\\0D\\0Ab\\C3\\A9");
    }
}
