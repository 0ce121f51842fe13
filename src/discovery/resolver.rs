//! Endpoint names to addresses, with the TTL they may be kept for: the stub resolver of service
//! discovery.
//!
//! Owns: [`Resolver`] (which servers, how short names are completed, timeouts), [`Answer`] and the
//! process's last good answers ([`AtLoad`], [`remember`]).
//!
//! Flow of [`Resolver::resolve`] for one [`EndpointSpec`]:
//! ```text
//! ip:port literal            -> itself
//! host:port                  -> A and AAAA for each candidate name (resolv.conf search / ndots
//!                               when the servers are the host's), CNAMEs followed (up to 8)
//! _service._proto.name (SRV) -> SRV records; the lowest priority's targets, each target's
//!                               addresses from the additional section or A/AAAA queries;
//!                               port and weight from the record (weight clamped to 1..=1000)
//! ```
//! The answer's TTL is the smallest TTL of every record it was built from. A name with no address
//! (NXDOMAIN, no records, only an SRV target of ".") is an error, as is any server failure: a
//! partial answer (A answered, AAAA timed out) would shrink the endpoint set for no reason, so the
//! caller keeps its last good set instead.
//!
//! Servers are tried in order, `attempts` rounds; SERVFAIL/REFUSED/timeouts move on to the next.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::wire::{exchange, WireError};
use crate::config::dns::{DnsConfig, EndpointName, EndpointSpec};
use crate::config::model::Endpoint;

/// CNAME hops followed before giving up (a loop or an absurd chain).
const MAX_CNAME_HOPS: usize = 8;

/// Addresses for one spec and how long they may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Sorted by address, no duplicates.
    pub endpoints: Vec<Endpoint>,
    /// The smallest TTL of the records used, in seconds (unclamped).
    pub ttl: u32,
}

/// A stub resolver over the configured (or the host's) servers.
#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    search: Vec<String>,
    ndots: usize,
    timeout: Duration,
    attempts: u32,
}

impl Resolver {
    /// `[dns] servers` when given (names are then taken as absolute), else the host's resolv.conf
    /// (servers, search list and ndots).
    pub fn new(cfg: &DnsConfig) -> Resolver {
        let (servers, search, ndots) = if cfg.servers.is_empty() {
            let sys = super::resolv_conf::system();
            (sys.servers, sys.search, sys.ndots)
        } else {
            (cfg.servers.clone(), Vec::new(), 1)
        };
        Resolver {
            servers,
            search,
            ndots,
            timeout: cfg.timeout,
            attempts: cfg.attempts,
        }
    }

    /// The current addresses of `spec` (blocking: never call it on a worker).
    pub fn resolve(&self, spec: &EndpointSpec) -> Result<Answer, String> {
        let mut a = match &spec.name {
            EndpointName::Ip(addr) => Answer {
                endpoints: vec![Endpoint {
                    addr: *addr,
                    weight: spec.weight,
                }],
                ttl: u32::MAX,
            },
            EndpointName::Host { host, port } => self.host(host, *port, spec.weight)?,
            EndpointName::Srv(name) => self.srv(name)?,
        };
        a.endpoints.sort_by_key(|e| e.addr);
        a.endpoints.dedup_by_key(|e| e.addr);
        Ok(a)
    }

    /// The names to try for `name`, in glibc's order.
    fn candidates(&self, name: &str) -> Result<Vec<Name>, String> {
        let parse = |s: &str| {
            let mut n = Name::from_ascii(s).map_err(|e| format!("invalid name \"{s}\": {e}"))?;
            n.set_fqdn(true);
            Ok::<_, String>(n)
        };
        if let Some(abs) = name.strip_suffix('.') {
            return Ok(vec![parse(abs)?]);
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        let dots = name.matches('.').count();
        let order: Vec<String> = if dots >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        };
        order.iter().map(|s| parse(s)).collect()
    }

    /// One question, asked of each server in turn for `attempts` rounds.
    fn query(&self, name: &Name, rtype: RecordType) -> Result<Message, String> {
        let mut last = WireError::Timeout;
        for _ in 0..self.attempts.max(1) {
            for &server in &self.servers {
                match exchange(server, name, rtype, self.timeout) {
                    Ok(m) => return Ok(m),
                    Err(e) => last = e,
                }
            }
        }
        Err(format!(
            "{rtype} {name}: {last} (asked {})",
            self.servers_text()
        ))
    }

    fn servers_text(&self) -> String {
        let s: Vec<String> = self.servers.iter().map(|s| s.to_string()).collect();
        s.join(", ")
    }

    /// A and AAAA records of the first candidate of `host` that has any.
    fn host(&self, host: &str, port: u16, weight: u32) -> Result<Answer, String> {
        for name in self.candidates(host)? {
            if let Some(a) = self.addresses(&name, port, weight)? {
                return Ok(a);
            }
        }
        Err(format!("\"{host}\" has no A or AAAA records"))
    }

    /// `name`'s addresses; `None` when it has none (NXDOMAIN or no data).
    fn addresses(&self, name: &Name, port: u16, weight: u32) -> Result<Option<Answer>, String> {
        let mut out = Answer {
            endpoints: Vec::new(),
            ttl: u32::MAX,
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            let mut target = name.clone();
            for hop in 0..=MAX_CNAME_HOPS {
                let m = self.query(&target, rtype)?;
                let before = out.endpoints.len();
                let mut cname = None;
                for r in &m.answers {
                    match &r.data {
                        RData::A(a) => out.endpoints.push(endpoint(a.0.into(), port, weight)),
                        RData::AAAA(a) => out.endpoints.push(endpoint(a.0.into(), port, weight)),
                        RData::CNAME(c) => cname = Some(c.0.clone()),
                        _ => continue,
                    }
                    out.ttl = out.ttl.min(r.ttl);
                }
                // a server that does not chase the CNAME itself (authoritative-only) left it to us
                match cname {
                    Some(next) if out.endpoints.len() == before && hop < MAX_CNAME_HOPS => {
                        target = next;
                    }
                    Some(_) if out.endpoints.len() == before => {
                        return Err(format!("{name}: more than {MAX_CNAME_HOPS} CNAME hops"));
                    }
                    _ => break,
                }
            }
        }
        Ok((!out.endpoints.is_empty()).then_some(out))
    }

    /// SRV records of the first candidate of `name` that has any.
    fn srv(&self, name: &str) -> Result<Answer, String> {
        for cand in self.candidates(name)? {
            let m = self.query(&cand, RecordType::SRV)?;
            if m.metadata.response_code == ResponseCode::NXDomain {
                continue;
            }
            let records: Vec<_> = (m.answers.iter())
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some((r.ttl, s)),
                    _ => None,
                })
                .collect();
            let Some(best) = records.iter().map(|(_, s)| s.priority).min() else {
                continue;
            };
            let mut out = Answer {
                endpoints: Vec::new(),
                ttl: u32::MAX,
            };
            for (ttl, s) in records.iter().filter(|(_, s)| s.priority == best) {
                // "." means "this service is decidedly not available here" (RFC 2782)
                if s.target.is_root() {
                    continue;
                }
                out.ttl = out.ttl.min(*ttl);
                let weight = u32::from(s.weight).clamp(1, 1000);
                let glue: Vec<_> = (m.additionals.iter())
                    .filter(|r| r.name == s.target)
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some((r.ttl, std::net::IpAddr::from(a.0))),
                        RData::AAAA(a) => Some((r.ttl, std::net::IpAddr::from(a.0))),
                        _ => None,
                    })
                    .collect();
                if glue.is_empty() {
                    let mut target = s.target.clone();
                    target.set_fqdn(true);
                    if let Some(a) = self.addresses(&target, s.port, weight)? {
                        out.ttl = out.ttl.min(a.ttl);
                        out.endpoints.extend(a.endpoints);
                    }
                } else {
                    for (ttl, ip) in glue {
                        out.ttl = out.ttl.min(ttl);
                        out.endpoints.push(endpoint(ip, s.port, weight));
                    }
                }
            }
            if out.endpoints.is_empty() {
                return Err(format!("\"{name}\": no SRV target has an address"));
            }
            return Ok(out);
        }
        Err(format!("\"{name}\" has no SRV records"))
    }
}

/// Adds `more` to an upstream's endpoints, skipping addresses it has (an address two names share
/// is one endpoint, with the weight of the first).
pub fn merge(into: &mut Vec<Endpoint>, more: Vec<Endpoint>) {
    for e in more {
        if !into.iter().any(|x| x.addr == e.addr) {
            into.push(e);
        }
    }
}

fn endpoint(ip: std::net::IpAddr, port: u16, weight: u32) -> Endpoint {
    Endpoint {
        addr: SocketAddr::new(ip, port),
        weight,
    }
}

/// A spec's last good answer and when it was obtained.
#[derive(Debug, Clone)]
pub struct Remembered {
    pub answer: Answer,
    pub at: Instant,
}

type Key = (Vec<SocketAddr>, EndpointSpec);

fn last_good() -> &'static ArcSwap<HashMap<Key, Remembered>> {
    static LAST: OnceLock<ArcSwap<HashMap<Key, Remembered>>> = OnceLock::new();
    LAST.get_or_init(|| ArcSwap::from_pointee(HashMap::new()))
}

/// Records `answer` as `spec`'s last good one under `dns`'s servers.
pub fn remember(dns: &DnsConfig, spec: &EndpointSpec, answer: &Answer) {
    let key = (dns.servers.clone(), spec.clone());
    let value = Remembered {
        answer: answer.clone(),
        at: Instant::now(),
    };
    last_good().rcu(|m| {
        let mut m = HashMap::clone(m);
        m.insert(key.clone(), value.clone());
        Arc::new(m)
    });
}

/// `spec`'s last good answer under `dns`'s servers, if any.
pub fn recall(dns: &DnsConfig, spec: &EndpointSpec) -> Option<Remembered> {
    last_good()
        .load()
        .get(&(dns.servers.clone(), spec.clone()))
        .cloned()
}

/// Resolution while a config loads (start, reload, `check`), one per load: the resolver (and the
/// host's resolv.conf) is read once, and only when a name needs it. It asks the servers; when they
/// fail, it gives the last good answer this process had for the same name and servers (a reload
/// during a DNS outage keeps the endpoints the discovery thread last saw instead of failing).
pub struct AtLoad<'a> {
    dns: &'a DnsConfig,
    resolver: std::cell::OnceCell<Resolver>,
}

impl<'a> AtLoad<'a> {
    pub fn new(dns: &'a DnsConfig) -> AtLoad<'a> {
        AtLoad {
            dns,
            resolver: std::cell::OnceCell::new(),
        }
    }

    pub fn resolve(&self, spec: &EndpointSpec) -> Result<Answer, String> {
        let resolver = self.resolver.get_or_init(|| Resolver::new(self.dns));
        match resolver.resolve(spec) {
            Ok(a) => {
                remember(self.dns, spec, &a);
                Ok(a)
            }
            Err(e) => recall(self.dns, spec).map(|r| r.answer).ok_or(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(search: &[&str], ndots: usize) -> Resolver {
        Resolver {
            servers: Vec::new(),
            search: search.iter().map(|s| s.to_string()).collect(),
            ndots,
            timeout: Duration::from_millis(10),
            attempts: 1,
        }
    }

    fn names(r: &Resolver, n: &str) -> Vec<String> {
        r.candidates(n)
            .unwrap()
            .iter()
            .map(|n| n.to_ascii())
            .collect()
    }

    #[test]
    fn short_names_try_the_search_list_first_as_glibc_does() {
        let k8s = resolver(&["prod.svc.cluster.local", "svc.cluster.local"], 5);
        assert_eq!(
            names(&k8s, "users"),
            [
                "users.prod.svc.cluster.local.",
                "users.svc.cluster.local.",
                "users."
            ]
        );
        // as many dots as ndots: the name itself first
        let one = resolver(&["corp"], 1);
        assert_eq!(
            names(&one, "users.internal"),
            ["users.internal.", "users.internal.corp."]
        );
        // absolute names are never completed
        assert_eq!(
            names(&k8s, "users.prod.svc.cluster.local."),
            ["users.prod.svc.cluster.local."]
        );
        assert_eq!(names(&resolver(&[], 1), "users"), ["users."]);
    }

    #[test]
    fn merge_keeps_the_first_weight_of_a_shared_address() {
        let ep = |a: &str, weight| Endpoint {
            addr: a.parse().unwrap(),
            weight,
        };
        let mut all = vec![ep("10.0.0.1:80", 1)];
        merge(&mut all, vec![ep("10.0.0.1:80", 5), ep("10.0.0.2:80", 5)]);
        assert_eq!(all, [ep("10.0.0.1:80", 1), ep("10.0.0.2:80", 5)]);
    }

    #[test]
    fn a_silent_server_is_a_timeout_naming_the_question_and_servers() {
        // a bound UDP socket that never answers
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = Resolver {
            servers: vec![silent.local_addr().unwrap()],
            ..resolver(&[], 1)
        };
        let spec = EndpointSpec {
            name: EndpointName::Host {
                host: "users.test".into(),
                port: 80,
            },
            weight: 1,
        };
        let e = r.resolve(&spec).unwrap_err();
        assert!(
            e.starts_with("A users.test.: timed out (asked 127.0.0.1:"),
            "{e}"
        );
    }
}
