//! The gateway's TLS seen by stock clients, when the `curl` and `openssl` binaries are installed
//! (`.ci/run` installs them; each test prints a SKIP note and passes when its tool is absent),
//! both drivers:
//! - `curl --cacert CA --resolve api.test:PORT:127.0.0.1 https://api.test:PORT/x` gets the
//!   proxied body, over HTTP/1.1, with the certificate verified; with `--cert/--key` it passes a
//!   `client_auth = "required"` listener, and without them it fails there;
//! - `openssl s_client -servername NAME -alpn http/1.1` shows the subject chosen by SNI (exact
//!   name and wildcard), `ALPN protocol: http/1.1`, and a verified chain.

mod common;
use common::tls::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Whether `tool` runs; prints a SKIP note when it does not.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("\n!!!!!!!! SKIP: `{tool}` is not installed (apt-get install {tool}); test passes without checking\n");
    }
    ok
}

/// Runs `cmd` with stdin closed, killing it after `within`; (success, stdout, stderr).
fn run(cmd: &mut Command, within: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut status = None;
    wait_until(deadline(within), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    (
        status.map(|s| s.success()).unwrap_or(false),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Pki {
    ca: Ca,
    api: Leaf,
    wild: Leaf,
    clients: Ca,
    client: Leaf,
}

fn pki() -> Pki {
    let ca = Ca::new("tools CA");
    let clients = Ca::new("tools clients CA");
    Pki {
        api: ca.server("api", &["api.test"]),
        wild: ca.server("wild", &["*.wild.test"]),
        client: clients.client("client-a", &["client-a.example"]),
        ca,
        clients,
    }
}

/// Listener 0: plain TLS with two certs; listener 1: mTLS required.
fn gateway_config(p: &Pki, up: &Upstream) -> String {
    config(
        "",
        &(tls_listener(&[&p.api, &p.wild], "alpn = [\"http/1.1\"]")
            + &tls_listener(
                &[&p.api],
                &format!(
                    "client_auth = \"required\"\n{}",
                    kv_path("client_ca_file", &p.clients.file)
                ),
            )
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

fn curl(p: &Pki, port: u16, path: &str, extra: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--max-time", "10", "--cacert"])
        .arg(&p.ca.file)
        .args(["--resolve", &format!("api.test:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code} %{http_version} %{ssl_verify_result}"])
        .args(extra)
        .arg(format!("https://api.test:{port}{path}"));
    run(&mut cmd, Duration::from_secs(15))
}

#[test]
fn curl_gets_the_proxied_body_over_tls() {
    if !have("curl") {
        return;
    }
    let p = pki();
    let up = Upstream::fixed("u", 200, "hello from upstream");
    let cfg = gateway_config(&p, &up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let (port, mtls_port) = (listener_addr(&gw, 0).port(), listener_addr(&gw, 1).port());
        let (ok, out, err) = curl(&p, port, "/x", &[]);
        assert!(ok, "[{driver}] curl failed: {err}\n{out}");
        assert_eq!(
            out, "hello from upstream\n200 1.1 0",
            "[{driver}] body, status, HTTP version, verify result; stderr {err}"
        );

        let cert = p.client.cert_file.display().to_string();
        let key = p.client.key_file.display().to_string();
        let (ok, out, err) = curl(&p, mtls_port, "/m", &["--cert", &cert, "--key", &key]);
        assert!(ok, "[{driver}] curl with a client cert: {err}\n{out}");
        assert!(
            out.starts_with("hello from upstream\n200"),
            "[{driver}] {out}"
        );
        let (ok, out, _) = curl(&p, mtls_port, "/m", &[]);
        assert!(
            !ok || !out.contains("200"),
            "[{driver}] curl without a client cert must fail on the mTLS listener: {out}"
        );
    });
}

#[test]
fn openssl_s_client_shows_subject_and_alpn() {
    if !have("openssl") {
        return;
    }
    let p = pki();
    let up = Upstream::fixed("u", 200, "ok");
    let cfg = gateway_config(&p, &up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let addr = listener_addr(&gw, 0);
        for (name, cn) in [("api.test", "api"), ("foo.wild.test", "wild")] {
            let mut cmd = Command::new("openssl");
            cmd.args(["s_client", "-connect", &addr.to_string()])
                .args([
                    "-servername",
                    name,
                    "-alpn",
                    "http/1.1",
                    "-verify_return_error",
                ])
                .arg("-CAfile")
                .arg(&p.ca.file);
            let (_, out, err) = run(&mut cmd, Duration::from_secs(15));
            // OpenSSL 3.0 prints `subject=CN = api, O = ...`, later ones `subject=CN=api, ...`
            let subject = out
                .lines()
                .map(|l| l.replace(' ', ""))
                .find(|l| l.starts_with("subject="))
                .unwrap_or_default();
            assert!(
                subject.split([',', '/', '=']).any(|t| t == cn)
                    && subject.contains(&format!("CN={cn}")),
                "[{driver}] {name}: subject CN={cn} expected in:\n{out}\n{err}"
            );
            assert!(
                out.contains("ALPN protocol: http/1.1"),
                "[{driver}] {name}: ALPN in:\n{out}\n{err}"
            );
            assert!(
                out.contains("Verify return code: 0 (ok)"),
                "[{driver}] {name}: verified chain in:\n{out}\n{err}"
            );
        }
    });
}
