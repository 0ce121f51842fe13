//! IO driver selection: io_uring first, epoll always.
//!
//! Owns: resolving `--driver auto|uring|epoll` to a driver this kernel can run, and building a
//! monoio runtime of that kind with the ring tuning flags. `auto` probes io_uring by creating a
//! ring with the requested settings; when that fails it says exactly why (the errno read against
//! what causes it: the `kernel.io_uring_disabled` sysctl, a seccomp filter, the memlock limit, an
//! old kernel) and falls back to epoll.
//!
//! Ring setup flags, each probed and dropped when the kernel refuses it:
//! - `COOP_TASKRUN`: completions are posted when the worker next enters the kernel, not by an
//!   inter-processor interrupt per completion;
//! - `SINGLE_ISSUER` + `DEFER_TASKRUN` (6.1+; `--no-defer-taskrun` turns them off): completion
//!   work runs only when the worker asks for events, in batches, on its own core. Each ring is
//!   built on the worker thread that submits to it, as `SINGLE_ISSUER` requires; the probe rings
//!   are throwaways.

use std::future::Future;
use std::io;

use super::RunOptions;

/// Default submission queue size per worker (monoio's default is 1024 too).
pub const DEFAULT_RING_ENTRIES: u32 = 1024;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverChoice {
    Auto,
    Uring,
    Epoll,
}

/// What runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring(RingFlags),
    Epoll,
}

/// The optional ring setup flags this kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingFlags {
    pub coop_taskrun: bool,
    /// `SINGLE_ISSUER` + `DEFER_TASKRUN`.
    pub defer_taskrun: bool,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring(_) => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }

    /// The ring flags in force, for the ready line: "coop_taskrun,defer_taskrun", "-" for none.
    pub fn flags(self) -> String {
        let DriverKind::IoUring(f) = self else {
            return "-".into();
        };
        let names = [
            (f.coop_taskrun, "coop_taskrun"),
            (f.defer_taskrun, "defer_taskrun"),
        ];
        let on: Vec<&str> = names.iter().filter(|n| n.0).map(|n| n.1).collect();
        if on.is_empty() {
            "-".into()
        } else {
            on.join(",")
        }
    }
}

fn uring_builder(opts: &RunOptions, flags: RingFlags) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if let Some(ms) = opts.sqpoll_idle_ms {
        b.setup_sqpoll(ms);
    }
    if flags.coop_taskrun {
        b.setup_coop_taskrun();
    }
    if flags.defer_taskrun {
        b.setup_single_issuer();
        b.setup_defer_taskrun();
    }
    b
}

/// The richest set of flags this kernel accepts (of those asked for), or the error of the plainest
/// ring.
fn probe(opts: &RunOptions) -> Result<RingFlags, io::Error> {
    // DEFER_TASKRUN cannot be combined with SQPOLL (the kernel thread is the issuer)
    let defer = opts.defer_taskrun && opts.sqpoll_idle_ms.is_none();
    let tries = [
        RingFlags {
            coop_taskrun: true,
            defer_taskrun: defer,
        },
        RingFlags {
            coop_taskrun: true,
            defer_taskrun: false,
        },
        RingFlags::default(),
    ];
    let mut last = None;
    for flags in tries {
        match uring_builder(opts, flags).build(8) {
            Ok(_) => return Ok(flags),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one try"))
}

/// `coregate tune`'s view of this host: the ring flags a worker gets with the default options
/// ("coop_taskrun,defer_taskrun"), or why no ring can be created ([`explain`]'s words).
pub fn probe_summary() -> Result<String, String> {
    probe(&RunOptions::default())
        .map(|f| DriverKind::IoUring(f).flags())
        .map_err(|e| explain(&e))
}

/// Why creating a ring failed, in the operator's terms.
pub fn explain(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_string());
    let why = match e.raw_os_error() {
        Some(libc::EPERM) => match sysctl.as_deref() {
            Some("2") => {
                "the kernel.io_uring_disabled sysctl is 2 (io_uring off for everyone)".into()
            }
            Some("1") => "the kernel.io_uring_disabled sysctl is 1 (only processes in the \
                          kernel.io_uring_group group, or with CAP_SYS_ADMIN, may use it)"
                .into(),
            _ => "the call was refused: a seccomp filter blocks io_uring_setup (Docker's and \
                  containerd's default profiles do; run with a profile that allows io_uring_setup, \
                  io_uring_enter and io_uring_register)"
                .to_string(),
        },
        Some(libc::ENOSYS) => "io_uring_setup does not exist here: a kernel without \
                               CONFIG_IO_URING, or a seccomp filter answering ENOSYS"
            .into(),
        Some(libc::ENOMEM) => format!(
            "the ring's memory could not be locked: RLIMIT_MEMLOCK is {} (kernels before 5.12 \
             charge rings to it; raise `ulimit -l` or systemd's LimitMEMLOCK=)",
            memlock()
        ),
        Some(libc::EINVAL) => {
            "the kernel rejects the ring's settings (too old for them: \
                               io_uring needs Linux 5.6 or later, and --ring-entries at most 32768)"
                .into()
        }
        _ => "unexpected error".into(),
    };
    format!("{e}: {why}")
}

fn memlock() -> String {
    match crate::tune::host::Limit::memlock().soft {
        None => "unlimited".into(),
        Some(b) => format!("{} KiB", b / 1024),
    }
}

/// Resolves the user's choice against what the kernel supports.
pub fn resolve(choice: DriverChoice, opts: &RunOptions) -> Result<DriverKind, String> {
    match choice {
        DriverChoice::Epoll => Ok(DriverKind::Epoll),
        DriverChoice::Uring => probe(opts)
            .map(DriverKind::IoUring)
            .map_err(|e| format!("io_uring unavailable: {}", explain(&e))),
        DriverChoice::Auto => match probe(opts) {
            Ok(flags) => Ok(DriverKind::IoUring(flags)),
            Err(e) => {
                eprintln!(
                    "coregate: io_uring unavailable ({}); running the epoll driver",
                    explain(&e)
                );
                Ok(DriverKind::Epoll)
            }
        },
    }
}

/// Builds a runtime of the given kind on this thread and runs `fut` to completion.
pub fn block_on<F: Future>(kind: DriverKind, opts: &RunOptions, fut: F) -> io::Result<F::Output> {
    match kind {
        DriverKind::IoUring(flags) => {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(opts.ring_entries)
                .uring_builder(uring_builder(opts, flags))
                .build()?;
            Ok(rt.block_on(fut))
        }
        DriverKind::Epoll => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok(rt.block_on(fut))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_explained_by_cause() {
        let e = io::Error::from_raw_os_error(libc::ENOMEM);
        assert!(explain(&e).contains("RLIMIT_MEMLOCK"), "{}", explain(&e));
        let e = io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(explain(&e).contains("CONFIG_IO_URING"));
        let e = io::Error::from_raw_os_error(libc::EPERM);
        let text = explain(&e);
        assert!(
            text.contains("seccomp") || text.contains("io_uring_disabled"),
            "{text}"
        );
    }

    #[test]
    fn flags_name_what_runs() {
        let k = DriverKind::IoUring(RingFlags {
            coop_taskrun: true,
            defer_taskrun: true,
        });
        assert_eq!(k.flags(), "coop_taskrun,defer_taskrun");
        assert_eq!(DriverKind::IoUring(RingFlags::default()).flags(), "-");
        assert_eq!(DriverKind::Epoll.flags(), "-");
    }

    #[test]
    fn defer_taskrun_is_off_when_asked_or_with_sqpoll() {
        let mut opts = RunOptions {
            defer_taskrun: false,
            ..RunOptions::default()
        };
        if let Ok(f) = probe(&opts) {
            assert!(!f.defer_taskrun);
        }
        opts.defer_taskrun = true;
        opts.sqpoll_idle_ms = Some(10);
        if let Ok(f) = probe(&opts) {
            assert!(!f.defer_taskrun);
        }
    }
}
