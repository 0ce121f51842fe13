//! TLS from the gateway to upstreams (`[[upstream]] tls = { ... }`), against a rustls upstream
//! server, both drivers:
//! - `ca_file` + `sni`: 200, and the upstream saw that SNI;
//! - a certificate from another CA, or not valid for `sni`: 502 (the gateway's JSON error) and a
//!   stderr line naming the upstream and the certificate failure;
//! - `insecure_skip_verify = true`: 200 anyway, and a loud warning naming the upstream;
//! - upstream mTLS: the gateway presents `client_cert_file`/`client_key_file` and the upstream sees
//!   exactly that certificate; an upstream without them is refused by that server (502);
//! - pooling: sequential requests reuse one TLS connection (one accept, one handshake);
//! - reconnects resume: an upstream closing after every response sees resumed handshakes after
//!   the first.

mod common;
use common::tls::*;
use common::*;
use rustls::HandshakeKind;

/// The internal CA, the upstream's certificate for `billing.internal`, and an unrelated CA.
struct Pki {
    internal: Ca,
    billing: Leaf,
    other: Ca,
}

fn pki() -> Pki {
    let internal = Ca::new("internal CA");
    Pki {
        billing: internal.server("billing", &["billing.internal"]),
        other: Ca::new("other CA"),
        internal,
    }
}

/// One upstream `name` at `up` with `tls = { keys }`, routed from `/`.
fn one_tls_route(name: &str, up: &TlsUpstream, keys: &[String]) -> String {
    config(
        "",
        &(upstream_toml(name, &[up.addr], &upstream_tls(keys))
            + &route_toml("all", name, "path_prefix = \"/\"")),
    )
}

fn sni(name: &str) -> String {
    format!("sni = \"{name}\"")
}

#[test]
fn upstream_tls_verified_by_ca_and_sni() {
    let p = pki();
    let up = TlsUpstream::start("billing", &p.billing, TlsUpstreamOpts::default());
    let cfg = one_tls_route(
        "billing",
        &up,
        &[
            sni("billing.internal"),
            kv_path("ca_file", &p.internal.file),
        ],
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let before = up.request_count();
        let r = get(gw.addr, "/invoices/1", "api.test");
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(r.body_str(), "tls billing", "[{driver}]");
        assert_eq!(up.request_count(), before + 1);
        let rec = up.requests().pop().unwrap();
        assert_eq!(rec.target, "/invoices/1", "[{driver}]");
        let hs = up.handshakes();
        let last = hs.last().expect("a handshake");
        assert_eq!(
            last.sni.as_deref(),
            Some("billing.internal"),
            "[{driver}] SNI sent"
        );
        assert!(up.failures().is_empty(), "[{driver}] {:?}", up.failures());
    });
}

#[test]
fn upstream_tls_wrong_ca_is_502_with_a_log_line() {
    let p = pki();
    let up = TlsUpstream::start("billing", &p.billing, TlsUpstreamOpts::default());
    let cfg = one_tls_route(
        "billing",
        &up,
        &[sni("billing.internal"), kv_path("ca_file", &p.other.file)],
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let r = get(gw.addr, "/x", "api.test");
        assert_error_json(&r, 502);
        let line = wait_log_line(&gw, &["billing", "certificate", "verif"]);
        eprintln!("[{driver}] log line: {line}");
        assert_eq!(
            up.request_count(),
            0,
            "[{driver}] no request over an unverified connection"
        );
    });
}

#[test]
fn upstream_tls_wrong_name_is_502_with_a_log_line() {
    let p = pki();
    let up = TlsUpstream::start("billing", &p.billing, TlsUpstreamOpts::default());
    let cfg = one_tls_route(
        "ledger",
        &up,
        &[sni("ledger.internal"), kv_path("ca_file", &p.internal.file)],
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let r = get(gw.addr, "/x", "api.test");
        assert_error_json(&r, 502);
        let line = wait_log_line(&gw, &["ledger", "certificate"]);
        eprintln!("[{driver}] log line: {line}");
        assert_eq!(up.request_count(), 0, "[{driver}]");
    });
}

#[test]
fn upstream_tls_insecure_skip_verify_works_and_warns() {
    let p = pki();
    let up = TlsUpstream::start("billing", &p.billing, TlsUpstreamOpts::default());
    // a name the certificate does not carry (ca_file is refused together with the flag)
    let cfg = one_tls_route(
        "lax",
        &up,
        &[
            sni("whatever.internal"),
            "insecure_skip_verify = true".into(),
        ],
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let r = get(gw.addr, "/x", "api.test");
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(r.body_str(), "tls billing");
        // logged at config load or first use: either way by now; it names the upstream (by
        // name or by its key path)
        let line = wait_log_line(&gw, &["warning", "insecure_skip_verify"]);
        assert!(
            line.contains("lax") || line.contains("upstream[0]"),
            "[{driver}] the warning must say which upstream: {line}"
        );
    });
}

#[test]
fn upstream_mtls_presents_the_gateway_certificate() {
    let p = pki();
    let gw_ca = Ca::new("gateway clients CA");
    let gw_cert = gw_ca.client("coregate", &["gateway.internal"]);
    let up = TlsUpstream::start(
        "billing",
        &p.billing,
        TlsUpstreamOpts {
            client_ca: Some(&gw_ca),
            ..Default::default()
        },
    );
    let base = [
        sni("billing.internal"),
        kv_path("ca_file", &p.internal.file),
    ];
    let mut with_cert = base.to_vec();
    with_cert.push(kv_path("client_cert_file", &gw_cert.cert_file));
    with_cert.push(kv_path("client_key_file", &gw_cert.key_file));
    let cfg = config(
        "",
        &(upstream_toml("billing", &[up.addr], &upstream_tls(&with_cert))
            + &upstream_toml("nocert", &[up.addr], &upstream_tls(&base))
            + &route_toml("nocert", "nocert", "path_prefix = \"/nocert\"")
            + &route_toml("all", "billing", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let r = get(gw.addr, "/mtls", "api.test");
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let hs = up.handshakes();
        let last = hs.last().expect("a handshake");
        assert_eq!(
            last.peer_leaf.as_deref(),
            Some(gw_cert.der.as_slice()),
            "[{driver}] the upstream sees the gateway's client certificate"
        );

        let before = up.request_count();
        let r = get(gw.addr, "/nocert", "api.test");
        assert_error_json(&r, 502);
        assert_eq!(
            up.request_count(),
            before,
            "[{driver}] no request without the client certificate"
        );
        assert!(
            wait_until(deadline(secs(5)), || !up.failures().is_empty()),
            "[{driver}] the upstream refused a handshake without a client certificate"
        );
    });
    // keep the key file alive until the gateways are gone
    drop(gw_cert);
}

#[test]
fn upstream_tls_connections_are_pooled() {
    let p = pki();
    let cfg_for = |up: &TlsUpstream| {
        one_tls_route(
            "billing",
            up,
            &[
                sni("billing.internal"),
                kv_path("ca_file", &p.internal.file),
            ],
        )
    };
    for_each_driver(|driver| {
        // a fresh upstream per driver so the counts start at zero
        let up = TlsUpstream::start("billing", &p.billing, TlsUpstreamOpts::default());
        let gw = Gateway::start(&cfg_for(&up), driver);
        // one client connection: both requests run on the same worker and its pool
        let mut c = Client::connect(gw.addr);
        for i in 0..3 {
            let r = c.get(&format!("/pooled/{i}"), "api.test");
            assert_eq!(r.status, 200, "[{driver}] request {i}: {}", r.body_str());
        }
        assert_eq!(up.request_count(), 3, "[{driver}]");
        assert_eq!(
            up.accepted(),
            1,
            "[{driver}] three sequential requests must reuse one upstream TLS connection"
        );
        assert_eq!(up.handshakes().len(), 1, "[{driver}]");
        let conns: Vec<usize> = up.requests().iter().map(|r| r.conn).collect();
        assert_eq!(conns, [0, 0, 0], "[{driver}]");
    });
}

#[test]
fn upstream_tls_reconnects_resume_the_session() {
    let p = pki();
    for_each_driver(|driver| {
        let up = TlsUpstream::start(
            "billing",
            &p.billing,
            TlsUpstreamOpts {
                close_each: true,
                ..Default::default()
            },
        );
        let cfg = one_tls_route(
            "billing",
            &up,
            &[
                sni("billing.internal"),
                kv_path("ca_file", &p.internal.file),
            ],
        );
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        for i in 0..3 {
            let r = c.get(&format!("/resume/{i}"), "api.test");
            assert_eq!(r.status, 200, "[{driver}] request {i}: {}", r.body_str());
            assert!(
                wait_until(deadline(secs(5)), || up.handshakes().len() > i),
                "[{driver}] handshake {i}"
            );
        }
        let kinds: Vec<Option<HandshakeKind>> = up.handshakes().iter().map(|h| h.kind).collect();
        assert_eq!(up.accepted(), 3, "[{driver}] one connection per request");
        assert_eq!(
            kinds,
            [
                Some(HandshakeKind::Full),
                Some(HandshakeKind::Resumed),
                Some(HandshakeKind::Resumed)
            ],
            "[{driver}] reconnects resume the TLS session"
        );
    });
}
