//! A blocking rustls client: configs built by `ClientOpts` (trusting a test CA or accepting any
//! certificate, versions, ALPN, client certificate, SNI, resumption), `TlsClient` with the
//! session's facts (version, ALPN, handshake kind, cipher suite, the leaf the server sent, the
//! stapled OCSP bytes) and HTTP/1.1 requests over the TLS stream, and raw-socket helpers (the
//! bytes of a real ClientHello, waiting for a close).

use super::{cert_names, provider, Ca, Leaf};
use crate::common::client::{req, Response};
use crate::common::wire::{header_values, parse_head, Wire};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    RootCertStore, SignatureScheme, StreamOwned, SupportedProtocolVersion,
};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read/write timeout of the TLS client and server sockets (only there so a broken gateway fails
/// a test instead of hanging it).
pub const TLS_IO_TIMEOUT: Duration = Duration::from_secs(20);

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
        Self::connect_after(addr, cfg, server_name, b"")
    }

    /// Like `connect`, writing `prefix` (a PROXY protocol header) on the TCP stream first.
    pub fn connect_after(
        addr: SocketAddr,
        cfg: &TlsClientConfig,
        server_name: &str,
        prefix: &[u8],
    ) -> Result<TlsClient, String> {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("tcp connect {addr}: {e}"))?;
        if !prefix.is_empty() {
            std::io::Write::write_all(&mut tcp, prefix).map_err(|e| format!("prefix: {e}"))?;
        }
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
        self.request(&req("GET", path, host, &[], b""))
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
    let raw = req("GET", path, server_name, &[], b"");
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
