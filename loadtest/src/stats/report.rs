//! The compact stdout table for one finished run. Reads a `RunResult` only; `fmt_us` and
//! `fmt_count` are shared with the progress lines and the HTML summary so all three agree.

use std::fmt::Write;

use super::model::RunResult;

/// A latency in µs, human scaled: `850us`, `1.23ms`, `2.50s`.
pub fn fmt_us(us: u64) -> String {
    fmt_us_f(us as f64)
}

/// As `fmt_us`, for fractional values (means).
pub fn fmt_us_f(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "closed" or "open @ R req/s", plus the pipeline depth when it is not 1.
pub fn mode_label(r: &RunResult) -> String {
    let mut m = match r.rate {
        Some(rate) if r.mode == "open" => format!("open loop @ {rate} req/s"),
        _ => format!("{} loop", r.mode),
    };
    if r.pipeline > 1 {
        let _ = write!(m, ", pipeline {}", r.pipeline);
    }
    m
}

/// The table printed on stdout at the end of `run`.
pub fn table(r: &RunResult) -> String {
    let mut o = String::new();
    let l = &r.latency_us;
    let _ = writeln!(o, "target       {}", r.target);
    let _ = writeln!(o, "mode         {}", mode_label(r));
    let _ = writeln!(o, "connections  {} on {} threads", r.connections, r.threads);
    let _ = writeln!(o, "duration     {:.2}s (measured)", r.duration_s);
    let _ = writeln!(o, "requests     {}", fmt_count(r.requests));
    let _ = writeln!(o, "throughput   {:.1} req/s", r.throughput_rps);
    let _ = writeln!(
        o,
        "latency      min {:>9}  mean {:>9}  max {:>9}",
        fmt_us(l.min),
        fmt_us_f(l.mean),
        fmt_us(l.max)
    );
    let _ = writeln!(
        o,
        "             p50 {:>9}  p90  {:>9}  p99 {:>9}",
        fmt_us(l.p50),
        fmt_us(l.p90),
        fmt_us(l.p99)
    );
    let _ = writeln!(
        o,
        "             p99.9 {:>7}  p99.99 {:>7}",
        fmt_us(l.p999),
        fmt_us(l.p9999)
    );
    let status: Vec<String> = r
        .status
        .iter()
        .map(|(c, n)| format!("{c}: {}", fmt_count(*n)))
        .collect();
    let _ = writeln!(
        o,
        "status       {}",
        if status.is_empty() {
            "-".to_string()
        } else {
            status.join(", ")
        }
    );
    let e = &r.errors;
    let _ = writeln!(
        o,
        "errors       {} (connect {}, reset {}, timeout {}, other {})",
        fmt_count(e.total()),
        e.connect,
        e.reset,
        e.timeout,
        e.other
    );
    let _ = writeln!(
        o,
        "transfer     {:.2} MB read, {:.2} MB written",
        r.bytes_read as f64 / 1e6,
        r.bytes_written as f64 / 1e6
    );
    o
}
