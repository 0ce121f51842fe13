//! `[dns]` and `[[upstream]] endpoints` / `dns_refresh`: how endpoint names become addresses.
//!
//! Owns: [`DnsConfig`] (servers, timeout, attempts, TTL bounds), [`DnsRefresh`], the model of an
//! endpoint as written ([`EndpointSpec`]) and the validation of both.
//!
//! Flow for one upstream (`endpoints`): each entry is an `ip:port` literal, a `host:port` name or
//! an SRV name (`_service._proto.name`, no port: the records give ports and weights).
//! - `dns_refresh = "never"` (the default): `host:port` goes through the system resolver once, first
//!   address (what the gateway always did); SRV names are resolved once with the resolver below.
//! - `dns_refresh = "ttl"`: every name is resolved with `crate::discovery`'s resolver (`[dns]
//!   servers`, else the host's resolv.conf), every address of it is an endpoint, and the upstream
//!   keeps its specs so the discovery thread re-resolves them on their TTL.
//!
//! A name that does not resolve while the config loads is an error at its key path (as nginx
//! refuses to start), unless this process resolved it before (a reload during a DNS outage keeps
//! the last good addresses).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::model::Endpoint;
use super::position::KeyPath;
use super::raw::{DurationValue, RawEndpoint};
use super::units::resolve_addr;
use super::validate::Ctx;
use crate::discovery::resolver::AtLoad;

const ADDR_EXAMPLE: &str = "an address like \"127.0.0.1:9001\"";

/// `[dns]`: the resolver of `dns_refresh = "ttl"` upstreams (and of SRV endpoint names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `servers`: asked in order; empty = the host's `/etc/resolv.conf` (servers, search, ndots).
    pub servers: Vec<SocketAddr>,
    /// One query's bound (UDP, and TCP again when the answer was truncated).
    pub timeout: Duration,
    /// Rounds over the servers before a lookup fails.
    pub attempts: u32,
    /// Answers are kept at least this long (TTL 0, as Consul gives, would mean a query loop) and
    /// failed lookups retried after it.
    pub min_ttl: Duration,
    /// Answers are kept at most this long (a day-long TTL would hide a move).
    pub max_ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
        }
    }
}

impl DnsConfig {
    /// How long an answer with this record TTL is kept.
    pub fn keep(&self, ttl: u32) -> Duration {
        Duration::from_secs(u64::from(ttl)).clamp(self.min_ttl, self.max_ttl)
    }
}

/// `[dns]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDns {
    pub servers: Option<Vec<String>>,
    pub timeout: Option<DurationValue>,
    pub attempts: Option<i64>,
    pub min_ttl: Option<DurationValue>,
    pub max_ttl: Option<DurationValue>,
}

/// `[[upstream]] dns_refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsRefresh {
    /// Names are resolved when the config loads, never again.
    #[default]
    Never,
    /// Names are re-resolved when their answer's TTL (clamped by `[dns]`) runs out.
    Ttl,
}

/// One endpoint's address as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointName {
    Ip(SocketAddr),
    /// `host:port`: A and AAAA records.
    Host {
        host: String,
        port: u16,
    },
    /// `_service._proto.name`: SRV records.
    Srv(String),
}

/// One `endpoints` entry as written: what a refresh resolves again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    pub name: EndpointName,
    pub weight: u32,
}

impl std::fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            EndpointName::Ip(a) => write!(f, "{a}"),
            EndpointName::Host { host, port } => write!(f, "{host}:{port}"),
            EndpointName::Srv(n) => f.write_str(n),
        }
    }
}

/// Validates `[dns]` (defaults when absent).
pub(super) fn dns(cx: &mut Ctx, raw: Option<RawDns>) -> DnsConfig {
    let d = DnsConfig::default();
    let Some(r) = raw else { return d };
    let p = KeyPath::root().key("dns");
    let mut servers = Vec::new();
    for (i, s) in r.servers.unwrap_or_default().iter().enumerate() {
        let sp = p.key("servers").index(i);
        let parsed = (s.parse::<SocketAddr>().ok())
            .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()));
        match parsed {
            Some(a) if a.port() == 0 => cx.err(sp, "port 0 is not a DNS server's port"),
            Some(a) if servers.contains(&a) => cx.err(sp, format!("duplicate server {a}")),
            Some(a) => servers.push(a),
            None => cx.err(
                sp,
                format!("invalid server \"{s}\" (expected an IP address, optionally with a port: \"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\")"),
            ),
        }
    }
    let timeout = cx.duration(p.key("timeout"), r.timeout, 2, false);
    let min_ttl = match r.min_ttl {
        None => d.min_ttl,
        v => cx.duration(p.key("min_ttl"), v, 5, false),
    };
    let max_ttl = match r.max_ttl {
        None => d.max_ttl,
        v => cx.duration(p.key("max_ttl"), v, 300, false),
    };
    if min_ttl < Duration::from_secs(1) {
        cx.err(p.key("min_ttl"), "must be at least 1s");
    }
    if max_ttl < min_ttl {
        cx.err(p.key("max_ttl"), "must not be below min_ttl");
    }
    DnsConfig {
        servers,
        timeout,
        attempts: cx.int(p.key("attempts"), r.attempts, d.attempts, 1, 10),
        min_ttl,
        max_ttl,
    }
}

/// Validates `dns_refresh`.
pub(super) fn refresh(cx: &mut Ctx, p: &KeyPath, raw: Option<&str>) -> DnsRefresh {
    match raw {
        None | Some("never") => DnsRefresh::Never,
        Some("ttl") => DnsRefresh::Ttl,
        Some(other) => {
            cx.err(
                p.key("dns_refresh"),
                format!("unknown value \"{other}\" (expected \"ttl\" or \"never\")"),
            );
            DnsRefresh::Never
        }
    }
}

/// Parses an endpoint address as written: a literal, `host:port` or an SRV name.
pub(crate) fn parse_name(s: &str) -> Result<EndpointName, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(EndpointName::Ip(a));
    }
    let label_ok = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            })
    };
    if s.starts_with('_') {
        if s.contains(':') {
            return Err(format!(
                "\"{s}\" is an SRV name: the records give the port, so write it without one"
            ));
        }
        if !label_ok(s) {
            return Err(format!(
                "invalid SRV name \"{s}\" (expected like \"_http._tcp.users.service.consul\")"
            ));
        }
        return Ok(EndpointName::Srv(s.to_ascii_lowercase()));
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| {
        format!("invalid address \"{s}\" (expected ip:port, [v6]:port, host:port or an SRV name like \"_http._tcp.users\")")
    })?;
    if !label_ok(host) {
        return Err(format!("invalid host name in \"{s}\""));
    }
    let port = (port.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port in \"{s}\" (expected 1 to 65535)"))?;
    Ok(EndpointName::Host {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// An upstream's `endpoints`, resolved: the endpoints in use and, for `dns_refresh = "ttl"`, the
/// specs the discovery thread re-resolves.
pub(super) fn endpoints(
    cx: &mut Ctx,
    ep: &KeyPath,
    raw: Vec<RawEndpoint>,
    refresh: DnsRefresh,
    names: &AtLoad<'_>,
) -> (Vec<Endpoint>, Option<Vec<EndpointSpec>>) {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut specs = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let p = ep.index(i);
        let (addr, weight) = match e {
            RawEndpoint::Addr(a) => (Some(a), 1),
            RawEndpoint::Table(t) => (t.addr, cx.int(p.key("weight"), t.weight, 1, 1, 1000)),
        };
        let Some(addr) = cx.required(p.key("addr"), addr, ADDR_EXAMPLE) else {
            continue;
        };
        let name = match parse_name(&addr) {
            // a plain name under "never" keeps the system resolver's single address, as before
            Ok(EndpointName::Host { .. }) if refresh == DnsRefresh::Never => {
                match cx.check(&p, resolve_addr(&addr)) {
                    Some(a) => EndpointName::Ip(a),
                    None => continue,
                }
            }
            Ok(n) => n,
            Err(m) => {
                cx.err(p, m);
                continue;
            }
        };
        if matches!(name, EndpointName::Ip(a) if a.port() == 0) {
            cx.err(p, "port 0 is not a valid endpoint port");
            continue;
        }
        if specs.iter().any(|s: &EndpointSpec| s.name == name) {
            let shown = match name {
                EndpointName::Ip(a) => a.to_string(),
                _ => format!("\"{addr}\""),
            };
            cx.err(p, format!("duplicate endpoint {shown}"));
            continue;
        }
        let spec = EndpointSpec { name, weight };
        let resolved = match spec.name {
            EndpointName::Ip(addr) => Ok(vec![Endpoint { addr, weight }]),
            _ => names.resolve(&spec).map(|a| a.endpoints),
        };
        match resolved {
            Ok(found) => crate::discovery::resolver::merge(&mut endpoints, found),
            Err(m) => cx.err(p, format!("cannot resolve \"{addr}\": {m}")),
        }
        specs.push(spec);
    }
    let keep =
        refresh == DnsRefresh::Ttl && specs.iter().any(|s| !matches!(s.name, EndpointName::Ip(_)));
    (endpoints, keep.then_some(specs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::config::validate::tests::{errs as errors, UP};

    #[test]
    fn endpoint_names_as_written() {
        let host = |h: &str, port| EndpointName::Host {
            host: h.into(),
            port,
        };
        assert_eq!(
            parse_name("10.0.0.1:80"),
            Ok(EndpointName::Ip("10.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            parse_name("[::1]:80"),
            Ok(EndpointName::Ip("[::1]:80".parse().unwrap()))
        );
        assert_eq!(
            parse_name("Users.Prod.svc:8080"),
            Ok(host("users.prod.svc", 8080))
        );
        assert_eq!(
            parse_name("users.service.consul.:80"),
            Ok(host("users.service.consul.", 80))
        );
        assert_eq!(
            parse_name("_http._tcp.Users.service.consul"),
            Ok(EndpointName::Srv("_http._tcp.users.service.consul".into()))
        );
        for (bad, says) in [
            ("_http._tcp.users:80", "the records give the port"),
            ("users", "invalid address"),
            ("users:0x50", "invalid port"),
            ("users:0", "invalid port"),
            ("us ers:80", "invalid host name"),
            ("a..b:80", "invalid host name"),
            ("::1:80", "invalid host name"),
            ("_http._tcp..x", "invalid SRV name"),
        ] {
            let e = parse_name(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let long = format!("{}.example:80", "a".repeat(64));
        assert!(parse_name(&long).is_err());
    }

    #[test]
    fn dns_table_defaults_and_errors() {
        let c = parse_str(
            &format!("{UP}[dns]\nservers = [\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\"]\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            c.dns.servers,
            ["10.0.0.2:53", "127.0.0.1:5353", "[::1]:53"].map(|s| s.parse::<SocketAddr>().unwrap())
        );
        assert_eq!(c.dns.min_ttl, Duration::from_secs(5));
        assert_eq!(c.dns.max_ttl, Duration::from_secs(300));
        assert_eq!(c.dns.keep(0), Duration::from_secs(5));
        assert_eq!(c.dns.keep(30), Duration::from_secs(30));
        assert_eq!(c.dns.keep(86_400), Duration::from_secs(300));
        let e = errors(
            "[dns]\nservers = [\"dns.local\", \"10.0.0.2:0\", \"10.0.0.3\", \"10.0.0.3:53\"]\n\
             min_ttl = \"500ms\"\nmax_ttl = \"10s\"\nattempts = 0\nbogus = 1\n",
        );
        let has = |s: &str| e.iter().any(|x| x.contains(s));
        assert!(has("dns.servers[0]: invalid server \"dns.local\""), "{e:?}");
        assert!(has("dns.servers[1]: port 0"), "{e:?}");
        assert!(has("dns.servers[3]: duplicate server 10.0.0.3:53"), "{e:?}");
        assert!(has("dns.min_ttl: must be at least 1s"), "{e:?}");
        assert!(has("dns.attempts: must be between 1 and 10"), "{e:?}");
        assert!(has("bogus"), "{e:?}");
        let e = errors("[dns]\nmin_ttl = \"1m\"\nmax_ttl = \"30s\"\n");
        assert!(
            e.iter()
                .any(|x| x.contains("dns.max_ttl: must not be below min_ttl")),
            "{e:?}"
        );
    }

    #[test]
    fn upstream_endpoint_errors_name_their_entry() {
        let up = |eps: &str, extra: &str| {
            format!("[[upstream]]\nname = \"n\"\nendpoints = {eps}\n{extra}\n")
        };
        let e = errors(&up(
            "[\"_x._tcp.svc:80\", \"10.0.0.1:80\", \"10.0.0.1:80\"]",
            "dns_refresh = \"ttl\"",
        ));
        let has = |s: &str| e.iter().any(|x| x.contains(s));
        assert!(
            has("upstream[1].endpoints[0]: \"_x._tcp.svc:80\" is an SRV name"),
            "{e:?}"
        );
        assert!(
            has("upstream[1].endpoints[2]: duplicate endpoint 10.0.0.1:80"),
            "{e:?}"
        );
        let e = errors(&up("[\"10.0.0.1:80\"]", "dns_refresh = \"always\""));
        assert!(
            e.iter()
                .any(|x| x.contains("upstream[1].dns_refresh: unknown value \"always\"")),
            "{e:?}"
        );
        // literals only: nothing to refresh, and the model says so
        let c = parse_str(
            &format!("{UP}{}", up("[\"10.0.0.1:80\"]", "dns_refresh = \"ttl\"")),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.upstreams[1].discovery, None);
        assert_eq!(
            c.upstreams[1].endpoints[0].addr,
            "10.0.0.1:80".parse().unwrap()
        );
    }
}
