//! `coregate-load run`: the load generator. This file owns the command line (`LoadArgs`), input
//! validation, and the run itself (`execute`): it builds the request `Plan` (scenario.rs), checks
//! the target answers a TCP connect, starts one pinned-or-not thread per core share (conn.rs,
//! each a monoio runtime with its own connections and histogram), prints a progress line per
//! second from the threads' atomics and interval histograms, then merges everything into a
//! `stats::model::RunResult` that `main` prints as a table and optionally writes as JSON/HTML.

mod conn;
mod http;
mod scenario;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::model::{RunResult, Tick};
use crate::stats::{hist, html, report};
use conn::{Config, Counters, Shared};
pub use scenario::{parse_url, Target};

/// Arguments of `coregate-load run`: a boxed `LoadOptions` (so the subcommand enum stays small),
/// readable and writable field by field through `Deref`/`DerefMut`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    opts: Box<LoadOptions>,
}

impl std::ops::Deref for LoadArgs {
    type Target = LoadOptions;
    fn deref(&self) -> &LoadOptions {
        &self.opts
    }
}

impl std::ops::DerefMut for LoadArgs {
    fn deref_mut(&mut self) -> &mut LoadOptions {
        &mut self.opts
    }
}

impl From<LoadOptions> for LoadArgs {
    fn from(o: LoadOptions) -> LoadArgs {
        LoadArgs { opts: Box::new(o) }
    }
}

impl LoadArgs {
    /// Parse `run`'s flags from `args` (no program name), e.g. `["-c", "8", "http://h:1/"]`:
    /// the in-process way to build arguments (used by tests and `compare`).
    pub fn from_args<I, S>(args: I) -> Result<LoadArgs, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        use clap::{Args, FromArgMatches};
        let cmd = LoadArgs::augment_args(clap::Command::new("run").no_binary_name(true));
        let m = cmd
            .try_get_matches_from(args)
            .map_err(|e| e.to_string().trim().to_string())?;
        LoadArgs::from_arg_matches(&m).map_err(|e| e.to_string())
    }
}

/// The flags of `coregate-load run` (see `LoadArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// Target URL (http://host:port/path); optional when --scenario names a `target`.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// Concurrent connections (total, spread over threads).
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Threads (default: all cores, at most one per connection).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Pin threads to these CPUs, e.g. `0,2-3` (default: no pinning).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Measured duration (`500ms`, `10s`, `2m`); default 10s unless --requests is given.
    #[arg(short = 'd', long)]
    pub duration: Option<String>,
    /// Warm-up before measuring (excluded from results).
    #[arg(long, default_value = "0s")]
    pub warmup: String,
    /// Stop after this many completed measured requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: total requests per second (latency from intended send times). Absent: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// TOML scenario: weighted requests, placeholders, JWT minting.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Per-request timeout.
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// `10s`, `500ms`, `2m`, `1h`, or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * mult < 1e9 => {
            Ok(Duration::from_secs_f64(v * mult))
        }
        _ => Err(format!("bad duration {s:?} (want e.g. 500ms, 10s, 2m)")),
    }
}

/// `0,2-3` -> [0, 2, 3].
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("bad --cpus {s:?} (want e.g. 0,2-3)");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn plan_of(args: &LoadArgs) -> Result<scenario::Plan, String> {
    let body = match &args.body_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read --body-file {}: {e}", f.display()))?,
        ),
        None => args.body.clone(),
    };
    let cli = scenario::CliRequest {
        url: args.url.as_deref(),
        method: &args.method,
        headers: &args.headers,
        body,
    };
    match &args.scenario {
        Some(f) => scenario::Plan::from_scenario(f, &cli),
        None => scenario::Plan::from_cli(&cli),
    }
}

/// Run the load described by `args` in-process. Err: bad input (the message says what).
pub fn execute(args: &LoadArgs) -> Result<RunResult, String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.pipeline == 0 || args.pipeline > 1024 {
        return Err("--pipeline must be in 1..=1024".into());
    }
    if let Some(r) = args.rate {
        if !r.is_finite() || r <= 0.0 || r > 1e9 {
            return Err(format!("bad --rate {r}: want requests per second > 0"));
        }
    }
    if args.requests == Some(0) {
        return Err("--requests must be at least 1".into());
    }
    let duration = match (&args.duration, args.requests) {
        (Some(d), _) => Some(parse_duration(d)?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    if duration.is_some_and(|d| d.is_zero()) {
        return Err("--duration must be more than 0".into());
    }
    let warmup = parse_duration(&args.warmup).map_err(|e| format!("--warmup: {e}"))?;
    let timeout = parse_duration(&args.timeout).map_err(|e| format!("--timeout: {e}"))?;
    if timeout.is_zero() {
        return Err("--timeout must be more than 0".into());
    }
    let cpus = args.cpus.as_deref().map(parse_cpus).transpose()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).clamp(1, args.connections);
    let plan = plan_of(args)?;
    let label = scenario::describe(&plan);
    if let Err(e) = std::net::TcpStream::connect_timeout(&plan.target.addr, Duration::from_secs(3))
    {
        return Err(format!(
            "cannot connect to {} ({}): {e}",
            plan.label, plan.target.addr
        ));
    }

    let cfg = Arc::new(Config {
        plan,
        connections: args.connections,
        pipeline: args.pipeline,
        rate: args.rate,
        timeout,
        measure_from: warmup,
        end: duration.map(|d| warmup + d),
        limit: args.requests,
    });
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        completed: AtomicU64::new(0),
        stopped_at_ns: AtomicU64::new(0),
        counters: (0..threads).map(|_| Counters::default()).collect(),
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut handles = Vec::with_capacity(threads);
    for tid in 0..threads {
        let conns: Vec<usize> = (tid..args.connections).step_by(threads).collect();
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let tx = (!args.quiet).then(|| tx.clone());
        let core = cpus.as_ref().map(|c| c[tid % c.len()]);
        let h = std::thread::Builder::new()
            .name(format!("load-{tid}"))
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                conn::run_thread(tid, conns, cfg, shared, tx)
            })
            .map_err(|e| format!("cannot spawn thread: {e}"))?;
        handles.push(h);
    }
    drop(tx);

    let timeline = monitor(&cfg, &shared, threads, &rx, args.quiet, &handles);
    shared.stop.store(true, Relaxed);
    let mut parts = Vec::with_capacity(threads);
    for h in handles {
        parts.push(
            h.join()
                .map_err(|_| "a load thread panicked".to_string())??,
        );
    }
    let measured = match shared.stopped_at_ns.load(Relaxed) {
        0 => match duration {
            Some(d) => d,
            None => shared.t0.elapsed().saturating_sub(warmup),
        },
        ns => Duration::from_nanos(ns).saturating_sub(warmup),
    };
    let merged = hist::merge(&parts.iter().map(|p| p.hist.clone()).collect::<Vec<_>>());
    let mut r = RunResult {
        target: label,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .into(),
        rate: args.rate,
        connections: args.connections,
        threads,
        pipeline: args.pipeline,
        duration_s: measured.as_secs_f64(),
        requests: merged.len(),
        latency_us: hist::percentiles(&merged),
        histogram: hist::buckets(&merged),
        timeline,
        ..RunResult::default()
    };
    r.throughput_rps = if r.duration_s > 0.0 {
        r.requests as f64 / r.duration_s
    } else {
        0.0
    };
    for p in &parts {
        for (s, n) in &p.status {
            *r.status.entry(*s).or_insert(0) += n;
        }
        r.errors.connect += p.errors.connect;
        r.errors.reset += p.errors.reset;
        r.errors.timeout += p.errors.timeout;
        r.errors.other += p.errors.other;
        r.bytes_read += p.bytes_read;
        r.bytes_written += p.bytes_written;
    }
    Ok(r)
}

/// Until the run ends: every measured second, sample the counters into the timeline and (unless
/// quiet) print a progress line with that second's p99 merged from the threads' interval histograms.
fn monitor(
    cfg: &Config,
    shared: &Shared,
    threads: usize,
    rx: &crossbeam_channel::Receiver<conn::TickMsg>,
    quiet: bool,
    handles: &[std::thread::JoinHandle<Result<conn::ThreadResult, String>>],
) -> Vec<Tick> {
    let totals = || {
        shared.counters.iter().fold((0, 0), |a, c| {
            (a.0 + c.requests.load(Relaxed), a.1 + c.errors.load(Relaxed))
        })
    };
    let start = shared.t0 + cfg.measure_from;
    let end = cfg.end.map(|e| shared.t0 + e);
    let mut timeline = Vec::new();
    let (mut last, mut last_t) = ((0u64, 0u64), 0.0f64);
    let mut pending: Vec<(u64, hdrhistogram::Histogram<u64>)> = Vec::new();
    let mut s = 1u64;
    loop {
        let boundary = start + Duration::from_secs(s);
        let wake = end.map_or(boundary, |e| e.min(boundary));
        // Sleep in short steps so a --requests stop or a dead thread is noticed quickly.
        let finished = loop {
            let now = Instant::now();
            if shared.stop.load(std::sync::atomic::Ordering::Acquire)
                || handles.iter().any(|h| h.is_finished())
            {
                break true;
            }
            if now >= wake {
                break end.is_some_and(|e| now >= e);
            }
            std::thread::sleep((wake - now).min(Duration::from_millis(10)));
        };
        let now = Instant::now();
        if now < start {
            continue; // still warming up
        }
        let cur = totals();
        let t = if finished {
            let stop = match shared.stopped_at_ns.load(Relaxed) {
                0 => end.unwrap_or(now),
                ns => shared.t0 + Duration::from_nanos(ns),
            };
            stop.saturating_duration_since(start).as_secs_f64()
        } else {
            s as f64
        };
        if cur != last || t - last_t > 0.05 {
            timeline.push(Tick {
                t,
                requests: cur.0 - last.0,
                errors: cur.1 - last.1,
            });
        }
        if !quiet && t - last_t >= 0.5 {
            let deadline = Instant::now() + Duration::from_millis(if finished { 50 } else { 200 });
            while pending.iter().filter(|p| p.0 == s).count() < threads {
                match rx.recv_deadline(deadline) {
                    Ok(m) => pending.push(m),
                    Err(_) => break,
                }
            }
            let parts: Vec<_> = pending
                .iter()
                .filter(|p| p.0 == s)
                .map(|p| p.1.clone())
                .collect();
            pending.retain(|p| p.0 > s);
            let p99 = match parts.is_empty() {
                true => "-".to_string(),
                false => report::fmt_us(hist::merge(&parts).value_at_quantile(0.99)),
            };
            let label = if (t - t.round()).abs() < 0.01 {
                format!("{t:.0}")
            } else {
                format!("{t:.1}")
            };
            let rps = ((cur.0 - last.0) as f64 / (t - last_t)).round();
            eprintln!(
                "[{label}s] {rps} req/s, p99 {p99}, errors {}",
                cur.1 - last.1
            );
        }
        last = cur;
        last_t = t;
        if finished {
            return timeline;
        }
        s += 1;
    }
}

/// `coregate-load run`: 0 ok, 1 the run failed (nothing completed), 2 bad input.
pub fn main(args: LoadArgs) -> u8 {
    let r = match execute(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coregate-load: {e}");
            return 2;
        }
    };
    print!("{}", report::table(&r));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
        if let Err(e) = std::fs::write(p, text + "\n") {
            eprintln!("coregate-load: cannot write {}: {e}", p.display());
            return 1;
        }
    }
    if let Some(p) = &args.html {
        let page = html::render(
            &format!("coregate-load: {}", r.target),
            &[(r.target.clone(), &r)],
        );
        if let Err(e) = std::fs::write(p, page) {
            eprintln!("coregate-load: cannot write {}: {e}", p.display());
            return 1;
        }
    }
    if r.requests == 0 {
        eprintln!(
            "coregate-load: no request completed ({} errors)",
            r.errors.total()
        );
        return 1;
    }
    0
}
