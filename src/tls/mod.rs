//! TLS settings built into rustls configs: what a listener serves and how upstreams are dialled.
//!
//! Owns the types the runtime reads ([`ServerTls`] per TLS listener, [`UpstreamTls`] per upstream,
//! [`ClientCert`] per verified client) and their builders. Nothing here touches a socket: the
//! stream adapter (`net`) drives rustls with these configs.
//!
//! Parts: `pem.rs` reads certificate, key, CRL and OCSP files with errors that name the file and
//! never the key material; `server.rs` builds a [`ServerTls`] (certificates, the SNI resolver,
//! client-certificate verification, resumption); `client.rs` builds an [`UpstreamTls`] (trust
//! anchors, client identity, the `insecure_skip_verify` verifier); `peer.rs` turns a verified client
//! certificate into the facts routes and upstream headers use.
//!
//! Flow: config validation (`config::tls`) parses the TOML keys into [`ServerTlsOptions`] /
//! [`UpstreamTlsOptions`] and calls [`ServerTls::build`] / [`UpstreamTls::build`] at load and at
//! every reload, so a bad certificate is a config error (with the key's position) that keeps the
//! old generation. Builders report every problem as a [`TlsProblem`] naming the setting.
//!
//! Cipher policy: rustls' `ring` provider, nothing added. TLS 1.3: AES-128-GCM, AES-256-GCM,
//! ChaCha20-Poly1305. TLS 1.2 (unless `min_version = "1.3"`): ECDHE-ECDSA and ECDHE-RSA with
//! AES-128/256-GCM or ChaCha20-Poly1305. Key exchange X25519, P-256, P-384. No CBC, no RSA key
//! exchange, no static DH, no SHA-1 signatures, no renegotiation, no compression, no 0-RTT data.
//!
//! Resumption: one process-wide rotating ticketer ([`server::ticketer`], rustls' ring `Ticketer`,
//! a new key every 6 hours, tickets valid for 12) shared by every listener, worker and config
//! generation, so a ticket issued on one core resumes on any other and across reloads. Each ticket
//! is bound to the client-certificate policy it was issued under (`client_auth`, CA and CRL
//! contents): rustls does not verify a client again on resumption, so a ticket never resumes where
//! the client would have been verified differently (a full handshake instead). Plus a session-ID
//! cache of [`server::SESSION_CACHE_ENTRIES`] per listener config for TLS 1.2 clients without
//! tickets (rustls' cache takes a lock per stored or resumed session: a handshake, never a
//! request). Upstream configs keep rustls' in-memory client session cache; one `Arc<ClientConfig>`
//! is shared by every worker, so reconnects resume.
//!
//! Secrets: private keys are read, handed to rustls, and dropped. No type here prints one: the
//! `Debug` impls are written by hand and show file paths and settings only.

/// A trust store of the CA certificates in a PEM file (the `[[auth]]` policies' `ca_file`).
pub fn ca_file_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    pem::read(path).and_then(|b| pem::roots(path, &b))
}

mod client;
mod peer;
mod pem;
mod server;

#[cfg(test)]
pub(crate) mod testcerts;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;

pub use client::UpstreamTlsOptions;
pub use peer::{client_cert, ClientCert};
pub use server::{
    ticketer, CertificateFiles, ServerTlsOptions, DEFAULT_HANDSHAKE_TIMEOUT, SESSION_CACHE_ENTRIES,
};

/// The one crypto provider: rustls' `ring` suites, kx groups and signature algorithms.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    // Deprecated in rustls 0.23.3x only because ring has no post-quantum key exchange (aws-lc-rs
    // has); the build is ring-only by choice (no C/cmake toolchain for aws-lc).
    #[allow(deprecated)]
    let make = || Arc::new(rustls::crypto::ring::default_provider());
    PROVIDER.get_or_init(make).clone()
}

/// The ALPN protocol spoken today (HTTP/1.1); `h2` comes with HTTP/2 support.
pub const ALPN_HTTP11: &str = "http/1.1";
pub const ALPN_H2: &str = "h2";

/// A TLS listener's server side, built once per config generation.
pub struct ServerTls {
    /// Shared by every worker; the certificate resolver, verifier and ticketer live inside.
    pub config: Arc<rustls::ServerConfig>,
    /// The whole handshake must finish within this, or the connection is closed.
    pub handshake_timeout: Duration,
    pub client_auth: ClientAuth,
    /// The certificates as configured, in order (the first is the default).
    pub certificates: Vec<CertificateInfo>,
    pub unknown_sni: UnknownSni,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    pub session_tickets: bool,
    pub client_ca_file: Option<PathBuf>,
    pub client_crl_file: Option<PathBuf>,
    /// SHA-256 over the settings and every file's contents (see `PartialEq`).
    digest: [u8; 32],
}

/// One configured certificate: where it came from and what it says (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ocsp_file: Option<PathBuf>,
    /// DNS names from subjectAltName, lower-cased (`*.example.com` for a wildcard): what SNI
    /// selects it by.
    pub names: Vec<String>,
    /// Unix time the certificate stops being valid.
    pub not_after: i64,
    /// SHA-256 of the end-entity certificate (DER), lower-case hex.
    pub fingerprint: String,
}

/// `client_auth`: whether a listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is requested.
    None,
    /// Requested; a client without one is let in unauthenticated, a client with an untrusted one
    /// fails the handshake.
    Optional,
    /// A certificate that chains to `client_ca_file` is needed to finish the handshake.
    Required,
}

impl ClientAuth {
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        }
    }
}

/// `unknown_sni`: what a client naming a host no certificate covers gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSni {
    /// The first (default) certificate.
    Default,
    /// A failed handshake. A client that names no host at all still gets the default.
    Reject,
}

impl UnknownSni {
    pub fn name(self) -> &'static str {
        match self {
            UnknownSni::Default => "default",
            UnknownSni::Reject => "reject",
        }
    }
}

/// `min_version`: the oldest protocol version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// An upstream's client side, built once per config generation.
pub struct UpstreamTls {
    /// Shared by every worker: its session cache makes reconnects resume.
    pub config: Arc<rustls::ClientConfig>,
    /// `sni`: the name sent and verified; `None`: each endpoint's IP address is verified (and no
    /// SNI is sent, as for any IP).
    pub sni: Option<ServerName<'static>>,
    /// Certificates are not verified (handshake signatures still are).
    pub insecure_skip_verify: bool,
    /// `None`: the system's root certificates (or none at all with `insecure_skip_verify`).
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// SHA-256 over the settings, the trust anchors in use and the client identity's files.
    digest: [u8; 32],
}

impl UpstreamTls {
    /// The name to send and verify for a connection to `endpoint`: `sni` if set, else its IP.
    pub fn server_name(&self, endpoint: SocketAddr) -> ServerName<'static> {
        match &self.sni {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(endpoint.ip().into()),
        }
    }

    /// `sni` as written (for showing the config).
    pub fn sni_text(&self) -> Option<String> {
        self.sni.as_ref().map(|n| n.to_str().into_owned())
    }
}

/// Equal when the settings, the trust anchors and the client identity are: a changed CA or client
/// certificate file counts as a change even under the same path.
impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

/// Equal when every setting and every file's contents are.
impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("certificates", &self.certificates)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("client_auth", &self.client_auth)
            .field("unknown_sni", &self.unknown_sni)
            .field("alpn", &self.alpn)
            .field("min_version", &self.min_version)
            .field("session_tickets", &self.session_tickets)
            .field("client_ca_file", &self.client_ca_file)
            .field("client_crl_file", &self.client_crl_file)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni_text())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .finish_non_exhaustive()
    }
}

/// Which setting a [`TlsProblem`] is about, so that the config layer can name the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsKey {
    /// A key of the settings table (`client_ca_file`, `ca_file`, ...); `""`: the table itself.
    Setting(&'static str),
    /// `certificates[index].field` (`cert_file`, `key_file`, `ocsp_file`).
    Certificate(usize, &'static str),
}

/// One error or warning from a builder: which setting, and a short lower-case message that names
/// files by path and never shows key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProblem {
    pub key: TlsKey,
    pub message: String,
}

impl TlsProblem {
    fn setting(key: &'static str, message: impl Into<String>) -> Self {
        TlsProblem {
            key: TlsKey::Setting(key),
            message: message.into(),
        }
    }

    fn cert(index: usize, field: &'static str, message: impl Into<String>) -> Self {
        TlsProblem {
            key: TlsKey::Certificate(index, field),
            message: message.into(),
        }
    }
}

/// A built config and the warnings met on the way (an expired certificate, an unverified
/// upstream): worth logging, not worth refusing the config for.
pub type Built<T> = Result<(T, Vec<TlsProblem>), Vec<TlsProblem>>;
