use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConnection};

use super::*;
use crate::tls::testcerts::{self, Ca, Pair, TempDir};
use crate::tls::TlsKey;

/// Runs a handshake in memory, then hands post-handshake messages (TLS 1.3 tickets) over.
pub(crate) fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(ServerConnection, ClientConnection), rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut c = ClientConnection::new(client, name)?;
    let mut s = ServerConnection::new(server)?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut &buf[..]).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() && !s.wants_write() && !c.wants_write() {
            return Ok((s, c));
        }
    }
    panic!("handshake did not finish");
}

/// Accepts any server certificate; remembers the stapled OCSP response.
#[derive(Debug, Default)]
pub(crate) struct AnyCert(OnceLock<Vec<u8>>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let _ = self.0.set(ocsp.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(m, c, d, algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_with(
    verifier: Arc<AnyCert>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<&Pair>,
) -> ClientConfig {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut c = match identity {
        Some(p) => {
            let chain = vec![CertificateDer::from(p.der.clone())];
            let key = PrivateKeyDer::from_pem_slice(p.key_pem.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

fn client() -> Arc<ClientConfig> {
    Arc::new(client_with(Arc::default(), rustls::DEFAULT_VERSIONS, None))
}

use rustls::pki_types::pem::PemObject;

/// Writes each pair as `cN.pem` / `cN.key` and returns the files.
fn files(dir: &TempDir, pairs: &[&Pair]) -> Vec<CertificateFiles> {
    (pairs.iter().enumerate())
        .map(|(i, p)| CertificateFiles {
            cert_file: dir.write(&format!("c{i}.pem"), &p.cert_pem),
            key_file: dir.write(&format!("c{i}.key"), &p.key_pem),
            ocsp_file: None,
        })
        .collect()
}

fn build(opts: ServerTlsOptions) -> ServerTls {
    match ServerTls::build(opts) {
        Ok((t, _)) => t,
        Err(p) => panic!("{p:?}"),
    }
}

fn served(tls: &ServerTls, sni: &str) -> Result<Vec<u8>, rustls::Error> {
    let mut client = client_with(Arc::default(), rustls::DEFAULT_VERSIONS, None);
    if sni.is_empty() {
        client.enable_sni = false;
    }
    let name = if sni.is_empty() {
        "unused.invalid"
    } else {
        sni
    };
    let (_, c) = handshake(tls.config.clone(), Arc::new(client), name)?;
    Ok(c.peer_certificates().unwrap()[0].to_vec())
}

#[test]
fn sni_exact_wildcard_default_and_reject() {
    let dir = TempDir::new("sni");
    let api = testcerts::self_signed(&["api.example.com"]);
    let wild = testcerts::self_signed(&["*.example.com"]);
    let other = testcerts::self_signed(&["www.other.org", "*.Other.ORG."]);
    let mut opts = ServerTlsOptions::new(files(&dir, &[&api, &wild, &other]));
    let tls = build(opts.clone());
    assert_eq!(tls.certificates[1].names, ["*.example.com"]);
    assert_eq!(tls.certificates[2].names, ["www.other.org", "*.other.org"]);
    assert_eq!(served(&tls, "api.example.com").unwrap(), api.der, "exact");
    assert_eq!(
        served(&tls, "API.Example.COM").unwrap(),
        api.der,
        "any case"
    );
    assert_eq!(served(&tls, "x.example.com").unwrap(), wild.der, "wildcard");
    assert_eq!(served(&tls, "a.other.org").unwrap(), other.der);
    assert_eq!(served(&tls, "www.other.org").unwrap(), other.der);
    assert_eq!(served(&tls, "").unwrap(), api.der, "no SNI: the first");
    assert_eq!(
        served(&tls, "a.b.example.com").unwrap(),
        api.der,
        "one label only"
    );
    assert_eq!(
        served(&tls, "example.com").unwrap(),
        api.der,
        "not the apex"
    );
    assert_eq!(
        served(&tls, "nothing.test").unwrap(),
        api.der,
        "unknown: default"
    );

    opts.unknown_sni = UnknownSni::Reject;
    let tls = build(opts);
    assert!(served(&tls, "nothing.test").is_err());
    assert!(served(&tls, "a.b.example.com").is_err());
    assert_eq!(
        served(&tls, "").unwrap(),
        api.der,
        "no SNI still gets the default"
    );
    assert_eq!(served(&tls, "x.example.com").unwrap(), wild.der);
}

#[test]
fn exact_beats_wildcard_whatever_the_order() {
    let dir = TempDir::new("order");
    let wild = testcerts::self_signed(&["*.example.com"]);
    let exact = testcerts::self_signed(&["api.example.com"]);
    let tls = build(ServerTlsOptions::new(files(&dir, &[&wild, &exact])));
    assert_eq!(served(&tls, "api.example.com").unwrap(), exact.der);
    assert_eq!(served(&tls, "web.example.com").unwrap(), wild.der);
}

#[test]
fn same_names_pick_by_the_clients_signature_schemes() {
    let dir = TempDir::new("dual");
    let ecdsa = testcerts::self_signed(&["a.example"]);
    let ed = testcerts::self_signed_with(&["a.example"], &rcgen::PKCS_ED25519);
    let fs = files(&dir, &[&ecdsa, &ed]);
    let mut keys = Vec::new();
    let mut infos = Vec::new();
    let mut digest = Digest::new();
    for (i, f) in fs.iter().enumerate() {
        let (k, info, _) = load_certificate(i, f, &provider(), 0, &mut digest).unwrap();
        keys.push(Arc::new(k));
        infos.push(info);
    }
    let r = SniResolver::new(keys, &infos, UnknownSni::Reject);
    let ed_only = [SignatureScheme::ED25519];
    let p256 = [SignatureScheme::ECDSA_NISTP256_SHA256];
    assert_eq!(r.select(Some("a.example"), &ed_only), Some(1));
    assert_eq!(r.select(Some("a.example"), &p256), Some(0));
    assert_eq!(r.select(None, &ed_only), Some(1), "twins of the default");
    assert_eq!(r.select(Some("b.example"), &p256), None);
    // Nothing fits: the first still answers (the handshake fails with a clear alert).
    assert_eq!(r.select(Some("a.example"), &[]), Some(0));
}

#[test]
fn key_mismatch_is_an_error_naming_the_key_file() {
    let dir = TempDir::new("mismatch");
    let a = testcerts::self_signed(&["a.example"]);
    let b = testcerts::self_signed(&["b.example"]);
    let cert_file = dir.write("a.pem", &a.cert_pem);
    let key_file = dir.write("b.key", &b.key_pem);
    let opts = ServerTlsOptions::new(vec![CertificateFiles {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        ocsp_file: None,
    }]);
    let p = ServerTls::build(opts).err().unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, TlsKey::Certificate(0, "key_file"));
    assert_eq!(
        p[0].message,
        format!(
            "the private key in {} does not match the certificate in {}",
            key_file.display(),
            cert_file.display()
        )
    );
    assert!(!p[0].message.contains("PRIVATE KEY"));
}

#[test]
fn expired_certificate_is_a_warning() {
    let dir = TempDir::new("expired");
    let old = testcerts::expired(&["old.example"]);
    let (tls, warnings) = ServerTls::build(ServerTlsOptions::new(files(&dir, &[&old]))).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, TlsKey::Certificate(0, "cert_file"));
    assert!(warnings[0].message.contains("expired on"), "{warnings:?}");
    assert!(warnings[0].message.contains("2001"), "{warnings:?}");
    assert!(tls.certificates[0].not_after < unix_now());
}

#[test]
fn missing_and_broken_files() {
    let dir = TempDir::new("missing");
    let a = testcerts::self_signed(&["a.example"]);
    let nameless = testcerts::self_signed(&[]);
    let mut fs = files(&dir, &[&a, &nameless]);
    fs.push(CertificateFiles {
        cert_file: dir.path().join("nope.pem"),
        key_file: dir.write("garbage.key", "not a key"),
        ocsp_file: Some(dir.write("ocsp.der", "PEM?")),
    });
    let p = ServerTls::build(ServerTlsOptions::new(fs)).err().unwrap();
    let got: Vec<(TlsKey, String)> = p.into_iter().map(|p| (p.key, p.message)).collect();
    let d = dir.path().display();
    assert_eq!(
        got,
        [
            (
                TlsKey::Certificate(1, "cert_file"),
                format!("{d}/c1.pem has no DNS names in subjectAltName, so SNI can never select it (only the first certificate serves clients without SNI)")
            ),
            (
                TlsKey::Certificate(2, "cert_file"),
                format!("cannot read {d}/nope.pem: No such file or directory (os error 2)")
            ),
            (
                TlsKey::Certificate(2, "key_file"),
                format!("no private key in {d}/garbage.key (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)")
            ),
            (
                TlsKey::Certificate(2, "ocsp_file"),
                format!("{d}/ocsp.der is not a DER OCSP response (as written by openssl ocsp -respout)")
            ),
        ]
    );
    let p = ServerTls::build(ServerTlsOptions::new(Vec::new()))
        .err()
        .unwrap();
    assert_eq!(p[0].key, TlsKey::Setting("certificates"));
}

/// The PKCS#8 P-256 key of `pem` as SEC1 (`EC PRIVATE KEY`): the OCTET STRING inside PKCS#8.
fn sec1(pem: &str) -> String {
    use base64::Engine;
    use x509_parser::der_parser::parse_der;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, seq) = parse_der(der.secret_pkcs8_der()).unwrap();
    let inner = seq.as_sequence().unwrap()[2].as_slice().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
    format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n")
}

#[test]
fn key_formats_and_algorithms() {
    let dir = TempDir::new("formats");
    let p256 = testcerts::self_signed(&["p256.example"]);
    let p384 = testcerts::self_signed_with(&["p384.example"], &rcgen::PKCS_ECDSA_P384_SHA384);
    let ed = testcerts::self_signed_with(&["ed.example"], &rcgen::PKCS_ED25519);
    let mut fs = files(&dir, &[&p256, &p384, &ed]);
    fs[0].key_file = dir.write("sec1.key", sec1(&p256.key_pem));
    assert!(std::fs::read_to_string(&fs[0].key_file)
        .unwrap()
        .contains("EC PRIVATE KEY"));
    let tls = build(ServerTlsOptions::new(fs));
    assert_eq!(served(&tls, "p256.example").unwrap(), p256.der);
    assert_eq!(served(&tls, "p384.example").unwrap(), p384.der);
    assert_eq!(served(&tls, "ed.example").unwrap(), ed.der);
}

#[test]
fn alpn_versions_and_ocsp() {
    let dir = TempDir::new("alpn");
    let a = testcerts::self_signed(&["a.example"]);
    let mut fs = files(&dir, &[&a]);
    let ocsp = [0x30, 0x03, 0x0a, 0x01, 0x00];
    fs[0].ocsp_file = Some(dir.write("a.ocsp", ocsp));
    let mut opts = ServerTlsOptions::new(fs);
    let tls = build(opts.clone());
    let verifier = Arc::new(AnyCert::default());
    let tls12 = client_with(verifier.clone(), &[&rustls::version::TLS12], None);
    let (s, c) = handshake(tls.config.clone(), Arc::new(tls12), "a.example").unwrap();
    assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        verifier.0.get().map(Vec::as_slice),
        Some(&ocsp[..]),
        "stapled"
    );

    opts.min_version = TlsVersion::Tls13;
    let tls = build(opts);
    let tls12 = client_with(Arc::default(), &[&rustls::version::TLS12], None);
    assert!(handshake(tls.config.clone(), Arc::new(tls12), "a.example").is_err());
    let (_, c) = handshake(tls.config.clone(), client(), "a.example").unwrap();
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn resumption_survives_a_rebuild() {
    let dir = TempDir::new("resume");
    let a = testcerts::self_signed(&["a.example"]);
    let opts = ServerTlsOptions::new(files(&dir, &[&a]));
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let client = Arc::new(client_with(Arc::default(), versions, None));
        let first = build(opts.clone());
        let (_, c) = handshake(first.config.clone(), client.clone(), "a.example").unwrap();
        assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
        let (_, c) = handshake(first.config.clone(), client.clone(), "a.example").unwrap();
        assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
        // A reload builds a new config: the process-wide ticketer still opens the tickets.
        let second = build(opts.clone());
        let (_, c) = handshake(second.config.clone(), client.clone(), "a.example").unwrap();
        assert_eq!(
            c.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
    }
}

fn mtls(dir: &TempDir, ca: &Ca, auth: ClientAuth) -> ServerTlsOptions {
    let server = testcerts::self_signed(&["a.example"]);
    let mut opts = ServerTlsOptions::new(files(dir, &[&server]));
    opts.client_auth = auth;
    opts.client_ca_file = Some(dir.write("clients-ca.pem", ca.pem()));
    opts
}

fn connect_as(tls: &ServerTls, who: Option<&Pair>) -> Result<ServerConnection, rustls::Error> {
    let client = client_with(Arc::default(), rustls::DEFAULT_VERSIONS, who);
    handshake(tls.config.clone(), Arc::new(client), "a.example").map(|(s, _)| s)
}

#[test]
fn client_certificates_required_optional_and_revoked() {
    let dir = TempDir::new("mtls");
    let ca = Ca::new("clients");
    let good = ca.client("client-a", "client-a.example", 7);
    let revoked = ca.client("client-b", "client-b.example", 8);
    let stranger = Ca::new("other").client("x", "x.example", 9);

    let tls = build(mtls(&dir, &ca, ClientAuth::Required));
    let s = connect_as(&tls, Some(&good)).unwrap();
    let peer = crate::tls::client_cert(&s.peer_certificates().unwrap()[0]).unwrap();
    assert_eq!(peer.subject, "CN=client-a");
    assert_eq!(peer.sans, ["client-a.example"]);
    assert!(connect_as(&tls, None).is_err(), "required: none");
    assert!(connect_as(&tls, Some(&stranger)).is_err(), "untrusted");

    let mut opts = mtls(&dir, &ca, ClientAuth::Optional);
    let tls = build(opts.clone());
    assert!(connect_as(&tls, None)
        .unwrap()
        .peer_certificates()
        .is_none());
    assert!(
        connect_as(&tls, Some(&stranger)).is_err(),
        "optional still verifies"
    );

    opts.client_crl_file = Some(dir.write("clients.crl", ca.crl(&[8])));
    let tls = build(opts);
    assert!(connect_as(&tls, Some(&good)).is_ok());
    assert!(connect_as(&tls, Some(&revoked)).is_err(), "revoked");
}

#[test]
fn client_auth_needs_a_ca() {
    let dir = TempDir::new("noca");
    let ca = Ca::new("clients");
    let mut opts = mtls(&dir, &ca, ClientAuth::Required);
    opts.client_ca_file = None;
    let p = ServerTls::build(opts.clone()).err().unwrap();
    assert_eq!(p[0].key, TlsKey::Setting("client_ca_file"));
    assert_eq!(
        p[0].message,
        "missing (required by client_auth = \"required\")"
    );
    opts.client_ca_file = Some(dir.write("empty.pem", ""));
    opts.client_crl_file = Some(dir.write(
        "bad.crl",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    ));
    let p = ServerTls::build(opts).err().unwrap();
    let keys: Vec<&TlsKey> = p.iter().map(|p| &p.key).collect();
    assert_eq!(keys, [&TlsKey::Setting("client_ca_file")], "{p:?}");
}

#[test]
fn equality_follows_file_contents_and_debug_shows_no_key() {
    let dir = TempDir::new("eq");
    let a = testcerts::self_signed(&["a.example"]);
    let opts = ServerTlsOptions::new(files(&dir, &[&a]));
    let (one, two) = (build(opts.clone()), build(opts.clone()));
    assert!(one == two);
    let b = testcerts::self_signed(&["a.example"]);
    dir.write("c0.pem", &b.cert_pem);
    dir.write("c0.key", &b.key_pem);
    assert!(build(opts.clone()) != one, "same paths, new certificate");
    let debug = format!("{one:?}");
    let key_body = a.key_pem.lines().nth(1).unwrap();
    assert!(
        !debug.contains(key_body) && !debug.contains("PRIVATE"),
        "{debug}"
    );
    assert!(debug.contains("c0.key"), "{debug}");
    assert_eq!(
        one.certificates[0].fingerprint,
        testcerts::sha256_hex(&a.der)
    );
}
