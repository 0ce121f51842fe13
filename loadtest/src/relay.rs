//! `coregate-load relay`: a bare TCP relay with no HTTP work at all, the floor baseline. Its CPU per
//! request is the least any proxy can spend on this machine.
//!
//! Owns the `relay` command line ([`RelayArgs`]), the in-process API ([`start`] -> [`RelayHandle`])
//! and the entry point ([`main`]). Data flow: the thread-per-core worker pool of `serve`
//! ([`crate::serve::pool`]) accepts client connections; for each one a task connects to
//! `--upstream` and runs two copy loops (client -> upstream, upstream -> client), each reading into
//! its own 16 KiB rent-style buffer and writing it whole. When either direction ends (EOF or error)
//! both sockets are closed.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use crate::serve::pool::{self, CpuList};

/// Size of each direction's copy buffer.
const COPY_BUF: usize = 16 << 10;

/// `coregate-load relay` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9100", value_parser = pool::parse_addr)]
    pub listen: SocketAddr,
    /// Where every client connection is relayed to.
    #[arg(long, value_parser = pool::parse_addr)]
    pub upstream: SocketAddr,
    /// Worker threads, one monoio runtime and SO_REUSEPORT listener each.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Pin workers to these CPUs (e.g. `0,2-3`; worker i gets entry i mod len).
    #[arg(long)]
    pub cpus: Option<CpuList>,
}

impl RelayArgs {
    /// The command-line defaults, relaying to `upstream`.
    pub fn new(upstream: SocketAddr) -> RelayArgs {
        RelayArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            upstream,
            workers: 1,
            cpus: None,
        }
    }
}

/// A running relay; [`RelayHandle::stop`] (or dropping it) stops and joins the workers, closing
/// every connection.
#[derive(Debug)]
pub struct RelayHandle {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    pool: pool::Pool,
}

impl RelayHandle {
    /// Stops the workers and waits for them to exit.
    pub fn stop(self) {
        drop(self.pool);
    }
}

/// Copies `from` into `to` until EOF or an error on either side.
async fn pipe(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRent) {
    let mut buf = Vec::with_capacity(COPY_BUF);
    loop {
        let (res, b) = from.read(buf).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, mut b) = to.write_all(b).await;
        if res.is_err() {
            return;
        }
        b.clear();
        buf = b;
    }
}

/// Relays one client connection; both sockets close when this returns.
async fn relay_conn(client: TcpStream, upstream: SocketAddr) {
    let Ok(up) = TcpStream::connect_addr(upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (up_rd, up_wr) = up.into_split();
    monoio::select! {
        _ = pipe(client_rd, up_wr) => {},
        _ = pipe(up_rd, client_wr) => {},
    }
}

/// Starts the relay in this process; errors are one-line messages.
pub fn start(args: &RelayArgs) -> Result<RelayHandle, String> {
    let upstream = args.upstream;
    let (addr, pool) = pool::spawn(
        "relay",
        args.listen,
        args.workers,
        args.cpus.as_ref(),
        move || move |stream| relay_conn(stream, upstream),
    )?;
    Ok(RelayHandle { addr, pool })
}

/// Entry point: 0 after SIGTERM/SIGINT, 2 with a one-line message on bad input.
pub fn main(args: RelayArgs) -> u8 {
    let signals = pool::block_signals();
    let handle = match start(&args) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("coregate-load relay: {e}");
            return 2;
        }
    };
    eprintln!("coregate-load relay: listening on {}", handle.addr);
    pool::wait_for_signal(&signals);
    handle.stop();
    0
}
