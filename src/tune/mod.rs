//! `coregate tune`: inspects the host and says, check by check, what it found, why it matters for
//! this gateway and the exact command that fixes it.
//!
//! Flow: the command line (and optionally the config file) become a [`Plan`] (workers, their
//! CPUs, connections to expect, upstream pools); [`host::Host`] reads `/proc`, `/sys`, the
//! resource limits and an io_uring probe; `checks` (kernel, limits, sockets, memory) and `cpus`
//! (SMT, isolation, governor, NIC interrupts) turn both into [`Check`]s, printed as text or as a
//! JSON array of `{check, ok, found, fix}`. Exit status 0 when every check passes, 1 otherwise, 2
//! when the config file cannot be read. It changes nothing; the `tuning/` scripts apply the fixes
//! (and revert them).

mod checks;
mod cpus;
pub mod host;

use std::path::PathBuf;
use std::process::ExitCode;

use host::{format_cpu_list, Host};

/// `coregate tune`'s flags.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// Print a JSON array of `{ "check", "ok", "found", "fix" }` instead of text.
    #[arg(long)]
    pub json: bool,
    /// The config the gateway will run: its worker count and upstream pools size the limits.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Workers the gateway will run (default: the config's, else one per online CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// CPUs the workers will be pinned to, as `run --cpus` (default: the first online ones).
    #[arg(long, value_parser = crate::cli::parse_cpus)]
    pub cpus: Option<crate::cli::CpuList>,
    /// Client connections to expect at once, over all workers.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Read `/proc` and `/sys` under this directory instead (for tests and inspecting a copy);
    /// limits and the io_uring probe are still this process's.
    #[arg(long, hide = true)]
    pub root: Option<PathBuf>,
}

/// What the gateway is about to run, as far as the checks care.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workers: usize,
    /// The workers' CPUs, one per worker.
    pub cpus: Vec<usize>,
    /// Client connections at once, over all workers.
    pub connections: u64,
    /// Upstream endpoints in the config (each worker pools connections to each).
    pub upstream_endpoints: usize,
    /// The largest `max_idle_per_endpoint` (per worker).
    pub idle_per_endpoint: u64,
}

impl Plan {
    fn cpus_label(&self) -> String {
        format_cpu_list(&self.cpus)
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub found: String,
    /// Why it matters for the gateway (text output only).
    #[serde(skip)]
    pub why: &'static str,
    /// The command or setting that fixes it; empty when `ok`.
    pub fix: String,
}

impl Check {
    fn ok(check: &'static str, found: String, why: &'static str) -> Check {
        Check {
            check,
            ok: true,
            found,
            why,
            fix: String::new(),
        }
    }

    fn fix(check: &'static str, found: String, why: &'static str, fix: String) -> Check {
        Check {
            check,
            ok: false,
            found,
            why,
            fix,
        }
    }
}

/// Every check, in print order.
pub fn inspect(h: &Host, p: &Plan) -> Vec<Check> {
    let mut v = checks::all(h, p);
    v.extend(cpus::all(h, p));
    v
}

/// The plan from the flags, the config (when given) and the host's CPUs.
pub fn plan(args: &TuneArgs, cfg: Option<&crate::config::Config>, h: &Host) -> Plan {
    let online = h.online_cpus();
    let cfg_workers = cfg.map(|c| c.server.workers).filter(|&w| w > 0);
    let workers = args
        .workers
        .filter(|&w| w > 0)
        .or(cfg_workers)
        .or(args.cpus.as_ref().map(|c| c.0.len()))
        .unwrap_or(online.len().max(1));
    // worker n gets the n-th listed CPU, cycling, as `run` pins them
    let list = match &args.cpus {
        Some(c) => c.0.clone(),
        None if !online.is_empty() => online,
        None => (0..workers).collect(),
    };
    let cpus = (0..workers).map(|i| list[i % list.len()]).collect();
    let (upstream_endpoints, idle_per_endpoint) = cfg.map_or((0, 0), |c| {
        let eps = c.upstreams.iter().map(|u| u.endpoints.len()).sum();
        let idle = c
            .upstreams
            .iter()
            .map(|u| u.max_idle_per_endpoint as u64)
            .max()
            .unwrap_or(0);
        (eps, idle)
    });
    Plan {
        workers,
        cpus,
        connections: args.connections,
        upstream_endpoints,
        idle_per_endpoint,
    }
}

/// Runs `coregate tune`.
pub fn run(args: &TuneArgs) -> ExitCode {
    let cfg = match &args.config {
        Some(path) => match crate::config::load_file(path) {
            Ok(c) => Some(c),
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("{e}");
                }
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let h = match &args.root {
        Some(root) => {
            let this = Host::this();
            Host::at(root, this.nofile, this.memlock, this.uring)
        }
        None => Host::this(),
    };
    let p = plan(args, cfg.as_ref(), &h);
    let found = inspect(&h, &p);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).expect("checks serialise")
        );
    } else {
        print!("{}", render(&found, &p));
    }
    if found.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The text report: a header, then each check with what was found, why, and the fix.
pub fn render(found: &[Check], p: &Plan) -> String {
    let bad = found.iter().filter(|c| !c.ok).count();
    let mut s = format!(
        "coregate tune: {} workers on CPUs {}, {} connections: {} checks, {}\n",
        p.workers,
        p.cpus_label(),
        p.connections,
        found.len(),
        match bad {
            0 => "nothing to change".to_string(),
            n => format!("{n} to fix"),
        }
    );
    for c in found {
        let mark = if c.ok { "ok " } else { "FIX" };
        s.push_str(&format!("\n{mark}  {:<22} {}\n", c.check, c.found));
        s.push_str(&format!("     why: {}\n", c.why));
        if !c.ok {
            s.push_str(&format!("     fix: {}\n", c.fix));
        }
    }
    s
}

#[cfg(test)]
mod tests;
