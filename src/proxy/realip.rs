//! The client address of a request, and the IP allow/deny rules checked against it.
//!
//! Owns [`client_ip`] and [`ip_allowed`]. Data flow: the pipeline calls `client_ip` once per
//! request, before routing. The TCP peer is the client unless it is in `[server]
//! trusted_proxies`; then the forwarding header (`real_ip_header`: `X-Forwarded-For`, or RFC
//! 7239 `Forwarded`'s `for=`) is walked from the right, past every hop that is itself a trusted
//! proxy, and the first untrusted address is the client (nginx's `set_real_ip_from` with
//! `real_ip_recursive on`; when every hop is trusted, the leftmost). A malformed hop ends the walk
//! at the last good one, so garbage can never become the client address, and a header from an
//! untrusted peer is never read at all: a spoofed `X-Forwarded-For` changes nothing. The result
//! is what rate-limit keys, IP rules, hash balancing, keyed bulkheads and the access log use; the
//! header sent upstream still appends the TCP peer, as forwarding requires.

use std::net::IpAddr;

use crate::config::RealIpHeader;
use crate::http::head::RequestHead;
use crate::net::cidr::IpSet;

/// One hop as written: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, or for
/// `Forwarded`, the same quoted.
fn hop(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (k, v) = pair.split_at_checked(4)?;
        k.eq_ignore_ascii_case(b"for=").then_some(v)
    })
}

/// The client address: `real` when a trusted proxy named one, else the peer.
#[inline]
pub fn client<'a>(peer: &'a str, real: &'a str) -> &'a str {
    if real.is_empty() {
        peer
    } else {
        real
    }
}

/// The request's client address into `out` (see the module doc): left empty when it is the
/// peer.
pub fn client_ip(
    peer: &str,
    trusted: &IpSet,
    header: RealIpHeader,
    head: &RequestHead,
    buf: &[u8],
    out: &mut String,
) {
    use std::fmt::Write as _;
    out.clear();
    let from_proxy =
        !trusted.is_empty() && peer.parse::<IpAddr>().is_ok_and(|p| trusted.contains(p));
    if !from_proxy {
        return;
    }
    let name: &[u8] = match header {
        RealIpHeader::XForwardedFor => b"x-forwarded-for",
        RealIpHeader::Forwarded => b"forwarded",
    };
    let mut client: Option<IpAddr> = None;
    'walk: for h in head.headers.iter().rev() {
        if !h.name.get(buf).eq_ignore_ascii_case(name) {
            continue;
        }
        for element in h.value.get(buf).rsplit(|&b| b == b',') {
            let value = match header {
                RealIpHeader::XForwardedFor => Some(element),
                RealIpHeader::Forwarded => forwarded_for(element),
            };
            let Some(ip) = value.and_then(hop) else {
                break 'walk;
            };
            client = Some(ip);
            if !trusted.contains(ip) {
                break 'walk;
            }
        }
    }
    if let Some(ip) = client {
        let _ = write!(out, "{ip}");
    }
}

/// Whether `ip` passes an allow list (absent: everyone) and a deny list (deny wins).
pub fn ip_allowed(ip: &str, allow: Option<&IpSet>, deny: Option<&IpSet>) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        // not an address (a Unix socket peer): only a list-free rule set lets it through
        return allow.is_none() && deny.is_none();
    };
    if deny.is_some_and(|d| d.contains(ip)) {
        return false;
    }
    allow.is_none_or(|a| a.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, HeadLimits};

    fn resolve(peer: &str, trusted: &[&str], header: RealIpHeader, lines: &str) -> String {
        let trusted =
            IpSet::new(&trusted.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{lines}\r\n");
        let mut head = RequestHead::default();
        let limits = HeadLimits {
            max_request_line: 8192,
            max_header_bytes: 32768,
            max_headers: 100,
        };
        parse_request(raw.as_bytes(), &limits, &mut head)
            .unwrap()
            .unwrap();
        let mut out = String::new();
        client_ip(peer, &trusted, header, &head, raw.as_bytes(), &mut out);
        client(peer, &out).to_owned()
    }

    const XFF: RealIpHeader = RealIpHeader::XForwardedFor;

    #[test]
    fn walks_from_the_right_past_trusted_hops() {
        let t = ["10.0.0.0/8"];
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                XFF,
                "X-Forwarded-For: 203.0.113.7, 10.1.1.1\r\n"
            ),
            "203.0.113.7"
        );
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                XFF,
                "X-Forwarded-For: 6.6.6.6, 198.51.100.2, 10.1.1.1\r\n"
            ),
            "198.51.100.2",
            "the first untrusted from the right"
        );
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                XFF,
                "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 198.51.100.9:4000\r\n"
            ),
            "198.51.100.9",
            "several lines, a port"
        );
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                XFF,
                "X-Forwarded-For: 10.2.2.2, 10.3.3.3\r\n"
            ),
            "10.2.2.2",
            "all trusted: the leftmost"
        );
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                XFF,
                "X-Forwarded-For: 6.6.6.6, garbage, 10.1.1.1\r\n"
            ),
            "10.1.1.1",
            "a bad hop ends the walk"
        );
        assert_eq!(
            resolve("10.0.0.1", &t, XFF, ""),
            "10.0.0.1",
            "no header: the peer"
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        assert_eq!(
            resolve(
                "192.0.2.50",
                &["10.0.0.0/8"],
                XFF,
                "X-Forwarded-For: 1.2.3.4\r\n"
            ),
            "192.0.2.50"
        );
        assert_eq!(
            resolve("192.0.2.50", &[], XFF, "X-Forwarded-For: 1.2.3.4\r\n"),
            "192.0.2.50"
        );
    }

    #[test]
    fn forwarded_for_values() {
        let t = ["10.0.0.0/8"];
        let f = RealIpHeader::Forwarded;
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                f,
                "Forwarded: for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"\r\n"
            ),
            "2001:db8::1"
        );
        assert_eq!(
            resolve(
                "10.0.0.1",
                &t,
                f,
                "Forwarded: for=192.0.2.60;proto=http;by=10.0.0.1\r\n"
            ),
            "192.0.2.60"
        );
        assert_eq!(
            resolve("10.0.0.1", &t, f, "Forwarded: for=unknown\r\n"),
            "10.0.0.1"
        );
    }

    #[test]
    fn deny_wins_over_allow() {
        let set =
            |e: &[&str]| IpSet::new(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let (allow, deny) = (set(&["192.168.0.0/16"]), set(&["192.168.66.0/24"]));
        assert!(ip_allowed("192.168.1.1", Some(&allow), Some(&deny)));
        assert!(!ip_allowed("192.168.66.1", Some(&allow), Some(&deny)));
        assert!(!ip_allowed("10.0.0.1", Some(&allow), None));
        assert!(ip_allowed("10.0.0.1", None, Some(&deny)));
    }
}
