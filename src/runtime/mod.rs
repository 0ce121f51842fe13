//! Process orchestration: listeners, one pinned worker thread per core, the admin thread, signals.
//!
//! Owns: start-up and shutdown. [`start`] binds every listener up front on the calling thread (one
//! SO_REUSEPORT socket per worker per address, so the kernel spreads connections across cores and a
//! `:0` port is resolved once and shared; `spread.rs` then hands new connections from a worker that
//! is ahead to the least-loaded one), picks the IO driver (`auto` = io_uring, falling back to epoll
//! with a log line saying why), spawns workers named `coregate-w{n}` pinned with core_affinity, starts the
//! admin listener and the control thread (`reload.rs`: reloads on SIGHUP or `POST /reload`, access-log
//! reopen on SIGUSR1), and prints the `coregate: ready ...` line. [`Gateway::wait_for_signal`] blocks
//! until SIGTERM / SIGINT (or [`Gateway::shutdown`]), then tells every worker to drain over its
//! control channel and joins them; the workers themselves bound the drain by `drain_timeout`.

pub mod control;
pub mod drain;
pub mod driver;
pub mod epoch;
pub mod listen;
pub mod reload;
pub mod spread;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
pub use driver::{DriverChoice, DriverKind};
pub use reload::ReloadSource;

/// How long start-up waits for every worker to build its runtime and start accepting.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Tuning that comes from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// 0 = the config's value, and 0 there = one per core.
    pub workers: usize,
    pub driver: DriverChoice,
    /// CPUs to pin workers to, in order (cycled); None = 0..n.
    pub cpus: Option<Vec<usize>>,
    pub pin: bool,
    pub ring_entries: u32,
    pub sqpoll_idle_ms: Option<u32>,
    /// Ask for io_uring's `SINGLE_ISSUER` + `DEFER_TASKRUN` where the kernel has them
    /// (`--no-defer-taskrun` clears it).
    pub defer_taskrun: bool,
    /// `--splice-min`: Content-Length response bodies with at least this much left after the
    /// first read go socket to socket through a pipe (0 = never).
    pub splice_min: u64,
    /// `--connection-balance`: hand new connections to the least-loaded worker, or not.
    pub balance: spread::Balance,
    /// `--relay-buffer`: size of the buffers long response bodies stream through (0 = each
    /// connection's own 16 KiB buffer).
    pub relay_buffer: usize,
    /// `--reuse-port-with-others`: bind listen addresses even when another process already
    /// listens there (SO_REUSEPORT then splits connections between the processes).
    pub share_listeners: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 0,
            driver: DriverChoice::Auto,
            cpus: None,
            pin: true,
            ring_entries: driver::DEFAULT_RING_ENTRIES,
            sqpoll_idle_ms: None,
            defer_taskrun: true,
            relay_buffer: crate::net::relay_buf::LARGE,
            balance: spread::Balance::LeastLoaded,
            splice_min: crate::net::splice::DEFAULT_MIN,
            share_listeners: false,
        }
    }
}

/// A running gateway.
pub struct Gateway {
    pub listen: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub workers: usize,
    pub driver: DriverKind,
    drain_timeout: Duration,
    controls: Vec<control::ControlTx>,
    threads: Vec<JoinHandle<()>>,
    ready: Arc<worker::Readiness>,
    cmds: crossbeam_channel::Sender<reload::Cmd>,
    status: Arc<reload::Status>,
}

/// Starts listeners, workers, the control thread and the admin thread. Errors are printable
/// start-up failures. `source`: where reloads read the config (None: reload reports an error).
pub fn start(
    cfg: Config,
    opts: &RunOptions,
    source: Option<ReloadSource>,
) -> Result<Gateway, String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = match (opts.workers, cfg.server.workers) {
        (0, 0) => cores,
        (0, n) => n,
        (n, _) => n,
    };
    let driver = driver::resolve(opts.driver, opts)?;
    let admin_addr = cfg.admin.as_ref().map(|a| a.listen);
    // Before any worker starts: a taken admin address fails start-up as early as a listener does.
    if let Some(a) = admin_addr {
        listen::probe(a).map_err(|why| format!("admin listener: {why}"))?;
    }
    // `[server] listen` addresses, then the `[[listener]]` ones: worker accept loops find a
    // listener's options by this order (`worker::accept_loop`)
    let all: Vec<SocketAddr> = (cfg.server.listen.iter().copied())
        .chain(cfg.listeners.iter().map(|l| l.listen))
        .collect();
    let listen = listen::bind_all(&all, workers, opts.share_listeners)?;
    let addrs: Vec<SocketAddr> = listen.addrs.clone();
    let drain_timeout = cfg.server.drain_timeout;
    let shared = reload::Shared::first(Arc::new(cfg), workers)?;
    let ready = Arc::new(worker::Readiness::default());
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut controls = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    let mut per_worker = listen.per_worker;
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let (inbox_tx, inbox_rx): (Vec<_>, Vec<_>) = (0..workers).map(|_| control::channel()).unzip();
    let mut inbox_rx = inbox_rx.into_iter();
    let spread = Arc::new(spread::Spread::new(opts.balance, inbox_tx));
    for id in 0..workers {
        let (tx, rx) = control::channel();
        let inbox = inbox_rx.next().expect("one inbox per worker");
        let spread = spread.clone();
        controls.push(tx);
        let socks = std::mem::take(&mut per_worker[id]);
        let shared = shared.clone();
        let ready = ready.clone();
        let pin_to = if opts.pin {
            let cpu = match &opts.cpus {
                Some(list) if !list.is_empty() => Some(list[id % list.len()]),
                Some(_) => None,
                None => Some(id % cores.max(1)),
            };
            cpu.and_then(|cpu| core_ids.iter().find(|c| c.id == cpu).copied())
        } else {
            None
        };
        let opts = opts.clone();
        let started = started_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("coregate-w{id}"))
            .spawn(move || {
                if let Some(core) = pin_to {
                    core_affinity::set_for_current(core);
                }
                crate::net::relay_buf::set_size(opts.relay_buffer);
                crate::net::splice::set_min(opts.splice_min);
                let cur = worker::Current::new(worker::Generation::new(id, shared));
                let chans = worker::Channels {
                    control: rx,
                    inbox,
                    spread,
                };
                let fut = worker::run(cur, socks, chans, ready, started.clone());
                if let Err(e) = driver::block_on(driver, &opts, fut) {
                    let _ = started.send(Err(format!("worker {id}: cannot start runtime: {e}")));
                }
            })
            .map_err(|e| format!("cannot spawn worker thread: {e}"))?;
        threads.push(t);
    }
    // every worker accepts (or one failed) before we report ready
    for _ in 0..workers {
        match started_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("workers did not start in time".into()),
        }
    }
    let controller = reload::Controller::new(source, shared, controls.clone())?;
    let status = controller.status();
    let (cmds, cmd_rx) = crossbeam_channel::unbounded();
    controller.spawn(cmd_rx)?;
    forward_signals(cmds.clone())?;
    let admin = match admin_addr {
        Some(a) => Some(crate::admin::start(
            a,
            crate::admin::AdminState {
                status: status.clone(),
                workers: controls.clone(),
                ready: ready.clone(),
                cmds: cmds.clone(),
            },
        )?),
        None => None,
    };
    Ok(Gateway {
        listen: addrs,
        admin,
        workers,
        driver,
        drain_timeout,
        controls,
        threads,
        ready,
        cmds,
        status,
    })
}

/// SIGHUP -> reload, SIGUSR1 -> reopen the access log, on a thread of their own.
fn forward_signals(cmds: crossbeam_channel::Sender<reload::Cmd>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGUSR1])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("coregate-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let cmd = if sig == SIGHUP {
                    reload::Cmd::Reload(None)
                } else {
                    reload::Cmd::Reopen
                };
                if cmds.send(cmd).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot spawn the signal thread: {e}"))
}

impl Gateway {
    /// The line tests and operators wait for.
    pub fn ready_line(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        format!(
            "coregate: ready listen={} admin={} workers={} driver={} uring_flags={}",
            listen.join(","),
            self.admin
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            self.workers,
            self.driver.name(),
            self.driver.flags()
        )
    }

    /// Asks every worker to drain (stop accepting, finish in-flight requests, close idle ones).
    pub fn shutdown(&self) {
        self.ready
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for c in &self.controls {
            c.send(control::Control::Drain);
        }
    }

    /// Reloads the config file now, as SIGHUP does, and waits for the outcome.
    pub fn reload(&self) -> Result<u64, Vec<String>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = self.cmds.send(reload::Cmd::Reload(Some(tx)));
        rx.recv()
            .unwrap_or_else(|_| Err(vec!["the control thread is gone".into()]))
    }

    /// Joins the workers (after [`Gateway::shutdown`], or when they all exit), then writes out the
    /// access log.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        self.status.log.load().close(Duration::from_secs(5));
        self.status.otlp.load().close(Duration::from_secs(5));
    }

    /// Blocks until SIGTERM or SIGINT, drains, and returns when every worker has finished. A second
    /// signal during the drain exits at once with status 1.
    pub fn wait_for_signal(self) -> Result<(), String> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let first = signals.forever().next();
        eprintln!(
            "coregate: draining (signal {}), up to {:?}",
            first.unwrap_or(0),
            self.drain_timeout
        );
        self.shutdown();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("coregate: second signal, exiting now");
                std::process::exit(1);
            }
        });
        self.join();
        eprintln!("coregate: stopped");
        Ok(())
    }
}
