//! What `coregate tune` reads about the host: files under `/proc` and `/sys` (relative to a root,
//! so tests can hand it a fake tree), the process's resource limits, and whether an io_uring ring
//! can be created. Read once into [`Host`]; the checks only look at it.

use std::path::{Path, PathBuf};

/// A soft/hard resource limit; `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl Limit {
    /// This process's RLIMIT_MEMLOCK (the io_uring diagnostics quote it too).
    pub fn memlock() -> Limit {
        limit(libc::RLIMIT_MEMLOCK)
    }
}

/// The host as the checks see it.
pub struct Host {
    root: PathBuf,
    /// RLIMIT_NOFILE.
    pub nofile: Limit,
    /// RLIMIT_MEMLOCK.
    pub memlock: Limit,
    /// Creating an io_uring: the flags the kernel accepted (`coop_taskrun,defer_taskrun`), or why
    /// it failed (`runtime::driver::explain`'s words).
    pub uring: Result<String, String>,
}

impl Host {
    /// This machine: `/`, this process's limits, a real ring probe.
    pub fn this() -> Host {
        Host {
            root: PathBuf::from("/"),
            nofile: limit(libc::RLIMIT_NOFILE),
            memlock: Limit::memlock(),
            uring: crate::runtime::driver::probe_summary(),
        }
    }

    /// A host whose `/proc` and `/sys` are under `root` (tests, `tune --root`), with the given
    /// limits and ring probe outcome.
    pub fn at(root: &Path, nofile: Limit, memlock: Limit, uring: Result<String, String>) -> Host {
        Host {
            root: root.to_path_buf(),
            nofile,
            memlock,
            uring,
        }
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// A file's contents, trimmed; `None` when it cannot be read.
    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// A sysctl by its dotted name (`net.core.somaxconn`), whitespace collapsed to one space.
    pub fn sysctl(&self, key: &str) -> Option<String> {
        let v = self.read(&format!("/proc/sys/{}", key.replace('.', "/")))?;
        Some(v.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// A numeric sysctl.
    pub fn sysctl_u64(&self, key: &str) -> Option<u64> {
        self.sysctl(key)?.parse().ok()
    }

    /// Names in a directory, sorted; empty when it cannot be read.
    pub fn list(&self, abs: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(abs))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Whether a path exists (a NIC's `device` link: a physical or PCI-backed interface).
    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// The running kernel's (major, minor), from `/proc/sys/kernel/osrelease`.
    pub fn kernel(&self) -> Option<(u32, u32)> {
        parse_release(&self.read("/proc/sys/kernel/osrelease")?)
    }

    /// The `Seccomp:` mode of this process (0 none, 1 strict, 2 filter).
    pub fn seccomp(&self) -> Option<u32> {
        let status = self.read("/proc/self/status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// CPUs online, from `/sys/devices/system/cpu/online`.
    pub fn online_cpus(&self) -> Vec<usize> {
        self.read("/sys/devices/system/cpu/online")
            .and_then(|s| parse_cpu_list(&s))
            .unwrap_or_default()
    }
}

/// "6.18.44-fc" -> (6, 18)
pub fn parse_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The kernel's CPU list format, as `--cpus` takes it: "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11];
/// "" (no CPUs, e.g. `isolated`) -> [].
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    if s.trim().is_empty() {
        return Some(Vec::new());
    }
    crate::cli::parse_cpus(s).ok().map(|c| c.0)
}

/// [0, 1, 2, 5] -> "0-2,5"
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn limit(resource: Resource) -> Limit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return Limit {
            soft: None,
            hard: None,
        };
    }
    let v = |x: libc::rlim_t| (x != libc::RLIM_INFINITY).then_some(x);
    Limit {
        soft: v(r.rlim_cur),
        hard: v(r.rlim_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_and_cpu_lists() {
        assert_eq!(parse_release("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("x"), None);
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(format_cpu_list(&[5, 0, 1, 2, 2]), "0-2,5");
        assert_eq!(format_cpu_list(&[]), "");
    }
}
