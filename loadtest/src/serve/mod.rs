//! `coregate-load serve`: a fast fixed-response HTTP/1.1 backend for benchmarks and tests.
//!
//! Owns the `serve` command line ([`ServeArgs`]), the in-process API ([`start`] -> [`ServeHandle`])
//! and the process entry point ([`main`]: start, print the listening line, wait for SIGTERM/SIGINT,
//! stop). Data flow: `start` renders the canned responses once into a [`conn::Config`] shared
//! read-only by every worker (plus the atomic stall state), then [`pool::spawn`] starts the
//! thread-per-core workers; each accepted connection runs [`conn::serve_conn`]. Routes:
//! `/status/{code}`, `/delay/{ms}`, `POST|PUT /echo`, anything else -> 200 with the fixed body.
//! The worker pool, CPU lists and signal helpers in [`pool`] are shared with `relay`.

mod conn;
mod parse;
pub mod pool;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

pub use pool::CpuList;

/// Largest `--body-size` accepted (the fixed body is pre-rendered in memory).
const MAX_BODY_SIZE: usize = 256 << 20;

/// `coregate-load serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9000", value_parser = pool::parse_addr)]
    pub listen: SocketAddr,
    /// Size in bytes of the fixed JSON body.
    #[arg(long, default_value_t = 60)]
    pub body_size: usize,
    /// Delay every response by this many milliseconds (`/delay/{ms}` overrides it).
    #[arg(long, default_value_t = 0)]
    pub delay: u64,
    /// Worker threads, one monoio runtime and SO_REUSEPORT listener each.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Pin workers to these CPUs (e.g. `0,2-3`; worker i gets entry i mod len).
    #[arg(long)]
    pub cpus: Option<CpuList>,
    /// Stall once, after this many responses in total (needs --stall-ms).
    #[arg(long, requires = "stall_ms")]
    pub stall_after: Option<u64>,
    /// Length of that stall in milliseconds: every response to a request that arrives or is pending
    /// before it ends is held until it ends.
    #[arg(long, requires = "stall_after")]
    pub stall_ms: Option<u64>,
}

impl Default for ServeArgs {
    /// The command-line defaults.
    fn default() -> Self {
        ServeArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            body_size: 60,
            delay: 0,
            workers: 1,
            cpus: None,
            stall_after: None,
            stall_ms: None,
        }
    }
}

/// A running server; [`ServeHandle::stop`] (or dropping it) stops and joins the workers, closing
/// every connection.
#[derive(Debug)]
pub struct ServeHandle {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    pool: pool::Pool,
}

impl ServeHandle {
    /// Stops the workers and waits for them to exit.
    pub fn stop(self) {
        drop(self.pool);
    }
}

/// The fixed body: exactly `n` bytes, `{"data":"xxx..."}` when there is room, else a shorter
/// JSON value (a string, then a digit, then nothing).
pub fn fixed_body(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n);
    match n {
        0 => {}
        1 => b.push(b'0'),
        2..=10 => {
            b.push(b'"');
            b.resize(n - 1, b'x');
            b.push(b'"');
        }
        _ => {
            b.extend_from_slice(br#"{"data":""#);
            b.resize(n - 2, b'x');
            b.extend_from_slice(br#""}"#);
        }
    }
    b
}

/// Starts the server in this process (see [`ServeArgs`]); errors are one-line messages.
pub fn start(args: &ServeArgs) -> Result<ServeHandle, String> {
    if args.body_size > MAX_BODY_SIZE {
        return Err(format!("--body-size must be at most {MAX_BODY_SIZE}"));
    }
    let stall = match (args.stall_after, args.stall_ms) {
        (None, None) => None,
        (Some(after), Some(ms)) => Some(conn::Stall::new(after, ms)),
        _ => return Err("--stall-after and --stall-ms go together".into()),
    };
    let config = Arc::new(conn::Config::new(
        fixed_body(args.body_size),
        args.delay,
        stall,
    ));
    let (addr, pool) = pool::spawn(
        "serve",
        args.listen,
        args.workers,
        args.cpus.as_ref(),
        move || {
            // Each worker keeps its own copy of the canned responses, next to its own cache.
            let local = Rc::new(conn::Config::clone(&config));
            move |stream| conn::serve_conn(stream, local.clone())
        },
    )?;
    Ok(ServeHandle { addr, pool })
}

/// Entry point: 0 after SIGTERM/SIGINT, 2 with a one-line message on bad input.
pub fn main(args: ServeArgs) -> u8 {
    let signals = pool::block_signals();
    let handle = match start(&args) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("coregate-load serve: {e}");
            return 2;
        }
    };
    eprintln!("coregate-load serve: listening on {}", handle.addr);
    pool::wait_for_signal(&signals);
    handle.stop();
    0
}
