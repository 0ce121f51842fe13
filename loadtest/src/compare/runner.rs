//! One measured load run: `coregate-load run ... --json FILE --quiet` as a subprocess, with the
//! proxy's CPU time (its whole process tree) sampled at the start and the end of the measured
//! period, giving CPU µs per request.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::plan::{cpus_arg, Mode, Plan};
use super::procs::{spawn, stopped, tree_cpu_us};
use super::report::Record;
use super::Running;
use crate::stats::model::RunResult;

/// One load run against `r`, with the proxy's CPU time sampled at the start and the end of the
/// measured period (after the warm-up).
#[allow(clippy::too_many_arguments)]
pub fn one_run(
    plan: &Plan,
    dir: &Path,
    r: &mut Running,
    body: u64,
    conns: u64,
    mode: Mode,
    round: usize,
    n: usize,
) -> Result<Record, String> {
    let json = dir.join(format!("run-{n}.json"));
    let threads = plan.cpus.load.len().min(conns as usize).max(1);
    let mut cmd = Command::new(&plan.load_bin);
    cmd.arg("run")
        .arg(format!("http://{}/", r.addr))
        .args(["-c", &conns.to_string(), "-t", &threads.to_string()])
        .args(["--cpus", &cpus_arg(&plan.cpus.load)])
        .args(["-d", &plan.duration, "--warmup", &plan.warmup]);
    if let Mode::Open(rate) = mode {
        cmd.args(["--rate", &rate.to_string()]);
    }
    cmd.arg("--json").arg(&json).arg("--quiet");
    let pid = r.guard.pid();
    let before = tree_cpu_us(pid);
    let start = Instant::now();
    let mut run = spawn("coregate-load run", cmd)?;
    let measure_from = start + Duration::from_secs_f64(plan.warmup_s);
    let measure_to = measure_from + Duration::from_secs_f64(plan.duration_s);
    let deadline = measure_to + Duration::from_secs(60);
    let mut a = (plan.warmup_s == 0.0).then_some((start, before));
    let status = loop {
        if stopped() {
            return Err("interrupted".into());
        }
        let now = Instant::now();
        if a.is_none() && now >= measure_from {
            a = Some((now, tree_cpu_us(pid)));
        }
        let exited = run.exited();
        if now >= measure_to || exited.is_some() {
            break exited;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let b = (Instant::now(), tree_cpu_us(pid));
    let a = a.unwrap_or((start, before));
    let status = match status {
        Some(st) => st,
        None => loop {
            if let Some(st) = run.exited() {
                break st;
            }
            if stopped() || Instant::now() > deadline {
                return Err("the load generator did not finish in time".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        },
    };
    if !status.success() {
        return Err(format!("`run` failed ({status}):\n{}", run.stderr_tail()));
    }
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("`run` wrote no JSON to {}: {e}", json.display()))?;
    let result: RunResult =
        serde_json::from_str(&text).map_err(|e| format!("bad run JSON: {e}"))?;
    let _ = std::fs::remove_file(&json);
    let window_s = (b.0 - a.0).as_secs_f64();
    // CPU per second of the window over requests per second of the measured period.
    let cpu_us_per_req = (result.throughput_rps > 0.0 && window_s > 0.0)
        .then(|| (b.1 - a.1) / window_s / result.throughput_rps);
    Ok(Record {
        proxy: r.proxy.name().into(),
        driver: r.proxy.driver().map(String::from),
        label: r.proxy.label(),
        body_size: body,
        connections: conns,
        mode: mode.name().into(),
        rate: mode.rate(),
        round,
        cpu_us_per_req,
        result,
    })
}
