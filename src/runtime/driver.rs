//! IO driver selection: io_uring first, epoll always.
//!
//! Owns: resolving `--driver auto|uring|epoll` to a driver this kernel can run (auto probes io_uring by
//! creating a ring with the requested settings and falls back to epoll with a log line), and building a
//! monoio runtime of that kind with the ring tuning flags (`--ring-entries`, `--sqpoll-idle-ms`, and
//! COOP_TASKRUN where the kernel has it, which spares the worker an inter-processor interrupt per
//! completion).

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
    IoUring,
    Epoll,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

fn uring_builder(opts: &RunOptions, coop: bool) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if let Some(ms) = opts.sqpoll_idle_ms {
        b.setup_sqpoll(ms);
    }
    if coop {
        b.setup_coop_taskrun();
    }
    b
}

/// Which ring flags this kernel accepts: Some(coop_taskrun) or the error of the plainest ring.
fn probe(opts: &RunOptions) -> Result<bool, io::Error> {
    if uring_builder(opts, true).build(8).is_ok() {
        return Ok(true);
    }
    uring_builder(opts, false).build(8).map(|_| false)
}

/// Resolves the user's choice against what the kernel supports.
pub fn resolve(choice: DriverChoice, opts: &RunOptions) -> Result<DriverKind, String> {
    match choice {
        DriverChoice::Epoll => Ok(DriverKind::Epoll),
        DriverChoice::Uring => probe(opts)
            .map(|_| DriverKind::IoUring)
            .map_err(|e| format!("io_uring unavailable: {e}")),
        DriverChoice::Auto => match probe(opts) {
            Ok(_) => Ok(DriverKind::IoUring),
            Err(e) => {
                eprintln!("coregate: io_uring unavailable ({e}), falling back to epoll");
                Ok(DriverKind::Epoll)
            }
        },
    }
}

/// Builds a runtime of the given kind on this thread and runs `fut` to completion.
pub fn block_on<F: Future>(kind: DriverKind, opts: &RunOptions, fut: F) -> io::Result<F::Output> {
    match kind {
        DriverKind::IoUring => {
            let coop = probe(opts)?;
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(opts.ring_entries)
                .uring_builder(uring_builder(opts, coop))
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
