//! The one place coregate-load builds a monoio runtime (generator threads, `serve` and `relay`
//! workers). io_uring with COOP_TASKRUN where the kernel accepts it, plain io_uring otherwise, and
//! epoll when io_uring is unavailable.
//!
//! COOP_TASKRUN matters for an honest generator: without it the kernel interrupts the waiting
//! thread to run a completed recv's task work right away, while the sending side (on loopback, the
//! peer's core in softirq) still holds the socket lock, and the recv spins on that lock. Measured on
//! the 2-core VM against an nginx backend: 50-65k req/s without it, 81-84k with it, wrk 73-81k
//! (`benches/e2e/load_vs_wrk.sh`).

use std::future::Future;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};

fn uring(coop: bool) -> std::io::Result<Runtime<TimeDriver<IoUringDriver>>> {
    let mut b = io_uring::IoUring::builder();
    if coop {
        b.setup_coop_taskrun();
    }
    RuntimeBuilder::<IoUringDriver>::new()
        .enable_timer()
        .uring_builder(b)
        .build()
}

/// Run `fut` to completion on a new runtime on the calling thread.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, String> {
    if let Ok(mut rt) = uring(true).or_else(|_| uring(false)) {
        return Ok(rt.block_on(fut));
    }
    let mut rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    Ok(rt.block_on(fut))
}
