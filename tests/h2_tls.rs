//! HTTP/2 over TLS: ALPN picks h2 on listeners that offer it (the default) and HTTP/1.1 where
//! `alpn = ["http/1.1"]`; curl (a stock client) talks h2 over TLS through the gateway, several
//! requests on one connection and an 8 MiB download intact, and upstreams see
//! `X-Forwarded-Proto: https`. Both drivers.

mod common;
use common::tls::*;
use common::*;
use std::process::{Command, Stdio};

fn have_curl() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("\n!!!!!!!! SKIP: curl is not installed; test passes without checking\n");
    }
    ok
}

fn cfg(leaf: &Leaf, up: &Upstream, big: &Upstream) -> String {
    config(
        "",
        &(tls_listener(&[leaf], "")
            + &tls_listener(&[leaf], "alpn = [\"http/1.1\"]")
            + &upstream_toml("u", &[up.addr], "")
            + &upstream_toml("big", &[big.addr], "")
            + &route_toml("big", "big", "path = \"/big\"")
            + &route_toml("all", "u", "path_prefix = \"/\"")),
    )
}

#[test]
fn alpn_chooses_h2_where_offered() {
    let ca = Ca::new("h2 CA");
    let leaf = ca.server("api", &["api.test"]);
    let (up, big) = (
        Upstream::fixed("u", 200, "ok"),
        Upstream::download("big", 10),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg(&leaf, &up, &big), driver);
        let both = ClientOpts::trusting(&ca).alpn(&["h2", "http/1.1"]).build();
        let h1 = ClientOpts::trusting(&ca).alpn(&["http/1.1"]).build();
        let c = TlsClient::open(listener_addr(&gw, 0), &both, "api.test");
        assert_eq!(
            c.session().alpn.as_deref(),
            Some("h2"),
            "[{driver}] default listener"
        );
        let mut c = TlsClient::open(listener_addr(&gw, 1), &both, "api.test");
        assert_eq!(
            c.session().alpn.as_deref(),
            Some("http/1.1"),
            "[{driver}] http/1.1-only listener"
        );
        assert_eq!(c.get("/x", "api.test").status, 200, "[{driver}]");
        let mut c = TlsClient::open(listener_addr(&gw, 0), &h1, "api.test");
        assert_eq!(c.session().alpn.as_deref(), Some("http/1.1"), "[{driver}]");
        assert_eq!(c.get("/x", "api.test").status, 200, "[{driver}]");
    });
}

#[test]
fn curl_talks_h2_over_tls_through_the_gateway() {
    if !have_curl() {
        return;
    }
    let ca = Ca::new("h2 CA");
    let leaf = ca.server("api", &["api.test"]);
    let len = 8u64 << 20;
    let (up, big) = (Upstream::recording("u"), Upstream::download("big", len));
    let dir = std::env::temp_dir().join(format!("cg-h2tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg(&leaf, &up, &big), driver);
        let port = listener_addr(&gw, 0).port();
        up.clear();
        let file = dir.join(format!("big-{driver}"));
        let out = Command::new("curl")
            .args(["-sS", "--http2", "--max-time", "30", "--cacert"])
            .arg(&ca.file)
            .args(["--resolve", &format!("api.test:{port}:127.0.0.1")])
            .args(["-w", "%{http_version} %{http_code} %{num_connects}\n"])
            .args(["-o", "/dev/null", &format!("https://api.test:{port}/a")])
            .args(["-o", "/dev/null", &format!("https://api.test:{port}/b")])
            .args(["-o"])
            .arg(&file)
            .arg(format!("https://api.test:{port}/big"))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        // three requests over HTTP/2, one TLS connection
        assert_eq!(
            lines,
            ["2 200 1", "2 200 0", "2 200 0"],
            "[{driver}] curl: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body = std::fs::read(&file).unwrap();
        assert_eq!(body.len() as u64, len, "[{driver}]");
        assert_eq!(fnv64(&body), pattern_fnv(len), "[{driver}] body differs");
        let seen = up.wait_requests(2, secs(5));
        for r in &seen {
            assert_eq!(
                r.header("x-forwarded-proto").as_deref(),
                Some("https"),
                "[{driver}]"
            );
            assert_eq!(
                r.header("host"),
                Some(format!("api.test:{port}")),
                "[{driver}]"
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
