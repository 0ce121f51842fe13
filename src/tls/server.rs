//! The server side: [`ServerTls::build`] turns a listener's settings into a rustls `ServerConfig`,
//! and [`SniResolver`] picks the certificate for each handshake.
//!
//! Certificates: each `{ cert_file, key_file, ocsp_file }` is read, its key checked against the
//! certificate (a mismatch is an error), its validity checked (expired or not yet valid: a
//! warning), and its subjectAltName DNS names become what SNI selects it by. Selection
//! ([`SniResolver::select`]): an exact name beats a wildcard (`*.example.com` covers exactly one
//! more label, case-insensitively); the first certificate serves a client that sends no SNI, and
//! one whose SNI matches nothing unless `unknown_sni = "reject"`. When several certificates carry
//! the same name (an ECDSA and an RSA one), the first whose key can sign with a scheme the client
//! offers wins, so old RSA-only clients still get the RSA chain.
//!
//! Client certificates (`client_auth`): rustls' webpki verifier over `client_ca_file`, with the
//! CRLs of `client_crl_file` (then a certificate whose issuer has no CRL there is refused, as
//! OpenSSL does); `optional` lets a client without a certificate in unauthenticated.
//!
//! Resumption: every config built here shares the one [`ticketer`] (when `session_tickets`), its
//! tickets bound to the listener's client-certificate policy ([`BoundTicketer`]), and gets its own
//! session-ID cache of [`SESSION_CACHE_ENTRIES`] (so a TLS 1.2 session ID never crosses listeners
//! or generations).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::server::{ProducesTickets, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use x509_parser::extensions::GeneralName;

use super::pem::{self, Digest};
use super::{provider, Built, CertificateInfo, ClientAuth, ServerTls, TlsProblem, TlsVersion};
use super::{UnknownSni, ALPN_H2, ALPN_HTTP11};

/// TLS 1.2 sessions remembered per listener config (rustls' memory cache; about 1 KiB each). A
/// client with tickets never needs it.
pub const SESSION_CACHE_ENTRIES: usize = 4096;

/// nginx's `ssl_handshake_timeout` is 60 s; a client that has not finished a handshake in 10 s is
/// broken or hostile, and each one holds a connection slot.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured certificate's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// A DER OCSP response stapled to every handshake with this certificate.
    pub ocsp_file: Option<PathBuf>,
}

/// What a TLS listener is built from (paths already resolved).
#[derive(Debug, Clone)]
pub struct ServerTlsOptions {
    /// At least one; the first is the default.
    pub certificates: Vec<CertificateFiles>,
    pub unknown_sni: UnknownSni,
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    pub session_tickets: bool,
    pub handshake_timeout: Duration,
    pub client_auth: ClientAuth,
    /// Required unless `client_auth` is `None` (ignored then).
    pub client_ca_file: Option<PathBuf>,
    pub client_crl_file: Option<PathBuf>,
}

impl ServerTlsOptions {
    /// These certificates with every other setting at its default.
    pub fn new(certificates: Vec<CertificateFiles>) -> Self {
        ServerTlsOptions {
            certificates,
            unknown_sni: UnknownSni::Default,
            // HTTP/2 first: a client offering both gets h2 (RFC 7301 lets the server choose)
            alpn: vec![ALPN_H2.to_owned(), ALPN_HTTP11.to_owned()],
            min_version: TlsVersion::Tls12,
            session_tickets: true,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            client_auth: ClientAuth::None,
            client_ca_file: None,
            client_crl_file: None,
        }
    }
}

/// The process-wide session-ticket key rotator (rustls' ring `Ticketer`: AES-256-GCM tickets, a
/// new key every 6 hours, the previous one still accepted). One for every listener, worker and
/// generation, so a ticket resumes on any core and after a reload.
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    static TICKETER: OnceLock<Result<Arc<dyn ProducesTickets>, String>> = OnceLock::new();
    TICKETER
        .get_or_init(|| {
            rustls::crypto::ring::Ticketer::new()
                .map_err(|e| format!("cannot create the session ticket keys: {e}"))
        })
        .clone()
}

impl ServerTls {
    /// Reads every file and builds the rustls config; every problem is reported, each naming its
    /// setting.
    pub fn build(opts: ServerTlsOptions) -> Built<ServerTls> {
        let provider = provider();
        let now = unix_now();
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let mut digest = Digest::new();
        digest.add("settings", settings_text(&opts).as_bytes());
        if opts.certificates.is_empty() {
            let m = "empty list (expected at least one { cert_file, key_file })";
            problems.push(TlsProblem::setting("certificates", m));
        }
        let mut keys = Vec::new();
        let mut infos = Vec::new();
        for (i, files) in opts.certificates.iter().enumerate() {
            let loaded = load_certificate(i, files, &provider, now, &mut digest);
            match loaded {
                Ok((key, info, warns)) => {
                    if i > 0 && info.names.is_empty() {
                        problems.push(TlsProblem::cert(
                            i,
                            "cert_file",
                            format!(
                                "{} has no DNS names in subjectAltName, so SNI can never select \
                                 it (only the first certificate serves clients without SNI)",
                                files.cert_file.display()
                            ),
                        ));
                    }
                    warnings.extend(warns);
                    keys.push(Arc::new(key));
                    infos.push(info);
                }
                Err(p) => problems.extend(p),
            }
        }
        // What a resumed session skips: the client-certificate policy it was verified under.
        let mut trust = Digest::new();
        trust.add("client_auth", opts.client_auth.name().as_bytes());
        let digests = [&mut digest, &mut trust];
        let verifier = client_verifier(&opts, &provider, digests, &mut problems);
        let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let ticketer = match opts.session_tickets {
            true => ticketer()
                .map_err(|m| problems.push(TlsProblem::setting("session_tickets", m)))
                .ok(),
            false => None,
        };
        let ticketer = ticketer.map(|inner| -> Arc<dyn ProducesTickets> {
            Arc::new(BoundTicketer {
                inner,
                policy: trust.finish(),
            })
        });
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| problems.push(TlsProblem::setting("min_version", e.to_string())));
        let (Some(verifier), Ok(builder)) = (verifier, builder) else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let resolver = SniResolver::new(keys, &infos, opts.unknown_sni);
        let mut config = builder
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        if let Some(t) = ticketer {
            config.ticketer = t;
        }
        let tls = ServerTls {
            config: Arc::new(config),
            handshake_timeout: opts.handshake_timeout,
            client_auth: opts.client_auth,
            certificates: infos,
            unknown_sni: opts.unknown_sni,
            alpn: opts.alpn,
            min_version: opts.min_version,
            session_tickets: opts.session_tickets,
            client_ca_file: opts.client_ca_file,
            client_crl_file: opts.client_crl_file,
            digest: digest.finish(),
        };
        Ok((tls, warnings))
    }
}

/// Every setting that is not a file's contents, for the digest.
fn settings_text(o: &ServerTlsOptions) -> String {
    format!(
        "{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        o.certificates,
        o.unknown_sni,
        o.alpn,
        o.session_tickets,
        o.min_version,
        o.handshake_timeout,
        o.client_auth,
        o.client_ca_file,
        o.client_crl_file
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

type Loaded = (CertifiedKey, CertificateInfo, Vec<TlsProblem>);

/// One certificate chain and its key, checked; warnings for a validity window `now` is outside.
fn load_certificate(
    i: usize,
    files: &CertificateFiles,
    provider: &CryptoProvider,
    now: i64,
    digest: &mut Digest,
) -> Result<Loaded, Vec<TlsProblem>> {
    let mut problems = Vec::new();
    let cert_path = &files.cert_file;
    let chain = pem::read(cert_path)
        .and_then(|b| {
            digest.add("cert", &b);
            pem::certs(cert_path, &b)
        })
        .and_then(|chain| {
            let leaf = leaf_facts(&chain[0])
                .map_err(|m| format!("{}: first certificate: {m}", cert_path.display()))?;
            for (n, c) in chain.iter().enumerate().skip(1) {
                if x509_parser::parse_x509_certificate(c).is_err() {
                    return Err(format!(
                        "{}: certificate {} of the chain is not a valid X.509 certificate",
                        cert_path.display(),
                        n + 1
                    ));
                }
            }
            Ok((chain, leaf))
        })
        .map_err(|m| problems.push(TlsProblem::cert(i, "cert_file", m)))
        .ok();
    let key_path = &files.key_file;
    let key = pem::read(key_path)
        .and_then(|b| {
            digest.add("key", &b);
            pem::key(key_path, &b)
        })
        .and_then(|k| {
            provider.key_provider.load_private_key(k).map_err(|_| {
                format!(
                    "unsupported private key in {} (expected RSA, ECDSA P-256/P-384 or Ed25519)",
                    key_path.display()
                )
            })
        })
        .map_err(|m| problems.push(TlsProblem::cert(i, "key_file", m)))
        .ok();
    let ocsp = files.ocsp_file.as_ref().and_then(|p| {
        pem::read(p)
            .and_then(|b| {
                digest.add("ocsp", &b);
                pem::ocsp(p, b)
            })
            .map_err(|m| problems.push(TlsProblem::cert(i, "ocsp_file", m)))
            .ok()
    });
    let (Some((chain, leaf)), Some(key)) = (chain, key) else {
        return Err(problems);
    };
    let fingerprint = pem::fingerprint(&chain[0]);
    let mut certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => problems.push(TlsProblem::cert(
            i,
            "key_file",
            format!(
                "the private key in {} does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
        )),
        Err(e) => problems.push(TlsProblem::cert(
            i,
            "cert_file",
            format!("{}: {e}", cert_path.display()),
        )),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    certified.ocsp = ocsp;
    let mut warnings = Vec::new();
    if now > leaf.not_after {
        let m = format!(
            "{} expired on {} (clients will refuse it)",
            cert_path.display(),
            leaf.not_after_text
        );
        warnings.push(TlsProblem::cert(i, "cert_file", m));
    } else if now < leaf.not_before {
        let m = format!(
            "{} is not valid before {} (clients will refuse it until then)",
            cert_path.display(),
            leaf.not_before_text
        );
        warnings.push(TlsProblem::cert(i, "cert_file", m));
    }
    let info = CertificateInfo {
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
        ocsp_file: files.ocsp_file.clone(),
        names: leaf.names,
        not_after: leaf.not_after,
        fingerprint,
    };
    Ok((certified, info, warnings))
}

/// What SNI and the validity check need from an end-entity certificate.
struct Leaf {
    names: Vec<String>,
    not_before: i64,
    not_after: i64,
    not_before_text: String,
    not_after_text: String,
}

fn leaf_facts(der: &[u8]) -> Result<Leaf, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| "not a valid X.509 certificate".to_owned())?;
    let mut names: Vec<String> = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|_| "malformed subjectAltName extension".to_owned())?;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        if let GeneralName::DNSName(d) = name {
            if let Some(n) = sni_name(d) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    let v = cert.validity();
    Ok(Leaf {
        names,
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        not_before_text: v.not_before.to_string(),
        not_after_text: v.not_after.to_string(),
    })
}

/// A certificate's DNS name as SNI matches it: lower-cased, no trailing dot; a wildcard only as
/// the whole first label (`*.example.com`). Anything else (`f*.example.com`) matches nothing.
fn sni_name(name: &str) -> Option<String> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let rest = n.strip_prefix("*.").unwrap_or(&n);
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then_some(n)
}

/// The client-certificate verifier `client_auth` asks for; `None` after recording a problem.
fn client_verifier(
    opts: &ServerTlsOptions,
    provider: &Arc<CryptoProvider>,
    digests: [&mut Digest; 2],
    problems: &mut Vec<TlsProblem>,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let [digest, trust] = digests;
    if opts.client_auth == ClientAuth::None {
        return Some(WebPkiClientVerifier::no_client_auth());
    }
    let Some(ca_path) = &opts.client_ca_file else {
        let m = format!(
            "missing (required by client_auth = \"{}\")",
            opts.client_auth.name()
        );
        problems.push(TlsProblem::setting("client_ca_file", m));
        return None;
    };
    let roots = pem::read(ca_path)
        .and_then(|b| {
            digest.add("client_ca", &b);
            trust.add("client_ca", &b);
            pem::roots(ca_path, &b)
        })
        .map_err(|m| problems.push(TlsProblem::setting("client_ca_file", m)))
        .ok();
    let crls = opts.client_crl_file.as_ref().map(|p| {
        pem::read(p)
            .and_then(|b| {
                digest.add("client_crl", &b);
                trust.add("client_crl", &b);
                pem::crls(p, &b)
            })
            .map_err(|m| problems.push(TlsProblem::setting("client_crl_file", m)))
            .ok()
    });
    let crls = match crls {
        None => Vec::new(),
        Some(Some(c)) => c,
        Some(None) => return None,
    };
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots?), provider.clone());
    if !crls.is_empty() {
        builder = builder.with_crls(crls);
    }
    if opts.client_auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|e| {
            let (key, m) = match e {
                rustls::server::VerifierBuilderError::InvalidCrl(e) => (
                    "client_crl_file",
                    format!("invalid CRL in {}: {e:?}", crl_path(opts)),
                ),
                rustls::server::VerifierBuilderError::NoRootAnchors => (
                    "client_ca_file",
                    format!("no CA certificate in {}", ca_path.display()),
                ),
                other => ("client_ca_file", format!("{other:?}")),
            };
            problems.push(TlsProblem::setting(key, m));
        })
        .ok()
}

fn crl_path(opts: &ServerTlsOptions) -> String {
    (opts.client_crl_file.as_ref()).map_or_else(String::new, |p| p.display().to_string())
}

/// The process-wide [`ticketer`], with every ticket bound to one client-certificate policy (mode,
/// CA and CRL contents). rustls does not verify the client again on resumption, so a ticket from a
/// listener without `client_auth`, or with another CA, must not resume where a certificate would
/// have been demanded or verified differently: the policy's digest goes inside the encrypted
/// ticket and a ticket with another one is not opened (the client gets a full handshake). Between
/// listeners and generations with the same policy, tickets resume as before.
#[derive(Debug)]
struct BoundTicketer {
    inner: Arc<dyn ProducesTickets>,
    policy: [u8; 32],
}

impl ProducesTickets for BoundTicketer {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut bound = Vec::with_capacity(self.policy.len() + plain.len());
        bound.extend_from_slice(&self.policy);
        bound.extend_from_slice(plain);
        self.inner.encrypt(&bound)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let mut plain = self.inner.decrypt(cipher)?;
        if !plain.starts_with(&self.policy) {
            return None;
        }
        plain.drain(..self.policy.len());
        Some(plain)
    }
}

/// Picks a certificate by SNI: exact names, then `*.` wildcards, then the default.
pub(super) struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// Name -> certificates carrying it, in file order.
    exact: HashMap<String, Vec<usize>>,
    /// `example.com` -> certificates carrying `*.example.com`.
    wildcard: HashMap<String, Vec<usize>>,
    /// The first certificate, and any other with exactly its names (its RSA/ECDSA twin).
    default: Vec<usize>,
    unknown: UnknownSni,
}

impl SniResolver {
    pub(super) fn new(
        keys: Vec<Arc<CertifiedKey>>,
        infos: &[CertificateInfo],
        unknown: UnknownSni,
    ) -> Self {
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, info) in infos.iter().enumerate() {
            for name in &info.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(rest) => (&mut wildcard, rest),
                    None => (&mut exact, name.as_str()),
                };
                map.entry(key.to_owned()).or_insert_with(Vec::new).push(i);
            }
        }
        let sorted = |i: usize| {
            let mut n = infos[i].names.clone();
            n.sort();
            n
        };
        let default = match infos.first() {
            None => Vec::new(),
            Some(_) => (0..infos.len())
                .filter(|&i| i == 0 || (!infos[0].names.is_empty() && sorted(i) == sorted(0)))
                .collect(),
        };
        SniResolver {
            keys,
            exact,
            wildcard,
            default,
            unknown,
        }
    }

    /// The index of the certificate for a client that sent `sni` and offers `schemes`; `None`:
    /// fail the handshake.
    pub(super) fn select(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Option<usize> {
        let candidates = match sni {
            None => &self.default,
            Some(name) => match self.lookup(name) {
                Some(c) => c,
                None if self.unknown == UnknownSni::Reject => return None,
                None => &self.default,
            },
        };
        match candidates.as_slice() {
            [] => None,
            [one] => Some(*one),
            [first, ..] => candidates
                .iter()
                .copied()
                .find(|&i| self.keys[i].key.choose_scheme(schemes).is_some())
                .or(Some(*first)),
        }
    }

    fn lookup(&self, name: &str) -> Option<&Vec<usize>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(c) = self.exact.get(name) {
            return Some(c);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(parent)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let i = self.select(hello.server_name(), hello.signature_schemes())?;
        Some(self.keys[i].clone())
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.keys.len())
            .field("exact", &self.exact)
            .field("wildcard", &self.wildcard)
            .field("unknown", &self.unknown)
            .finish()
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
pub(super) mod tests;
