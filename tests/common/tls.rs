//! TLS helpers for the integration tests: a certificate factory (rcgen: a CA, server leaves
//! with SANs, client certificates, expired ones, CRLs, all written as PEM to temp files at test
//! time — no private key is ever committed), `[[listener]]` TOML for those files, a blocking
//! rustls client (`TlsClient`: handshake facts — version, ALPN, handshake kind, the leaf the
//! server sent, the stapled OCSP bytes — and HTTP/1.1 requests over the TLS stream), a blocking
//! rustls upstream server (`TlsUpstream`: thread per connection, counts connections and records
//! handshakes and request heads), and socket helpers for watching a connection close.

use super::client::Response;
use super::gateway::{temp_path, write_temp, Gateway};
use super::upstream::Recorded;
use super::wire::{header_values, parse_head, Wire};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
    SupportedProtocolVersion,
};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read/write timeout of the TLS client and server sockets (only there so a broken gateway fails
/// a test instead of hanging it).
pub const TLS_IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The ring provider (the only one coregate builds with). Deprecated since rustls 0.23.48 for
/// lacking post-quantum key exchange, which these tests do not need.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of `der`, lower-case hex (the format of `X-Client-Cert-Fingerprint`).
pub fn sha256_hex(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn next_serial() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    // distinct across test processes too (CRLs name serials)
    (u64::from(std::process::id()) << 20) + N.fetch_add(1, Ordering::SeqCst) + 1
}

// ---------------------------------------------------------------------------------------------
// Certificate factory
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Config snippets
// ---------------------------------------------------------------------------------------------

/// A `[[listener]]` on 127.0.0.1:0 whose `[listener.tls]` has `certificates = [entries]` and the
/// extra keys (one per line).
pub fn tls_listener_entries(entries: &[String], extra: &str) -> String {
    format!(
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificates = [ {} ]\n{extra}\n\n",
        entries.join(", ")
    )
}

/// `tls_listener_entries` for plain cert/key pairs.
pub fn tls_listener(certs: &[&Leaf], extra: &str) -> String {
    let entries: Vec<String> = certs.iter().map(|l| l.entry()).collect();
    tls_listener_entries(&entries, extra)
}

/// The address of the `i`-th `[[listener]]` (the CLI's plain `--listen` address comes first).
pub fn listener_addr(gw: &Gateway, i: usize) -> SocketAddr {
    *gw.listen.get(1 + i).unwrap_or_else(|| {
        panic!(
            "gateway listens on {:?}: no [[listener]] #{i} (plain --listen first, then listeners)",
            gw.listen
        )
    })
}

/// The address of the first `[[listener]]`.
pub fn tls_addr(gw: &Gateway) -> SocketAddr {
    listener_addr(gw, 0)
}

/// Waits (up to 5 s) for one stderr line containing every needle (case-insensitive); returns it.
pub fn wait_log_line(gw: &Gateway, needles: &[&str]) -> String {
    let needles: Vec<String> = needles.iter().map(|n| n.to_ascii_lowercase()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = gw.stderr_text();
        if let Some(line) = text.lines().find(|l| {
            let l = l.to_ascii_lowercase();
            needles.iter().all(|n| l.contains(n.as_str()))
        }) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "gateway never logged a line containing all of {needles:?}; stderr so far:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// What the client's certificate verifier saw on the last full handshake.
#[derive(Debug, Default)]
pub struct Seen {
    pub ocsp: Mutex<Option<Vec<u8>>>,
}

/// Server certificate check: chain to `inner` (a CA) with name check, or none (signatures still
/// checked) so a test can look at whatever leaf the server picked. Records the stapled OCSP.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Arc<Seen>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.ocsp.lock().unwrap() = Some(ocsp_response.to_vec());
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builder for a client config. Defaults: TLS 1.2 and 1.3, no ALPN, SNI on, resumption on,
/// no client certificate.
pub struct ClientOpts {
    trust: Option<RootCertStore>,
    versions: Vec<&'static SupportedProtocolVersion>,
    alpn: Vec<Vec<u8>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    sni: bool,
    resumption: bool,
}

/// A built client config and what its verifier records.
#[derive(Clone)]
pub struct TlsClientConfig {
    pub config: Arc<ClientConfig>,
    pub seen: Arc<Seen>,
}

impl ClientOpts {
    /// Verifies the server's chain to `ca` and its name.
    pub fn trusting(ca: &Ca) -> ClientOpts {
        ClientOpts {
            trust: Some(ca.roots()),
            ..Self::any_cert()
        }
    }

    /// Accepts any server certificate (signatures still verified): for looking at the leaf.
    pub fn any_cert() -> ClientOpts {
        ClientOpts {
            trust: None,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: Vec::new(),
            client_cert: None,
            sni: true,
            resumption: true,
        }
    }

    pub fn tls12_only(mut self) -> Self {
        self.versions = vec![&rustls::version::TLS12];
        self
    }

    pub fn tls13_only(mut self) -> Self {
        self.versions = vec![&rustls::version::TLS13];
        self
    }

    pub fn alpn(mut self, protos: &[&str]) -> Self {
        self.alpn = protos.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    pub fn client_cert(mut self, leaf: &Leaf) -> Self {
        self.client_cert = Some((leaf.chain(), leaf.key()));
        self
    }

    pub fn no_sni(mut self) -> Self {
        self.sni = false;
        self
    }

    pub fn no_resumption(mut self) -> Self {
        self.resumption = false;
        self
    }

    pub fn build(self) -> TlsClientConfig {
        let provider = provider();
        let seen = Arc::new(Seen::default());
        let inner = self.trust.map(|roots| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .expect("server verifier")
        });
        let verifier = Arc::new(RecordingVerifier {
            inner,
            provider: provider.clone(),
            seen: seen.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.client_cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        config.enable_sni = self.sni;
        if !self.resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        TlsClientConfig {
            config: Arc::new(config),
            seen,
        }
    }
}

/// Facts about an established TLS session.
#[derive(Clone, Debug)]
pub struct Session {
    pub version: Option<ProtocolVersion>,
    pub alpn: Option<String>,
    pub kind: Option<HandshakeKind>,
    pub cipher: String,
    /// The end-entity certificate the server sent (DER).
    pub leaf: Option<Vec<u8>>,
}

impl Session {
    /// (CN, SANs) of the leaf.
    pub fn leaf_names(&self) -> (Option<String>, Vec<String>) {
        self.leaf.as_deref().map(cert_names).unwrap_or_default()
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A blocking rustls client connection with HTTP/1.1 helpers.
pub struct TlsClient {
    pub wire: Wire<TlsStream>,
}

impl TlsClient {
    /// TCP connect, then a complete handshake with `server_name` (SNI unless disabled; an IP
    /// literal sends no SNI). The error says which step failed.
    pub fn connect(
        addr: SocketAddr,
        cfg: &TlsClientConfig,
        server_name: &str,
    ) -> Result<TlsClient, String> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("tcp connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(TLS_IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(TLS_IO_TIMEOUT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("server name {server_name:?}: {e}"))?;
        let conn = ClientConnection::new(cfg.config.clone(), name)
            .map_err(|e| format!("client connection: {e}"))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(TlsClient {
            wire: Wire::new(stream),
        })
    }

    /// Like `connect`, panicking with the error.
    pub fn open(addr: SocketAddr, cfg: &TlsClientConfig, server_name: &str) -> TlsClient {
        Self::connect(addr, cfg, server_name)
            .unwrap_or_else(|e| panic!("TLS connect to {addr} as {server_name:?}: {e}"))
    }

    pub fn conn(&self) -> &ClientConnection {
        &self.wire.inner.conn
    }

    pub fn session(&self) -> Session {
        let c = self.conn();
        Session {
            version: c.protocol_version(),
            alpn: c
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            kind: c.handshake_kind(),
            cipher: c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            leaf: c
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| c.to_vec()),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.inner.write_all(bytes)?;
        self.wire.inner.flush()
    }

    /// Sends `raw` and reads one response (method taken from `raw`).
    pub fn try_request(&mut self, raw: &[u8]) -> io::Result<Response> {
        self.send(raw)?;
        let method = raw.split(|&b| b == b' ').next().unwrap_or(b"GET");
        read_response(&mut self.wire, &String::from_utf8_lossy(method))
    }

    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.try_request(raw)
            .unwrap_or_else(|e| panic!("request over TLS: {e}"))
    }

    pub fn get(&mut self, path: &str, host: &str) -> Response {
        self.request(&super::client::req("GET", path, host, &[], b""))
    }
}

/// Handshake and one GET on a fresh connection; the error names the failing step.
pub fn tls_get(
    addr: SocketAddr,
    cfg: &TlsClientConfig,
    server_name: &str,
    path: &str,
) -> Result<(Response, Session), String> {
    let mut c = TlsClient::connect(addr, cfg, server_name)?;
    let raw = super::client::req("GET", path, server_name, &[], b"");
    let resp = c.try_request(&raw).map_err(|e| format!("request: {e}"))?;
    Ok((resp, c.session()))
}

/// Reads one final response (1xx skipped) with Content-Length, chunked or close-delimited body.
pub fn read_response<S: Read>(wire: &mut Wire<S>, method: &str) -> io::Result<Response> {
    let mut resp = loop {
        let head = wire.read_head(1 << 20)?.ok_or_else(|| {
            io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let h = parse_head(&head);
        let mut parts = h.start_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidData,
                format!("bad status line {:?}", h.start_line),
            )
        })?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        break Response {
            version,
            status,
            reason: parts.next().unwrap_or("").to_string(),
            headers: h.headers,
            ..Response::default()
        };
    };
    let mut body = Vec::new();
    let mut store = |d: &[u8]| body.extend_from_slice(d);
    let bodyless = method.eq_ignore_ascii_case("HEAD") || resp.status == 204 || resp.status == 304;
    if bodyless {
    } else if !header_values(&resp.headers, "transfer-encoding").is_empty() {
        resp.chunked = true;
        resp.trailers = wire.read_chunked(&mut store, &mut |_| {})?;
    } else if let Some(cl) = resp.header("content-length") {
        let n: u64 = cl
            .trim()
            .parse()
            .map_err(|_| io::Error::new(ErrorKind::InvalidData, format!("bad CL {cl:?}")))?;
        wire.read_exact_to(n, &mut store)?;
    } else {
        resp.close_delimited = true;
        wire.read_to_eof(&mut store)?;
    }
    resp.body_len = body.len() as u64;
    resp.body = body;
    Ok(resp)
}

/// The first bytes of a real ClientHello for `server_name` (what a client writes first).
pub fn client_hello_bytes(server_name: &str) -> Vec<u8> {
    let cfg = ClientOpts::any_cert().alpn(&["http/1.1"]).build();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut conn = ClientConnection::new(cfg.config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// How a raw socket ended: `Ok(bytes read)` once the peer closed (EOF or reset), `Err(bytes)`
/// when it was still open at the deadline.
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Ok(got),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS upstream server
// ---------------------------------------------------------------------------------------------

/// One handshake as the upstream saw it.
#[derive(Clone, Debug)]
pub struct UpstreamHandshake {
    pub conn: usize,
    pub sni: Option<String>,
    /// The client certificate the gateway presented (DER).
    pub peer_leaf: Option<Vec<u8>>,
    pub kind: Option<HandshakeKind>,
    pub version: Option<ProtocolVersion>,
}

/// Options of a `TlsUpstream`.
#[derive(Default)]
pub struct TlsUpstreamOpts<'a> {
    /// Require a client certificate issued by this CA.
    pub client_ca: Option<&'a Ca>,
    /// Revocations checked for client certificates (with `client_ca`).
    pub client_crl: Option<&'a Crl>,
    /// Answer every request with `connection: close`.
    pub close_each: bool,
}

struct TlsShared {
    name: String,
    accepted: AtomicUsize,
    next_id: AtomicUsize,
    handshakes: Mutex<Vec<UpstreamHandshake>>,
    failures: Mutex<Vec<String>>,
    records: Mutex<Vec<Recorded>>,
    close_each: bool,
    stop: AtomicBool,
}

/// A rustls HTTP/1.1 upstream: thread per connection, answers every request `200 tls NAME`
/// with `x-upstream: NAME`.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub name: String,
    shared: Arc<TlsShared>,
}

impl TlsUpstream {
    pub fn start(name: &str, cert: &Leaf, opts: TlsUpstreamOpts) -> TlsUpstream {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap();
        let builder = match opts.client_ca {
            Some(ca) => {
                let mut v =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider);
                if let Some(crl) = opts.client_crl {
                    v = v.with_crls([CertificateRevocationListDer::from(crl.der.clone())]);
                }
                builder.with_client_cert_verifier(v.build().expect("client verifier"))
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(cert.chain(), cert.key())
            .expect("upstream server cert");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS upstream");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(TlsShared {
            name: name.to_string(),
            accepted: AtomicUsize::new(0),
            next_id: AtomicUsize::new(0),
            handshakes: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            records: Mutex::new(Vec::new()),
            close_each: opts.close_each,
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("tls-mock-{name}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let id = sh.accepted.fetch_add(1, Ordering::SeqCst);
                    let (sh2, cfg) = (sh.clone(), config.clone());
                    std::thread::spawn(move || serve_tls(&sh2, cfg, tcp, id));
                }
            })
            .unwrap();
        TlsUpstream {
            addr,
            name: name.to_string(),
            shared,
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Completed handshakes, in completion order.
    pub fn handshakes(&self) -> Vec<UpstreamHandshake> {
        self.shared.handshakes.lock().unwrap().clone()
    }

    /// Failed handshakes (the rustls error text each).
    pub fn failures(&self) -> Vec<String> {
        self.shared.failures.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.records.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.records.lock().unwrap().len()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_tls(sh: &TlsShared, cfg: Arc<ServerConfig>, tcp: TcpStream, conn_id: usize) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(TLS_IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(TLS_IO_TIMEOUT));
    let Ok(conn) = ServerConnection::new(cfg) else {
        return;
    };
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            if !sh.stop.load(Ordering::SeqCst) {
                sh.failures.lock().unwrap().push(e.to_string());
            }
            return;
        }
    }
    let c = &stream.conn;
    sh.handshakes.lock().unwrap().push(UpstreamHandshake {
        conn: conn_id,
        sni: c.server_name().map(String::from),
        peer_leaf: c
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec()),
        kind: c.handshake_kind(),
        version: c.protocol_version(),
    });
    let mut wire = Wire::new(stream);
    loop {
        let head_bytes = match wire.read_head(1 << 20) {
            Ok(Some(h)) => h,
            _ => return,
        };
        let head = parse_head(&head_bytes);
        let mut parts = head.start_line.splitn(3, ' ');
        let mut rec = Recorded {
            id: sh.next_id.fetch_add(1, Ordering::SeqCst),
            conn: conn_id,
            method: parts.next().unwrap_or("").to_string(),
            target: parts.next().unwrap_or("").to_string(),
            version: parts.next().unwrap_or("").to_string(),
            raw_head: head_bytes.clone(),
            headers: head.headers.clone(),
            malformed_lines: head.malformed.clone(),
            ..Recorded::default()
        };
        let mut body = Vec::new();
        let read = if !rec.header_all("transfer-encoding").is_empty() {
            rec.chunked = true;
            wire.read_chunked(&mut |d| body.extend_from_slice(d), &mut |_| {})
                .map(|_| ())
        } else if let Some(cl) = rec.header("content-length") {
            let n = cl.trim().parse().unwrap_or(0);
            wire.read_exact_to(n, &mut |d| body.extend_from_slice(d))
        } else {
            Ok(())
        };
        rec.complete = read.is_ok();
        rec.body_len = body.len() as u64;
        rec.body = body;
        sh.records.lock().unwrap().push(rec);
        if read.is_err() {
            return;
        }
        let payload = format!("tls {}", sh.name);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nx-upstream: {}\r\ncontent-length: {}\r\n{}\r\n{payload}",
            sh.name,
            payload.len(),
            if sh.close_each {
                "connection: close\r\n"
            } else {
                ""
            }
        );
        let out = &mut wire.inner;
        if out
            .write_all(resp.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        if sh.close_each {
            out.conn.send_close_notify();
            let _ = out.conn.complete_io(&mut out.sock);
            let _ = out.sock.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// A `tls = { ... }` inline table for `[[upstream]]` (pass the keys, e.g. `sni = "x"`).
pub fn upstream_tls(keys: &[String]) -> String {
    format!("tls = {{ {} }}", keys.join(", "))
}

/// `key = "path"`.
pub fn kv_path(key: &str, path: &Path) -> String {
    format!("{key} = \"{}\"", path.display())
}

/// A fresh temp file path (not created) with extension `ext`.
pub fn fresh_path(ext: &str) -> PathBuf {
    temp_path(ext)
}
