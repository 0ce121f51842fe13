use super::*;
use crate::tls::server::tests::handshake;
use crate::tls::testcerts::{self, Ca, TempDir};
use crate::tls::{CertificateFiles, ClientAuth, ServerTls, ServerTlsOptions, TlsKey};

fn build(opts: UpstreamTlsOptions) -> UpstreamTls {
    match UpstreamTls::build(opts) {
        Ok((t, _)) => t,
        Err(p) => panic!("{p:?}"),
    }
}

/// A server for `names`, issued by `ca`, asking for client certificates from `client_ca`.
fn server(dir: &TempDir, ca: &Ca, names: &[&str], client_ca: Option<&Ca>) -> ServerTls {
    let p = ca.server(names);
    let mut opts = ServerTlsOptions::new(vec![CertificateFiles {
        cert_file: dir.write("server.pem", &p.cert_pem),
        key_file: dir.write("server.key", &p.key_pem),
        ocsp_file: None,
    }]);
    if let Some(c) = client_ca {
        opts.client_auth = ClientAuth::Required;
        opts.client_ca_file = Some(dir.write("clients.pem", c.pem()));
    }
    ServerTls::build(opts).unwrap().0
}

#[test]
fn verifies_against_ca_file_and_name() {
    let dir = TempDir::new("up-ca");
    let ca = Ca::new("internal");
    let srv = server(&dir, &ca, &["billing.internal", "10.0.0.5"], None);
    let up = build(UpstreamTlsOptions {
        sni: Some("billing.internal".into()),
        ca_file: Some(dir.write("ca.pem", ca.pem())),
        alpn: vec![crate::tls::ALPN_HTTP11],
        ..Default::default()
    });
    let ep: std::net::SocketAddr = "10.0.0.5:8443".parse().unwrap();
    assert_eq!(up.server_name(ep).to_str(), "billing.internal");
    assert_eq!(up.sni_text().as_deref(), Some("billing.internal"));
    let (s, _) = handshake(srv.config.clone(), up.config.clone(), "billing.internal").unwrap();
    assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(handshake(srv.config.clone(), up.config.clone(), "other.internal").is_err());
    // `protocol = "auto"` offers h2 first, and the server (which offers both) picks it
    let auto = build(UpstreamTlsOptions {
        sni: Some("billing.internal".into()),
        ca_file: Some(dir.path().join("ca.pem")),
        alpn: vec![crate::tls::ALPN_H2, crate::tls::ALPN_HTTP11],
        ..Default::default()
    });
    let (s, _) = handshake(srv.config.clone(), auto.config.clone(), "billing.internal").unwrap();
    assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));

    // Without sni: the endpoint's IP is what is verified.
    let by_ip = build(UpstreamTlsOptions {
        ca_file: Some(dir.path().join("ca.pem")),
        ..Default::default()
    });
    assert_eq!(by_ip.server_name(ep).to_str(), "10.0.0.5");
    assert!(handshake(srv.config.clone(), by_ip.config.clone(), "10.0.0.5").is_ok());

    // A certificate from another CA fails verification.
    let wrong = build(UpstreamTlsOptions {
        sni: Some("billing.internal".into()),
        ca_file: Some(dir.write("other.pem", Ca::new("other").pem())),
        ..Default::default()
    });
    let e = handshake(srv.config.clone(), wrong.config.clone(), "billing.internal").unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}

#[test]
fn insecure_accepts_anything_and_warns() {
    let dir = TempDir::new("up-insecure");
    let srv = server(&dir, &Ca::new("whoever"), &["x.example"], None);
    let (up, warnings) = UpstreamTls::build(UpstreamTlsOptions {
        insecure_skip_verify: true,
        ..Default::default()
    })
    .unwrap();
    assert!(up.insecure_skip_verify);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].key, TlsKey::Setting("insecure_skip_verify"));
    assert!(warnings[0].message.contains("NOT verified"));
    assert!(handshake(srv.config.clone(), up.config.clone(), "anything.example").is_ok());
}

#[test]
fn client_identity_for_mtls_upstreams() {
    let dir = TempDir::new("up-mtls");
    let ca = Ca::new("internal");
    let clients = Ca::new("clients");
    let srv = server(&dir, &ca, &["billing.internal"], Some(&clients));
    let gw = clients.client("gateway", "gw.internal", 1);
    let opts = UpstreamTlsOptions {
        sni: Some("billing.internal".into()),
        ca_file: Some(dir.write("ca.pem", ca.pem())),
        client_cert_file: Some(dir.write("gw.pem", &gw.cert_pem)),
        client_key_file: Some(dir.write("gw.key", &gw.key_pem)),
        ..Default::default()
    };
    let up = build(opts.clone());
    let (s, _) = handshake(srv.config.clone(), up.config.clone(), "billing.internal").unwrap();
    let peer = crate::tls::client_cert(&s.peer_certificates().unwrap()[0]).unwrap();
    assert_eq!(peer.subject, "CN=gateway");
    let anonymous = build(UpstreamTlsOptions {
        client_cert_file: None,
        client_key_file: None,
        ..opts.clone()
    });
    assert!(handshake(
        srv.config.clone(),
        anonymous.config.clone(),
        "billing.internal"
    )
    .is_err());

    // Equality: the same files are equal; a new CA under the same path is a change.
    assert!(build(opts.clone()) == up);
    assert!(anonymous != up);
    dir.write("ca.pem", Ca::new("rotated").pem());
    assert!(build(opts.clone()) != up);
    let debug = format!("{up:?}");
    assert!(
        !debug.contains("PRIVATE") && debug.contains("gw.key"),
        "{debug}"
    );
}

#[test]
fn problems_name_their_setting() {
    let dir = TempDir::new("up-errors");
    let a = testcerts::self_signed(&["a"]);
    let b = testcerts::self_signed(&["b"]);
    let keys = |opts: UpstreamTlsOptions| -> Vec<(TlsKey, String)> {
        let p = UpstreamTls::build(opts).err().unwrap();
        p.into_iter().map(|p| (p.key, p.message)).collect()
    };
    let got = keys(UpstreamTlsOptions {
        sni: Some("bad name!".into()),
        ca_file: Some(dir.path().join("missing.pem")),
        client_cert_file: Some(dir.write("a.pem", &a.cert_pem)),
        ..Default::default()
    });
    let d = dir.path().display();
    assert_eq!(
        got,
        [
            (TlsKey::Setting("sni"), "invalid name \"bad name!\" (expected a DNS name like \"billing.internal\" or an IP address)".to_string()),
            (TlsKey::Setting("ca_file"), format!("cannot read {d}/missing.pem: No such file or directory (os error 2)")),
            (TlsKey::Setting("client_key_file"), "missing (client_cert_file needs its key)".to_string()),
        ]
    );
    let got = keys(UpstreamTlsOptions {
        ca_file: Some(dir.write("ca.pem", Ca::new("x").pem())),
        client_cert_file: Some(dir.path().join("a.pem")),
        client_key_file: Some(dir.write("b.key", &b.key_pem)),
        ..Default::default()
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, TlsKey::Setting("client_key_file"));
    assert!(got[0].1.contains("does not match"), "{got:?}");
    let got = keys(UpstreamTlsOptions {
        ca_file: Some(dir.path().join("ca.pem")),
        insecure_skip_verify: true,
        ..Default::default()
    });
    assert_eq!(got[0].0, TlsKey::Setting("ca_file"));
}

/// `tls = {}`: the system's roots, here made to be one test CA through `SSL_CERT_FILE` and an empty
/// `SSL_CERT_DIR` (the only test in this binary that reads the system's roots, so setting the
/// variables races nothing; they are restored after).
#[test]
fn system_roots_from_ssl_cert_file() {
    let dir = TempDir::new("up-system");
    let ca = Ca::new("system");
    let srv = server(&dir, &ca, &["public.example"], None);
    let bundle = dir.write("bundle.pem", ca.pem());
    let empty_dir = dir.path().join("no-certs");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let saved: Vec<_> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .map(|v| (v, std::env::var_os(v)))
        .into();
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::set_var("SSL_CERT_DIR", &empty_dir);
    let up = UpstreamTls::build(UpstreamTlsOptions::default());
    let fresh = UpstreamTls::build(UpstreamTlsOptions::default());
    dir.write("bundle.pem", "");
    let none = UpstreamTls::build(UpstreamTlsOptions::default());
    for (var, value) in saved {
        match value {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
    }
    let (up, warnings) = up.unwrap();
    assert!(warnings.is_empty() && up.ca_file.is_none());
    assert!(handshake(srv.config.clone(), up.config.clone(), "public.example").is_ok());
    // (A fresh client: `up` would resume its session, which skips verification by design.)
    let other = server(&dir, &Ca::new("not-a-root"), &["public.example"], None);
    let fresh = fresh.unwrap().0;
    assert!(handshake(other.config.clone(), fresh.config.clone(), "public.example").is_err());
    let p = none.err().unwrap();
    assert_eq!(p[0].key, TlsKey::Setting(""));
    assert!(
        p[0].message
            .starts_with("no system root certificates found"),
        "{p:?}"
    );
}
