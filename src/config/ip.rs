//! IP rules and the real client address: `allow_ips` / `deny_ips` (in `[server]`, for every
//! request, and per `[[route]]`), `[server] trusted_proxies` and `real_ip_header`, into compiled
//! [`IpSet`]s.
//!
//! Owns the checks: every entry an address or a CIDR network (host bits below the prefix are an
//! error), an empty list is an error (write nothing instead), `real_ip_header` one of
//! `"x-forwarded-for"` or `"forwarded"`. Every problem is reported with its key and index.

use super::position::KeyPath;
use super::validate::Ctx;
use crate::net::cidr::IpSet;

/// Which header names the client behind a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RealIpHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
}

/// One list (`p`: its key); None when absent or invalid (after its errors).
pub(super) fn ip_list(cx: &mut Ctx, p: KeyPath, raw: Option<Vec<String>>) -> Option<IpSet> {
    let entries = raw?;
    if entries.is_empty() {
        cx.err(p, "empty list (leave the key out to allow everyone)");
        return None;
    }
    match IpSet::new(&entries) {
        Ok(set) => Some(set),
        Err((i, m)) => {
            cx.err(p.index(i), m);
            None
        }
    }
}

/// `[server] real_ip_header`.
pub(super) fn real_ip_header(cx: &mut Ctx, p: KeyPath, raw: Option<String>) -> RealIpHeader {
    match raw.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("x-forwarded-for") => RealIpHeader::XForwardedFor,
        Some("forwarded") => RealIpHeader::Forwarded,
        Some(other) => {
            let m = format!(
                "unknown header \"{other}\" (expected \"x-forwarded-for\" or \"forwarded\")"
            );
            cx.err(p, m);
            RealIpHeader::XForwardedFor
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::{check_cases, R};

    #[test]
    fn ip_rules() {
        let route = |r: &str| format!("{R}path_prefix = \"/x\"\n{r}\n");
        check_cases(&[
            (&route("allow_ips = [\"192.168.0.0/16\", \"2001:db8::/32\"]\ndeny_ips = [\"192.168.66.0/24\", \"10.0.0.1\"]"), &[]),
            (&route("allow_ips = [\"192.168.0.1/16\"]"), &["route[0].allow_ips[0]: \"192.168.0.1/16\" has host bits set below its /16 prefix (write the network address)"]),
            (&route("deny_ips = []"), &["route[0].deny_ips: empty list (leave the key out to allow everyone)"]),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\nreal_ip_header = \"Forwarded\"\nallow_ips = [\"0.0.0.0/0\"]\n", &[]),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\nreal_ip_header = \"x-real-ip\"\n", &[
                "server.trusted_proxies[0]: \"10.0.0.0/40\": the prefix length must be 0 to 32",
                "server.real_ip_header: unknown header \"x-real-ip\" (expected \"x-forwarded-for\" or \"forwarded\")",
            ]),
        ]);
    }
}
