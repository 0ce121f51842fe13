//! TLS termination on a `[[listener]]`, through real sockets with a rustls client, both drivers:
//! - SNI picks the chain by the certificates' names: exact names, `*.wildcard` (one label only),
//!   an exact name beating a wildcard listed before it; no SNI and an unknown SNI get the first
//!   certificate; with `unknown_sni = "reject"` an unknown SNI fails the handshake;
//! - ALPN: `http/1.1` is negotiated, a client offering only `h2` is refused
//!   (`no_application_protocol`), a client offering nothing still works;
//! - TLS 1.2 and 1.3 both work with a modern (ECDHE + AEAD) suite; `min_version = "1.3"` refuses
//!   a 1.2-only client;
//! - resumption resumes (TLS 1.3 tickets and TLS 1.2), on every following connection;
//! - an `ocsp_file` is stapled;
//! - requests over TLS reach a plain upstream with `X-Forwarded-Proto: https` (a client's own
//!   value replaced), several on one keep-alive TLS connection, while the plain listener still
//!   says `http`.

mod common;
use common::tls::*;
use common::*;
use rustls::{HandshakeKind, ProtocolVersion};

/// A CA and three server certificates: `api.test` (listed first: the default), `*.wild.test`,
/// and `exact.wild.test` (listed after the wildcard).
struct Certs {
    ca: Ca,
    api: Leaf,
    wild: Leaf,
    exact: Leaf,
}

fn certs() -> Certs {
    let ca = Ca::new("listener test CA");
    Certs {
        api: ca.server("api", &["api.test"]),
        wild: ca.server("wild", &["*.wild.test"]),
        exact: ca.server("exact", &["exact.wild.test"]),
        ca,
    }
}

fn one_route(up: &Upstream, listeners: &str) -> String {
    config(
        "",
        &(listeners.to_string()
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

/// The leaf the server sends for `server_name` (any certificate accepted; `no_sni` sends none).
fn leaf_for(
    addr: std::net::SocketAddr,
    server_name: &str,
    no_sni: bool,
) -> Result<Session, String> {
    let opts = ClientOpts::any_cert();
    let cfg = if no_sni { opts.no_sni() } else { opts }.build();
    TlsClient::connect(addr, &cfg, server_name).map(|c| c.session())
}

#[track_caller]
fn assert_leaf(s: &Session, want: &Leaf, what: &str) {
    assert_eq!(
        s.leaf.as_deref(),
        Some(want.der.as_slice()),
        "{what}: expected the chain of {:?} {:?}, got a leaf named {:?}",
        want.cn,
        want.sans,
        s.leaf_names()
    );
}

#[test]
fn sni_picks_the_chain_by_name_with_wildcards_and_a_default() {
    let c = certs();
    let up = Upstream::recording("u");
    let cfg = one_route(&up, &tls_listener(&[&c.api, &c.wild, &c.exact], ""));
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        let cases: &[(&str, bool, &Leaf)] = &[
            ("api.test", false, &c.api),
            ("foo.wild.test", false, &c.wild),
            ("exact.wild.test", false, &c.exact),
            // a wildcard covers exactly one label
            ("a.b.wild.test", false, &c.api),
            ("wild.test", false, &c.api),
            ("unknown.test", false, &c.api),
            // no SNI at all
            ("api.test", true, &c.api),
        ];
        for &(name, no_sni, want) in cases {
            let what = format!("[{driver}] SNI {name:?} (no_sni={no_sni})");
            let s = leaf_for(addr, name, no_sni).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_leaf(&s, want, &what);
        }
        // the chosen chains verify against the CA for their names
        let verified = ClientOpts::trusting(&c.ca).build();
        for name in ["api.test", "x.wild.test", "exact.wild.test"] {
            let (r, _) = tls_get(addr, &verified, name, "/sni")
                .unwrap_or_else(|e| panic!("[{driver}] verified connect as {name}: {e}"));
            assert_eq!(r.status, 200, "[{driver}] {name}: {}", r.body_str());
        }
    });
}

#[test]
fn unknown_sni_reject_fails_the_handshake() {
    let c = certs();
    let up = Upstream::recording("u");
    let cfg = one_route(
        &up,
        &tls_listener(&[&c.api, &c.wild], "unknown_sni = \"reject\""),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for name in ["unknown.test", "a.b.wild.test"] {
            let r = leaf_for(addr, name, false);
            assert!(
                r.is_err(),
                "[{driver}] unknown SNI {name:?} must fail the handshake, got a leaf named {:?}",
                r.map(|s| s.leaf_names())
            );
        }
        // known names still work, wildcard included, and the gateway is still up
        assert_leaf(&leaf_for(addr, "api.test", false).unwrap(), &c.api, driver);
        assert_leaf(
            &leaf_for(addr, "y.wild.test", false).unwrap(),
            &c.wild,
            driver,
        );
        let (r, _) = tls_get(addr, &ClientOpts::trusting(&c.ca).build(), "api.test", "/")
            .unwrap_or_else(|e| panic!("[{driver}] {e}"));
        assert_eq!(r.status, 200);
    });
}

#[test]
fn alpn_http11_negotiated_h2_only_refused_none_works() {
    let c = certs();
    let up = Upstream::recording("u");
    let cfg = one_route(&up, &tls_listener(&[&c.api], "alpn = [\"http/1.1\"]"));
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for offer in [&["http/1.1"][..], &["h2", "http/1.1"][..]] {
            let cfg = ClientOpts::trusting(&c.ca).alpn(offer).build();
            let (r, s) = tls_get(addr, &cfg, "api.test", "/alpn")
                .unwrap_or_else(|e| panic!("[{driver}] ALPN {offer:?}: {e}"));
            assert_eq!(r.status, 200, "[{driver}] ALPN {offer:?}");
            assert_eq!(
                s.alpn.as_deref(),
                Some("http/1.1"),
                "[{driver}] offered {offer:?}"
            );
        }

        let h2 = ClientOpts::trusting(&c.ca).alpn(&["h2"]).build();
        let err = match TlsClient::connect(addr, &h2, "api.test") {
            Ok(cl) => panic!(
                "[{driver}] an h2-only client must be refused, negotiated {:?}",
                cl.session().alpn
            ),
            Err(e) => e,
        };
        assert!(
            err.contains("NoApplicationProtocol"),
            "[{driver}] expected a no_application_protocol alert, got {err}"
        );

        let none = ClientOpts::trusting(&c.ca).build();
        let (r, s) = tls_get(addr, &none, "api.test", "/alpn")
            .unwrap_or_else(|e| panic!("[{driver}] no ALPN: {e}"));
        assert_eq!(r.status, 200, "[{driver}] no ALPN");
        assert_eq!(s.alpn, None, "[{driver}] no ALPN offered, none chosen");
    });
}

#[test]
fn tls12_and_tls13_work_and_min_version_13_refuses_12() {
    let c = certs();
    let up = Upstream::recording("u");
    let listeners = tls_listener(&[&c.api], "") + &tls_listener(&[&c.api], "min_version = \"1.3\"");
    let cfg = one_route(&up, &listeners);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let (any, only13) = (listener_addr(&gw, 0), listener_addr(&gw, 1));
        let v12 = ClientOpts::trusting(&c.ca).tls12_only().build();
        let v13 = ClientOpts::trusting(&c.ca).tls13_only().build();
        for (cfg, want) in [
            (&v12, ProtocolVersion::TLSv1_2),
            (&v13, ProtocolVersion::TLSv1_3),
        ] {
            let (r, s) = tls_get(any, cfg, "api.test", "/v")
                .unwrap_or_else(|e| panic!("[{driver}] {want:?}: {e}"));
            assert_eq!(r.status, 200, "[{driver}] {want:?}");
            assert_eq!(s.version, Some(want), "[{driver}]");
            if want == ProtocolVersion::TLSv1_2 {
                assert!(
                    s.cipher.contains("ECDHE")
                        && (s.cipher.contains("GCM") || s.cipher.contains("CHACHA20")),
                    "[{driver}] TLS 1.2 suite must be ECDHE + AEAD, got {}",
                    s.cipher
                );
            }
        }
        // the default client (1.2 and 1.3) gets 1.3
        let both = ClientOpts::trusting(&c.ca).build();
        let (_, s) = tls_get(any, &both, "api.test", "/v").unwrap();
        assert_eq!(s.version, Some(ProtocolVersion::TLSv1_3), "[{driver}]");

        let refused = TlsClient::connect(only13, &v12, "api.test");
        assert!(
            refused.is_err(),
            "[{driver}] min_version 1.3 must refuse a 1.2-only client, negotiated {:?}",
            refused.map(|cl| cl.session().version)
        );
        let (r, s) = tls_get(only13, &v13, "api.test", "/v")
            .unwrap_or_else(|e| panic!("[{driver}] 1.3 on the 1.3 listener: {e}"));
        assert_eq!(r.status, 200);
        assert_eq!(s.version, Some(ProtocolVersion::TLSv1_3));
    });
}

#[test]
fn resumption_resumes_for_tls13_and_tls12() {
    let c = certs();
    let up = Upstream::recording("u");
    let cfg = one_route(&up, &tls_listener(&[&c.api], "session_tickets = true"));
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for (label, opts) in [
            ("TLS 1.3", ClientOpts::trusting(&c.ca).tls13_only()),
            ("TLS 1.2", ClientOpts::trusting(&c.ca).tls12_only()),
        ] {
            let cfg = opts.alpn(&["http/1.1"]).build();
            // several connections: with two workers, later ones land on either of them
            for i in 0..5 {
                let mut cl = TlsClient::connect(addr, &cfg, "api.test")
                    .unwrap_or_else(|e| panic!("[{driver}] {label} connection {i}: {e}"));
                // a full exchange first: TLS 1.3 tickets arrive after the handshake
                let r = cl.get("/resume", "api.test");
                assert_eq!(r.status, 200, "[{driver}] {label} connection {i}");
                let want = if i == 0 {
                    HandshakeKind::Full
                } else {
                    HandshakeKind::Resumed
                };
                assert_eq!(
                    cl.session().kind,
                    Some(want),
                    "[{driver}] {label} connection {i}"
                );
            }
        }
    });
}

#[test]
fn ocsp_response_is_stapled_from_file() {
    let c = certs();
    let up = Upstream::recording("u");
    let ocsp = write_temp("", "ocsp.der");
    std::fs::write(&ocsp, OCSP_STUB).unwrap();
    let listeners = tls_listener_entries(&[c.api.entry(), c.wild.entry_with_ocsp(&ocsp)], "");
    let cfg = one_route(&up, &listeners);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        let cl = ClientOpts::trusting(&c.ca).no_resumption().build();
        TlsClient::open(addr, &cl, "ocsp.wild.test");
        assert_eq!(
            cl.seen.ocsp.lock().unwrap().as_deref(),
            Some(OCSP_STUB),
            "[{driver}] the wildcard cert's OCSP file is stapled"
        );
        TlsClient::open(addr, &cl, "api.test");
        assert_eq!(
            cl.seen.ocsp.lock().unwrap().as_deref(),
            Some(&[][..]),
            "[{driver}] the cert without ocsp_file staples nothing"
        );
    });
    let _ = std::fs::remove_file(ocsp);
}

#[test]
fn requests_over_tls_are_proxied_with_forwarded_proto_https_and_keep_alive() {
    let c = certs();
    let up = Upstream::recording("u");
    let cfg = one_route(&up, &tls_listener(&[&c.api], ""));
    for_each_driver(|driver| {
        up.clear();
        let gw = Gateway::start(&cfg, driver);
        let tls = ClientOpts::trusting(&c.ca).alpn(&["http/1.1"]).build();
        let mut cl = TlsClient::open(tls_addr(&gw), &tls, "api.test");
        for i in 0..3 {
            let r = cl.request(&req(
                "GET",
                &format!("/ka/{i}"),
                "api.test",
                &[("X-Forwarded-Proto", "http")],
                b"",
            ));
            assert_eq!(r.status, 200, "[{driver}] request {i}: {}", r.body_str());
            assert_eq!(r.body_str(), "ok", "[{driver}]");
            assert_eq!(r.header("x-upstream").as_deref(), Some("u"));
        }
        let r = cl.request(&req("POST", "/ka/post", "api.test", &[], b"hello"));
        assert_eq!(r.status, 200, "[{driver}] POST over TLS");
        let seen = up.wait_requests(4, secs(5));
        assert_eq!(seen.len(), 4, "[{driver}]");
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(
                s.header_all("x-forwarded-proto"),
                ["https"],
                "[{driver}] request {i} ({})",
                s.target
            );
            assert_eq!(s.header_all("host"), ["api.test"], "[{driver}]");
        }
        assert_eq!(seen[3].body_str(), "hello", "[{driver}] body over TLS");

        // the plain listener is unchanged
        up.clear();
        assert_eq!(get(gw.addr, "/plain", "api.test").status, 200);
        let s = &up.wait_requests(1, secs(5))[0];
        assert_eq!(s.header_all("x-forwarded-proto"), ["http"], "[{driver}]");
    });
}
