//! Test certificates from rcgen: a CA, server leaves with SANs, client certificates, expired
//! ones and CRLs, each written as PEM to a temp file (removed on drop) at test time — no private
//! key is ever committed.

use super::sha256_hex;
use crate::common::gateway::write_temp;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn next_serial() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    // distinct across test processes too (CRLs name serials)
    (u64::from(std::process::id()) << 20) + N.fetch_add(1, Ordering::SeqCst) + 1
}

/// A test certificate authority; its certificate is written to `file` (PEM).
pub struct Ca {
    pub cn: String,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub pem: String,
    pub der: Vec<u8>,
    pub file: PathBuf,
}

/// What to issue.
#[derive(Clone, Debug, Default)]
pub struct LeafSpec {
    pub cn: String,
    /// DNS names (and IP literals) for the subjectAltName.
    pub sans: Vec<String>,
    /// Extended key usage clientAuth (else serverAuth).
    pub client: bool,
    /// Validity 2000-01-01 .. 2001-01-01.
    pub expired: bool,
}

/// An issued certificate and its key, both written to temp files (removed on drop).
pub struct Leaf {
    pub cn: String,
    pub sans: Vec<String>,
    pub serial: u64,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    key_der: Vec<u8>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "coregate tests");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(rcgen::SerialNumber::from(next_serial()));
        let cert = params.self_signed(&key).expect("self-sign CA");
        let pem = cert.pem();
        let der = cert.der().to_vec();
        let file = write_temp(&pem, "ca.pem");
        Ca {
            cn: cn.to_string(),
            cert,
            key,
            pem,
            der,
            file,
        }
    }

    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(spec.sans.clone()).expect("SANs");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, spec.cn.as_str());
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "coregate tests");
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if spec.client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let serial = next_serial();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Leaf {
            cn: spec.cn.clone(),
            sans: spec.sans.clone(),
            serial,
            cert_file: write_temp(&cert_pem, "crt.pem"),
            key_file: write_temp(&key_pem, "key.pem"),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            cert_pem,
            key_pem,
        }
    }

    /// A server certificate with CN `cn` and DNS SANs `sans`.
    pub fn server(&self, cn: &str, sans: &[&str]) -> Leaf {
        self.issue(&LeafSpec {
            cn: cn.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            ..LeafSpec::default()
        })
    }

    /// A client certificate with CN `cn` and DNS SANs `sans`.
    pub fn client(&self, cn: &str, sans: &[&str]) -> Leaf {
        self.issue(&LeafSpec {
            cn: cn.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            client: true,
            ..LeafSpec::default()
        })
    }

    /// A client certificate that expired in 2001.
    pub fn expired_client(&self, cn: &str, sans: &[&str]) -> Leaf {
        self.issue(&LeafSpec {
            cn: cn.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            client: true,
            expired: true,
        })
    }

    /// A CRL signed by this CA revoking `revoked`, written as PEM to a temp file.
    pub fn crl(&self, revoked: &[&Leaf]) -> Crl {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2021, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: rcgen::SerialNumber::from(next_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|l| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(l.serial),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.cert, &self.key).expect("sign CRL");
        Crl {
            file: write_temp(&crl.pem().expect("CRL PEM"), "crl.pem"),
            der: crl.der().to_vec(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.der.clone()))
            .expect("CA into root store");
        roots
    }
}

/// A certificate revocation list; its PEM file is removed on drop.
pub struct Crl {
    pub file: PathBuf,
    pub der: Vec<u8>,
}

impl Drop for Crl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Leaf {
    /// SHA-256 of the certificate DER, lower-case hex.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.der)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.der.clone())]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// `{ cert_file = "...", key_file = "..." }` for `certificates = [...]`.
    pub fn entry(&self) -> String {
        format!(
            "{{ cert_file = \"{}\", key_file = \"{}\" }}",
            self.cert_file.display(),
            self.key_file.display()
        )
    }

    /// Like `entry`, with an `ocsp_file`.
    pub fn entry_with_ocsp(&self, ocsp: &Path) -> String {
        format!(
            "{{ cert_file = \"{}\", key_file = \"{}\", ocsp_file = \"{}\" }}",
            self.cert_file.display(),
            self.key_file.display(),
            ocsp.display()
        )
    }

    /// Overwrites this leaf's files with `other`'s certificate and key (a cert rotation).
    pub fn overwrite_with(&self, other: &Leaf) {
        std::fs::write(&self.cert_file, &other.cert_pem).unwrap();
        std::fs::write(&self.key_file, &other.key_pem).unwrap();
    }

    /// Base64 lines of the private key PEM (what must never show up in logs or answers).
    pub fn key_secret_lines(&self) -> Vec<String> {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .map(String::from)
            .collect()
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert_file);
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// (CN, DNS/IP SANs) of a DER certificate.
pub fn cert_names(der: &[u8]) -> (Option<String>, Vec<String>) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse certificate");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(String::from);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(s) => sans.push(s.to_string()),
                other => sans.push(format!("{other:?}")),
            }
        }
    }
    (cn, sans)
}

/// A minimal DER OCSPResponse (`responseStatus = unauthorized`, no body): bytes to staple.
pub const OCSP_STUB: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x06];
