//! The one-shot HTTP/1.1 client (`coregate::client`) over `https://`, against tiny scripted blocking
//! rustls servers on std threads, under both monoio drivers (io_uring skipped loudly where the kernel
//! lacks it). Certificates come from a CA generated per test with rcgen (no key is ever committed).
//!
//! Covers: bodies of each framing over TLS (and the request arriving byte-exact), SNI and name checks
//! from the URL's host, an untrusted CA and a wrong name failing with "certificate verification
//! failed", a server that closes mid-handshake or answers in plaintext, silent servers (before and
//! after the handshake) timing out at the deadline, a close-delimited body cut by a TCP close without
//! `close_notify`, and an ALPN other than http/1.1.

use coregate::client::{self, ClientError, ClientOpts, Url};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `f` on an io_uring runtime (skipped loudly when unavailable), then on an epoll runtime.
fn on_both_drivers<F, Fut>(f: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(f("io_uring")),
        Err(e) => eprintln!("SKIP io_uring: {e}"),
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime");
    rt.block_on(f("epoll"));
}

/// A throwaway certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        Ca { cert, key }
    }

    /// A leaf certificate for `names` (DNS names or IP literals) and its key.
    fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.cert.der().clone()], key)
    }

    /// Client options that trust this CA only.
    fn opts(&self) -> ClientOpts {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("add root");
        ClientOpts {
            tls: Some(client::tls::config(roots)),
            ..opts()
        }
    }
}

fn opts() -> ClientOpts {
    ClientOpts {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        max_body: 1024 * 1024,
        tls: None,
    }
}

#[allow(deprecated)] // ring lacks post-quantum key exchange; the gateway is ring-only
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config presenting a leaf for `names` from `ca`, offering `alpn`.
fn server_config(ca: &Ca, names: &[&str], alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let (chain, key) = ca.leaf(names);
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// What the scripted server does with its one connection.
enum Script {
    /// Handshake, read one request, write the reply in these pieces, then `After`.
    Serve(Arc<rustls::ServerConfig>, Vec<Vec<u8>>, After),
    /// Handshake, then read and never answer.
    SilentAfterHandshake(Arc<rustls::ServerConfig>),
    /// Accept the TCP connection and never say anything.
    Silent,
    /// Read the ClientHello, then close.
    CloseMidHandshake,
    /// Answer the ClientHello with a plaintext HTTP response.
    Plaintext,
}

/// How a served connection ends.
#[derive(Clone, Copy)]
enum After {
    /// `close_notify`, then close: the end of a close-delimited body.
    CloseNotify,
    /// A bare TCP close without `close_notify`: a truncation.
    TcpClose,
    /// Keep the connection until the client closes it.
    Hold,
}

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    request: Vec<u8>,
    sni: Option<String>,
    /// The server side's handshake error, if any.
    handshake_error: Option<String>,
}

/// A one-connection server.
struct Server {
    addr: SocketAddr,
    thread: JoinHandle<Seen>,
}

impl Server {
    fn start(script: Script) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), script)
    }

    fn start_on(bind: SocketAddr, script: Script) -> Server {
        let listener = TcpListener::bind(bind).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let thread = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            // a client that never closes must not hang the test
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            run(&mut s, script)
        });
        Server { addr, thread }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// What the server saw, once it is done. Polled from the runtime rather than joined: under
    /// io_uring the client's close is an operation the runtime submits when it next parks.
    async fn seen(self) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "server thread did not finish");
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        self.thread.join().expect("server thread")
    }
}

fn run(s: &mut TcpStream, script: Script) -> Seen {
    let mut seen = Seen::default();
    let (config, reply, after) = match script {
        Script::Silent => {
            drain(s);
            return seen;
        }
        Script::CloseMidHandshake => {
            let mut hello = [0u8; 5];
            let _ = s.read_exact(&mut hello);
            return seen;
        }
        Script::Plaintext => {
            let mut hello = [0u8; 5];
            let _ = s.read_exact(&mut hello);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            drain(s);
            return seen;
        }
        Script::SilentAfterHandshake(config) => (config, None, After::Hold),
        Script::Serve(config, reply, after) => (config, Some(reply), after),
    };
    let mut conn = rustls::ServerConnection::new(config).expect("server connection");
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(s) {
            seen.handshake_error = Some(e.to_string());
            drain(s);
            return seen;
        }
    }
    seen.sni = conn.server_name().map(str::to_owned);
    let mut tls = rustls::Stream::new(&mut conn, s);
    seen.request = read_request(&mut tls);
    if let Some(reply) = reply {
        for piece in &reply {
            if tls.write_all(piece).and_then(|_| tls.flush()).is_err() {
                break;
            }
        }
    }
    match after {
        After::CloseNotify => {
            conn.send_close_notify();
            let _ = conn.complete_io(s);
            let _ = s.shutdown(Shutdown::Write);
            drain(s);
        }
        After::TcpClose => {
            let _ = s.shutdown(Shutdown::Write);
            drain(s);
        }
        After::Hold => {
            let mut tls = rustls::Stream::new(&mut conn, s);
            let mut sink = [0u8; 4096];
            while matches!(tls.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
    seen
}

/// Reads (and discards) until the peer closes or the read timeout.
fn drain(s: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

/// Reads one request head and its Content-Length body.
fn read_request(s: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

fn pieces(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// The message of a [`ClientError::Tls`], or a panic naming what came instead.
fn tls_error(r: Result<client::Response, ClientError>, what: &str) -> String {
    match r {
        Err(ClientError::Tls(m)) => m,
        Err(e) => panic!("{what}: expected a TLS error, got {e}"),
        Ok(r) => panic!("{what}: expected a TLS error, got status {}", r.status),
    }
}

#[test]
fn bodies_of_every_framing_over_tls() {
    let ca = Ca::new("test CA");
    let config = server_config(&ca, &["127.0.0.1"], &[b"http/1.1"]);
    on_both_drivers(|driver| {
        let (ca, config) = (&ca, config.clone());
        async move {
            // Content-Length, split over records
            let srv = Server::start(Script::Serve(
                config.clone(),
                pieces(&[
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n",
                    b"{\"keys\"",
                    b":[]}",
                ]),
                After::Hold,
            ));
            let url = Url::parse(&srv.url("/.well-known/jwks.json?v=2")).unwrap();
            assert_eq!((url.is_https(), url.port()), (true, srv.addr.port()));
            let resp = client::send(&client::Request::get(&url), &ca.opts())
                .await
                .unwrap_or_else(|e| panic!("{driver}: {e}"));
            assert_eq!(resp.status, 200, "{driver}");
            assert_eq!(resp.body, b"{\"keys\":[]}", "{driver}");
            assert_eq!(resp.header("content-type"), Some("application/json"));
            let seen = srv.seen().await;
            let want = format!(
                "GET /.well-known/jwks.json?v=2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                url.authority()
            );
            assert_eq!(String::from_utf8_lossy(&seen.request), want, "{driver}");
            assert_eq!(seen.sni, None, "{driver}: no SNI for an IP address");

            // chunked, with an extension and a trailer
            let srv = Server::start(Script::Serve(
                config.clone(),
                pieces(&[
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                    b"lo\r\n6\r\n worl",
                    b"d\r\n0\r\nX-Trailer: t\r\n\r\n",
                ]),
                After::Hold,
            ));
            let resp = client::get(&srv.url("/c"), &[], &ca.opts())
                .await
                .unwrap_or_else(|e| panic!("{driver}: {e}"));
            assert_eq!(resp.body, b"hello world", "{driver}");
            srv.seen().await;

            // close-delimited, ended by close_notify; larger than one TLS record
            let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            let srv = Server::start(Script::Serve(
                config.clone(),
                vec![b"HTTP/1.0 200 OK\r\n\r\n".to_vec(), big.clone()],
                After::CloseNotify,
            ));
            let resp = client::get(&srv.url("/big"), &[], &ca.opts())
                .await
                .unwrap_or_else(|e| panic!("{driver}: {e}"));
            assert!(resp.body == big, "{driver}: body differs");
            srv.seen().await;
        }
    });
}

#[test]
fn a_dns_name_is_sent_as_sni_and_checked() {
    // the client resolves `localhost` with the system resolver (first address); listen there
    #[allow(clippy::disallowed_methods)] // a test, not a worker
    let first = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0u16))
        .ok()
        .and_then(|mut a| a.next());
    let Some(bind) = first else {
        eprintln!("SKIP: localhost does not resolve here");
        return;
    };
    let ca = Ca::new("test CA");
    let config = server_config(&ca, &["localhost"], &[b"http/1.1"]);
    on_both_drivers(|driver| {
        let (ca, config) = (&ca, config.clone());
        async move {
            let srv = Server::start_on(
                bind,
                Script::Serve(
                    config,
                    pieces(&[b"HTTP/1.1 204 No Content\r\n\r\n"]),
                    After::Hold,
                ),
            );
            let url = format!("https://localhost:{}/introspect", srv.addr.port());
            let resp = client::get(&url, &[], &ca.opts())
                .await
                .unwrap_or_else(|e| panic!("{driver}: {e}"));
            assert_eq!(resp.status, 204, "{driver}");
            let seen = srv.seen().await;
            assert_eq!(seen.sni.as_deref(), Some("localhost"), "{driver}");
        }
    });
}

#[test]
fn an_untrusted_ca_fails_verification() {
    let ca = Ca::new("server CA");
    let other = Ca::new("some other CA");
    let config = server_config(&ca, &["127.0.0.1"], &[b"http/1.1"]);
    on_both_drivers(|driver| {
        let (other, config) = (&other, config.clone());
        async move {
            let srv = Server::start(Script::Serve(config.clone(), vec![], After::Hold));
            let msg = tls_error(client::get(&srv.url("/"), &[], &other.opts()).await, driver);
            assert!(
                msg.starts_with("certificate verification failed for 127.0.0.1: ")
                    && msg.contains("UnknownIssuer"),
                "{driver}: {msg}"
            );
            assert!(srv.seen().await.handshake_error.is_some(), "{driver}");

            // the system roots do not know a freshly made CA either
            let srv = Server::start(Script::Serve(config, vec![], After::Hold));
            let err = client::get(&srv.url("/"), &[], &opts())
                .await
                .expect_err(driver);
            let line = err.to_string();
            assert!(matches!(err, ClientError::Tls(_)), "{driver}: {line}");
            assert!(line.starts_with("TLS: "), "{driver}: {line}");
            assert!(!line.contains('\n'), "{driver}: one line: {line:?}");
            // a host without system roots fails before connecting
            if !line.contains("no trusted root certificates") {
                assert!(line.contains("certificate verification failed"), "{line}");
                srv.seen().await;
            }
        }
    });
}

#[test]
fn a_certificate_for_another_name_fails_verification() {
    let ca = Ca::new("test CA");
    let config = server_config(&ca, &["idp.test"], &[b"http/1.1"]);
    on_both_drivers(|driver| {
        let (ca, config) = (&ca, config.clone());
        async move {
            let srv = Server::start(Script::Serve(config, vec![], After::Hold));
            let msg = tls_error(client::get(&srv.url("/"), &[], &ca.opts()).await, driver);
            assert!(
                msg.starts_with("certificate verification failed for 127.0.0.1: ")
                    && msg.contains("not valid for name"),
                "{driver}: {msg}"
            );
            srv.seen().await;
        }
    });
}

#[test]
fn a_server_leaving_mid_handshake_is_an_error() {
    let ca = &Ca::new("test CA");
    on_both_drivers(|driver| async move {
        let srv = Server::start(Script::CloseMidHandshake);
        let msg = tls_error(client::get(&srv.url("/"), &[], &ca.opts()).await, driver);
        assert!(msg.contains("closed"), "{driver}: {msg}");
        srv.seen().await;

        let srv = Server::start(Script::Plaintext);
        let msg = tls_error(client::get(&srv.url("/"), &[], &ca.opts()).await, driver);
        assert!(
            msg.starts_with("TLS handshake with 127.0.0.1 failed"),
            "{driver}: {msg}"
        );
        srv.seen().await;
    });
}

#[test]
fn silent_servers_time_out_at_the_deadline() {
    let ca = Ca::new("test CA");
    let config = server_config(&ca, &["127.0.0.1"], &[b"http/1.1"]);
    let timeout = Duration::from_millis(300);
    on_both_drivers(|driver| {
        let (ca, config) = (&ca, config.clone());
        async move {
            let o = ClientOpts {
                timeout,
                ..ca.opts()
            };
            // silent before the handshake, then after it
            for (what, script) in [
                ("no ServerHello", Script::Silent),
                ("no response", Script::SilentAfterHandshake(config)),
            ] {
                let srv = Server::start(script);
                let start = Instant::now();
                let err = client::get(&srv.url("/"), &[], &o).await.expect_err(what);
                let took = start.elapsed();
                assert!(
                    matches!(err, ClientError::Timeout),
                    "{driver} {what}: {err}"
                );
                assert!(
                    took >= timeout - Duration::from_millis(20) && took < timeout * 4,
                    "{driver} {what}: gave up after {took:?}"
                );
                srv.seen().await;
            }
        }
    });
}

#[test]
fn a_close_without_close_notify_truncates() {
    let ca = Ca::new("test CA");
    let config = server_config(&ca, &["127.0.0.1"], &[b"http/1.1"]);
    on_both_drivers(|driver| {
        let (ca, config) = (&ca, config.clone());
        async move {
            let srv = Server::start(Script::Serve(
                config,
                pieces(&[b"HTTP/1.0 200 OK\r\n\r\n", b"partial"]),
                After::TcpClose,
            ));
            let err = client::get(&srv.url("/"), &[], &ca.opts())
                .await
                .expect_err(driver);
            assert!(matches!(err, ClientError::Io(_)), "{driver}: {err}");
            assert!(err.to_string().contains("close_notify"), "{driver}: {err}");
            srv.seen().await;
        }
    });
}

#[test]
fn an_alpn_other_than_http11_is_refused() {
    let ca = Ca::new("test CA");
    let config = server_config(&ca, &["127.0.0.1"], &[b"h2"]);
    on_both_drivers(|driver| {
        let (ca, config) = (&ca, config.clone());
        async move {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let mut c = (*client::tls::config(roots)).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let o = ClientOpts {
                tls: Some(Arc::new(c)),
                ..opts()
            };
            let srv = Server::start(Script::Serve(config, vec![], After::Hold));
            let msg = tls_error(client::get(&srv.url("/"), &[], &o).await, driver);
            assert!(msg.contains("ALPN protocol \"h2\""), "{driver}: {msg}");
            srv.seen().await;
        }
    });
}
