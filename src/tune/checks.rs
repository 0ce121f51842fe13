//! The kernel and process checks of `coregate tune`: io_uring, resource limits, socket sysctls
//! and transparent huge pages. Each reads the [`Host`] against the [`Plan`] (what the gateway is
//! about to run) and returns one [`Check`]; nothing here changes the host.

use super::host::Host;
use super::{Check, Plan};

/// The accept queue coregate asks for on every listening socket (`runtime/listen.rs`).
const BACKLOG: u64 = crate::runtime::listen::BACKLOG as u64;

/// The socket and limit checks, in the order they print.
pub fn all(h: &Host, p: &Plan) -> Vec<Check> {
    vec![
        io_uring(h),
        memlock(h, p),
        open_files(h, p),
        file_max(h, p),
        at_least(
            h,
            "somaxconn",
            "net.core.somaxconn",
            BACKLOG,
            "coregate asks for an accept queue of 4096 on each worker's listening socket; the \
             kernel silently caps it at somaxconn, and a full queue drops new connections' SYNs \
             (clients retry after a second)",
        ),
        at_least(
            h,
            "tcp_max_syn_backlog",
            "net.ipv4.tcp_max_syn_backlog",
            BACKLOG,
            "half-open connections wait here for their handshake to finish; a burst of new \
             clients larger than it is dropped or answered with SYN cookies",
        ),
        ephemeral_ports(h, p),
        tw_reuse(h),
        netdev_backlog(h),
        thp(h),
    ]
}

fn io_uring(h: &Host) -> Check {
    let why = "io_uring lets each worker submit the socket operations of a whole event-loop turn \
               in one system call; without it coregate runs its epoll driver (the same features, \
               one system call per socket operation)";
    match &h.uring {
        Ok(flags) => {
            let mut found = format!("available (ring flags: {flags})");
            if !flags.contains("defer_taskrun") {
                found.push_str("; DEFER_TASKRUN needs Linux 6.1 or later");
            }
            Check::ok("io_uring", found, why)
        }
        Err(e) => {
            let fix = if matches!(
                h.sysctl("kernel.io_uring_disabled").as_deref(),
                Some("1" | "2")
            ) {
                "sysctl -w kernel.io_uring_disabled=0 (with 1, adding the gateway's user to the \
                 kernel.io_uring_group group is enough)"
                    .to_string()
            } else if h.seccomp() == Some(2) {
                "allow io_uring_setup, io_uring_enter and io_uring_register in the container's \
                 seccomp profile (docker run --security-opt seccomp=PROFILE.json; Kubernetes: \
                 securityContext.seccompProfile)"
                    .to_string()
            } else if h.kernel().is_some_and(|k| k < (5, 11)) {
                "upgrade to Linux 5.11 or later (6.1 or later for DEFER_TASKRUN); until then \
                 coregate runs its epoll driver"
                    .to_string()
            } else {
                "see what was found; coregate runs its epoll driver meanwhile (--driver auto)"
                    .to_string()
            };
            Check::fix("io_uring", format!("unavailable: {e}"), why, fix)
        }
    }
}

/// Bytes of locked memory one worker's ring needs before Linux 5.12 (1024 SQEs of 64 bytes,
/// 2048 CQEs of 16, the index array and headers, rounded up).
const RING_LOCKED: u64 = 128 << 10;

fn memlock(h: &Host, p: &Plan) -> Check {
    let why = "before Linux 5.12 every io_uring ring is charged to RLIMIT_MEMLOCK; a ring that \
               does not fit makes io_uring unavailable (ENOMEM)";
    let shown = h
        .memlock
        .soft
        .map_or("unlimited".into(), |b| format!("{} KiB", b / 1024));
    if h.kernel().is_some_and(|k| k >= (5, 12)) {
        return Check::ok(
            "memlock",
            format!("{shown}; rings are not charged to it on Linux 5.12 and later"),
            why,
        );
    }
    let need = RING_LOCKED * p.workers as u64 + (64 << 10);
    if h.memlock.soft.is_none_or(|s| s >= need) {
        return Check::ok(
            "memlock",
            format!("{shown} (needs {} KiB)", need / 1024),
            why,
        );
    }
    Check::fix(
        "memlock",
        format!(
            "{shown}, below the {} KiB {} ring(s) need",
            need / 1024,
            p.workers
        ),
        why,
        "ulimit -l unlimited before starting (systemd: LimitMEMLOCK=infinity)".into(),
    )
}

fn show(v: Option<u64>) -> String {
    v.map_or("unlimited".into(), |n| n.to_string())
}

/// File descriptors the plan can hold: a client connection, an upstream connection for each
/// request in flight, every worker's idle pools, and a margin for listeners, logs and pipes.
fn fds_needed(p: &Plan) -> u64 {
    p.connections * 2 + p.workers as u64 * p.upstream_endpoints as u64 * p.idle_per_endpoint + 1024
}

fn open_files(h: &Host, p: &Plan) -> Check {
    let why = "every client connection and every upstream connection is a file descriptor; at \
               the limit accept fails (EMFILE) and new clients wait in the kernel's queue";
    let need = fds_needed(p);
    let found = format!(
        "soft {} / hard {}; {} connections need about {need}",
        show(h.nofile.soft),
        show(h.nofile.hard),
        p.connections
    );
    let nr_open = h.sysctl_u64("fs.nr_open");
    if h.nofile.soft.is_none_or(|s| s >= need) {
        return Check::ok("open_files", found, why);
    }
    let target = need.next_power_of_two();
    let mut fix = if h.nofile.hard.is_none_or(|hard| hard >= target) {
        format!("ulimit -n {target} before starting (systemd: LimitNOFILE={target})")
    } else {
        format!(
            "raise the hard limit: LimitNOFILE={target} in the systemd unit, or copy \
             tuning/limits.conf to /etc/security/limits.d/coregate.conf (new sessions)"
        )
    };
    if nr_open.is_some_and(|n| n < target) {
        fix.push_str(&format!("; first sysctl -w fs.nr_open={target}"));
    }
    Check::fix("open_files", found, why, fix)
}

fn file_max(h: &Host, p: &Plan) -> Check {
    let why = "the system-wide cap on open files: the gateway's descriptors count against it with \
               every other process's";
    let need = fds_needed(p) * 2;
    match h.sysctl_u64("fs.file-max") {
        Some(v) if v < need => Check::fix(
            "file_max",
            format!("fs.file-max = {v}, below {need}"),
            why,
            format!(
                "sysctl -w fs.file-max={} (or: sudo tuning/apply.sh sysctl)",
                need.max(2_097_152)
            ),
        ),
        Some(v) => Check::ok("file_max", format!("fs.file-max = {v}"), why),
        None => Check::ok("file_max", "fs.file-max not readable".into(), why),
    }
}

/// A numeric sysctl that should be at least `want`.
fn at_least(h: &Host, name: &'static str, key: &str, want: u64, why: &'static str) -> Check {
    match h.sysctl_u64(key) {
        Some(v) if v < want => Check::fix(
            name,
            format!("{key} = {v}, below {want}"),
            why,
            format!("sysctl -w {key}={want} (or: sudo tuning/apply.sh sysctl)"),
        ),
        Some(v) => Check::ok(name, format!("{key} = {v}"), why),
        None => Check::ok(name, format!("{key} not readable"), why),
    }
}

fn ephemeral_ports(h: &Host, p: &Plan) -> Check {
    let why = "each connection to one upstream endpoint (address and port) takes a local port \
               of this range; when it runs out, connects fail with EADDRNOTAVAIL";
    // one endpoint may get every request in flight, plus each worker's idle connections
    let need = p.connections + p.workers as u64 * p.idle_per_endpoint;
    let range = h.sysctl("net.ipv4.ip_local_port_range");
    let size = range.as_deref().and_then(|r| {
        let (lo, hi) = r.split_once(' ')?;
        let (lo, hi): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
        Some(hi.saturating_sub(lo) + 1)
    });
    let Some(size) = size else {
        return Check::ok(
            "ephemeral_ports",
            "ip_local_port_range not readable".into(),
            why,
        );
    };
    let found = format!(
        "ip_local_port_range = {}: {size} ports; up to {need} connections to one endpoint",
        range.unwrap_or_default()
    );
    if size >= need {
        return Check::ok("ephemeral_ports", found, why);
    }
    Check::fix(
        "ephemeral_ports",
        found,
        why,
        "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\" (or: sudo tuning/apply.sh sysctl); \
         past 64,000, give the upstream more addresses or ports"
            .into(),
    )
}

fn tw_reuse(h: &Host) -> Check {
    let why = "closed upstream connections leave TIME_WAIT sockets that hold their local port for \
               60 s; with reuse, new outgoing connections may take them (safe with TCP \
               timestamps); the default, 2, does it for loopback only";
    match h.sysctl("net.ipv4.tcp_tw_reuse").as_deref() {
        Some("1") => Check::ok("tcp_tw_reuse", "net.ipv4.tcp_tw_reuse = 1".into(), why),
        Some(v) => Check::fix(
            "tcp_tw_reuse",
            format!("net.ipv4.tcp_tw_reuse = {v}"),
            why,
            "sysctl -w net.ipv4.tcp_tw_reuse=1 (or: sudo tuning/apply.sh sysctl)".into(),
        ),
        None => Check::ok(
            "tcp_tw_reuse",
            "net.ipv4.tcp_tw_reuse not readable".into(),
            why,
        ),
    }
}

/// The backlog that makes the check pass once drops were seen.
const NETDEV_BACKLOG: u64 = 16384;

fn netdev_backlog(h: &Host) -> Check {
    let why = "packets wait in a per-CPU queue between the driver (or loopback) and TCP; when a \
               burst overflows it they are dropped and TCP retransmits after at least 200 ms";
    let Some(v) = h.sysctl_u64("net.core.netdev_max_backlog") else {
        return Check::ok("netdev_max_backlog", "not readable".into(), why);
    };
    // the second column of softnet_stat counts the drops, per CPU, in hex
    let dropped: u64 = h
        .read("/proc/net/softnet_stat")
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|d| u64::from_str_radix(d, 16).ok())
                .sum()
        })
        .unwrap_or(0);
    let found = format!("net.core.netdev_max_backlog = {v}; {dropped} packets dropped since boot");
    if dropped > 0 && v < NETDEV_BACKLOG {
        return Check::fix(
            "netdev_max_backlog",
            found,
            why,
            format!(
                "sysctl -w net.core.netdev_max_backlog={NETDEV_BACKLOG} (or: sudo tuning/apply.sh sysctl)"
            ),
        );
    }
    Check::ok("netdev_max_backlog", found, why)
}

fn thp(h: &Host) -> Check {
    let why = "with transparent huge pages set to always, page faults and the kernel's background \
               compaction stall worker threads for milliseconds and idle memory grows; madvise \
               keeps huge pages for the programs that ask for them";
    let Some(s) = h.read("/sys/kernel/mm/transparent_hugepage/enabled") else {
        return Check::ok("transparent_hugepages", "not available".into(), why);
    };
    let active = s
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(['[', ']']).to_string())
        .unwrap_or(s.clone());
    let found = format!("enabled = {active}");
    if active == "always" {
        return Check::fix(
            "transparent_hugepages",
            found,
            why,
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (or: sudo tuning/apply.sh thp)"
                .into(),
        );
    }
    Check::ok("transparent_hugepages", found, why)
}
