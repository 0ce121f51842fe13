//! The self-contained HTML report: one page, inline SVG and CSS, no scripts, nothing fetched.
//! `render` takes one or more named runs (`run --html` passes one, `compare` several) and draws
//! (1) latency by percentile on a log "nines" x axis (x = -log10(1 - p)) with log y, one line per
//! run, from each run's recorded histogram buckets (like HdrHistogram's plotter); (2) throughput
//! over time from the per-second timeline; (3) a summary table.

use std::fmt::Write;

use super::model::RunResult;
use super::report::{fmt_count, fmt_us, mode_label};

const W: f64 = 760.0;
const H: f64 = 340.0;
const ML: f64 = 70.0; // left margin (y labels)
const MR: f64 = 20.0;
const MT: f64 = 20.0;
const MB: f64 = 45.0; // bottom margin (x labels)
/// 99.999th percentile is the rightmost tick; anything further out is drawn at the edge.
const NINES: f64 = 5.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// The whole page for `runs` (name, result), titled `title`.
pub fn render(title: &str, runs: &[(String, &RunResult)]) -> String {
    let mut o = String::new();
    let t = esc(title);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}\
         table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
         svg{{background:#fff;border:1px solid #ddd;margin:8px 0}}text{{font-size:12px;fill:#333}}\
         .grid{{stroke:#e5e5e5}}.axis{{stroke:#555}}</style></head><body>\n<h1>{t}</h1>\n"
    );
    o.push_str("<h2>Latency by percentile</h2>\n");
    o.push_str(&percentile_svg(runs));
    o.push_str("<h2>Throughput over time</h2>\n");
    o.push_str(&throughput_svg(runs));
    o.push_str("<h2>Summary</h2>\n");
    o.push_str(&summary_table(runs));
    o.push_str("</body></html>\n");
    o
}

fn legend(o: &mut String, runs: &[(String, &RunResult)]) {
    for (i, (name, _)) in runs.iter().enumerate() {
        let y = MT + 14.0 + i as f64 * 16.0;
        let c = COLORS[i % COLORS.len()];
        let _ = write!(
            o,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ML + 12.0,
            ML + 32.0,
            ML + 38.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// Draws one polyline per run (scaled by `sx`/`sy`), the legend, and closes the SVG.
fn finish_plot(
    o: &mut String,
    series: &[Vec<(f64, f64)>],
    sx: impl Fn(f64) -> f64,
    sy: impl Fn(f64) -> f64,
    runs: &[(String, &RunResult)],
) {
    for (i, pts) in series.iter().enumerate() {
        let mut p = String::new();
        for &(x, v) in pts {
            let _ = write!(p, "{:.1},{:.1} ", sx(x), sy(v));
        }
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            COLORS[i % COLORS.len()],
            p.trim_end()
        );
    }
    legend(o, runs);
    o.push_str("</svg>\n");
}

fn svg_open(o: &mut String, label: &str) {
    let _ = write!(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\">");
    let _ = write!(
        o,
        "<line class=\"axis\" x1=\"{ML}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/><line class=\"axis\" x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{:.1}\"/>",
        H - MB,
        W - MR,
        H - MB,
        H - MB
    );
}

/// One polyline point list per run: (nines, latency µs) steps over the recorded buckets.
fn percentile_points(r: &RunResult) -> Vec<(f64, f64)> {
    let total: u64 = r.histogram.iter().map(|b| b.1).sum();
    let mut pts = Vec::with_capacity(r.histogram.len() * 2);
    if total == 0 {
        return pts;
    }
    let nines = |p: f64| {
        if p >= 1.0 {
            NINES
        } else {
            (-(1.0 - p).log10()).min(NINES)
        }
    };
    let mut seen = 0u64;
    for &(v, n) in &r.histogram {
        let x0 = nines(seen as f64 / total as f64);
        seen += n;
        let x1 = nines(seen as f64 / total as f64);
        pts.push((x0, v.max(1) as f64));
        pts.push((x1, v.max(1) as f64));
    }
    pts
}

fn percentile_svg(runs: &[(String, &RunResult)]) -> String {
    let series: Vec<Vec<(f64, f64)>> = runs.iter().map(|(_, r)| percentile_points(r)).collect();
    let (mut lo, mut hi) = (f64::MAX, 1.0f64);
    for p in series.iter().flatten() {
        lo = lo.min(p.1);
        hi = hi.max(p.1);
    }
    if lo > hi {
        lo = 1.0;
    }
    let (dlo, dhi) = (
        lo.log10().floor(),
        (hi.log10().ceil()).max(lo.log10().floor() + 1.0),
    );
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let sx = |x: f64| ML + x / NINES * pw;
    let sy = |v: f64| MT + ph - (v.log10() - dlo) / (dhi - dlo) * ph;
    let mut o = String::new();
    svg_open(&mut o, "latency by percentile");
    for (i, lab) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = sx(i as f64);
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{MT}\" x2=\"{x:.1}\" y2=\"{:.1}\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{lab}</text>",
            H - MB,
            H - MB + 16.0
        );
    }
    let mut d = dlo;
    while d <= dhi + 1e-9 {
        let y = sy(10f64.powf(d));
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - MR,
            ML - 6.0,
            y + 4.0,
            fmt_us(10f64.powf(d).round() as u64)
        );
        d += 1.0;
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        ML + pw / 2.0,
        H - 8.0
    );
    finish_plot(&mut o, &series, sx, sy, runs);
    o
}

fn throughput_svg(runs: &[(String, &RunResult)]) -> String {
    // (t, req/s) per run; each tick covers (previous t, t].
    let series: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|(_, r)| {
            let mut prev = 0.0;
            r.timeline
                .iter()
                .filter_map(|k| {
                    let span = k.t - prev;
                    prev = k.t;
                    (span > 1e-3).then(|| (k.t, k.requests as f64 / span))
                })
                .collect()
        })
        .collect();
    let tmax = series.iter().flatten().map(|p| p.0).fold(1.0f64, f64::max);
    let ymax = nice_ceil(series.iter().flatten().map(|p| p.1).fold(1.0f64, f64::max));
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let sx = |t: f64| ML + t / tmax * pw;
    let sy = |v: f64| MT + ph - v / ymax * ph;
    let mut o = String::new();
    svg_open(&mut o, "throughput over time");
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let y = sy(v);
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - MR,
            ML - 6.0,
            y + 4.0,
            fmt_count(v.round() as u64)
        );
        let t = tmax * i as f64 / 5.0;
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.1}s</text>",
            sx(t),
            H - MB + 16.0
        );
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds (req/s per interval)</text>",
        ML + pw / 2.0,
        H - 8.0
    );
    finish_plot(&mut o, &series, sx, sy, runs);
    o
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceil(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn summary_table(runs: &[(String, &RunResult)]) -> String {
    let mut o = String::from(
        "<table><tr><th>run</th><th>target</th><th>mode</th><th>conns/threads</th><th>duration</th><th>requests</th>\
         <th>req/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>errors</th><th>MB read</th></tr>\n",
    );
    for (name, r) in runs {
        let l = &r.latency_us;
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{:.2}s</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(name),
            esc(&r.target),
            esc(&mode_label(r)),
            r.connections,
            r.threads,
            r.duration_s,
            fmt_count(r.requests),
            r.throughput_rps,
            fmt_us(l.p50),
            fmt_us(l.p90),
            fmt_us(l.p99),
            fmt_us(l.p999),
            fmt_us(l.p9999),
            fmt_us(l.max),
            fmt_count(r.errors.total()),
            r.bytes_read as f64 / 1e6
        );
    }
    o.push_str("</table>\n");
    o
}
