//! TLS in the config file: `[[listener]]` (with `[listener.tls]`), an upstream's `tls = { ... }`,
//! and the routes' client-certificate rules: raw TOML shape, and the validation that builds the
//! rustls configs.
//!
//! Flow: `validate.rs` hands the raw `[[listener]]` list to [`listeners`] (before routes, which
//! need to know whether any listener asks for client certificates), each upstream's `tls` table to
//! [`upstream_tls`], and each route's `require_client_cert` / `client_cert_sans` to
//! [`route_client_cert`]. Keys are checked here (names, enumerations, which keys go together,
//! duplicate addresses); file paths are resolved against the config file's directory; then
//! `crate::tls` reads the files and builds the rustls configs, and each of its problems is reported
//! under the key it names. So a missing, unparsable or mismatched certificate is a config error
//! with a position, at start and at reload (where it keeps the old generation). Warnings (an
//! expired certificate, `insecure_skip_verify`) go to stderr once per load, with their key path.
//!
//! [`listeners_need_restart`] is what reload refuses: a changed set of `[[listener]]` addresses.
//! New certificates or TLS settings on a listener that stays are a normal reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::auth::resolve;
use super::model::{Config, ListenerConfig};
use super::position::KeyPath;
use super::raw::DurationValue;
use super::units::resolve_addr;
use super::validate::Ctx;
use crate::tls::{
    CertificateFiles, ClientAuth, ServerTls, ServerTlsOptions, TlsKey, TlsProblem, TlsVersion,
    UnknownSni, UpstreamTls, UpstreamTlsOptions, ALPN_H2, ALPN_HTTP11,
};

/// One `[[listener]]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawListener {
    pub listen: Option<String>,
    pub tls: Option<RawListenerTls>,
    pub proxy_protocol: Option<bool>,
    pub allow_ips: Option<Vec<String>>,
    pub deny_ips: Option<Vec<String>>,
}

/// `[listener.tls]`
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawListenerTls {
    pub certificates: Option<Vec<RawCertificate>>,
    pub unknown_sni: Option<String>,
    pub alpn: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub session_tickets: Option<bool>,
    pub handshake_timeout: Option<DurationValue>,
    pub client_auth: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_crl_file: Option<String>,
}

/// `{ cert_file = "...", key_file = "...", ocsp_file = "..." }`
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCertificate {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ocsp_file: Option<String>,
}

/// An upstream's `tls = { ... }`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawUpstreamTls {
    pub sni: Option<String>,
    pub ca_file: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

/// Every `[[listener]]`, in order, and whether any asks for client certificates. `server_listen`
/// and `admin` are the other addresses a listener must not repeat (port 0 never clashes: each
/// bind gets a fresh port).
pub(super) fn listeners(
    cx: &mut Ctx,
    raw: Vec<RawListener>,
    base: &Path,
    server_listen: &[SocketAddr],
    admin: Option<SocketAddr>,
) -> (Vec<ListenerConfig>, bool) {
    let mut out: Vec<ListenerConfig> = Vec::new();
    let mut seen: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    let mut client_certs = false;
    for (i, l) in raw.into_iter().enumerate() {
        let p = KeyPath::root().key("listener").index(i);
        let lp = p.key("listen");
        let listen = cx
            .required(lp.clone(), l.listen, "an address like \"127.0.0.1:8443\"")
            .and_then(|a| cx.check(&lp, resolve_addr(&a)));
        if let Some(addr) = listen.filter(|a| a.port() != 0) {
            if let Some(first) = seen.get(&addr) {
                cx.err(
                    lp.clone(),
                    format!("duplicate address {addr} (also listener[{first}])"),
                );
            } else if server_listen.contains(&addr) {
                cx.err(
                    lp.clone(),
                    format!("{addr} is also a server.listen address"),
                );
            } else if admin == Some(addr) {
                cx.err(
                    lp.clone(),
                    format!("{addr} is also the admin.listen address"),
                );
            }
            seen.entry(addr).or_insert(i);
        }
        let tls = match l.tls {
            None => Ok(None),
            Some(t) => {
                let tp = p.key("tls");
                client_certs |= matches!(t.client_auth.as_deref(), Some("optional" | "required"));
                server_tls(cx, &tp, t, base).map(|t| Some(Arc::new(t)))
            }
        };
        let allow_ips = super::ip::ip_list(cx, p.key("allow_ips"), l.allow_ips, base);
        let deny_ips = super::ip::ip_list(cx, p.key("deny_ips"), l.deny_ips, base);
        if let (Some(listen), Ok(tls)) = (listen, tls) {
            let proxy_protocol = l.proxy_protocol.unwrap_or(false);
            out.push(ListenerConfig {
                listen,
                tls,
                proxy_protocol,
                allow_ips,
                deny_ips,
            });
        }
    }
    (out, client_certs)
}

/// `[listener.tls]` checked key by key, then built; `Err` once any problem is recorded.
fn server_tls(cx: &mut Ctx, p: &KeyPath, t: RawListenerTls, base: &Path) -> Result<ServerTls, ()> {
    let before = cx.error_count();
    let cp = p.key("certificates");
    let expected = "a list like [{ cert_file = \"certs/api.pem\", key_file = \"certs/api.key\" }]";
    let raw_certs = cx.required(cp.clone(), t.certificates, expected);
    if raw_certs.as_ref().is_some_and(Vec::is_empty) {
        cx.err(cp.clone(), "empty list (expected at least one certificate)");
    }
    let mut certificates = Vec::new();
    for (i, c) in raw_certs.unwrap_or_default().into_iter().enumerate() {
        let ep = cp.index(i);
        let cert = cx.required(
            ep.key("cert_file"),
            c.cert_file,
            "a PEM certificate chain file",
        );
        let key = cx.required(ep.key("key_file"), c.key_file, "a PEM private key file");
        if let (Some(cert), Some(key)) = (cert, key) {
            certificates.push(CertificateFiles {
                cert_file: resolve(base, &cert),
                key_file: resolve(base, &key),
                ocsp_file: c.ocsp_file.map(|f| resolve(base, &f)),
            });
        }
    }
    let mut opts = ServerTlsOptions::new(certificates);
    opts.unknown_sni = match t.unknown_sni.as_deref() {
        None | Some("default") => UnknownSni::Default,
        Some("reject") => UnknownSni::Reject,
        Some(other) => {
            let m = format!("unknown value \"{other}\" (expected \"default\" or \"reject\")");
            cx.err(p.key("unknown_sni"), m);
            UnknownSni::Default
        }
    };
    if let Some(alpn) = t.alpn {
        opts.alpn = alpn_list(cx, &p.key("alpn"), alpn);
    }
    opts.min_version = match t.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(other) => {
            let m = format!("unknown version \"{other}\" (expected \"1.2\" or \"1.3\")");
            cx.err(p.key("min_version"), m);
            TlsVersion::Tls12
        }
    };
    opts.session_tickets = t.session_tickets.unwrap_or(true);
    let default_timeout = crate::tls::DEFAULT_HANDSHAKE_TIMEOUT.as_secs();
    opts.handshake_timeout = cx.duration(
        p.key("handshake_timeout"),
        t.handshake_timeout,
        default_timeout,
        false,
    );
    opts.client_auth = match t.client_auth.as_deref() {
        None | Some("none") => ClientAuth::None,
        Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            let m = format!("unknown mode \"{other}\" (expected none, optional or required)");
            cx.err(p.key("client_auth"), m);
            ClientAuth::None
        }
    };
    // An unknown mode is reported once, not again for each file it would need.
    let asks = t.client_auth.as_deref().is_some_and(|a| a != "none");
    for (key, file) in [
        ("client_ca_file", &t.client_ca_file),
        ("client_crl_file", &t.client_crl_file),
    ] {
        if file.is_some() && !asks {
            cx.err(
                p.key(key),
                "only with client_auth = \"optional\" or \"required\"",
            );
        }
    }
    opts.client_ca_file = t.client_ca_file.map(|f| resolve(base, &f));
    opts.client_crl_file = t.client_crl_file.map(|f| resolve(base, &f));
    if cx.error_count() > before {
        return Err(());
    }
    built(cx, p, None, ServerTls::build(opts))
}

/// `alpn`: `"h2"` and `"http/1.1"`, in the server's order of preference.
fn alpn_list(cx: &mut Ctx, p: &KeyPath, alpn: Vec<String>) -> Vec<String> {
    if alpn.is_empty() {
        cx.err(
            p.clone(),
            "empty list (expected [\"h2\", \"http/1.1\"] or one of them)",
        );
    }
    let mut out: Vec<String> = Vec::new();
    for (i, a) in alpn.into_iter().enumerate() {
        if a != ALPN_HTTP11 && a != ALPN_H2 {
            cx.err(
                p.index(i),
                format!("unknown protocol \"{a}\" (expected \"h2\" or \"http/1.1\")"),
            );
        } else if out.contains(&a) {
            cx.err(p.index(i), format!("duplicate protocol \"{a}\""));
        } else {
            out.push(a);
        }
    }
    out
}

/// An upstream's `tls` table (`p`: the upstream, `name` its name for warnings); `Ok(None)` without
/// one, `Err` after recording a problem.
pub(super) fn upstream_tls(
    cx: &mut Ctx,
    p: &KeyPath,
    name: Option<&str>,
    raw: Option<RawUpstreamTls>,
    base: &Path,
    protocol: super::UpstreamProtocol,
) -> Result<Option<Arc<UpstreamTls>>, ()> {
    let Some(t) = raw else {
        return Ok(None);
    };
    let p = p.key("tls");
    let file = |f: Option<String>| f.map(|f| resolve(base, &f));
    let opts = UpstreamTlsOptions {
        sni: t.sni,
        ca_file: file(t.ca_file),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        client_cert_file: file(t.client_cert_file),
        client_key_file: file(t.client_key_file),
        alpn: match protocol {
            super::UpstreamProtocol::Http1 => vec![ALPN_HTTP11],
            super::UpstreamProtocol::Http2 => vec![ALPN_H2],
            super::UpstreamProtocol::Auto => vec![ALPN_H2, ALPN_HTTP11],
        },
    };
    let who = name.map(|n| format!("upstream \"{n}\""));
    built(cx, &p, who.as_deref(), UpstreamTls::build(opts)).map(|t| Some(Arc::new(t)))
}

/// Records a builder's problems under `p` (the settings table); logs its warnings (naming `who`).
fn built<T>(
    cx: &mut Ctx,
    p: &KeyPath,
    who: Option<&str>,
    r: crate::tls::Built<T>,
) -> Result<T, ()> {
    let at = |k: &TlsKey| match k {
        TlsKey::Setting("") => p.clone(),
        TlsKey::Setting(key) => p.key(key),
        TlsKey::Certificate(i, field) => p.key("certificates").index(*i).key(field),
    };
    match r {
        Ok((value, warnings)) => {
            for TlsProblem { key, message } in warnings {
                let who = who.map(|w| format!("{w}: ")).unwrap_or_default();
                eprintln!("coregate: WARNING: {}: {who}{message}", at(&key));
            }
            Ok(value)
        }
        Err(problems) => {
            for TlsProblem { key, message } in problems {
                cx.err(at(&key), message);
            }
            Err(())
        }
    }
}

/// A route's `require_client_cert` and `client_cert_sans` (`p`: the route). `client_certs`: some
/// listener asks for client certificates; without one the rule could never pass.
pub(super) fn route_client_cert(
    cx: &mut Ctx,
    p: &KeyPath,
    require: Option<bool>,
    sans: Option<Vec<String>>,
    client_certs: bool,
) -> (bool, Vec<String>) {
    let sp = p.key("client_cert_sans");
    let mut out: Vec<String> = Vec::new();
    if let Some(sans) = &sans {
        if sans.is_empty() {
            cx.err(
                sp.clone(),
                "empty list (omit client_cert_sans to allow any verified certificate)",
            );
        }
        for (i, s) in sans.iter().enumerate() {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
                let m = format!(
                    "invalid name \"{s}\" (expected a DNS name, e-mail, URI or IP address)"
                );
                cx.err(sp.index(i), m);
            } else if out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
                cx.err(sp.index(i), format!("duplicate name \"{s}\""));
            } else {
                out.push(s.clone());
            }
        }
    }
    if sans.is_some() && require == Some(false) {
        let m = "client_cert_sans needs a client certificate (remove require_client_cert = false)";
        cx.err(p.key("require_client_cert"), m);
    }
    let required = require == Some(true) || sans.is_some();
    if required && !client_certs {
        let key = match require {
            Some(true) => "require_client_cert",
            _ => "client_cert_sans",
        };
        let m = "no listener asks for client certificates, so this could never pass \
                 (set client_auth = \"optional\" or \"required\" in a [listener.tls])";
        cx.err(p.key(key), m);
    }
    (required, out)
}

/// Why a reload cannot apply `new`: the set of `[[listener]]` addresses changed (the sockets are
/// bound at start). `None` when they are the same; certificates and TLS settings may change.
pub fn listeners_need_restart(old: &Config, new: &Config) -> Option<String> {
    // in order: each worker's accept loop finds its listener's options by position
    let addrs = |c: &Config| -> Vec<SocketAddr> { c.listeners.iter().map(|l| l.listen).collect() };
    let (a, b) = (addrs(old), addrs(new));
    let text = |v: &[SocketAddr]| {
        let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        format!("[{}]", s.join(","))
    };
    (a != b).then(|| {
        format!(
            "listener: changing or reordering [[listener]] addresses ({} -> {}) needs a restart",
            text(&a),
            text(&b)
        )
    })
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
