//! The host's resolver settings (`/etc/resolv.conf`), for discovery without `[dns] servers`.
//!
//! Owns: [`SystemDns`] and [`parse`]. Read are what a stub resolver needs to find names the way the
//! host's own resolver does: `nameserver` lines (port 53), `search` / `domain` (the last one of them
//! wins, as in glibc) and `options ndots:N`. That is what makes a Kubernetes pod's short names
//! (`users.prod`, found under `prod.svc.cluster.local`) resolve here as they do in its other
//! programs. Unknown lines and options are ignored, as glibc does.

use std::net::{IpAddr, SocketAddr};

/// Where the host sends its queries, and how it completes short names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDns {
    pub servers: Vec<SocketAddr>,
    /// Domains tried after a name with fewer than `ndots` dots (and before it otherwise).
    pub search: Vec<String>,
    pub ndots: usize,
}

/// glibc's limit on `nameserver` lines.
const MAX_SERVERS: usize = 3;

/// Parses a resolv.conf text. No `nameserver` line means the local one (glibc's default).
pub fn parse(text: &str) -> SystemDns {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    let mut ndots = 1;
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // a link-local IPv6 server may carry its interface (`fe80::1%eth0`): not supported
                let ip = words.next().and_then(|w| w.parse::<IpAddr>().ok());
                if let Some(ip) = ip.filter(|_| servers.len() < MAX_SERVERS) {
                    servers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") | Some("domain") => {
                search = words
                    .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect();
            }
            Some("options") => {
                for o in words {
                    if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        ndots = usize::min(n, 15);
                    }
                }
            }
            _ => {}
        }
    }
    if servers.is_empty() {
        servers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    SystemDns {
        servers,
        search,
        ndots,
    }
}

/// `/etc/resolv.conf`, read now (blocking: the discovery thread or config loading only).
pub fn system() -> SystemDns {
    parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_pod() {
        let d = parse(
            "search prod.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\noptions ndots:5 timeout:2\n",
        );
        assert_eq!(d.servers, vec!["10.96.0.10:53".parse().unwrap()]);
        assert_eq!(
            d.search,
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(d.ndots, 5);
    }

    #[test]
    fn comments_limits_and_defaults() {
        let d = parse(
            "# generated\nnameserver 1.1.1.1 ; primary\nnameserver ::1\nnameserver bogus\n\
             nameserver 8.8.8.8\nnameserver 9.9.9.9\ndomain Example.COM.\n",
        );
        assert_eq!(d.servers.len(), 3);
        assert_eq!(d.servers[1], "[::1]:53".parse().unwrap());
        assert_eq!(d.search, ["example.com"]);
        assert_eq!(d.ndots, 1);
        let empty = parse("");
        assert_eq!(empty.servers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert!(empty.search.is_empty());
    }
}
