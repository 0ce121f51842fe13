//! A blocking rustls HTTP/1.1 upstream (`TlsUpstream`): thread per connection, optional client
//! certificate requirement (CA and CRL), keep-alive or close after every response; counts
//! accepted connections and records handshakes (SNI, client certificate, kind) and request
//! heads.

use super::{provider, Ca, Crl, Leaf, TLS_IO_TIMEOUT};
use crate::common::upstream::Recorded;
use crate::common::wire::{parse_head, Wire};
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection, StreamOwned};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The body of every response (default `tls NAME`).
    pub body: Option<String>,
}

struct TlsShared {
    name: String,
    accepted: AtomicUsize,
    next_id: AtomicUsize,
    handshakes: Mutex<Vec<UpstreamHandshake>>,
    failures: Mutex<Vec<String>>,
    records: Mutex<Vec<Recorded>>,
    close_each: bool,
    body: Option<String>,
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
            body: opts.body.clone(),
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
        let payload = sh
            .body
            .clone()
            .unwrap_or_else(|| format!("tls {}", sh.name));
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
