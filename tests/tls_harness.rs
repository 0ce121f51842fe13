//! The TLS test harness checked against itself (no gateway): the rustls client of
//! `common::tls` talking to its rustls upstream server. This pins down what the gateway TLS
//! tests rely on — generated chains verify for their names and not for others, the leaf and
//! handshake facts are reported, an h2-only offer to an `http/1.1` server fails with
//! `NoApplicationProtocol`, TLS 1.3 and 1.2 sessions resume once a response was read, client
//! certificates are seen by the server and missing / foreign / expired / revoked ones are refused,
//! and the raw-socket helpers see a close.

mod common;
use common::tls::*;
use common::*;
use rustls::{HandshakeKind, ProtocolVersion};
use std::io::Write;
use std::net::TcpStream;

#[test]
fn client_and_upstream_agree_on_names_alpn_versions_and_resumption() {
    let ca = Ca::new("harness CA");
    let leaf = ca.server("svc", &["svc.test", "*.svc.test"]);
    let up = TlsUpstream::start("svc", &leaf, TlsUpstreamOpts::default());

    let cfg = ClientOpts::trusting(&ca).alpn(&["http/1.1"]).build();
    let (r, s) = tls_get(up.addr, &cfg, "svc.test", "/a").unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "tls svc"));
    assert_eq!(s.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(s.leaf.as_deref(), Some(leaf.der.as_slice()));
    let (cn, sans) = s.leaf_names();
    assert_eq!(cn.as_deref(), Some("svc"));
    assert_eq!(sans, ["svc.test", "*.svc.test"]);
    assert_eq!(up.handshakes()[0].sni.as_deref(), Some("svc.test"));
    assert_eq!(
        cfg.seen.ocsp.lock().unwrap().as_deref(),
        Some(&[][..]),
        "nothing stapled"
    );

    // wildcard verifies; other names and other CAs do not
    assert!(tls_get(up.addr, &cfg, "x.svc.test", "/").is_ok());
    let e = TlsClient::connect(up.addr, &cfg, "other.test")
        .err()
        .unwrap();
    assert!(e.contains("handshake"), "{e}");
    let other = ClientOpts::trusting(&Ca::new("other")).build();
    assert!(TlsClient::connect(up.addr, &other, "svc.test").is_err());
    // ... unless verification is off, and no SNI is sent then
    let any = ClientOpts::any_cert().no_sni().build();
    let mut c = TlsClient::open(up.addr, &any, "whatever.test");
    assert_eq!(c.session().leaf.as_deref(), Some(leaf.der.as_slice()));
    // the server records its handshake before it reads a request
    assert_eq!(c.get("/", "whatever.test").status, 200);
    assert_eq!(up.handshakes().last().unwrap().sni, None);

    // ALPN mismatch
    let h2 = ClientOpts::trusting(&ca).alpn(&["h2"]).build();
    let e = TlsClient::connect(up.addr, &h2, "svc.test").err().unwrap();
    assert!(e.contains("NoApplicationProtocol"), "{e}");

    // versions and resumption
    for (opts, v) in [
        (
            ClientOpts::trusting(&ca).tls13_only(),
            ProtocolVersion::TLSv1_3,
        ),
        (
            ClientOpts::trusting(&ca).tls12_only(),
            ProtocolVersion::TLSv1_2,
        ),
    ] {
        let cfg = opts.build();
        for i in 0..3 {
            let mut c = TlsClient::open(up.addr, &cfg, "svc.test");
            assert_eq!(c.get("/r", "svc.test").status, 200);
            let s = c.session();
            assert_eq!(s.version, Some(v));
            let want = if i == 0 {
                HandshakeKind::Full
            } else {
                HandshakeKind::Resumed
            };
            assert_eq!(s.kind, Some(want), "{v:?} connection {i}");
        }
    }
    // keep-alive: several requests on one connection
    let mut c = TlsClient::open(up.addr, &cfg, "svc.test");
    let before = up.accepted();
    for _ in 0..3 {
        assert_eq!(c.get("/k", "svc.test").status, 200);
    }
    assert_eq!(up.accepted(), before);
}

#[test]
fn client_certificates_seen_and_bad_ones_refused() {
    let server_ca = Ca::new("server CA");
    let leaf = server_ca.server("svc", &["svc.test"]);
    let clients = Ca::new("clients CA");
    let good = clients.client("client-a", &["client-a.example"]);
    let revoked = clients.client("client-r", &[]);
    let expired = clients.expired_client("client-old", &[]);
    let stranger = Ca::new("stranger CA").client("client-a", &[]);
    let crl = clients.crl(&[&revoked]);
    let up = TlsUpstream::start(
        "svc",
        &leaf,
        TlsUpstreamOpts {
            client_ca: Some(&clients),
            client_crl: Some(&crl),
            ..Default::default()
        },
    );
    for tls12 in [false, true] {
        let opts = |l: Option<&Leaf>| {
            let mut o = ClientOpts::trusting(&server_ca);
            if tls12 {
                o = o.tls12_only();
            }
            if let Some(l) = l {
                o = o.client_cert(l);
            }
            o.build()
        };
        let (r, _) = tls_get(up.addr, &opts(Some(&good)), "svc.test", "/").unwrap();
        assert_eq!(r.status, 200);
        let hs = up.handshakes();
        assert_eq!(
            hs.last().unwrap().peer_leaf.as_deref(),
            Some(good.der.as_slice())
        );
        assert_eq!(sha256_hex(&good.der), good.fingerprint());
        assert_eq!(good.fingerprint().len(), 64);
        for (what, l) in [
            ("none", None),
            ("revoked", Some(&revoked)),
            ("expired", Some(&expired)),
            ("stranger", Some(&stranger)),
        ] {
            let r = tls_get(up.addr, &opts(l), "svc.test", "/");
            assert!(
                r.is_err(),
                "tls12={tls12} {what}: {:?}",
                r.map(|r| r.0.status)
            );
        }
    }
    assert!(wait_until(deadline(secs(5)), || up.failures().len() == 8));
}

#[test]
fn upstream_close_each_and_raw_socket_helpers() {
    let ca = Ca::new("harness CA");
    let leaf = ca.server("svc", &["svc.test"]);
    let up = TlsUpstream::start(
        "svc",
        &leaf,
        TlsUpstreamOpts {
            close_each: true,
            ..Default::default()
        },
    );
    let cfg = ClientOpts::trusting(&ca).build();
    let mut c = TlsClient::open(up.addr, &cfg, "svc.test");
    let r = c.get("/", "svc.test");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(c
        .try_request(&req("GET", "/", "svc.test", &[], b""))
        .is_err());

    // half a ClientHello: the server waits (no handshake timeout in the mock)
    let hello = client_hello_bytes("svc.test");
    assert_eq!(hello[0], 0x16, "a handshake record");
    let mut s = TcpStream::connect(up.addr).unwrap();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    assert!(read_until_closed(&mut s, std::time::Duration::from_millis(200)).is_err());
    // garbage: rustls answers with an alert and the mock closes
    let mut s = TcpStream::connect(up.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let got = read_until_closed(&mut s, secs(5)).expect("closed");
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
}
