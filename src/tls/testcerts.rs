//! Test certificates, generated (rcgen) into a fresh temporary directory: no private key is ever
//! committed. Used by the `tls` and `config` unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A temporary directory, removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("coregate-tls-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to `name` (subdirectories created) and returns the path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A generated certificate and its key, as PEM.
pub(crate) struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// A CA that issues server and client certificates.
pub(crate) struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

fn params(names: &[&str], cn: &str) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

fn pair(cert: rcgen::Certificate, key: &KeyPair) -> Pair {
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A self-signed ECDSA P-256 certificate for `names`.
pub(crate) fn self_signed(names: &[&str]) -> Pair {
    let key = KeyPair::generate().unwrap();
    pair(params(names, "test").self_signed(&key).unwrap(), &key)
}

/// The same with a key of `alg` (`rcgen::PKCS_ED25519`, `rcgen::PKCS_ECDSA_P384_SHA384`).
pub(crate) fn self_signed_with(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Pair {
    let key = KeyPair::generate_for(alg).unwrap();
    pair(params(names, "test").self_signed(&key).unwrap(), &key)
}

/// A self-signed certificate that expired in 2001.
pub(crate) fn expired(names: &[&str]) -> Pair {
    let key = KeyPair::generate().unwrap();
    let mut p = params(names, "old");
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    pair(p.self_signed(&key).unwrap(), &key)
}

impl Ca {
    pub(crate) fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = params(&[], cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names`.
    pub(crate) fn server(&self, names: &[&str]) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut p = params(names, names.first().copied().unwrap_or("server"));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        pair(p.signed_by(&key, &self.cert, &self.key).unwrap(), &key)
    }

    /// A client certificate with common name `cn` and DNS SAN `san`, serial `serial`.
    pub(crate) fn client(&self, cn: &str, san: &str, serial: u64) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut p = params(&[san], cn);
        p.serial_number = Some(serial.into());
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        pair(p.signed_by(&key, &self.cert, &self.key).unwrap(), &key)
    }

    /// A CRL revoking the certificates with these serials.
    pub(crate) fn crl(&self, revoked: &[u64]) -> String {
        let now = rcgen::date_time_ymd(2024, 1, 1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&s| rcgen::RevokedCertParams {
                    serial_number: s.into(),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .unwrap()
            .pem()
            .unwrap()
    }
}

/// SHA-256, lower-case hex (computed independently of `tls::pem`).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
