use std::path::Path;

use super::*;
use crate::config::{parse_in, Config};
use crate::tls::testcerts::{self, Ca, TempDir};
use crate::tls::ClientAuth;

/// A directory with every file examples/tls.toml names, generated (`certs/...`).
pub(crate) fn example_dir() -> TempDir {
    let dir = TempDir::new("cfg");
    let api = testcerts::self_signed(&["api.example.com"]);
    dir.write("certs/api.pem", &api.cert_pem);
    dir.write("certs/api.key", &api.key_pem);
    dir.write("certs/api.ocsp", [0x30, 0x03, 0x0a, 0x01, 0x00]);
    let wild = testcerts::self_signed(&["*.example.com"]);
    dir.write("certs/wild.pem", &wild.cert_pem);
    dir.write("certs/wild.key", &wild.key_pem);
    let clients = Ca::new("clients-ca");
    dir.write("certs/clients-ca.pem", clients.pem());
    dir.write("certs/clients.crl", clients.crl(&[99]));
    dir.write("certs/internal-ca.pem", Ca::new("internal-ca").pem());
    let gw = Ca::new("gw-ca").client("gateway", "gw.internal", 1);
    dir.write("certs/gw.pem", &gw.cert_pem);
    dir.write("certs/gw.key", &gw.key_pem);
    dir
}

pub(crate) const EXAMPLE: &str = include_str!("../../examples/tls.toml");

fn parse(text: &str, dir: &Path) -> Result<Config, Vec<String>> {
    parse_in(text, "t.toml", dir).map_err(|e| {
        e.0.iter()
            .map(|e| format!("{}:{}: {}", e.line.unwrap_or(0), e.path, e.message))
            .collect()
    })
}

#[test]
fn tls_example_is_valid() {
    let dir = example_dir();
    let c = parse(EXAMPLE, dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.listen, "127.0.0.1:8443".parse().unwrap());
    let tls = l.tls.as_deref().unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    assert_eq!(tls.handshake_timeout, std::time::Duration::from_secs(10));
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.certificates[0].names, ["api.example.com"]);
    assert_eq!(
        tls.certificates[0].ocsp_file.as_deref(),
        Some(dir.path().join("certs/api.ocsp").as_path())
    );
    assert_eq!(
        tls.client_crl_file,
        Some(dir.path().join("certs/clients.crl"))
    );
    let up = c.upstreams[0].tls.as_deref().unwrap();
    assert_eq!(up.sni_text().as_deref(), Some("billing.internal"));
    assert_eq!(up.client_key_file, Some(dir.path().join("certs/gw.key")));
    assert!(!up.insecure_skip_verify);
    let r = &c.routes;
    assert!(r[0].require_client_cert && r[0].client_cert_sans.is_empty());
    assert!(r[1].require_client_cert);
    assert_eq!(
        r[1].client_cert_sans,
        ["partner-a.example", "spiffe://acme/partner-b"]
    );
}

#[test]
fn tls_example_renders_paths_never_keys_and_round_trips() {
    let dir = example_dir();
    let c = parse(EXAMPLE, dir.path()).unwrap();
    let text = crate::config::render::to_toml(&c);
    let key = std::fs::read_to_string(dir.path().join("certs/api.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    assert!(
        !text.contains(key_line) && !text.contains("PRIVATE"),
        "{text}"
    );
    let key_path = dir.path().join("certs/api.key").display().to_string();
    assert!(text.contains(&key_path), "{text}");
    let again = parse(&text, Path::new("/")).unwrap_or_else(|e| panic!("{e:#?}\n{text}"));
    assert_eq!(crate::config::render::to_toml(&again), text);
    assert_eq!(again.listeners, c.listeners);
    assert_eq!(again.upstreams, c.upstreams);
    let json = crate::config::render::to_json(&c);
    assert!(json.contains("\"client_auth\": \"optional\""), "{json}");
    // And Debug (what a log line would print) shows no key either.
    let debug = format!("{c:?}");
    assert!(!debug.contains(key_line) && !debug.contains("PRIVATE"));
}

/// `text` after a minimal upstream, parsed against the example's certificate directory.
fn errs(dir: &TempDir, text: &str) -> Vec<String> {
    let text = format!("[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n{text}");
    match parse(&text, dir.path()) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

const CERT: &str =
    "certificates = [{ cert_file = \"certs/api.pem\", key_file = \"certs/api.key\" }]";

#[test]
fn listener_keys_with_positions() {
    let dir = example_dir();
    let l = |extra: &str| {
        format!("[[listener]]\nlisten = \"127.0.0.1:8443\"\n[listener.tls]\n{CERT}\n{extra}")
    };
    let cases: &[(String, &[&str])] = &[
        (l(""), &[]),
        ("[[listener]]\n".into(), &["4:listener[0].listen: missing (expected an address like \"127.0.0.1:8443\")"]),
        ("[[listener]]\nlisten = \"nope\"\n".into(), &["5:listener[0].listen: invalid address \"nope\" (expected ip:port, [v6]:port or host:port)"]),
        (
            "[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:9901\"\n[[listener]]\nlisten = \"127.0.0.1:8080\"\n[[listener]]\nlisten = \"127.0.0.1:9901\"\n[[listener]]\nlisten = \"127.0.0.1:9901\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n".into(),
            &[
                "9:listener[0].listen: 127.0.0.1:8080 is also a server.listen address",
                "11:listener[1].listen: 127.0.0.1:9901 is also the admin.listen address",
                "13:listener[2].listen: duplicate address 127.0.0.1:9901 (also listener[1])",
            ],
        ),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\n[listener.tls]\ncertificates = [{ cert_file = \"certs/api.pem\", kee_file = \"x\" }]\nsni = \"x\"\n".into(),
            &[
                "7:listener[0].tls.certificates[0].key_file: missing (expected a PEM private key file)",
                "7:listener[0].tls.certificates[0].kee_file: unknown key",
                "8:listener[0].tls.sni: unknown key",
            ],
        ),
        ("[[listener]]\nlisten = \"127.0.0.1:1\"\n[listener.tls]\n".into(), &["6:listener[0].tls.certificates: missing (expected a list like [{ cert_file = \"certs/api.pem\", key_file = \"certs/api.key\" }])"]),
        ("[[listener]]\nlisten = \"127.0.0.1:1\"\ntls = { certificates = [] }\n".into(), &["6:listener[0].tls.certificates: empty list (expected at least one certificate)"]),
        (
            l("unknown_sni = \"drop\"\nalpn = [\"http/1.1\", \"h2\", \"spdy\", \"http/1.1\"]\nmin_version = \"1.1\"\nhandshake_timeout = \"0s\"\nclient_auth = \"always\"\n"),
            &[
                "8:listener[0].tls.unknown_sni: unknown value \"drop\" (expected \"default\" or \"reject\")",
                "9:listener[0].tls.alpn[2]: unknown protocol \"spdy\" (expected \"h2\" or \"http/1.1\")",
                "9:listener[0].tls.alpn[3]: duplicate protocol \"http/1.1\"",
                "10:listener[0].tls.min_version: unknown version \"1.1\" (expected \"1.2\" or \"1.3\")",
                "11:listener[0].tls.handshake_timeout: must be greater than 0",
                "12:listener[0].tls.client_auth: unknown mode \"always\" (expected none, optional or required)",
            ],
        ),
        (l("alpn = []\n"), &["8:listener[0].tls.alpn: empty list (expected [\"h2\", \"http/1.1\"] or one of them)"]),
        (
            l("client_ca_file = \"certs/clients-ca.pem\"\nclient_crl_file = \"certs/clients.crl\"\n"),
            &[
                "8:listener[0].tls.client_ca_file: only with client_auth = \"optional\" or \"required\"",
                "9:listener[0].tls.client_crl_file: only with client_auth = \"optional\" or \"required\"",
            ],
        ),
        (l("client_auth = \"required\"\n"), &["6:listener[0].tls.client_ca_file: missing (required by client_auth = \"required\")"]),
        (l("session_tickets = \"yes\"\n"), &["8:listener[0].tls.session_tickets: invalid type: string \"yes\", expected a boolean"]),
    ];
    for (text, want) in cases {
        assert_eq!(errs(&dir, text), *want, "for:\n{text}");
    }
}

#[test]
fn certificate_file_problems_name_the_key() {
    let dir = example_dir();
    let d = dir.path().display();
    let text = "[[listener]]\nlisten = \"127.0.0.1:1\"\n[listener.tls]\ncertificates = [\n  { cert_file = \"certs/missing.pem\", key_file = \"certs/api.key\" },\n  { cert_file = \"certs/api.pem\", key_file = \"certs/wild.key\" },\n  { cert_file = \"certs/wild.pem\", key_file = \"certs/wild.key\", ocsp_file = \"certs/api.pem\" },\n]\nclient_auth = \"required\"\nclient_ca_file = \"/nonexistent/ca.pem\"\n";
    assert_eq!(
        errs(&dir, text),
        [
            format!("8:listener[0].tls.certificates[0].cert_file: cannot read {d}/certs/missing.pem: No such file or directory (os error 2)"),
            format!("9:listener[0].tls.certificates[1].key_file: the private key in {d}/certs/wild.key does not match the certificate in {d}/certs/api.pem"),
            format!("10:listener[0].tls.certificates[2].ocsp_file: {d}/certs/api.pem is not a DER OCSP response (as written by openssl ocsp -respout)"),
            "13:listener[0].tls.client_ca_file: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)".to_string(),
        ]
    );
}

#[test]
fn upstream_tls_keys() {
    let dir = example_dir();
    let d = dir.path().display();
    let up = |tls: &str| {
        format!("[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:2\"]\ntls = {tls}\n")
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (up("{ ca_file = \"certs/internal-ca.pem\" }"), vec![]),
        (up("{ insecure_skip_verify = true }"), vec![]),
        // A missing key is placed at the table's `{`, so it sorts first.
        (up("{ sni = \"a b\", ca_file = \"certs/internal-ca.pem\", client_cert_file = \"certs/gw.pem\" }"), vec![
            "7:upstream[1].tls.client_key_file: missing (client_cert_file needs its key)".into(),
            "7:upstream[1].tls.sni: invalid name \"a b\" (expected a DNS name like \"billing.internal\" or an IP address)".into(),
        ]),
        (up("{ ca_file = \"certs/nope.pem\", insecure_skip_verify = true }"), vec![
            "7:upstream[1].tls.ca_file: not allowed together with insecure_skip_verify = true".into(),
        ]),
        (up("{ ca_file = \"certs/api.key\", verify = false }"), vec![
            format!("7:upstream[1].tls.ca_file: no certificate in {d}/certs/api.key (expected PEM \"BEGIN CERTIFICATE\" blocks)"),
            "7:upstream[1].tls.verify: unknown key".into(),
        ]),
        (up("{ ca_file = \"certs/internal-ca.pem\", client_cert_file = \"certs/gw.pem\", client_key_file = \"certs/api.key\" }"), vec![
            format!("7:upstream[1].tls.client_key_file: the private key in {d}/certs/api.key does not match the certificate in {d}/certs/gw.pem"),
        ]),
        (up("\"yes\""), vec!["7:upstream[1].tls: invalid type: string \"yes\", expected a table".into()]),
    ];
    for (text, want) in cases {
        assert_eq!(errs(&dir, &text), want, "for:\n{text}");
    }
}

#[test]
fn route_client_cert_rules() {
    let dir = example_dir();
    let mtls = format!("[[listener]]\nlisten = \"127.0.0.1:8443\"\n[listener.tls]\n{CERT}\nclient_auth = \"optional\"\nclient_ca_file = \"certs/clients-ca.pem\"\n");
    let r = "[[route]]\nupstream = \"u\"\n";
    let cases: Vec<(String, &[&str])> = vec![
        (format!("{mtls}{r}require_client_cert = true\n"), &[]),
        (format!("{mtls}{r}require_client_cert = false\n"), &[]),
        (format!("{r}require_client_cert = false\n"), &[]),
        (
            format!("{r}require_client_cert = true\n"),
            &["6:route[0].require_client_cert: no listener asks for client certificates, so this could never pass (set client_auth = \"optional\" or \"required\" in a [listener.tls])"],
        ),
        (
            format!("[[listener]]\nlisten = \"127.0.0.1:1\"\n{r}client_cert_sans = [\"a.example\"]\n"),
            &["8:route[0].client_cert_sans: no listener asks for client certificates, so this could never pass (set client_auth = \"optional\" or \"required\" in a [listener.tls])"],
        ),
        (
            format!("{mtls}{r}client_cert_sans = []\n"),
            &["12:route[0].client_cert_sans: empty list (omit client_cert_sans to allow any verified certificate)"],
        ),
        (
            format!("{mtls}{r}require_client_cert = false\nclient_cert_sans = [\"a.example\", \"A.example\", \"a b\"]\n"),
            &[
                "12:route[0].require_client_cert: client_cert_sans needs a client certificate (remove require_client_cert = false)",
                "13:route[0].client_cert_sans[1]: duplicate name \"A.example\"",
                "13:route[0].client_cert_sans[2]: invalid name \"a b\" (expected a DNS name, e-mail, URI or IP address)",
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errs(&dir, &text), want, "for:\n{text}");
    }
    let c = parse(&format!("[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n{mtls}{r}client_cert_sans = [\"a.example\"]\n"), dir.path()).unwrap();
    assert!(c.routes[0].require_client_cert);
}

#[test]
fn listeners_replace_the_default_plain_listener() {
    let dir = example_dir();
    let only = "[[listener]]\nlisten = \"127.0.0.1:8443\"\n";
    let c = parse(only, dir.path()).unwrap();
    assert!(c.server.listen.is_empty());
    assert_eq!(c.listeners[0].tls, None);
    let text = crate::config::render::to_toml(&c);
    let again = parse(&text, dir.path()).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert!(again.server.listen.is_empty() && again.listeners.len() == 1);
    let c = parse("", dir.path()).unwrap();
    assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert!(c.listeners.is_empty());
}

#[test]
fn only_listener_addresses_need_a_restart() {
    let dir = example_dir();
    let old = parse(EXAMPLE, dir.path()).unwrap();
    // New certificate files under the same paths: a reload, and the config differs.
    let wild = testcerts::self_signed(&["*.example.com"]);
    dir.write("certs/wild.pem", &wild.cert_pem);
    dir.write("certs/wild.key", &wild.key_pem);
    let renewed = parse(EXAMPLE, dir.path()).unwrap();
    assert_eq!(listeners_need_restart(&old, &renewed), None);
    assert_ne!(old.listeners, renewed.listeners);
    let settings = EXAMPLE.replace("client_auth = \"optional\"", "client_auth = \"required\"");
    let changed = parse(&settings, dir.path()).unwrap();
    assert_eq!(listeners_need_restart(&old, &changed), None);
    let moved = EXAMPLE.replace("127.0.0.1:8443", "127.0.0.1:8444");
    let moved = parse(&moved, dir.path()).unwrap();
    assert_eq!(
        listeners_need_restart(&old, &moved).as_deref(),
        Some("listener: changing or reordering [[listener]] addresses ([127.0.0.1:8443] -> [127.0.0.1:8444]) needs a restart")
    );
    // A new internal CA under the same path is an upstream change (pools do not carry over).
    dir.write("certs/internal-ca.pem", Ca::new("rotated").pem());
    let rotated = parse(EXAMPLE, dir.path()).unwrap();
    assert_ne!(rotated.upstreams[0], old.upstreams[0]);
    assert_eq!(renewed.upstreams[0], old.upstreams[0]);
}
