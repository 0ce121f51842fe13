//! `coregate-load compare`: coregate, nginx, HAProxy and the bare relay floor side by side on the
//! same work. Per body size one `serve` backend runs on the load CPUs; every proxy runs one worker
//! pinned to the proxy CPU; `coregate-load run` drives each in turn (closed loop, then open loop at
//! each rate), interleaved A B C A B C for `--rounds` rounds. Each run records the proxy's own CPU
//! time over the measured period, so the tables show req/s, CPU µs per request, latency percentiles
//! (medians over rounds) and ratios to nginx and to the relay floor.
//!
//! Everything is a subprocess driven through the CLI (`serve`, `relay`, `run --json`, `coregate run`,
//! `nginx`, `haproxy`); `COREGATE_LOAD_BIN` overrides the binary used for serve, relay and run.

mod configs;
mod plan;
mod procs;
mod report;
mod runner;
mod start;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::stats::model::RunResult;
use plan::{Mode, Plan, Proxy};
use procs::{stopped, Guard, TempDir};
use report::Record;

/// Arguments of `compare` (boxed: keeps the subcommand enum in main.rs small).
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub opts: Box<CompareOptions>,
}

/// The flags of `compare`.
#[derive(Debug, clap::Args)]
pub struct CompareOptions {
    /// The coregate binary (default: `coregate` next to this binary, e.g. target/release/coregate).
    #[arg(long)]
    pub coregate: Option<PathBuf>,
    /// CPU every proxy is pinned to (default: the last available core).
    #[arg(long)]
    pub proxy_cpu: Option<usize>,
    /// CPUs for the backend and the load generator, e.g. "0-3" (default: all the others). With two
    /// or more, the backend gets the first half and the generator the rest.
    #[arg(long)]
    pub load_cpus: Option<String>,
    /// Interleaved rounds per scenario; tables show medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Measured duration of each run.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Warm-up before each measured run.
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// Connection counts (comma list).
    #[arg(long, default_value = "64,1000")]
    pub connections: String,
    /// Backend response body sizes in bytes (comma list).
    #[arg(long, default_value = "60,4096,65536")]
    pub body_sizes: String,
    /// Open-loop rates in req/s, the same for every proxy (comma list; "" = closed loop only).
    #[arg(long, default_value = "1000,5000")]
    pub rates: String,
    /// coregate IO drivers to include: uring, epoll or both.
    #[arg(long, default_value = "uring")]
    pub drivers: String,
    /// coregate again with extra flags, as its own row (repeatable): `NAME=FLAGS`, e.g.
    /// `--variant "nodefer=--no-defer-taskrun"`; labelled `coregate-DRIVER-NAME`.
    #[arg(long)]
    pub variant: Vec<String>,
    /// Proxies to include: any of coregate, nginx, haproxy, relay.
    #[arg(long, default_value = "coregate,nginx,haproxy,relay")]
    pub only: String,
    /// Write every run and the medians as compact JSON: one line per run, each run's latency
    /// histogram as HdrHistogram's V2 deflate encoding in base64, no per-second timeline.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HTML report (one run per proxy and scenario, plus the tables).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No progress lines (tables are still printed).
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the comparison. Exit status: 0 ok, 1 a run failed or coregate/relay did not start (nginx
/// and HAProxy that are missing or do not start are reported and skipped), 2 bad input.
pub fn main(args: CompareArgs) -> u8 {
    let args = *args.opts;
    let plan = match make_plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("coregate-load compare: {e}");
            return 2;
        }
    };
    procs::install_signal_flag();
    procs::raise_fd_limit();
    let mut all = plan.cpus.backend.clone();
    all.extend(&plan.cpus.load);
    procs::pin_self(&all);
    match execute(&plan, &args) {
        Ok(0) => 0,
        Ok(n) => {
            eprintln!("coregate-load compare: {n} failure(s), see above");
            1
        }
        Err(e) => {
            eprintln!("coregate-load compare: {e}");
            1
        }
    }
}

fn make_plan(a: &CompareOptions) -> Result<Plan, String> {
    let variants = (a.variant.iter())
        .map(|v| plan::parse_variant(v))
        .collect::<Result<Vec<_>, _>>()?;
    let proxies = plan::proxies(&a.only, &a.drivers, &variants)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let coregate = match &a.coregate {
        Some(p) => p.clone(),
        None => exe.with_file_name("coregate"),
    };
    if proxies
        .iter()
        .any(|p| matches!(p, Proxy::Coregate(_) | Proxy::CoregateWith(..)))
        && !coregate.is_file()
    {
        return Err(format!(
            "coregate binary not found at {} (build it with `cargo build --release`, or pass --coregate PATH)",
            coregate.display()
        ));
    }
    let load_bin = std::env::var_os("COREGATE_LOAD_BIN")
        .map(PathBuf::from)
        .unwrap_or(exe);
    if a.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let duration_s = plan::parse_duration("duration", &a.duration)?;
    if duration_s <= 0.0 {
        return Err("--duration must be positive".into());
    }
    let warmup_s = plan::parse_duration("warmup", &a.warmup)?;
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let (cpus, warnings) = plan::cpus(&allowed, a.proxy_cpu, a.load_cpus.as_deref())?;
    for w in warnings {
        eprintln!("coregate-load compare: warning: {w}");
    }
    let mut modes = vec![Mode::Closed];
    modes.extend(
        plan::parse_list("rates", &a.rates, true)?
            .into_iter()
            .map(Mode::Open),
    );
    Ok(Plan {
        coregate,
        load_bin,
        cpus,
        rounds: a.rounds,
        duration: a.duration.trim().to_string(),
        warmup: a.warmup.trim().to_string(),
        duration_s,
        warmup_s,
        connections: plan::parse_list("connections", &a.connections, false)?,
        body_sizes: plan::parse_list("body-sizes", &a.body_sizes, false)?,
        modes,
        proxies,
    })
}

/// A proxy started for one body size.
struct Running {
    proxy: Proxy,
    guard: Guard,
    addr: SocketAddr,
    dead: bool,
}

#[derive(Serialize)]
struct Skipped {
    proxy: String,
    reason: String,
}

/// The head of the `--json` document; `report::doc_json` adds the runs and the medians.
#[derive(Serialize)]
struct Doc<'a> {
    proxy_cpu: usize,
    backend_cpus: &'a [usize],
    load_cpus: &'a [usize],
    rounds: usize,
    duration: &'a str,
    warmup: &'a str,
    skipped: &'a [Skipped],
}

/// Runs every scenario; returns the number of failures (runs or proxies that did not start).
fn execute(plan: &Plan, args: &CompareOptions) -> Result<usize, String> {
    let dir = TempDir::new()?;
    let mut skipped = Vec::new();
    let mut proxies = Vec::new();
    for &p in &plan.proxies {
        let prog = match p {
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "haproxy",
            _ => {
                proxies.push(p);
                continue;
            }
        };
        if procs::on_path(prog).is_some() {
            proxies.push(p);
        } else {
            println!("skipping {prog}: not installed");
            skipped.push(Skipped {
                proxy: prog.into(),
                reason: "not installed".into(),
            });
        }
    }
    if proxies.is_empty() {
        return Err("nothing to compare: none of the selected proxies is available".into());
    }
    let mut records: Vec<Record> = Vec::new();
    // Whatever happens (a dead backend, Ctrl-C), the runs so far are written out.
    let outcome = run_all(plan, args, &dir.0, &proxies, &mut records, &mut skipped);
    let sums = report::summarize(&records);
    if let Some(path) = &args.json {
        let doc = Doc {
            proxy_cpu: plan.cpus.proxy,
            backend_cpus: &plan.cpus.backend,
            load_cpus: &plan.cpus.load,
            rounds: plan.rounds,
            duration: &plan.duration,
            warmup: &plan.warmup,
            skipped: &skipped,
        };
        let text = report::doc_json(&doc, &records, &sums)?;
        write(path, &text)?;
    }
    if let Some(path) = &args.html {
        write(path, &html(&records, &sums))?;
    }
    outcome
}

/// Every body size, connection count, mode and round; records runs, returns the failure count.
fn run_all(
    plan: &Plan,
    args: &CompareOptions,
    dir: &Path,
    proxies: &[Proxy],
    records: &mut Vec<Record>,
    skipped: &mut Vec<Skipped>,
) -> Result<usize, String> {
    let per_body = plan.connections.len() * plan.modes.len() * plan.rounds * proxies.len();
    let total = per_body * plan.body_sizes.len();
    let mut failures = 0;
    let mut n = 0;
    for &body in &plan.body_sizes {
        let mut backend = start::start_backend(plan, body)?;
        let backend_addr = backend.1;
        let mut running = Vec::new();
        for &p in proxies {
            match start::start_proxy(plan, dir, p, backend_addr, body) {
                Ok((guard, addr)) => running.push(Running {
                    proxy: p,
                    guard,
                    addr,
                    dead: false,
                }),
                Err(e) => {
                    println!("skipping {}: failed to start: {e}", p.label());
                    skipped.push(Skipped {
                        proxy: p.label(),
                        reason: format!("failed to start: {e}"),
                    });
                    // nginx and HAProxy are optional outside tools, like a missing install; ours
                    // failing is a failure.
                    if matches!(
                        p,
                        Proxy::Coregate(_) | Proxy::CoregateWith(..) | Proxy::Relay
                    ) {
                        failures += 1;
                    }
                }
            }
        }
        for &conns in &plan.connections {
            for &mode in &plan.modes {
                let first = records.len();
                for round in 1..=plan.rounds {
                    for r in running.iter_mut() {
                        n += 1;
                        if stopped() {
                            return Err("interrupted".into());
                        }
                        if r.dead {
                            continue;
                        }
                        if let Some(st) = r.guard.exited() {
                            eprintln!(
                                "{} exited ({st}), dropping it:\n{}",
                                r.proxy.label(),
                                r.guard.stderr_tail()
                            );
                            r.dead = true;
                            failures += 1;
                            continue;
                        }
                        if let Some(st) = backend.0.exited() {
                            return Err(format!(
                                "the backend exited ({st}):\n{}",
                                backend.0.stderr_tail()
                            ));
                        }
                        let what = format!(
                            "[{n}/{total}] {}, body {body} B, {conns} connections, {}, round {round}",
                            r.proxy.label(),
                            mode.describe()
                        );
                        match runner::one_run(plan, dir, r, body, conns, mode, round, n) {
                            Ok(rec) => {
                                if !args.quiet {
                                    eprintln!(
                                        "{what}: {:.0} req/s, {} µs CPU/req, p99 {:.3} ms",
                                        rec.result.throughput_rps,
                                        rec.cpu_us_per_req
                                            .map_or("-".into(), |v| format!("{v:.2}")),
                                        rec.result.latency_us.p99 as f64 / 1000.0
                                    );
                                }
                                records.push(rec);
                            }
                            Err(e) => {
                                if stopped() {
                                    return Err("interrupted".into());
                                }
                                eprintln!("{what}: FAILED: {e}");
                                failures += 1;
                            }
                        }
                    }
                }
                let sums = report::summarize(&records[first..]);
                for (sc, rows) in report::by_scenario(&sums) {
                    println!("\n{}", report::table_text(&sc, &rows));
                }
            }
        }
        // Proxies first, then their backend.
        drop(running);
        backend.0.stop(Duration::from_secs(3));
    }
    Ok(failures)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The stats HTML report over one run per proxy and scenario (the median round), plus the tables.
fn html(records: &[Record], sums: &[report::Summary]) -> String {
    let mut runs: Vec<(String, &RunResult)> = Vec::new();
    for s in sums {
        let pick = records.iter().find(|r| {
            r.label == s.label
                && r.round == s.median_round
                && r.scenario() == (s.body_size, s.connections, s.mode.clone(), s.rate)
        });
        if let Some(r) = pick {
            let sc = (s.body_size, s.connections, s.mode.clone(), s.rate);
            let label = format!("{}: {}", s.label, report::scenario_title(&sc));
            runs.push((label, &r.result));
        }
    }
    let doc = crate::stats::html::render("coregate compare", &runs);
    report::append_html(&doc, &report::tables_html(sums))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn parse(argv: &[&str]) -> CompareOptions {
        *Cli::try_parse_from(std::iter::once("compare").chain(argv.iter().copied()))
            .unwrap()
            .args
            .opts
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[
            "--coregate",
            "/bin/sh",
            "--rates",
            "",
            "--only",
            "relay,coregate",
        ]);
        assert_eq!(
            (a.rounds, a.duration.as_str(), a.warmup.as_str()),
            (3, "10s", "1s")
        );
        let p = make_plan(&a).unwrap();
        assert_eq!(p.modes, vec![Mode::Closed]);
        assert_eq!(p.connections, vec![64, 1000]);
        assert_eq!(p.body_sizes, vec![60, 4096, 65536]);
        assert_eq!(p.proxies, vec![Proxy::Coregate("uring"), Proxy::Relay]);
        let a = parse(&[
            "--coregate",
            "/bin/sh",
            "--rates",
            "200",
            "--drivers",
            "uring,epoll",
        ]);
        let p = make_plan(&a).unwrap();
        assert_eq!(p.modes, vec![Mode::Closed, Mode::Open(200)]);
        assert_eq!(p.proxies.len(), 5);
    }

    #[test]
    fn bad_input() {
        let err = |argv: &[&str]| make_plan(&parse(argv)).unwrap_err();
        assert!(err(&["--coregate", "/nonexistent/coregate"]).contains("not found"));
        assert!(err(&["--coregate", "/bin/sh", "--only", "envoy"]).contains("envoy"));
        assert!(err(&["--coregate", "/bin/sh", "--connections", ""]).contains("empty"));
        assert!(err(&["--coregate", "/bin/sh", "--body-sizes", "1,x"]).contains("body-sizes"));
        assert!(err(&["--coregate", "/bin/sh", "--rounds", "0"]).contains("rounds"));
        assert!(err(&["--coregate", "/bin/sh", "--duration", "0s"]).contains("duration"));
        // A missing coregate does not matter when coregate is not selected.
        make_plan(&parse(&["--coregate", "/nonexistent", "--only", "relay"])).unwrap();
    }

    #[test]
    fn ready_line_addresses() {
        let a = start::parse_addr("127.0.0.1:4000 admin=- workers=1 driver=io_uring").unwrap();
        assert_eq!(a.port(), 4000);
        assert_eq!(
            start::parse_addr("127.0.0.1:1,127.0.0.1:2").unwrap().port(),
            1
        );
        assert!(start::parse_addr("").is_none());
    }
}
