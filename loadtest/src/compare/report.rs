//! `compare`'s results: one record per run, medians per (scenario, proxy), the printed tables, the
//! JSON document and the HTML tables appended to the stats report.
//!
//! The JSON document is compact: one line per run record and per median. A record keeps its scalar
//! fields and percentiles; its latency histogram is one string, HdrHistogram's V2 compressed
//! (deflate) encoding in standard base64 (`HISTOGRAM_ENCODING`), which any HdrHistogram library
//! decodes. The per-second timeline is left out.

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use serde::Serialize;

use crate::stats::hist;
use crate::stats::model::RunResult;

/// What a run record's `result.histogram` string holds.
pub const HISTOGRAM_ENCODING: &str = "hdrhistogram-v2-deflate-base64";

/// One load run against one proxy.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// "coregate", "nginx", "haproxy" or "relay".
    pub proxy: String,
    /// coregate's IO driver ("uring", "epoll"); null for the others.
    pub driver: Option<String>,
    /// Row label: "coregate-uring", "nginx", ...
    pub label: String,
    pub body_size: u64,
    pub connections: u64,
    /// "closed" or "open".
    pub mode: String,
    /// Open-loop rate (req/s); null for closed loop.
    pub rate: Option<u64>,
    /// 1-based.
    pub round: usize,
    /// The proxy's CPU time (utime+stime, all threads and processes) over the measured period,
    /// divided by the requests it served. Null when no request completed.
    pub cpu_us_per_req: Option<f64>,
    pub result: RunResult,
}

/// The scenario a record belongs to: (body size, connections, mode, rate).
pub type Scenario = (u64, u64, String, Option<u64>);

impl Record {
    pub fn scenario(&self) -> Scenario {
        (
            self.body_size,
            self.connections,
            self.mode.clone(),
            self.rate,
        )
    }
}

/// The recorded buckets (`RunResult::histogram`) as HdrHistogram's V2 deflate encoding, base64.
pub fn encode_histogram(buckets: &[(u64, u64)]) -> Result<String, String> {
    let h = hist::from_buckets(buckets);
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&h, &mut bytes)
        .map_err(|e| format!("cannot encode a histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Record {
    /// The record as one compact JSON line (no trailing newline): its fields and its result's,
    /// the histogram as `HISTOGRAM_ENCODING`, no timeline.
    pub fn json_line(&self) -> Result<String, String> {
        let mut v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let result = v
            .get_mut("result")
            .and_then(|r| r.as_object_mut())
            .ok_or("a run record without its result")?;
        result.remove("timeline");
        let encoded = encode_histogram(&self.result.histogram)?;
        result.insert("histogram".into(), serde_json::Value::String(encoded));
        serde_json::to_string(&v).map_err(|e| e.to_string())
    }
}

/// The JSON document: `head` (an object of scalar fields) with `histogram_encoding`, `runs` and
/// `medians` added, one line for the head and one per run and per median.
pub fn doc_json(
    head: &impl Serialize,
    runs: &[Record],
    medians: &[Summary],
) -> Result<String, String> {
    let mut out = serde_json::to_string(head).map_err(|e| e.to_string())?;
    if !(out.starts_with('{') && out.ends_with('}')) {
        return Err("the JSON head is not an object".into());
    }
    out.pop();
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str(&format!(
        "\"histogram_encoding\":\"{HISTOGRAM_ENCODING}\",\n\"runs\":["
    ));
    for (i, r) in runs.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&r.json_line()?);
    }
    out.push_str("\n],\"medians\":[");
    for (i, m) in medians.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&serde_json::to_string(m).map_err(|e| e.to_string())?);
    }
    out.push_str("\n]}\n");
    Ok(out)
}

/// Medians over the rounds of one proxy in one scenario, with ratios to nginx and the relay floor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub proxy: String,
    pub driver: Option<String>,
    pub label: String,
    pub body_size: u64,
    pub connections: u64,
    pub mode: String,
    pub rate: Option<u64>,
    pub rounds: usize,
    pub throughput_rps: f64,
    pub cpu_us_per_req: Option<f64>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Errors plus non-2xx responses, summed over the rounds.
    pub errors: u64,
    /// The round whose throughput is the median one (reported in the HTML).
    pub median_round: usize,
    pub throughput_vs_nginx: Option<f64>,
    pub cpu_vs_nginx: Option<f64>,
    pub cpu_vs_relay: Option<f64>,
}

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn bad_responses(r: &RunResult) -> u64 {
    let non_2xx: u64 = r
        .status
        .iter()
        .filter(|(code, _)| !(200..300).contains(*code))
        .map(|(_, n)| n)
        .sum();
    r.errors.total() + non_2xx
}

/// One summary per (scenario, proxy label), in first-seen order of scenarios and labels.
pub fn summarize(records: &[Record]) -> Vec<Summary> {
    let mut keys: Vec<(Scenario, String)> = Vec::new();
    for r in records {
        let k = (r.scenario(), r.label.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out: Vec<Summary> = keys
        .iter()
        .map(|(sc, label)| {
            let rs: Vec<&Record> = records
                .iter()
                .filter(|r| &r.scenario() == sc && &r.label == label)
                .collect();
            let f = |get: &dyn Fn(&Record) -> f64| median(rs.iter().map(|r| get(r)).collect());
            let mut by_rps: Vec<&&Record> = rs.iter().collect();
            by_rps.sort_by(|a, b| a.result.throughput_rps.total_cmp(&b.result.throughput_rps));
            Summary {
                proxy: rs[0].proxy.clone(),
                driver: rs[0].driver.clone(),
                label: label.clone(),
                body_size: sc.0,
                connections: sc.1,
                mode: sc.2.clone(),
                rate: sc.3,
                rounds: rs.len(),
                throughput_rps: f(&|r| r.result.throughput_rps).unwrap_or(0.0),
                cpu_us_per_req: median(rs.iter().filter_map(|r| r.cpu_us_per_req).collect()),
                p50_us: f(&|r| r.result.latency_us.p50 as f64).unwrap_or(0.0),
                p99_us: f(&|r| r.result.latency_us.p99 as f64).unwrap_or(0.0),
                p999_us: f(&|r| r.result.latency_us.p999 as f64).unwrap_or(0.0),
                errors: rs.iter().map(|r| bad_responses(&r.result)).sum(),
                median_round: by_rps[(by_rps.len() - 1) / 2].round,
                throughput_vs_nginx: None,
                cpu_vs_nginx: None,
                cpu_vs_relay: None,
            }
        })
        .collect();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let snapshot = out.clone();
    for s in &mut out {
        let find = |label: &str| {
            snapshot.iter().find(|o| {
                o.label == label
                    && (o.body_size, o.connections, &o.mode, o.rate)
                        == (s.body_size, s.connections, &s.mode, s.rate)
            })
        };
        if let Some(n) = find("nginx") {
            s.throughput_vs_nginx = ratio(Some(s.throughput_rps), Some(n.throughput_rps));
            s.cpu_vs_nginx = ratio(s.cpu_us_per_req, n.cpu_us_per_req);
        }
        if let Some(f) = find("relay") {
            s.cpu_vs_relay = ratio(s.cpu_us_per_req, f.cpu_us_per_req);
        }
    }
    out
}

/// The scenarios in order, each with its summaries.
pub fn by_scenario(sums: &[Summary]) -> Vec<(Scenario, Vec<&Summary>)> {
    let mut out: Vec<(Scenario, Vec<&Summary>)> = Vec::new();
    for s in sums {
        let k = (s.body_size, s.connections, s.mode.clone(), s.rate);
        match out.iter_mut().find(|(sc, _)| *sc == k) {
            Some((_, v)) => v.push(s),
            None => out.push((k, vec![s])),
        }
    }
    out
}

/// "60 B, 64 connections, closed loop".
pub fn scenario_title(sc: &Scenario) -> String {
    let mode = match sc.3 {
        Some(r) => format!("open loop at {r} req/s"),
        None => "closed loop".to_string(),
    };
    format!("body {} B, {} connections, {mode}", sc.0, sc.1)
}

const HEADERS: [&str; 10] = [
    "proxy",
    "req/s",
    "cpu µs/req",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "req/s vs nginx",
    "cpu vs nginx",
    "cpu vs relay",
];

fn cells(s: &Summary) -> [String; 10] {
    let x = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
    [
        s.label.clone(),
        format!("{:.0}", s.throughput_rps),
        s.cpu_us_per_req.map_or("-".into(), |v| format!("{v:.2}")),
        format!("{:.3}", s.p50_us / 1000.0),
        format!("{:.3}", s.p99_us / 1000.0),
        format!("{:.3}", s.p999_us / 1000.0),
        s.errors.to_string(),
        x(s.throughput_vs_nginx),
        x(s.cpu_vs_nginx),
        x(s.cpu_vs_relay),
    ]
}

/// One plain-text table: a title line, a header and one row per proxy.
pub fn table_text(sc: &Scenario, rows: &[&Summary]) -> String {
    let rounds = rows.iter().map(|s| s.rounds).max().unwrap_or(0);
    let body: Vec<[String; 10]> = rows.iter().map(|s| cells(s)).collect();
    let mut width = HEADERS.map(|h| h.chars().count());
    for r in &body {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if i == 0 {
                l.push_str(&format!("{c}{pad}"));
            } else {
                l.push_str(&format!("  {pad}{c}"));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let plural = if rounds == 1 { "" } else { "s" };
    let mut out = format!(
        "{} (medians of {rounds} round{plural})\n",
        scenario_title(sc)
    );
    out.push_str(&line(&HEADERS.map(String::from)));
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The tables as HTML (a section with one `<table>` per scenario).
pub fn tables_html(sums: &[Summary]) -> String {
    let mut out = String::from(
        "<section class=\"compare\">\n<h2>Side by side (medians)</h2>\n\
         <p>CPU µs/req: the proxy's own utime+stime (all threads and processes) over the measured \
         period divided by the requests served. Ratios are against nginx and the bare TCP relay \
         floor in the same scenario.</p>\n",
    );
    for (sc, rows) in by_scenario(sums) {
        out.push_str(&format!(
            "<h3>{}</h3>\n<table>\n<tr>",
            esc(&scenario_title(&sc))
        ));
        for h in HEADERS {
            out.push_str(&format!("<th>{}</th>", esc(h)));
        }
        out.push_str("</tr>\n");
        for s in rows {
            out.push_str("<tr>");
            for c in cells(s) {
                out.push_str(&format!("<td>{}</td>", esc(&c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
    out
}

/// Appends `extra` inside the document's `<body>` when there is one, else at the end.
pub fn append_html(doc: &str, extra: &str) -> String {
    match doc.rfind("</body>") {
        Some(i) => format!("{}{extra}{}", &doc[..i], &doc[i..]),
        None => format!("{doc}{extra}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(label: &str, round: usize, rps: f64, cpu: f64, p99: u64) -> Record {
        let mut result = RunResult {
            throughput_rps: rps,
            requests: rps as u64,
            ..Default::default()
        };
        result.latency_us.p50 = p99 / 10;
        result.latency_us.p99 = p99;
        result.latency_us.p999 = p99 * 2;
        result.status.insert(200, rps as u64);
        Record {
            proxy: label.split('-').next().unwrap().into(),
            driver: label.split_once('-').map(|(_, d)| d.into()),
            label: label.into(),
            body_size: 60,
            connections: 64,
            mode: "closed".into(),
            rate: None,
            round,
            cpu_us_per_req: Some(cpu),
            result,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn summaries_and_ratios() {
        let mut rs = vec![
            rec("coregate-uring", 1, 100.0, 20.0, 1000),
            rec("nginx", 1, 50.0, 40.0, 3000),
            rec("relay", 1, 200.0, 10.0, 500),
            rec("coregate-uring", 2, 300.0, 30.0, 2000),
            rec("nginx", 2, 100.0, 40.0, 3000),
            rec("relay", 2, 200.0, 10.0, 500),
            rec("coregate-uring", 3, 200.0, 25.0, 1500),
            rec("nginx", 3, 80.0, 50.0, 9000),
            rec("relay", 3, 200.0, 10.0, 500),
        ];
        rs[7].result.status.insert(502, 4);
        rs[7].result.errors.reset = 1;
        let s = summarize(&rs);
        assert_eq!(s.len(), 3);
        let cg = &s[0];
        assert_eq!(cg.label, "coregate-uring");
        assert_eq!(cg.driver.as_deref(), Some("uring"));
        assert_eq!((cg.throughput_rps, cg.cpu_us_per_req), (200.0, Some(25.0)));
        assert_eq!((cg.p50_us, cg.p99_us, cg.p999_us), (150.0, 1500.0, 3000.0));
        assert_eq!(cg.median_round, 3);
        assert_eq!(cg.throughput_vs_nginx, Some(2.5));
        assert_eq!(cg.cpu_vs_nginx, Some(0.625));
        assert_eq!(cg.cpu_vs_relay, Some(2.5));
        assert_eq!(s[1].errors, 5);
        assert_eq!(s[1].throughput_vs_nginx, Some(1.0));
        assert_eq!(s[2].cpu_vs_relay, Some(1.0));

        let groups = by_scenario(&s);
        assert_eq!(groups.len(), 1);
        let t = table_text(&groups[0].0, &groups[0].1);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "body 60 B, 64 connections, closed loop (medians of 3 rounds)"
        );
        assert!(lines[1].starts_with("proxy"));
        assert!(lines[2].starts_with("coregate-uring"));
        assert!(lines[2].contains("200") && lines[2].contains("25.00"));
        assert!(lines[2].contains("2.50x") && lines[2].contains("0.62x"));
        assert!(lines[3].starts_with("nginx"));
        // Columns line up: every row is as wide as the header, give or take trailing blanks.
        let w = lines[1].chars().count();
        assert!(lines[2..].iter().all(|l| l.chars().count() == w), "{t}");

        let html = tables_html(&s);
        assert!(html.contains("<td>coregate-uring</td>"));
        assert!(html.contains("<h3>body 60 B, 64 connections, closed loop</h3>"));
        assert_eq!(
            append_html("<html><body>x</body></html>", "T"),
            "<html><body>xT</body></html>"
        );
        assert_eq!(append_html("", "T"), "T");
    }

    #[test]
    fn encoded_histogram_decodes_to_the_same_percentiles() {
        let mut h = hist::new_hist();
        // A spread over three orders of magnitude, so buckets wider than 1 µs are involved.
        for i in 0..20_000u64 {
            hist::record(&mut h, 300 + (i * i) % 7_919 + (i % 97) * 1_000);
        }
        hist::record(&mut h, 2_500_000);
        let mut rec = rec("coregate-uring", 1, 100.0, 20.0, 1000);
        rec.result.histogram = hist::buckets(&h);
        rec.result.latency_us = hist::percentiles(&h);
        rec.result.timeline = vec![Default::default(); 3];

        let line = rec.json_line().unwrap();
        assert!(!line.contains('\n') && !line.contains("timeline"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let text = v["result"]["histogram"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let back: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(hist::percentiles(&back), hist::percentiles(&h));
        assert_eq!(hist::percentiles(&back), rec.result.latency_us);
        for q in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q), "q {q}");
        }
        // The stored percentiles come along as they were.
        assert_eq!(v["result"]["latency_us"]["p99"], h.value_at_quantile(0.99));
        // An empty histogram encodes too.
        let empty = encode_histogram(&[]).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(empty)
            .unwrap();
        let back: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn document_is_one_line_per_record() {
        #[derive(Serialize)]
        struct Head {
            rounds: usize,
        }
        let rs = vec![
            rec("coregate-uring", 1, 100.0, 20.0, 1000),
            rec("nginx", 1, 50.0, 40.0, 3000),
        ];
        let sums = summarize(&rs);
        let text = doc_json(&Head { rounds: 1 }, &rs, &sums).unwrap();
        // Head, `"runs":[`, 2 runs, `],"medians":[`, 2 medians, `]}`.
        assert_eq!(text.lines().count(), 8, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["rounds"], 1);
        assert_eq!(v["histogram_encoding"], HISTOGRAM_ENCODING);
        assert_eq!(v["runs"].as_array().unwrap().len(), 2);
        assert_eq!(v["runs"][1]["label"], "nginx");
        assert_eq!(v["runs"][0]["result"]["requests"], 100);
        assert!(v["runs"][0]["result"]["histogram"].is_string());
        assert_eq!(v["medians"][0]["throughput_vs_nginx"], 2.0);
        let empty = doc_json(&Head { rounds: 1 }, &[], &[]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&empty).unwrap();
        assert!(v["runs"].as_array().unwrap().is_empty());
    }

    #[test]
    fn no_nginx_or_relay_means_no_ratio() {
        let s = summarize(&[rec("coregate-uring", 1, 100.0, 20.0, 1000)]);
        assert_eq!(s[0].throughput_vs_nginx, None);
        assert_eq!(s[0].cpu_vs_relay, None);
        let t = table_text(&by_scenario(&s)[0].0, &by_scenario(&s)[0].1);
        assert!(t.lines().nth(2).unwrap().ends_with("-"));
    }
}
