//! TLS for the outbound client's `https://` URLs: which certificates it trusts, and how a
//! failed handshake reads in a log line.
//!
//! Owns: [`config`] (a rustls client config over given roots: ring provider, TLS 1.2 and 1.3,
//! ALPN `http/1.1`, no client certificate), [`default_config`] (the same over the system's trusted
//! roots, built once per process), [`server_name`] (the name the certificate must match: the URL's
//! host, DNS name or IP address; also sent as SNI for names) and [`handshake_error`] (a
//! [`HandshakeFail`] as a one-line reason that says "certificate verification failed" when that is
//! what happened).
//!
//! System roots come from `rustls-native-certs`: the platform store, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` when set. Loading reads files, so it blocks the calling thread once (a few ms);
//! the first `https://` request pays it unless startup calls [`default_config`] first. A store
//! with no usable certificate is an error at every request rather than a config that trusts
//! nothing and fails each handshake with a less clear message.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;

use crate::net::tls::HandshakeFail;

/// The only application protocol the client speaks.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A client config that verifies servers against `roots`, offering ALPN `http/1.1`. Configs given
/// in `ClientOpts::tls` should offer `http/1.1` or nothing: a server that picks anything else is
/// refused.
pub fn config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    // Deprecated since rustls 0.23.48 only because ring has no post-quantum key exchange; the
    // build is ring-only by choice (no C/cmake toolchain for aws-lc-rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring implements every default version; an error here would be a rustls bug
        .unwrap_or_else(|e| unreachable!("ring provider lacks TLS 1.2/1.3: {e}"));
    let mut c = builder.with_root_certificates(roots).with_no_client_auth();
    c.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(c)
}

/// The process-wide config over the system's trusted roots, loaded on first use; `Err` says why
/// no root could be loaded.
pub fn default_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static DEFAULT: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    DEFAULT.get_or_init(load_system_roots).clone()
}

fn load_system_roots() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!(": {e}"),
            None => String::new(),
        };
        return Err(format!(
            "no trusted root certificates found in the system store{why}"
        ));
    }
    Ok(config(roots))
}

/// The name the server's certificate must be valid for: the URL's host, a DNS name or an IP
/// address (IPv6 without brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))
}

/// A failed handshake with `host` as one line (the timeout is the caller's to report).
pub fn handshake_error(host: &str, fail: &HandshakeFail) -> String {
    use rustls::{CertificateError, Error};
    match fail {
        HandshakeFail::Timeout => format!("TLS handshake with {host} timed out"),
        HandshakeFail::Closed => {
            format!("connection to {host} closed or reset during the TLS handshake")
        }
        HandshakeFail::Tls(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            format!(
                "certificate verification failed for {host}: UnknownIssuer (not issued by a \
                 trusted CA)"
            )
        }
        HandshakeFail::Tls(Error::InvalidCertificate(detail)) => {
            format!("certificate verification failed for {host}: {detail}")
        }
        HandshakeFail::Tls(why) => format!("TLS handshake with {host} failed: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_hosts() {
        assert!(matches!(
            server_name("idp.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad_name!").is_err());
    }

    #[test]
    fn handshake_errors_read_as_one_line() {
        use rustls::{AlertDescription, CertificateError, Error};
        let bad_cert =
            HandshakeFail::Tls(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert_eq!(
            handshake_error("idp", &bad_cert),
            "certificate verification failed for idp: UnknownIssuer (not issued by a trusted CA)"
        );
        let expired = HandshakeFail::Tls(Error::InvalidCertificate(CertificateError::Expired));
        assert!(handshake_error("idp", &expired)
            .starts_with("certificate verification failed for idp: "));
        let alert = HandshakeFail::Tls(Error::AlertReceived(AlertDescription::HandshakeFailure));
        assert_eq!(
            handshake_error("idp", &alert),
            "TLS handshake with idp failed: received fatal alert: HandshakeFailure"
        );
        assert!(handshake_error("idp", &HandshakeFail::Closed).contains("closed"));
    }

    #[test]
    fn configs_offer_http11_only() {
        let c = config(rustls::RootCertStore::empty());
        assert_eq!(c.alpn_protocols, vec![ALPN_HTTP11.to_vec()]);
    }
}
