//! Certificates reload with the config (`POST /reload` on the admin listener), both drivers:
//! - rotation under load: four client threads open a new TLS connection per request in a loop
//!   while the certificate files are rewritten and the gateway reloads: zero failed requests, a
//!   keep-alive TLS connection opened before the reload keeps working, and every new connection
//!   after the 200 gets the new certificate;
//! - a bad certificate (garbage PEM, or a key that does not match it) fails the reload with 422,
//!   new connections keep getting the old certificate, and the private key appears neither in the
//!   answer, nor in the log, nor in `/config`; fixing the files and reloading again switches.

mod common;
use common::tls::*;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn post_reload(gw: &Gateway) -> Response {
    let mut c = Client::connect(gw.admin.expect("admin listener"));
    c.request(&req("POST", "/reload", "admin", &[], b""))
}

/// Config with one TLS listener serving `live`'s files and one catch-all route.
fn tls_config(live: &Leaf, up: &Upstream) -> String {
    config(
        "",
        &(tls_listener(&[live], "")
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

/// The leaf of a fresh (never resumed) connection as `api.test`.
fn fresh_leaf(addr: std::net::SocketAddr, cfg: &TlsClientConfig) -> Vec<u8> {
    let (r, s) = tls_get(addr, cfg, "api.test", "/probe").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    s.leaf.expect("a server certificate")
}

#[derive(Default)]
struct LoadStats {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// How many connections saw the new certificate.
    saw_new: AtomicUsize,
}

#[test]
fn cert_rotation_under_load_fails_no_request() {
    let ca = Ca::new("reload CA");
    let up = Upstream::fixed("u", 200, "ok");
    for_each_driver(|driver| {
        let live = ca.server("api-v1", &["api.test"]);
        let v1 = live.der.clone();
        let next = ca.server("api-v2", &["api.test"]);
        let gw = Gateway::start(&tls_config(&live, &up), driver);
        let addr = tls_addr(&gw);
        // no resumption: every connection does a full handshake and shows the current cert
        let cfg = ClientOpts::trusting(&ca)
            .alpn(&["http/1.1"])
            .no_resumption()
            .build();
        assert_eq!(fresh_leaf(addr, &cfg), v1, "[{driver}]");
        let mut kept = TlsClient::open(addr, &cfg, "api.test");
        assert_eq!(kept.get("/kept", "api.test").status, 200);

        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoadStats::default());
        // four clients, each opening a new connection per request
        let load: Vec<_> = (0..4)
            .map(|_| {
                let (stop, stats, cfg, new) =
                    (stop.clone(), stats.clone(), cfg.clone(), next.der.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        match tls_get(addr, &cfg, "api.test", "/load") {
                            Ok((r, s)) if r.status == 200 => {
                                stats.ok.fetch_add(1, Ordering::SeqCst);
                                if s.leaf.as_deref() == Some(new.as_slice()) {
                                    stats.saw_new.fetch_add(1, Ordering::SeqCst);
                                }
                                continue;
                            }
                            Ok((r, _)) => {
                                failures.push(format!("status {}: {}", r.status, r.body_str()))
                            }
                            Err(e) => failures.push(e),
                        }
                        stats.failed.fetch_add(1, Ordering::SeqCst);
                    }
                    failures
                })
            })
            .collect();
        let progress = || {
            format!(
                "{} ok, {} failed, {} saw the new cert",
                stats.ok.load(Ordering::SeqCst),
                stats.failed.load(Ordering::SeqCst),
                stats.saw_new.load(Ordering::SeqCst)
            )
        };
        assert!(
            wait_until(deadline(secs(10)), || stats.ok.load(Ordering::SeqCst) >= 40),
            "[{driver}] load before the reload: {}",
            progress()
        );

        live.overwrite_with(&next);
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        for i in 0..6 {
            assert_eq!(
                fresh_leaf(addr, &cfg),
                next.der,
                "[{driver}] new connection {i} after the reload answered 200 must get the new cert"
            );
        }
        let after = stats.ok.load(Ordering::SeqCst);
        assert!(
            wait_until(deadline(secs(10)), || {
                stats.ok.load(Ordering::SeqCst) >= after + 40
                    && stats.saw_new.load(Ordering::SeqCst) > 0
            }),
            "[{driver}] load after the reload: {}",
            progress()
        );
        stop.store(true, Ordering::SeqCst);
        let failures: Vec<String> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
        eprintln!("[{driver}] rotation under load: {}", progress());
        assert!(
            failures.is_empty(),
            "[{driver}] {} failed of {} requests during the rotation: {failures:?}",
            failures.len(),
            failures.len() + stats.ok.load(Ordering::SeqCst)
        );
        // the connection opened before the reload was not dropped
        assert_eq!(
            kept.get("/kept/after", "api.test").status,
            200,
            "[{driver}]"
        );
        assert_eq!(
            kept.session().leaf.as_deref(),
            Some(v1.as_slice()),
            "[{driver}] an established session keeps its certificate"
        );
    });
}

#[test]
fn bad_cert_on_reload_is_refused_and_the_old_one_kept() {
    let ca = Ca::new("reload CA");
    let up = Upstream::fixed("u", 200, "ok");
    for_each_driver(|driver| {
        let live = ca.server("api-v1", &["api.test"]);
        let v1 = live.der.clone();
        let secrets = live.key_secret_lines();
        let gw = Gateway::start(&tls_config(&live, &up), driver);
        let addr = tls_addr(&gw);
        let cfg = ClientOpts::trusting(&ca).no_resumption().build();
        assert_eq!(fresh_leaf(addr, &cfg), v1, "[{driver}]");

        let other_key = ca.server("unrelated", &["api.test"]);
        let good_cert = live.cert_pem.clone();
        let cases: [(&str, String, String); 2] = [
            (
                "garbage certificate",
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                    .into(),
                live.key_pem.clone(),
            ),
            (
                "key not matching the certificate",
                good_cert.clone(),
                other_key.key_pem.clone(),
            ),
        ];
        let mut all_secrets = secrets.clone();
        all_secrets.extend(other_key.key_secret_lines());
        for (what, cert, key) in cases {
            std::fs::write(&live.cert_file, cert).unwrap();
            std::fs::write(&live.key_file, key).unwrap();
            let r = post_reload(&gw);
            assert_eq!(r.status, 422, "[{driver}] {what}: {}", r.body_str());
            let body = r.body_str();
            for s in &all_secrets {
                assert!(
                    !body.contains(s.as_str()),
                    "[{driver}] key material in the 422: {body}"
                );
            }
            for i in 0..4 {
                assert_eq!(
                    fresh_leaf(addr, &cfg),
                    v1,
                    "[{driver}] {what}: connection {i} after the failed reload keeps the old cert"
                );
            }
        }
        gw.wait_log("reload failed");
        let log = gw.stderr_text();
        let shown = gw.admin_get("/config").body_str();
        for s in &all_secrets {
            assert!(
                !log.contains(s.as_str()),
                "[{driver}] key material in the log"
            );
            assert!(
                !shown.contains(s.as_str()),
                "[{driver}] key material in /config"
            );
        }

        // fixed files: the next reload switches
        let v2 = ca.server("api-v2", &["api.test"]);
        live.overwrite_with(&v2);
        let r = post_reload(&gw);
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(fresh_leaf(addr, &cfg), v2.der, "[{driver}]");
    });
}
