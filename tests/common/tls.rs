//! TLS helpers for the integration tests: certificates generated at test time (`certs`), a
//! blocking rustls client with session facts (`client`), a blocking rustls upstream server
//! (`server`), and the TOML snippets and log helpers that tie them to a gateway (here).

mod certs;
mod client;
mod server;

pub use certs::*;
pub use client::*;
pub use server::*;

use super::gateway::Gateway;
use rustls::crypto::CryptoProvider;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ring provider (the only one coregate builds with). Deprecated since rustls 0.23.48 for
/// lacking post-quantum key exchange, which these tests do not need.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of `der`, lower-case hex (the format of `X-Client-Cert-Fingerprint`).
pub fn sha256_hex(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A `[[listener]]` on 127.0.0.1:0 whose `[listener.tls]` has `certificates = [entries]` and the
/// extra keys (one per line).
pub fn tls_listener_entries(entries: &[String], extra: &str) -> String {
    format!(
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificates = [ {} ]\n{extra}\n\n",
        entries.join(", ")
    )
}

/// `tls_listener_entries` for plain cert/key pairs.
pub fn tls_listener(certs: &[&Leaf], extra: &str) -> String {
    let entries: Vec<String> = certs.iter().map(|l| l.entry()).collect();
    tls_listener_entries(&entries, extra)
}

/// The address of the `i`-th `[[listener]]` (the CLI's plain `--listen` address comes first).
pub fn listener_addr(gw: &Gateway, i: usize) -> SocketAddr {
    *gw.listen.get(1 + i).unwrap_or_else(|| {
        panic!(
            "gateway listens on {:?}: no [[listener]] #{i} (plain --listen first, then listeners)",
            gw.listen
        )
    })
}

/// The address of the first `[[listener]]`.
pub fn tls_addr(gw: &Gateway) -> SocketAddr {
    listener_addr(gw, 0)
}

/// Waits (up to 5 s) for one stderr line containing every needle (case-insensitive); returns it.
pub fn wait_log_line(gw: &Gateway, needles: &[&str]) -> String {
    let needles: Vec<String> = needles.iter().map(|n| n.to_ascii_lowercase()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = gw.stderr_text();
        if let Some(line) = text.lines().find(|l| {
            let l = l.to_ascii_lowercase();
            needles.iter().all(|n| l.contains(n.as_str()))
        }) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "gateway never logged a line containing all of {needles:?}; stderr so far:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `tls = { ... }` inline table for `[[upstream]]` (pass the keys, e.g. `sni = "x"`).
pub fn upstream_tls(keys: &[String]) -> String {
    format!("tls = {{ {} }}", keys.join(", "))
}

/// `key = "path"`.
pub fn kv_path(key: &str, path: &Path) -> String {
    format!("{key} = \"{}\"", path.display())
}

/// A second gateway as a TLS upstream: its listener speaks only h2 by ALPN (an HTTP/1.1-only
/// client cannot complete a handshake) and routes everything to `backend`. Returns the gateway,
/// its TLS listener's address, its CA, and the outer upstream's `tls = { sni, ca_file }` line.
pub fn h2_only_tls_gateway(backend: SocketAddr) -> (Gateway, SocketAddr, Ca, String) {
    let ca = Ca::new("h2 upstream CA");
    let leaf = ca.server("inner", &["inner.test"]);
    let cfg = super::gateway::config(
        "",
        &(tls_listener(&[&leaf], "alpn = [\"h2\"]")
            + &super::gateway::upstream_toml("backend", &[backend], "")
            + &super::gateway::route_toml("all", "backend", "path_prefix = \"/\"")),
    );
    let gw = Gateway::start(&cfg, "epoll");
    let addr = listener_addr(&gw, 0);
    let tls = upstream_tls(&[
        "sni = \"inner.test\"".to_string(),
        kv_path("ca_file", &ca.file),
    ]);
    (gw, addr, ca, tls)
}
