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

/// One list (`p`: its key); None when absent or invalid (after its errors). An entry
/// `"@path"` stands for the lines of a file (relative to the config file's folder): one address
/// or network per line, `#` comments and blank lines skipped; it is read at load and on reload.
pub(super) fn ip_list(
    cx: &mut Ctx,
    p: KeyPath,
    raw: Option<Vec<String>>,
    base: &std::path::Path,
) -> Option<IpSet> {
    let written = raw?;
    if written.is_empty() {
        cx.err(p, "empty list (leave the key out to allow everyone)");
        return None;
    }
    let mut entries = Vec::new();
    let mut bad = false;
    for (i, e) in written.iter().enumerate() {
        let Some(file) = e.strip_prefix('@') else {
            if let Err(m) = crate::net::cidr::parse_cidr(e) {
                cx.err(p.index(i), m);
                bad = true;
            }
            entries.push(e.clone());
            continue;
        };
        let path = base.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(err) => {
                cx.err(p.index(i), format!("cannot read {}: {err}", path.display()));
                bad = true;
                continue;
            }
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            match crate::net::cidr::parse_cidr(line) {
                Ok(_) => entries.push(line.to_owned()),
                Err(m) => {
                    cx.err(p.index(i), format!("{}:{}: {m}", path.display(), n + 1));
                    bad = true;
                }
            }
        }
    }
    if bad {
        return None;
    }
    // the written form (files named, not expanded) is what the config shows
    IpSet::new(&entries).ok().map(|mut set| {
        set.text = written;
        set
    })
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
    fn lists_from_files() {
        let dir = std::env::temp_dir().join(format!("cg-ip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("deny.txt"),
            "# scanners\n198.51.100.0/24\n\n2001:db8:bad::/48  # v6\n",
        )
        .unwrap();
        std::fs::write(dir.join("bad.txt"), "10.0.0.0/8\nnot-an-ip\n").unwrap();
        let text = format!(
            "{}[[route]]\nupstream = \"u\"\ndeny_ips = [\"@deny.txt\", \"192.0.2.1\"]\n",
            crate::config::validate::tests::UP
        );
        let file = dir.join("gw.toml");
        std::fs::write(&file, &text).unwrap();
        let cfg = crate::config::load_file(&file).unwrap();
        let deny = cfg.routes[0].deny_ips.as_ref().unwrap();
        assert!(deny.contains("198.51.100.7".parse().unwrap()));
        assert!(deny.contains("2001:db8:bad::1".parse().unwrap()));
        assert!(deny.contains("192.0.2.1".parse().unwrap()));
        assert_eq!(deny.text, ["@deny.txt", "192.0.2.1"], "shown as written");
        std::fs::write(&file, text.replace("@deny.txt", "@bad.txt")).unwrap();
        let errs = crate::config::load_file(&file).unwrap_err().to_string();
        assert!(
            errs.contains("route[0].deny_ips[0]")
                && errs.contains("bad.txt:2: \"not-an-ip\" is not an IP address"),
            "{errs}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

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
