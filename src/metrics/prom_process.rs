//! The process-wide families of the Prometheus text: uptime, workers, scrape cost, access log,
//! span export, DNS discovery, config generations and reloads (`prom.rs` owns the per-route,
//! per-upstream and per-worker ones, and the helpers used here).

use std::fmt::Write as _;

use super::names;
use super::{family, single, Merged};

pub(super) fn render_process(s: &mut String, m: &Merged) {
    let x = &m.extra;
    single(
        s,
        names::ACCESS_LOG_LINES_TOTAL,
        "counter",
        "Access log lines written to the sink.",
        x.log_written,
    );
    single(
        s,
        names::ACCESS_LOG_DROPPED_TOTAL,
        "counter",
        "Access log lines dropped because the sink was slower than traffic.",
        x.log_dropped,
    );
    family(
        s,
        names::OTLP_SPANS_TOTAL,
        "counter",
        "Request spans sent to the OTLP collector (exported) or lost (dropped: queue full or a failed export).",
    );
    for (outcome, n) in [("exported", x.spans_exported), ("dropped", x.spans_dropped)] {
        let _ = writeln!(
            s,
            "{}{{outcome=\"{outcome}\"}} {n}",
            names::OTLP_SPANS_TOTAL
        );
    }
    dns(s, &x.dns);
    single(
        s,
        names::CONFIG_GENERATION,
        "gauge",
        "Config generation in effect (1 at start, +1 per successful reload or DNS change).",
        x.generation,
    );
    family(
        s,
        names::CONFIG_RELOADS_TOTAL,
        "counter",
        "Config reload attempts by result.",
    );
    let _ = writeln!(
        s,
        "{}{{result=\"ok\"}} {}\n{}{{result=\"error\"}} {}",
        names::CONFIG_RELOADS_TOTAL,
        x.reloads_ok,
        names::CONFIG_RELOADS_TOTAL,
        x.reloads_failed
    );
    single(
        s,
        names::CONFIG_LAST_RELOAD_OK,
        "gauge",
        "1 if the last reload attempt succeeded (or none was made), else 0.",
        u8::from(x.last_reload_ok),
    );
    single(
        s,
        names::UPTIME_SECONDS,
        "gauge",
        "Seconds since start.",
        x.uptime_s,
    );
    single(
        s,
        names::WORKERS,
        "gauge",
        "Worker threads configured.",
        x.expected_workers,
    );
    family(
        s,
        names::SCRAPE_WORKER_SECONDS,
        "gauge",
        "Time each worker spent copying its statistics for this scrape.",
    );
    for w in &m.workers {
        let _ = writeln!(
            s,
            "{}{{worker=\"{}\"}} {}",
            names::SCRAPE_WORKER_SECONDS,
            w.worker,
            w.snapshot_ns as f64 / 1e9
        );
    }
    single(
        s,
        names::SCRAPE_MISSING_WORKERS,
        "gauge",
        "Workers that did not answer this scrape in time (their values are missing).",
        x.expected_workers.saturating_sub(m.workers.len()),
    );
}

/// DNS discovery: resolutions by outcome and the addresses in use, per upstream.
fn dns(s: &mut String, dns: &[crate::discovery::UpstreamDns]) {
    if dns.is_empty() {
        return;
    }
    let help = "Re-resolutions of an upstream's endpoint names: a new set (changed), the same \
                set (unchanged) or a failure that kept the last good set (failed).";
    family(s, names::DNS_RESOLUTIONS_TOTAL, "counter", help);
    for d in dns {
        for (outcome, n) in [
            ("changed", d.changed),
            ("unchanged", d.unchanged),
            ("failed", d.failed),
        ] {
            let _ = writeln!(
                s,
                "{}{{upstream=\"{}\",outcome=\"{outcome}\"}} {n}",
                names::DNS_RESOLUTIONS_TOTAL,
                d.upstream
            );
        }
    }
    let help = "Addresses an upstream's endpoint names resolve to (the last good set).";
    family(s, names::DNS_ENDPOINTS, "gauge", help);
    for d in dns {
        let _ = writeln!(
            s,
            "{}{{upstream=\"{}\"}} {}",
            names::DNS_ENDPOINTS,
            d.upstream,
            d.endpoints
        );
    }
}
