//! Process orchestration: listeners, one pinned worker thread per core, the admin thread, signals.
//!
//! Owns: start-up and shutdown. [`start`] binds every listener up front on the calling thread (one
//! SO_REUSEPORT socket per worker per address, so the kernel spreads connections across cores and a
//! `:0` port is resolved once and shared), picks the IO driver (`auto` = io_uring, falling back to
//! epoll with a log line), spawns workers named `coregate-w{n}` pinned with core_affinity, starts the
//! admin listener, and prints the `coregate: ready ...` line. [`Gateway::wait`] blocks until SIGTERM /
//! SIGINT (or [`Gateway::shutdown`]), then tells every worker to drain over its control channel and
//! joins them; the workers themselves bound the drain by `drain_timeout`.

pub mod control;
pub mod drain;
pub mod driver;
mod listen;
pub mod worker;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::metrics::WorkerMetrics;
pub use driver::{DriverChoice, DriverKind};

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
}

/// Starts listeners, workers and the admin thread. Errors are printable start-up failures.
pub fn start(cfg: Config, opts: &RunOptions) -> Result<Gateway, String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = match (opts.workers, cfg.server.workers) {
        (0, 0) => cores,
        (0, n) => n,
        (n, _) => n,
    };
    let driver = driver::resolve(opts.driver, opts)?;
    let listen = listen::bind_all(&cfg.server.listen, workers)?;
    let addrs: Vec<SocketAddr> = listen.addrs.clone();
    let drain_timeout = cfg.server.drain_timeout;
    let cfg = Arc::new(cfg);
    let metrics: Vec<Arc<WorkerMetrics>> = (0..workers)
        .map(|_| {
            let limits = cfg.rate_limits.len() + cfg.quotas.len();
            Arc::new(WorkerMetrics::new(
                cfg.routes.len(),
                cfg.upstreams.len(),
                limits,
            ))
        })
        .collect();
    let ready = Arc::new(worker::Readiness::default());
    let admin = match &cfg.admin {
        Some(a) => Some(crate::admin::start(
            a.listen,
            cfg.clone(),
            metrics.clone(),
            ready.clone(),
            workers,
        )?),
        None => None,
    };
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut controls = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    let mut per_worker = listen.per_worker;
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let auth = crate::auth::AuthShared::start(&cfg)?;
    let limits = crate::ratelimit::LimitsShared::new(&cfg, workers);
    for (id, m) in metrics.into_iter().enumerate() {
        let (tx, rx) = control::channel();
        controls.push(tx);
        let socks = std::mem::take(&mut per_worker[id]);
        let cfg = cfg.clone();
        let auth = auth.clone();
        let limits = limits.clone();
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
                let ctx = Rc::new(worker::WorkerCtx::new(id, cfg, m, auth, limits));
                let fut = worker::run(ctx, socks, rx, ready, started.clone());
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
    Ok(Gateway {
        listen: addrs,
        admin,
        workers,
        driver,
        drain_timeout,
        controls,
        threads,
        ready,
    })
}

impl Gateway {
    /// The line tests and operators wait for.
    pub fn ready_line(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        format!(
            "coregate: ready listen={} admin={} workers={} driver={}",
            listen.join(","),
            self.admin
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            self.workers,
            self.driver.name()
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

    /// Joins the workers (after [`Gateway::shutdown`], or when they all exit).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
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
