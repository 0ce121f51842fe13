//! The client side, for upstreams: [`UpstreamTls::build`] turns an upstream's `tls` settings into
//! a rustls `ClientConfig`.
//!
//! Trust: `ca_file`'s certificates only when given, else the system's roots
//! (rustls-native-certs: `SSL_CERT_FILE` / `SSL_CERT_DIR`, then the platform's bundle), read at
//! every config load. The name verified is `sni`, else the endpoint's IP address (the certificate
//! then needs that IP in subjectAltName). `insecure_skip_verify` replaces all of that with
//! [`NoVerification`]: any certificate is accepted, but the handshake's signatures are still
//! checked with the provider's algorithms (so the peer at least holds the key it presents), and the
//! build returns a warning to be logged. A client certificate (`client_cert_file` +
//! `client_key_file`, both or neither) is presented when the upstream asks for one.
//!
//! ALPN offers `http/1.1`. Resumption: rustls' default in-memory client session cache, inside the
//! `ClientConfig` that every worker shares.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::pem::{self, Digest};
use super::{provider, Built, TlsProblem, UpstreamTls};

/// An upstream's `tls` table (paths already resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTlsOptions {
    /// The name sent as SNI and verified; a DNS name or an IP address.
    pub sni: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Protocols offered by ALPN, in order of preference (from the upstream's `protocol`).
    pub alpn: Vec<&'static str>,
}

impl UpstreamTls {
    /// Reads every file and builds the rustls config; every problem is reported, each naming its
    /// setting. `insecure_skip_verify` adds a warning.
    pub fn build(opts: UpstreamTlsOptions) -> Built<UpstreamTls> {
        let provider = provider();
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let mut digest = Digest::new();
        digest.add("settings", format!("{opts:?}").as_bytes());
        let sni = opts.sni.as_ref().and_then(|s| {
            ServerName::try_from(s.clone())
                .map_err(|_| {
                    let m = format!(
                        "invalid name \"{s}\" (expected a DNS name like \"billing.internal\" or \
                         an IP address)"
                    );
                    problems.push(TlsProblem::setting("sni", m));
                })
                .ok()
        });
        let roots = match (&opts.ca_file, opts.insecure_skip_verify) {
            (Some(_), true) => {
                let m = "not allowed together with insecure_skip_verify = true";
                problems.push(TlsProblem::setting("ca_file", m));
                None
            }
            (None, true) => {
                warnings.push(TlsProblem::setting(
                    "insecure_skip_verify",
                    "upstream certificates are NOT verified: anyone on the path can read and \
                     change this traffic (use ca_file instead)",
                ));
                None
            }
            (Some(path), false) => pem::read(path)
                .and_then(|b| {
                    digest.add("ca", &b);
                    pem::roots(path, &b).map(Some)
                })
                .map_err(|m| problems.push(TlsProblem::setting("ca_file", m)))
                .unwrap_or(None),
            (None, false) => match system_roots(&mut digest) {
                Ok(r) => Some(r),
                Err(m) => {
                    problems.push(TlsProblem::setting("", m));
                    None
                }
            },
        };
        let identity = client_identity(&opts, &provider, &mut digest, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![TlsProblem::setting("", e.to_string())])?;
        let builder = match roots {
            Some(roots) => builder.with_root_certificates(roots),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        };
        let mut config = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| vec![TlsProblem::setting("client_key_file", e.to_string())])?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = opts.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        let tls = UpstreamTls {
            config: Arc::new(config),
            sni,
            insecure_skip_verify: opts.insecure_skip_verify,
            ca_file: opts.ca_file,
            client_cert_file: opts.client_cert_file,
            client_key_file: opts.client_key_file,
            digest: digest.finish(),
        };
        Ok((tls, warnings))
    }
}

/// The system's root certificates; an error when there are none (nothing could be verified).
fn system_roots(digest: &mut Digest) -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    for c in &found.certs {
        digest.add("root", c);
    }
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or(String::new(), |e| format!(": {e}"));
        return Err(format!(
            "no system root certificates found{why} (give ca_file, or set SSL_CERT_FILE)"
        ));
    }
    Ok(roots)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `client_cert_file` + `client_key_file`: both or neither; the key must match the certificate.
fn client_identity(
    opts: &UpstreamTlsOptions,
    provider: &CryptoProvider,
    digest: &mut Digest,
    problems: &mut Vec<TlsProblem>,
) -> Option<Identity> {
    let (cert_path, key_path) = match (&opts.client_cert_file, &opts.client_key_file) {
        (None, None) => return None,
        (Some(_), None) => {
            let m = "missing (client_cert_file needs its key)";
            problems.push(TlsProblem::setting("client_key_file", m));
            return None;
        }
        (None, Some(_)) => {
            let m = "missing (client_key_file needs its certificate)";
            problems.push(TlsProblem::setting("client_cert_file", m));
            return None;
        }
        (Some(c), Some(k)) => (c, k),
    };
    let chain = pem::read(cert_path)
        .and_then(|b| {
            digest.add("client_cert", &b);
            pem::certs(cert_path, &b)
        })
        .map_err(|m| problems.push(TlsProblem::setting("client_cert_file", m)))
        .ok();
    let key = pem::read(key_path)
        .and_then(|b| {
            digest.add("client_key", &b);
            pem::key(key_path, &b)
        })
        .map_err(|m| problems.push(TlsProblem::setting("client_key_file", m)))
        .ok();
    let (chain, key) = (chain?, key?);
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), provider) {
        Ok(_) => Some((chain, key)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            problems.push(TlsProblem::setting(
                "client_key_file",
                format!(
                    "the private key in {} does not match the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
            ));
            None
        }
        Err(_) => {
            problems.push(TlsProblem::setting(
                "client_key_file",
                format!(
                    "unsupported private key in {} (expected RSA, ECDSA P-256/P-384 or Ed25519)",
                    key_path.display()
                ),
            ));
            None
        }
    }
}

/// `insecure_skip_verify = true`: accepts any certificate for any name; still verifies the
/// handshake signatures, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
pub(super) struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
