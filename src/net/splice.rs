//! Zero-copy body relay: a plain upstream socket's bytes go to a plain client socket through a
//! pipe (`splice(2)`, as an io_uring `SPLICE` op or a non-blocking call under epoll), never
//! entering user space.
//!
//! Owns: each worker's small pool of pipes and [`relay_exact`], which moves exactly `n` bytes:
//! splice up to a pipe's worth from the upstream, then drain the pipe into the client, until `n`
//! bytes went through. The relay (`proxy/relay.rs`) uses it for the rest of a Content-Length
//! response body of at least `--splice-min` bytes (off by default) when nothing needs to see the
//! body (no buffering sink, no re-framing, no duplex request body, neither side TLS). A pipe that
//! failed mid-way may hold bytes, so it is closed instead of going back to the pool.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::net::{Pipe, TcpStream};
use monoio::time::Instant;

/// A pipe's default capacity: the most one splice into it moves.
const PIPE_CAP: u64 = 64 * 1024;
/// Pipes kept per worker between relays.
const MAX_KEPT: usize = 16;
/// `--splice-min` unless set: off. Measured on the 2-core VM (README, "Large bodies"), splicing
/// 64 KiB bodies took 0.83x the CPU of copying them in closed loop but 1.23x in open loop at
/// 1,000/s, and 1 MiB bodies went 0.7x as fast (a 64 KiB pipe is 16 round trips per MiB).
pub const DEFAULT_MIN: u64 = 0;

thread_local! {
    static PIPES: RefCell<Vec<(Pipe, Pipe)>> = const { RefCell::new(Vec::new()) };
    static MIN: Cell<u64> = const { Cell::new(DEFAULT_MIN) };
}

/// Sets this worker's threshold (`--splice-min`; 0 = never splice). Called once at start.
pub fn set_min(min: u64) {
    MIN.with(|m| m.set(min));
}

/// Whether `left` body bytes are worth a splice on this worker.
pub fn worth(left: u64) -> bool {
    let min = MIN.with(|m| m.get());
    min > 0 && left >= min
}

/// Where a splice relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceFail {
    /// The upstream closed early, failed, or sent nothing within its timeout.
    Upstream { timed_out: bool },
    /// The client failed or did not take the bytes within its timeout.
    Client,
    /// No pipe could be made (file limit): nothing moved, the caller relays by copying.
    NoPipe,
}

fn take_pipe() -> Option<(Pipe, Pipe)> {
    if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
        return Some(p);
    }
    monoio::net::unix::new_pipe().ok()
}

fn keep_pipe(p: (Pipe, Pipe)) {
    let _ = PIPES.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_KEPT {
            pool.push(p);
        }
    });
}

/// Moves exactly `n` bytes from `up` to `client`; `on_moved` is told each piece's size (for the
/// byte counters). Each upstream read waits at most `up_timeout`, each client write
/// `client_timeout`.
pub async fn relay_exact(
    up: &mut TcpStream,
    client: &mut TcpStream,
    n: u64,
    up_timeout: Duration,
    client_timeout: Duration,
    mut on_moved: impl FnMut(u64),
) -> Result<(), SpliceFail> {
    let Some((mut rd, mut wr)) = take_pipe() else {
        return Err(SpliceFail::NoPipe);
    };
    let mut left = n;
    while left > 0 {
        let want = left.min(PIPE_CAP) as u32;
        let got = match monoio::time::timeout_at(
            Instant::now() + up_timeout,
            up.splice_to_pipe(&mut wr, want),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(SpliceFail::Upstream { timed_out: false }),
            Err(_) => return Err(SpliceFail::Upstream { timed_out: true }),
            Ok(Ok(k)) => k,
        };
        let mut in_pipe = got;
        while in_pipe > 0 {
            match monoio::time::timeout_at(
                Instant::now() + client_timeout,
                client.splice_from_pipe(&mut rd, in_pipe),
            )
            .await
            {
                Ok(Ok(k)) if k > 0 => in_pipe -= k,
                _ => return Err(SpliceFail::Client),
            }
        }
        on_moved(got as u64);
        left -= got as u64;
    }
    keep_pipe((rd, wr));
    Ok(())
}
