//! Reading TLS files: certificate chains, private keys, CRLs (PEM) and OCSP responses (DER).
//!
//! Each function takes the file's path and returns the parsed items or a one-line, lower-case
//! message that names the file. Messages about key files never quote the file's contents (the PEM
//! parser's own messages can quote a line, so they are replaced by fixed text). [`Digest`]
//! accumulates what a built config depends on, so two configs can be compared without keeping
//! key material around.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// The bytes of `path`, or "cannot read PATH: reason".
pub(super) fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every `CERTIFICATE` block of a PEM file, in order; at least one.
pub(super) fn certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    blocks(path, bytes, "certificate", "BEGIN CERTIFICATE")
}

/// Every block of type `T` in a PEM file, in order; at least one (`what`, `begin`: for the
/// message when there is none).
fn blocks<T: PemObject>(
    path: &Path,
    bytes: &[u8],
    what: &str,
    begin: &str,
) -> Result<Vec<T>, String> {
    let found: Result<Vec<T>, _> = T::pem_slice_iter(bytes).collect();
    match found {
        Ok(v) if v.is_empty() => Err(format!(
            "no {what} in {} (expected PEM \"{begin}\" blocks)",
            path.display()
        )),
        Ok(v) => Ok(v),
        Err(e) => Err(format!(
            "{} is not valid PEM: {}",
            path.display(),
            public(&e)
        )),
    }
}

/// A trust store of every certificate in a PEM file (CA certificates); at least one.
pub(super) fn roots(path: &Path, bytes: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for (n, c) in certs(path, bytes)?.into_iter().enumerate() {
        roots.add(c).map_err(|e| {
            format!(
                "{}: certificate {} is not a usable CA certificate: {e}",
                path.display(),
                n + 1
            )
        })?;
    }
    Ok(roots)
}

/// The first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
/// SEC1 (`EC PRIVATE KEY`).
pub(super) fn key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "no private key in {} (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
             \"EC PRIVATE KEY\" block)",
            path.display()
        ),
        // The parser's other messages may quote a line of the file: say only where.
        _ => format!("{} is not valid PEM", path.display()),
    })
}

/// Every `X509 CRL` block of a PEM file; at least one.
pub(super) fn crls(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    blocks(path, bytes, "CRL", "BEGIN X509 CRL")
}

/// A DER OCSP response to staple, as fetched (`openssl ocsp -respout`): checked to be a DER
/// SEQUENCE, not interpreted.
pub(super) fn ocsp(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.first() != Some(&0x30) || bytes.len() < 3 {
        return Err(format!(
            "{} is not a DER OCSP response (as written by openssl ocsp -respout)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// A PEM error's text for files without secrets (certificates, CRLs).
fn public(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".into(),
        pem::Error::Base64Decode(m) => format!("bad base64 ({m})"),
        other => other.to_string(),
    }
}

/// SHA-256 over labelled, length-prefixed parts: the identity of a built config.
pub(super) struct Digest(ring::digest::Context);

impl Digest {
    pub(super) fn new() -> Self {
        Digest(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub(super) fn add(&mut self, label: &str, bytes: &[u8]) {
        for part in [label.as_bytes(), bytes] {
            self.0.update(&(part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
    }

    pub(super) fn finish(self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// Lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of `der`, lower-case hex.
pub(super) fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_never_quote_the_file() {
        let p = Path::new("/x/k.pem");
        let secret =
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0IHNlY3JldA==!!\n-----END PRIVATE KEY-----\n";
        let e = key(p, secret).unwrap_err();
        assert_eq!(e, "/x/k.pem is not valid PEM");
        let e = key(p, b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap_err();
        assert!(!e.contains("c2Vj"), "{e}");
        let e = key(p, b"hello").unwrap_err();
        assert!(e.starts_with("no private key in /x/k.pem"), "{e}");
    }

    #[test]
    fn certificate_and_crl_errors() {
        let p = Path::new("c.pem");
        assert!(certs(p, b"")
            .unwrap_err()
            .starts_with("no certificate in c.pem"));
        let e = certs(p, b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert_eq!(e, "c.pem is not valid PEM: a block has no END line");
        assert!(crls(p, b"x").unwrap_err().starts_with("no CRL in c.pem"));
        assert!(ocsp(p, b"-----BEGIN".to_vec()).is_err());
        assert!(ocsp(p, vec![0x30, 0x03, 0x0a, 0x01, 0x00]).is_ok());
        let e = read(Path::new("/nonexistent/c.pem")).unwrap_err();
        assert!(e.starts_with("cannot read /nonexistent/c.pem: "), "{e}");
    }

    #[test]
    fn digest_separates_parts() {
        let d = |parts: &[(&str, &[u8])]| {
            let mut d = Digest::new();
            for (l, b) in parts {
                d.add(l, b);
            }
            d.finish()
        };
        assert_ne!(d(&[("a", b"bc")]), d(&[("ab", b"c")]));
        assert_eq!(d(&[("a", b"b")]), d(&[("a", b"b")]));
        assert_eq!(fingerprint(b"").len(), 64);
    }
}
