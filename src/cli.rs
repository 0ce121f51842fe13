//! Command line: `coregate run | check | demo | top`, and every tuning flag.
//!
//! Owns: parsing (clap derive) and turning flags into [`RunOptions`] plus config overrides. Flags
//! override the config file. `main.rs` only hands off to [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::runtime::{self, DriverChoice, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "coregate",
    version,
    about = "Thread-per-core API gateway on io_uring"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway from a config file.
    Run {
        /// TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Validate a config file and what `run` would fail on (key files, the access-log file,
    /// listen addresses that cannot be bound): prints "ok", or every error with its key path and
    /// position. Nothing is created, and nothing listens.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Do not probe `server.listen`, `listener.listen` and `admin.listen`: for a file meant for the gateway that
        /// already listens there (a reload keeps its listeners).
        #[arg(long)]
        no_bind_check: bool,
    },
    /// Run the gateway on a built-in config with three demo services (users, orders, products).
    Demo {
        #[command(flatten)]
        tuning: Tuning,
        /// Admin listener address (/healthz, /metrics, /stats, /config), replacing the built-in
        /// 127.0.0.1:9901; port 0 picks a free one (the ready line names it).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Inspect this host for the gateway: check by check what was found, why it matters and the
    /// command that fixes it. Exit status 0 when nothing needs changing, 1 otherwise.
    Tune(crate::tune::TuneArgs),
    /// Watch a running gateway: per-route and per-upstream rates from its admin `/stats`.
    Top {
        /// Admin listener, host:port (a host name is resolved at every refresh).
        #[arg(long, value_parser = crate::top::parse_admin)]
        admin: String,
        /// Time between refreshes, e.g. "1s" or "200ms".
        #[arg(long, value_parser = crate::top::parse_interval, default_value = "1s")]
        interval: Duration,
        /// Refreshes before exiting; 0 = until interrupted.
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
}

/// Flags shared by `run` and `demo`; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct Tuning {
    /// Worker threads (one event loop each); 0 = the config's value (0 there = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Listen address(es), replacing `server.listen`.
    #[arg(long)]
    pub listen: Vec<std::net::SocketAddr>,
    /// IO driver: auto (io_uring, falling back to epoll), uring, or epoll.
    #[arg(long, value_enum, default_value_t = DriverChoice::Auto)]
    pub driver: DriverChoice,
    /// CPUs to pin workers to, e.g. "0,2-3" (worker n gets the n-th, cycling).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Do not pin workers to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// io_uring submission queue entries per worker.
    #[arg(long, default_value_t = runtime::driver::DEFAULT_RING_ENTRIES)]
    pub ring_entries: u32,
    /// Enable io_uring SQPOLL with this idle time in ms (a kernel thread per worker polls the ring).
    #[arg(long)]
    pub sqpoll_idle_ms: Option<u32>,
    /// Do not ask for io_uring's SINGLE_ISSUER + DEFER_TASKRUN (on by default where the kernel
    /// has them: completions are processed in batches when the worker asks for events).
    #[arg(long)]
    pub no_defer_taskrun: bool,
    /// Buffer that response bodies larger than a connection's 16 KiB buffer stream through, one
    /// per such response in flight, from a per-worker pool (e.g. "256KiB"; 0 = off).
    #[arg(long, value_parser = parse_buffer, default_value = "256KiB")]
    pub relay_buffer: usize,
    /// Content-Length response bodies with at least this many bytes left after the first read
    /// move from a plain upstream to a plain client through a pipe (splice, no copy through the
    /// gateway); 0 (the default) = never.
    #[arg(long, value_parser = config::units::parse_size, default_value = "0")]
    pub splice_min: u64,
    /// How new connections spread over workers: least-loaded (a worker ahead of the least-loaded
    /// one hands new connections to it) or kernel (SO_REUSEPORT's hash alone).
    #[arg(long, value_enum, default_value_t = runtime::spread::Balance::LeastLoaded)]
    pub connection_balance: runtime::spread::Balance,
    /// Graceful-shutdown budget, replacing `server.drain_timeout` (e.g. "30s").
    #[arg(long, value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Start even when another process already listens on a listen address: SO_REUSEPORT then
    /// splits new connections between both (for a hand-over, where the old gateway drains).
    /// Without it such an address is refused at start-up.
    #[arg(long)]
    pub reuse_port_with_others: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    config::units::parse_duration(s)
}

/// A `--relay-buffer` size: 0, or 16 KiB to 16 MiB.
fn parse_buffer(s: &str) -> Result<usize, String> {
    match config::units::parse_size(s)? {
        0 => Ok(0),
        n if (16 << 10..=16 << 20).contains(&n) => Ok(n as usize),
        _ => Err(format!("{s}: expected 0 (off) or 16KiB to 16MiB")),
    }
}

/// A parsed `--cpus` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// "0,2-3" -> [0, 2, 3]
pub fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad cpu list {s:?}: expected e.g. 0,2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("bad cpu list {s:?}: empty"));
    }
    Ok(CpuList(out))
}

impl Tuning {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            workers: self.workers,
            driver: self.driver,
            cpus: self.cpus.as_ref().map(|c| c.0.clone()),
            pin: !self.no_pin,
            ring_entries: self.ring_entries,
            sqpoll_idle_ms: self.sqpoll_idle_ms,
            defer_taskrun: !self.no_defer_taskrun,
            relay_buffer: self.relay_buffer,
            balance: self.connection_balance,
            splice_min: self.splice_min,
            share_listeners: self.reuse_port_with_others,
        }
    }

    pub fn apply(&self, cfg: &mut Config) {
        Overrides {
            listen: self.listen.clone(),
            drain_timeout: self.drain_timeout,
        }
        .apply(cfg)
    }
}

/// The flags that replace config values: applied at start and again to every reloaded file.
struct Overrides {
    listen: Vec<std::net::SocketAddr>,
    drain_timeout: Option<Duration>,
}

impl Overrides {
    fn apply(&self, cfg: &mut Config) {
        if !self.listen.is_empty() {
            cfg.server.listen = self.listen.clone();
        }
        if let Some(d) = self.drain_timeout {
            cfg.server.drain_timeout = d;
        }
    }
}

/// Starts the gateway and blocks until it has drained after a signal. `source`: the config file,
/// re-read on SIGHUP and `POST /reload` (None for the demo: reload then reports an error).
pub fn serve(mut cfg: Config, tuning: &Tuning, source: Option<PathBuf>) -> ExitCode {
    tuning.apply(&mut cfg);
    let overrides = Overrides {
        listen: tuning.listen.clone(),
        drain_timeout: tuning.drain_timeout,
    };
    let reload = source.map(|path| runtime::ReloadSource {
        path,
        apply: Box::new(move |cfg: &mut Config| overrides.apply(cfg)),
    });
    let gw = match runtime::start(cfg, &tuning.options(), reload) {
        Ok(gw) => gw,
        Err(e) => {
            eprintln!("coregate: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{}", gw.ready_line());
    match gw.wait_for_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coregate: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            no_bind_check,
        } => match config::check_file(
            &config,
            config::preflight::Preflight {
                bind: !no_bind_check,
            },
        ) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("{e}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Run { config, tuning } => match config::load_file(&config) {
            Ok(cfg) => serve(cfg, &tuning, Some(config)),
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("{e}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Demo { tuning, admin } => crate::demo::run(&tuning, admin),
        Command::Tune(args) => crate::tune::run(&args),
        Command::Top {
            admin,
            interval,
            count,
        } => crate::top::run(&crate::top::TopOptions {
            admin,
            interval,
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0,2-3").unwrap().0, vec![0, 2, 3]);
        assert_eq!(parse_cpus("5").unwrap().0, vec![5]);
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn every_run_flag_parses() {
        let cli = Cli::try_parse_from([
            "coregate",
            "run",
            "--config",
            "x.toml",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--driver",
            "epoll",
            "--cpus",
            "0,2-3",
            "--no-pin",
            "--ring-entries",
            "256",
            "--sqpoll-idle-ms",
            "5",
            "--drain-timeout",
            "2s",
            "--no-defer-taskrun",
            "--relay-buffer",
            "1MiB",
        ])
        .unwrap();
        let Command::Run { tuning, .. } = cli.command else {
            panic!("not run")
        };
        let o = tuning.options();
        assert_eq!(o.workers, 2);
        assert_eq!(o.cpus, Some(vec![0, 2, 3]));
        assert!(!o.pin);
        assert_eq!(o.driver, DriverChoice::Epoll);
        assert_eq!((o.ring_entries, o.sqpoll_idle_ms), (256, Some(5)));
        assert_eq!((o.defer_taskrun, o.relay_buffer), (false, 1 << 20));
        let defaults = Cli::try_parse_from(["coregate", "run", "-c", "x"]).unwrap();
        let Command::Run { tuning: plain, .. } = defaults.command else {
            panic!("not run")
        };
        let d = plain.options();
        assert_eq!((d.defer_taskrun, d.relay_buffer), (true, 256 << 10));
        for bad in ["1KiB", "1GiB", "big"] {
            assert!(
                Cli::try_parse_from(["coregate", "run", "-c", "x", "--relay-buffer", bad]).is_err()
            );
        }
        assert_eq!(tuning.listen.len(), 2);
        assert_eq!(tuning.drain_timeout, Some(Duration::from_secs(2)));
        Cli::try_parse_from(["coregate", "demo", "--workers", "1"]).unwrap();
        let cli = Cli::try_parse_from(["coregate", "demo", "--admin", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.command, Command::Demo { admin: Some(a), .. } if a.port() == 0));
        Cli::try_parse_from(["coregate", "check", "--config", "x.toml"]).unwrap();
        let cli = Cli::try_parse_from(["coregate", "check", "-c", "x", "--no-bind-check"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Check {
                no_bind_check: true,
                ..
            }
        ));
    }
}
