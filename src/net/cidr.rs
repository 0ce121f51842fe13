//! CIDR sets: IPv4 and IPv6 prefixes compiled for longest-prefix lookup.
//!
//! Owns [`IpSet`] (built once per config generation from `allow_ips`, `deny_ips` and
//! `trusted_proxies` lists) and [`parse_cidr`]. A set keeps one hash set of masked network
//! addresses per prefix length that occurs in it, longest first; a lookup masks the address once
//! per such length and stops at the first hit, which is the longest matching prefix. Thousands of
//! entries cost no more than a handful: the work is bounded by the distinct prefix lengths (at
//! most 33 for IPv4, 129 for IPv6), never by the entry count. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`) are looked up as the IPv4 address they carry.

use std::collections::HashSet;
use std::net::IpAddr;

/// A set of CIDR prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    /// (prefix length, networks of that length), longest first.
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
    /// The entries as written (for showing the config).
    pub text: Vec<String>,
}

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a single address (a /32 or /128). Host bits set below the
/// prefix are an error (`10.0.0.1/8` is not a network).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| {
        format!("\"{s}\" is not an IP address or CIDR prefix (like \"10.0.0.0/8\")")
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("\"{s}\": the prefix length must be 0 to {max}")),
        },
    };
    let exact = match ip {
        IpAddr::V4(v) => u32::from(v) & !mask4(len) == 0,
        IpAddr::V6(v) => u128::from(v) & !mask6(len) == 0,
    };
    if !exact {
        return Err(format!(
            "\"{s}\" has host bits set below its /{len} prefix (write the network address)"
        ));
    }
    Ok((ip, len))
}

impl IpSet {
    /// Compiles `entries` (as [`parse_cidr`] takes them); the first bad entry's index and error.
    pub fn new(entries: &[String]) -> Result<IpSet, (usize, String)> {
        let mut set = IpSet {
            text: entries.to_vec(),
            ..IpSet::default()
        };
        for (i, e) in entries.iter().enumerate() {
            match parse_cidr(e).map_err(|m| (i, m))? {
                (IpAddr::V4(v), len) => set.add4(u32::from(v), len),
                (IpAddr::V6(v), len) => set.add6(u128::from(v), len),
            }
        }
        set.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
        set.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
        Ok(set)
    }

    fn add4(&mut self, net: u32, len: u8) {
        match self.v4.iter_mut().find(|(l, _)| *l == len) {
            Some((_, s)) => {
                s.insert(net);
            }
            None => self.v4.push((len, HashSet::from([net]))),
        }
    }

    fn add6(&mut self, net: u128, len: u8) {
        match self.v6.iter_mut().find(|(l, _)| *l == len) {
            Some((_, s)) => {
                s.insert(net);
            }
            None => self.v6.push((len, HashSet::from([net]))),
        }
    }

    /// The longest prefix in the set that holds `ip`, if any.
    pub fn longest_match(&self, ip: IpAddr) -> Option<u8> {
        let v4 = match ip {
            IpAddr::V4(v) => Some(u32::from(v)),
            IpAddr::V6(v) => v.to_ipv4_mapped().map(u32::from),
        };
        if let Some(a) = v4 {
            return (self.v4.iter())
                .find(|(len, nets)| nets.contains(&(a & mask4(*len))))
                .map(|(len, _)| *len);
        }
        let IpAddr::V6(v) = ip else { return None };
        let a = u128::from(v);
        (self.v6.iter())
            .find(|(len, nets)| nets.contains(&(a & mask6(*len))))
            .map(|(len, _)| *len)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.longest_match(ip).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(e: &[&str]) -> IpSet {
        IpSet::new(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_for_both_families() {
        let s = set(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "0.0.0.0/0",
        ]);
        assert_eq!(s.longest_match(ip("10.1.2.3")), Some(32));
        assert_eq!(s.longest_match(ip("10.1.9.9")), Some(16));
        assert_eq!(s.longest_match(ip("10.200.0.1")), Some(8));
        assert_eq!(
            s.longest_match(ip("192.0.2.1")),
            Some(0),
            "the default route"
        );
        assert_eq!(s.longest_match(ip("2001:db8:1::5")), Some(48));
        assert_eq!(s.longest_match(ip("2001:db8:2::5")), Some(32));
        assert_eq!(s.longest_match(ip("2001:db9::1")), None);
        assert_eq!(
            s.longest_match(ip("::ffff:10.1.2.3")),
            Some(32),
            "IPv4-mapped"
        );
    }

    #[test]
    fn entries_are_checked() {
        assert!(parse_cidr("10.0.0.1/8").unwrap_err().contains("host bits"));
        assert!(parse_cidr("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(parse_cidr("example.com")
            .unwrap_err()
            .contains("not an IP address"));
        assert_eq!(parse_cidr("::/0").unwrap().1, 0);
        let e = IpSet::new(&["10.0.0.0/8".into(), "nope".into()]).unwrap_err();
        assert_eq!(e.0, 1);
    }

    #[test]
    fn thousands_of_entries_stay_a_few_lookups() {
        let entries: Vec<String> = (0..5000u32)
            .map(|i| format!("{}.{}.{}.0/24", 10 + i / 65536, (i / 256) % 256, i % 256))
            .collect();
        let s = IpSet::new(&entries).unwrap();
        assert_eq!(
            s.v4.len(),
            1,
            "one prefix length: one hash lookup per address"
        );
        assert!(s.contains(ip("10.19.135.77")));
        assert!(!s.contains(ip("11.0.0.1")));
    }
}
