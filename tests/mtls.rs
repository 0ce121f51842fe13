//! Client certificates (mTLS) on a TLS `[[listener]]`, both drivers, TLS 1.2 and 1.3:
//! - `client_auth = "required"`: a valid certificate passes and the upstream sees
//!   `X-Client-Cert-Fingerprint` (SHA-256 of the DER, lower-case hex) and `X-Client-Cert-Subject`
//!   (RFC 4514, `CN=client-a`); no certificate, one from another CA, an expired one, and (with
//!   `client_crl_file`) a revoked one fail the handshake or the first read, and never reach the
//!   upstream;
//! - `client_auth = "optional"`: no certificate is fine on a plain route, 403 on a
//!   `require_client_cert = true` route; `client_cert_sans` is an allow-list (403 for a verified
//!   certificate without one of its SANs); the plain listener answers 403 on those routes;
//! - clients can never set the client-cert headers: their copies (any case, underscore
//!   spellings) are stripped with a certificate, without one, and on plain HTTP.

mod common;
use common::tls::*;
use common::*;
use std::net::SocketAddr;

const FP: &str = "x-client-cert-fingerprint";
const SUBJ: &str = "x-client-cert-subject";

/// The clients' CA and its certificates, plus a server chain from another CA.
struct Pki {
    server_ca: Ca,
    server: Leaf,
    clients_ca: Ca,
    /// CN=client-a, SAN client-a.example.
    a: Leaf,
    /// CN=client-b, SAN client-b.example.
    b: Leaf,
    expired: Leaf,
    other_ca: Ca,
    /// CN=client-a, issued by `other_ca`.
    stranger: Leaf,
}

fn pki() -> Pki {
    let server_ca = Ca::new("server CA");
    let clients_ca = Ca::new("clients CA");
    let other_ca = Ca::new("other CA");
    Pki {
        server: server_ca.server("api", &["api.test"]),
        a: clients_ca.client("client-a", &["client-a.example"]),
        b: clients_ca.client("client-b", &["client-b.example"]),
        expired: clients_ca.expired_client("client-old", &["client-a.example"]),
        stranger: other_ca.client("client-a", &["client-a.example"]),
        server_ca,
        clients_ca,
        other_ca,
    }
}

fn gateway_config(p: &Pki, up: &Upstream, tls_extra: &str) -> String {
    let listener = tls_listener(
        &[&p.server],
        &format!(
            "{}\n{tls_extra}",
            kv_path("client_ca_file", &p.clients_ca.file)
        ),
    );
    config(
        "",
        &(listener
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml(
                "secure",
                "u",
                "path_prefix = \"/secure\"\nrequire_client_cert = true",
            )
            + &route_toml(
                "sans",
                "u",
                "path_prefix = \"/sans\"\nrequire_client_cert = true\nclient_cert_sans = [\"client-a.example\"]",
            )
            + &route_toml("open", "u", "path_prefix = \"/\"")),
    )
}

/// Client options trusting the server CA, with `leaf` as client certificate when given.
fn client(p: &Pki, leaf: Option<&Leaf>, tls12: bool) -> TlsClientConfig {
    let mut o = ClientOpts::trusting(&p.server_ca);
    if tls12 {
        o = o.tls12_only();
    }
    if let Some(l) = leaf {
        o = o.client_cert(l);
    }
    o.build()
}

fn versions() -> [(bool, &'static str); 2] {
    [(false, "TLS 1.3"), (true, "TLS 1.2")]
}

/// GET with extra headers on a fresh TLS connection.
fn tls_request(
    addr: SocketAddr,
    cfg: &TlsClientConfig,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let mut c = TlsClient::connect(addr, cfg, "api.test")?;
    c.try_request(&req("GET", path, "api.test", headers, b""))
        .map_err(|e| format!("request: {e}"))
}

/// Lower-cased header names with `_` read as `-`.
fn normalised_names(r: &Recorded) -> Vec<String> {
    r.headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

#[test]
fn required_client_cert_passes_with_fingerprint_and_subject_headers() {
    let p = pki();
    let up = Upstream::recording("u");
    let cfg = gateway_config(&p, &up, "client_auth = \"required\"");
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for (tls12, v) in versions() {
            up.clear();
            let r = tls_request(addr, &client(&p, Some(&p.a), tls12), "/secure/x", &[])
                .unwrap_or_else(|e| panic!("[{driver}] {v}: {e}"));
            assert_eq!(r.status, 200, "[{driver}] {v}: {}", r.body_str());
            let s = &up.wait_requests(1, secs(5))[0];
            assert_eq!(
                s.header_all(FP),
                [p.a.fingerprint()],
                "[{driver}] {v} fingerprint"
            );
            let subject = s.header_all(SUBJ);
            assert_eq!(subject.len(), 1, "[{driver}] {v}: {subject:?}");
            assert!(
                subject[0].contains("CN=client-a"),
                "[{driver}] {v} subject {subject:?}"
            );
            assert_eq!(s.header_all("x-forwarded-proto"), ["https"]);
            // an unrestricted route sees the same headers
            up.clear();
            let r = tls_request(addr, &client(&p, Some(&p.b), tls12), "/open", &[]).unwrap();
            assert_eq!(r.status, 200, "[{driver}] {v}");
            let s = &up.wait_requests(1, secs(5))[0];
            assert_eq!(s.header_all(FP), [p.b.fingerprint()], "[{driver}] {v}");
        }
    });
}

#[test]
fn required_client_cert_missing_untrusted_or_expired_fails() {
    let p = pki();
    let up = Upstream::recording("u");
    let cfg = gateway_config(&p, &up, "client_auth = \"required\"");
    for_each_driver(|driver| {
        up.clear();
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for (tls12, v) in versions() {
            for (label, leaf) in [
                ("no certificate", None),
                ("certificate from another CA", Some(&p.stranger)),
                ("expired certificate", Some(&p.expired)),
            ] {
                let r = tls_request(addr, &client(&p, leaf, tls12), "/open", &[]);
                assert!(
                    r.is_err(),
                    "[{driver}] {v} {label}: must fail the handshake or first read, got {:?}",
                    r.map(|r| r.status)
                );
            }
        }
        assert_eq!(
            up.request_count(),
            0,
            "[{driver}] refused clients reached the upstream"
        );
        // the gateway still serves a valid client
        let r = tls_request(addr, &client(&p, Some(&p.a), false), "/open", &[]).unwrap();
        assert_eq!(r.status, 200, "[{driver}]");
        let _ = &p.other_ca;
    });
}

#[test]
fn revoked_client_cert_is_refused_with_a_crl() {
    let p = pki();
    let up = Upstream::recording("u");
    let crl = p.clients_ca.crl(&[&p.b]);
    let cfg = gateway_config(
        &p,
        &up,
        &format!(
            "client_auth = \"required\"\n{}",
            kv_path("client_crl_file", &crl.file)
        ),
    );
    for_each_driver(|driver| {
        up.clear();
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for (tls12, v) in versions() {
            let r = tls_request(addr, &client(&p, Some(&p.b), tls12), "/open", &[]);
            assert!(
                r.is_err(),
                "[{driver}] {v}: a revoked certificate must be refused, got {:?}",
                r.map(|r| r.status)
            );
            let r = tls_request(addr, &client(&p, Some(&p.a), tls12), "/open", &[])
                .unwrap_or_else(|e| panic!("[{driver}] {v}: not revoked: {e}"));
            assert_eq!(r.status, 200, "[{driver}] {v}");
        }
        let seen = up.wait_requests(2, secs(5));
        assert!(
            seen.iter().all(|s| s.header_all(FP) == [p.a.fingerprint()]),
            "[{driver}] only client-a got through: {:?}",
            seen.iter().map(|s| s.header_all(FP)).collect::<Vec<_>>()
        );
    });
}

#[test]
fn optional_client_auth_route_requirements_and_san_allow_list() {
    let p = pki();
    let up = Upstream::recording("u");
    let cfg = gateway_config(&p, &up, "client_auth = \"optional\"");
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for (tls12, v) in versions() {
            let anon = client(&p, None, tls12);
            let a = client(&p, Some(&p.a), tls12);
            let b = client(&p, Some(&p.b), tls12);
            let cases: [(&str, &TlsClientConfig, &str, u16); 8] = [
                ("no cert", &anon, "/open", 200),
                ("no cert", &anon, "/secure/1", 403),
                ("no cert", &anon, "/sans/1", 403),
                ("client-a", &a, "/open", 200),
                ("client-a", &a, "/secure/1", 200),
                ("client-a", &a, "/sans/1", 200),
                ("client-b", &b, "/secure/1", 200),
                ("client-b (SAN not allowed)", &b, "/sans/1", 403),
            ];
            for (who, cfg, path, want) in cases {
                up.clear();
                let r = tls_request(addr, cfg, path, &[])
                    .unwrap_or_else(|e| panic!("[{driver}] {v} {who} {path}: {e}"));
                assert_eq!(
                    r.status,
                    want,
                    "[{driver}] {v} {who} GET {path}: {}",
                    r.body_str()
                );
                if want == 403 {
                    assert_error_json(&r, 403);
                    assert_eq!(up.request_count(), 0, "[{driver}] {v} {who} {path}");
                } else {
                    let s = &up.wait_requests(1, secs(5))[0];
                    let fp = s.header_all(FP);
                    match who {
                        "no cert" => assert!(fp.is_empty(), "[{driver}] {v}: {fp:?}"),
                        "client-a" => assert_eq!(fp, [p.a.fingerprint()], "[{driver}] {v}"),
                        _ => assert_eq!(fp, [p.b.fingerprint()], "[{driver}] {v}"),
                    }
                }
            }
        }
        // no TLS at all: the plain listener cannot satisfy require_client_cert
        assert_eq!(get(gw.addr, "/secure/plain", "api.test").status, 403);
        assert_eq!(get(gw.addr, "/sans/plain", "api.test").status, 403);
        assert_eq!(get(gw.addr, "/open", "api.test").status, 200);
    });
}

#[test]
fn client_cert_headers_cannot_be_spoofed() {
    let p = pki();
    let up = Upstream::recording("u");
    let cfg = gateway_config(&p, &up, "client_auth = \"optional\"");
    let spoof: &[(&str, &str)] = &[
        ("X-Client-Cert-Fingerprint", "00ff"),
        ("x-client-cert-fingerprint", "11ee"),
        ("X-Client-Cert-Subject", "CN=admin"),
        ("X_Client_Cert_Fingerprint", "22dd"),
        ("x-client-cert_subject", "CN=root"),
    ];
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = tls_addr(&gw);
        for (tls12, v) in versions() {
            // with a certificate: exactly the gateway's values
            up.clear();
            let r = tls_request(addr, &client(&p, Some(&p.a), tls12), "/open", spoof).unwrap();
            assert_eq!(r.status, 200, "[{driver}] {v}: {}", r.body_str());
            let s = &up.wait_requests(1, secs(5))[0];
            let names = normalised_names(s);
            assert_eq!(
                names.iter().filter(|n| *n == FP).count(),
                1,
                "[{driver}] {v}: one fingerprint header, the gateway's: {:?}",
                s.headers
            );
            assert_eq!(names.iter().filter(|n| *n == SUBJ).count(), 1, "{names:?}");
            assert_eq!(s.header(FP), Some(p.a.fingerprint()), "[{driver}] {v}");
            let subject = s.header(SUBJ).unwrap();
            assert!(
                subject.contains("CN=client-a") && !subject.contains("admin"),
                "[{driver}] {v}: {subject:?}"
            );

            // without a certificate (TLS): none at all, also on a route that needs none
            up.clear();
            let r = tls_request(addr, &client(&p, None, tls12), "/open", spoof).unwrap();
            assert_eq!(r.status, 200, "[{driver}] {v}");
            let s = &up.wait_requests(1, secs(5))[0];
            let names = normalised_names(s);
            assert!(
                !names.iter().any(|n| n == FP || n == SUBJ),
                "[{driver}] {v}: spoofed client-cert headers forwarded without a cert: {:?}",
                s.headers
            );
            // and a spoofed header does not satisfy require_client_cert
            let r = tls_request(addr, &client(&p, None, tls12), "/secure/x", spoof).unwrap();
            assert_eq!(r.status, 403, "[{driver}] {v}");
        }

        // plain HTTP
        up.clear();
        let r = Client::connect(gw.addr).request(&req("GET", "/open", "api.test", spoof, b""));
        assert_eq!(r.status, 200, "[{driver}] plain");
        let s = &up.wait_requests(1, secs(5))[0];
        let names = normalised_names(s);
        assert!(
            !names.iter().any(|n| n == FP || n == SUBJ),
            "[{driver}] plain HTTP forwarded spoofed client-cert headers: {:?}",
            s.headers
        );
    });
}
