//! One frame of `coregate top`: rates from two `/stats` samples, as aligned text.
//!
//! Owns: [`Sample`] (a parsed document and when it was taken) and [`render`], a pure function of
//! the previous and current sample, so every number on screen is unit-testable.
//!
//! Flow: `(previous sample, current sample)` -> the window between them -> per-row deltas of the
//! counters divided by the window -> tables (header line, routes, upstreams, limits) -> `String`.
//! Latency percentiles are not rates: they come from the current sample alone.
//!
//! The window is the elapsed wall time between the two snapshots as the gateway's clock measured
//! it (`uptime_s` difference), so the jitter of the admin round trip and of this process's sleeps
//! does not skew the rates; a document without `uptime_s` falls back to this process's clock.
//! Without a usable window (first frame, gateway restarted: uptime went backwards, or a row's
//! counters went backwards) the rate columns show `-` and the totals since start remain.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use super::stats::{Route, Stats, Upstream};

/// A window shorter than this gives meaningless rates (two refreshes in the same instant).
const MIN_WINDOW_S: f64 = 0.001;
/// Shown in place of a value that cannot be computed.
const NONE: &str = "-";

/// A parsed `/stats` document and when it arrived.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub stats: Stats,
}

/// The previous sample and the seconds between it and the current one.
type Window<'a> = Option<(&'a Stats, f64)>;

fn window<'a>(prev: Option<&'a Sample>, cur: &Sample) -> Window<'a> {
    let prev = prev?;
    let (p, c) = (prev.stats.uptime_s, cur.stats.uptime_s);
    if c < p {
        return None; // restarted: counters started again from zero
    }
    let secs = if c > p {
        c - p
    } else {
        cur.at.saturating_duration_since(prev.at).as_secs_f64()
    };
    (secs >= MIN_WINDOW_S).then_some((&prev.stats, secs))
}

/// Renders one frame (no terminal escape codes; the caller clears the screen).
pub fn render(prev: Option<&Sample>, cur: &Sample) -> String {
    let s = &cur.stats;
    let w = window(prev, cur);
    let mut out = String::new();
    header(&mut out, s, w);
    out.push('\n');
    routes(&mut out, s, w);
    out.push('\n');
    upstreams(&mut out, s, w);
    if !s.limits.is_empty() {
        out.push('\n');
        limits(&mut out, s, w);
    }
    out
}

fn header(out: &mut String, s: &Stats, w: Window) {
    let all = |s: &Stats| {
        s.routes.iter().map(|r| r.requests.total()).sum::<u64>() + s.unmatched.requests.total()
    };
    let rps = w.and_then(|(p, secs)| Some(all(s).checked_sub(all(p))? as f64 / secs));
    let over = match w {
        Some((_, secs)) => format!("rates over {secs:.2}s"),
        None => "totals since start".into(),
    };
    let _ = writeln!(
        out,
        "coregate up {}  workers {}  generation {}  ({over})",
        uptime(s.uptime_s),
        s.workers,
        s.generation,
    );
    let _ = writeln!(
        out,
        "connections {} open / {} accepted  rps {}  access log dropped {}",
        s.connections.open,
        s.connections.accepted,
        fixed(rps, 1),
        s.access_log.dropped,
    );
}

/// Per-second rates of one route over the window.
struct RouteRates {
    rps: f64,
    c4xx: f64,
    c5xx: f64,
    out_bps: f64,
    /// 5xx share of the window's requests, when it had any.
    pct5xx: Option<f64>,
}

fn route_rates(r: &Route, w: Window) -> Option<RouteRates> {
    let (prev, secs) = w?;
    let p = prev.routes.iter().find(|p| p.name == r.name)?;
    let d = |c: u64, p: u64| c.checked_sub(p);
    let reqs = d(r.requests.total(), p.requests.total())?;
    let c5xx = d(r.requests.c5xx, p.requests.c5xx)?;
    Some(RouteRates {
        rps: reqs as f64 / secs,
        c4xx: d(r.requests.c4xx, p.requests.c4xx)? as f64 / secs,
        c5xx: c5xx as f64 / secs,
        out_bps: d(r.bytes_out, p.bytes_out)? as f64 / secs,
        pct5xx: percent(c5xx, reqs),
    })
}

fn routes(out: &mut String, s: &Stats, w: Window) {
    let mut rows: Vec<(f64, &str, Vec<String>)> = s
        .routes
        .iter()
        .map(|r| {
            let rates = route_rates(r, w);
            let total = r.requests.total();
            let pct5xx = match &rates {
                Some(x) => x.pct5xx,
                None => percent(r.requests.c5xx, total),
            };
            let row = vec![
                r.name.clone(),
                total.to_string(),
                fixed(rates.as_ref().map(|x| x.rps), 1),
                fixed(rates.as_ref().map(|x| x.c4xx), 1),
                fixed(rates.as_ref().map(|x| x.c5xx), 1),
                fixed(pct5xx, 2),
                millis(r.latency_us.p50, r.latency_us.count),
                millis(r.latency_us.p99, r.latency_us.count),
                bytes(rates.as_ref().map(|x| x.out_bps)),
            ];
            (rank(rates.map(|x| x.rps), total, s), r.name.as_str(), row)
        })
        .collect();
    let head = [
        "ROUTE", "REQS", "RPS", "4XX/S", "5XX/S", "5XX%", "P50MS", "P99MS", "OUT/S",
    ];
    table(out, 1, &head, sorted(&mut rows));
}

/// Per-second rates of one upstream over the window.
struct UpstreamRates {
    rps: f64,
    errors: f64,
    /// Pool hit share of the window's connection uses, when it had any.
    hit_pct: Option<f64>,
}

fn upstream_rates(u: &Upstream, w: Window) -> Option<UpstreamRates> {
    let (prev, secs) = w?;
    let p = prev.upstreams.iter().find(|p| p.name == u.name)?;
    let d = |c: u64, p: u64| c.checked_sub(p);
    let hits = d(u.pool_hits, p.pool_hits)?;
    let misses = d(u.pool_misses, p.pool_misses)?;
    Some(UpstreamRates {
        rps: d(u.requests.total(), p.requests.total())? as f64 / secs,
        errors: d(u.errors.total(), p.errors.total())? as f64 / secs,
        hit_pct: percent(hits, hits + misses),
    })
}

fn upstreams(out: &mut String, s: &Stats, w: Window) {
    let mut rows: Vec<(f64, &str, Vec<String>)> = s
        .upstreams
        .iter()
        .map(|u| {
            let rates = upstream_rates(u, w);
            let total = u.requests.total();
            let hit_pct = match &rates {
                Some(x) => x.hit_pct,
                None => percent(u.pool_hits, u.pool_hits + u.pool_misses),
            };
            let row = vec![
                u.name.clone(),
                total.to_string(),
                fixed(rates.as_ref().map(|x| x.rps), 1),
                fixed(rates.as_ref().map(|x| x.errors), 1),
                fixed(hit_pct, 1),
                u.open_connections.to_string(),
                millis(u.latency_us.p99, u.latency_us.count),
            ];
            (rank(rates.map(|x| x.rps), total, s), u.name.as_str(), row)
        })
        .collect();
    let head = ["UPSTREAM", "REQS", "RPS", "ERR/S", "HIT%", "OPEN", "P99MS"];
    table(out, 1, &head, sorted(&mut rows));
}

fn limits(out: &mut String, s: &Stats, w: Window) {
    let prev: HashMap<(&str, &str), (u64, u64)> = w
        .map(|(p, _)| {
            p.limits
                .iter()
                .map(|l| ((l.kind.as_str(), l.policy.as_str()), (l.allowed, l.limited)))
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = s
        .limits
        .iter()
        .map(|l| {
            let rates = w.and_then(|(_, secs)| {
                let (a, b) = prev.get(&(l.kind.as_str(), l.policy.as_str()))?;
                let allowed = l.allowed.checked_sub(*a)? as f64 / secs;
                Some((allowed, l.limited.checked_sub(*b)? as f64 / secs))
            });
            vec![
                l.kind.clone(),
                l.policy.clone(),
                l.allowed.to_string(),
                l.limited.to_string(),
                fixed(rates.map(|x| x.0), 1),
                fixed(rates.map(|x| x.1), 1),
            ]
        })
        .collect();
    let head = [
        "LIMIT",
        "POLICY",
        "ALLOWED",
        "LIMITED",
        "ALLOWED/S",
        "LIMITED/S",
    ];
    table(out, 2, &head, rows);
}

/// Sort key: the rate, or for a row without one its average since the gateway started.
fn rank(rate: Option<f64>, total: u64, s: &Stats) -> f64 {
    rate.unwrap_or(total as f64 / s.uptime_s.max(1.0))
}

/// Rows by rank descending, then name.
fn sorted(rows: &mut [(f64, &str, Vec<String>)]) -> Vec<Vec<String>> {
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    rows.iter_mut().map(|r| std::mem::take(&mut r.2)).collect()
}

/// Writes `head` and `rows` with every column as wide as its widest cell: the first `text`
/// columns left-aligned, the rest (numbers) right-aligned, two spaces between columns.
fn table(out: &mut String, text: usize, head: &[&str], rows: Vec<Vec<String>>) {
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    let none = [vec![String::from("(none)")]];
    let body = if rows.is_empty() {
        &none[..]
    } else {
        &rows[..]
    };
    let mut widths = vec![0; head.len()];
    for row in std::iter::once(&head).chain(body) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&head).chain(body) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let gap = if i == 0 { "" } else { "  " };
            if i < text {
                let _ = write!(line, "{gap}{cell:<w$}");
            } else {
                let _ = write!(line, "{gap}{cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn fixed(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| NONE.into(), |v| format!("{v:.decimals$}"))
}

/// `part` as a percentage of `whole`; None when `whole` is 0.
fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// A latency in µs as milliseconds with two decimals; `-` for an empty histogram.
fn millis(us: u64, count: u64) -> String {
    fixed((count > 0).then(|| us as f64 / 1000.0), 2)
}

/// Bytes per second in binary units: `512B`, `11.7KiB`, `3.0MiB`.
fn bytes(v: Option<f64>) -> String {
    let Some(mut v) = v else {
        return NONE.into();
    };
    if v < 1024.0 {
        return format!("{v:.0}B");
    }
    for unit in ["KiB", "MiB", "GiB"] {
        v /= 1024.0;
        if v < 1024.0 {
            return format!("{v:.1}{unit}");
        }
    }
    format!("{v:.1}TiB")
}

/// `42s`, `3m07s`, `2h03m07s`, `4d02h03m`.
fn uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m{s:02}s"),
        _ => format!("{d}d{h:02}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::tests::EXAMPLE;
    use super::super::stats::{parse_stats, Route};
    use super::*;
    use std::time::Duration;

    fn sample(at: Instant, json: &str) -> Sample {
        Sample {
            at,
            stats: parse_stats(json).unwrap(),
        }
    }

    /// The example one second later: users +500 requests (4 of them 4xx, 6 5xx), +2 KiB out;
    /// a new-to-both route `orders` with more traffic; upstream users +490 requests, 3 errors.
    fn one_second_later(first: &Sample) -> Sample {
        let mut s = first.stats.clone();
        s.uptime_s += 1.0;
        let users = &mut s.routes[0];
        users.requests.c2xx += 490;
        users.requests.c4xx += 4;
        users.requests.c5xx += 6;
        users.bytes_out += 2048;
        users.latency_us.p99 = 1234;
        let u = &mut s.upstreams[0];
        u.requests.c2xx += 490;
        u.errors.connect += 2;
        u.errors.timeout += 1;
        u.pool_hits += 45;
        u.pool_misses += 5;
        Sample {
            at: first.at + Duration::from_secs(1),
            stats: s,
        }
    }

    /// The cells of the line whose first cell is `name` in the table headed by `head`.
    fn row(frame: &str, head: &str, name: &str) -> Vec<String> {
        let table = &frame[frame.find(head).expect(head)..];
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name));
        line.expect(name)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    #[test]
    fn rates_over_one_second() {
        let first = sample(Instant::now(), EXAMPLE);
        let frame = render(Some(&first), &one_second_later(&first));
        assert_eq!(
            row(&frame, "ROUTE", "users"),
            // REQS, RPS, 4XX/S, 5XX/S, 5XX% (6 of 500), P50MS, P99MS, OUT/S
            ["users", "1462", "500.0", "4.0", "6.0", "1.20", "0.11", "1.23", "2.0KiB"]
        );
        assert_eq!(
            // REQS, RPS, ERR/S (connect + timeout), HIT% (45 of 50), OPEN, P99MS
            row(&frame, "UPSTREAM", "users"),
            ["users", "1440", "490.0", "3.0", "90.0", "3", "0.80"]
        );
        assert_eq!(
            row(&frame, "LIMIT", "rate_limit"),
            ["rate_limit", "per_client", "10", "2", "0.0", "0.0"]
        );
        let head: Vec<&str> = frame.lines().take(2).collect();
        assert_eq!(
            head,
            [
                "coregate up 13s  workers 2  generation 3  (rates over 1.00s)",
                "connections 4 open / 100 accepted  rps 500.0  access log dropped 0",
            ]
        );
    }

    #[test]
    fn first_frame_shows_totals_and_dashes() {
        let frame = render(None, &sample(Instant::now(), EXAMPLE));
        assert_eq!(
            row(&frame, "ROUTE", "users"),
            ["users", "962", "-", "-", "-", "0.21", "0.11", "0.90", "-"]
        );
        assert_eq!(
            row(&frame, "UPSTREAM", "users"),
            ["users", "950", "-", "-", "94.7", "3", "0.80"]
        );
        let head: Vec<&str> = frame.lines().take(2).collect();
        assert_eq!(
            head,
            [
                "coregate up 12s  workers 2  generation 3  (totals since start)",
                "connections 4 open / 100 accepted  rps -  access log dropped 0",
            ]
        );
    }

    #[test]
    fn without_uptime_the_local_clock_is_the_window() {
        let t0 = Instant::now();
        let a = r#"{"routes": [{"name": "a", "requests": {"2xx": 10}}]}"#;
        let b = r#"{"routes": [{"name": "a", "requests": {"2xx": 30}}]}"#;
        let frame = render(
            Some(&sample(t0, a)),
            &sample(t0 + Duration::from_millis(500), b),
        );
        assert_eq!(row(&frame, "ROUTE", "a")[..3], ["a", "30", "40.0"]);
    }

    #[test]
    fn restart_and_new_routes_have_no_rates() {
        let first = sample(Instant::now(), EXAMPLE);
        let mut later = one_second_later(&first);
        later.stats.routes.push(Route {
            name: "orders".into(),
            ..Route::default()
        });
        let frame = render(Some(&first), &later);
        assert_eq!(row(&frame, "ROUTE", "orders")[..3], ["orders", "0", "-"]);
        later.stats.uptime_s = 0.5; // restarted between the samples
        let frame = render(Some(&first), &later);
        assert_eq!(row(&frame, "ROUTE", "users")[..3], ["users", "1462", "-"]);
    }

    #[test]
    fn routes_sort_by_rps_then_name_and_columns_align() {
        let t0 = Instant::now();
        let doc = |a: u64, b: u64, c: u64| {
            format!(
                r#"{{"uptime_s": {}, "routes": [
                {{"name": "a", "requests": {{"2xx": {a}}}}},
                {{"name": "b-long-route-name", "requests": {{"2xx": {b}}}}},
                {{"name": "c", "requests": {{"2xx": {c}}}}}]}}"#,
                if a == 0 { 1.0 } else { 2.0 }
            )
        };
        let frame = render(
            Some(&sample(t0, &doc(0, 0, 0))),
            &sample(t0, &doc(5, 100000, 5)),
        );
        let table: Vec<&str> = frame.split("\n\n").nth(1).unwrap().lines().collect();
        let names: Vec<&str> = table.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(names, ["ROUTE", "b-long-route-name", "a", "c"]);
        // The last column is right-aligned, so aligned rows all have the same length.
        assert!(table.iter().all(|l| l.len() == table[0].len()), "{frame}");
        let rps_end = table[0].find("RPS").unwrap() + "RPS".len();
        assert!(table[1][..rps_end].ends_with(" 100000.0"), "{frame}");
        assert!(frame.ends_with("P99MS\n(none)\n"), "{frame}");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(Some(512.0)), "512B");
        assert_eq!(bytes(Some(12_000.0)), "11.7KiB");
        assert_eq!(bytes(Some(3.0 * 1024.0 * 1024.0)), "3.0MiB");
        assert_eq!(uptime(42.9), "42s");
        assert_eq!(uptime(187.0), "3m07s");
        assert_eq!(uptime(7_387.0), "2h03m07s");
        assert_eq!(uptime(352_980.0), "4d02h03m");
        assert_eq!(millis(1234, 1), "1.23");
        assert_eq!(millis(0, 0), "-");
    }
}
