#!/usr/bin/env python3
"""Compact Markdown summary of a `coregate-load compare --json` document.

Reads either format the compare harness has written:
  - old: pretty-printed, every run's `result.histogram` as [value_us, count] bucket arrays and a
    per-second `result.timeline`;
  - new: one line per run, `result.histogram` as one string (HdrHistogram V2 deflate, base64;
    see the document's `histogram_encoding`), no timeline.

Writes a Markdown table of the medians (the document's `medians`: scenario, proxy, req/s, CPU
us/req, p50/p99/p99.9 and the ratios to nginx and to the relay floor) and one line per run with its
percentiles. Histograms and timelines are not carried over. Percentiles come from each run's
`result.latency_us`; when that is missing, they are derived from old-format bucket arrays.

Usage: tools/results_summary.py COMPARE.json [-o OUT.md] [--title TEXT] [--note TEXT]
(stdout when -o is not given). Python 3 standard library only.
"""

import argparse
import json
import math
import os
import sys


def fmt_num(v, digits=0, missing="-"):
    if v is None:
        return missing
    return f"{v:.{digits}f}"


def fmt_ms(us):
    return "-" if us is None else f"{us / 1000:.3f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def fmt_bytes(n):
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def scenario(d):
    """'60 B, 64 conns, closed' / '4 KiB, 1000 conns, open 5000/s'."""
    mode = "closed" if d.get("rate") is None else f"open {d['rate']}/s"
    return f"{fmt_bytes(d['body_size'])}, {d['connections']} conns, {mode}"


def scenario_key(d):
    return (d["body_size"], d["connections"], d["mode"], d.get("rate"))


def bucket_quantile(buckets, q):
    """Smallest bucket value whose cumulative count reaches q of the total (as the generator)."""
    total = sum(n for _, n in buckets)
    if total == 0:
        return 0
    want = max(1, math.ceil(q * total))
    seen = 0
    for v, n in buckets:
        seen += n
        if seen >= want:
            return v
    return buckets[-1][0]


def latency(result):
    """The run's percentiles in us: latency_us, else derived from old-format bucket arrays."""
    lat = result.get("latency_us")
    if lat:
        return lat
    hist = result.get("histogram")
    if isinstance(hist, list) and hist:
        b = [(int(v), int(n)) for v, n in hist]
        return {
            "p50": bucket_quantile(b, 0.5),
            "p90": bucket_quantile(b, 0.9),
            "p99": bucket_quantile(b, 0.99),
            "p999": bucket_quantile(b, 0.999),
            "max": b[-1][0],
        }
    return {}


def bad_responses(result):
    errors = sum((result.get("errors") or {}).values())
    non_2xx = sum(n for code, n in (result.get("status") or {}).items() if not 200 <= int(code) < 300)
    return errors + non_2xx


def histogram_format(doc):
    for r in doc.get("runs", []):
        h = r.get("result", {}).get("histogram")
        if isinstance(h, list):
            return "bucket arrays (old format)"
        if isinstance(h, str):
            return doc.get("histogram_encoding", "encoded string")
    return "none"


def md_table(headers, rows, right_from=2):
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def text_table(headers, rows, left=2):
    width = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, width))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


def summarize(doc, source, title=None, note=None):
    runs = doc.get("runs", [])
    medians = doc.get("medians", [])
    out = [f"# {title or 'coregate-load compare: ' + source}", ""]
    out.append(
        f"Summary of `{source}` (`coregate-load compare --json`) written by "
        "`tools/results_summary.py`; the runs' latency histograms and per-second timelines are "
        f"not kept (source histograms: {histogram_format(doc)})."
    )
    out.append("")
    if note:
        out += [note, ""]
    skipped = doc.get("skipped") or []
    skipped_txt = ", ".join(f"{s['proxy']} ({s['reason']})" for s in skipped) or "none"
    out.append(
        f"Setup: proxy CPU {doc.get('proxy_cpu')}, backend CPUs {doc.get('backend_cpus')}, load "
        f"CPUs {doc.get('load_cpus')}; {doc.get('rounds')} interleaved round(s) of "
        f"{doc.get('duration')} after a {doc.get('warmup')} warm-up; {len(runs)} runs; "
        f"skipped: {skipped_txt}."
    )
    out += ["", "## Medians over the rounds", ""]
    out.append(
        "Latencies in ms. CPU: the proxy's own utime+stime per request. Ratios against nginx and "
        "the bare TCP relay floor in the same scenario."
    )
    out.append("")
    rows = []
    for m in medians:
        rows.append(
            [
                scenario(m),
                m["label"],
                fmt_num(m.get("throughput_rps")),
                fmt_num(m.get("cpu_us_per_req"), 2),
                fmt_ms(m.get("p50_us")),
                fmt_ms(m.get("p99_us")),
                fmt_ms(m.get("p999_us")),
                str(m.get("errors", 0)),
                fmt_ratio(m.get("throughput_vs_nginx")),
                fmt_ratio(m.get("cpu_vs_nginx")),
                fmt_ratio(m.get("cpu_vs_relay")),
            ]
        )
    headers = [
        "scenario",
        "proxy",
        "req/s",
        "CPU µs/req",
        "p50",
        "p99",
        "p99.9",
        "errors",
        "req/s vs nginx",
        "CPU vs nginx",
        "CPU vs relay",
    ]
    out.append(md_table(headers, rows))
    out += ["", "## Runs", ""]
    out.append(
        "One line per run, in run order within each scenario. Latencies in ms (p50, p90, p99, "
        "p99.9, max); errs: transport errors plus non-2xx responses."
    )
    out.append("")
    by_scenario = {}
    for r in runs:
        by_scenario.setdefault(scenario_key(r), []).append(r)
    headers = ["proxy", "round", "req/s", "CPU µs", "p50", "p90", "p99", "p99.9", "max", "errs"]
    for key, rs in by_scenario.items():
        out.append(f"{scenario(rs[0])}:")
        out.append("")
        rows = []
        for r in rs:
            res = r.get("result", {})
            lat = latency(res)
            rows.append(
                [
                    r["label"],
                    str(r["round"]),
                    fmt_num(res.get("throughput_rps")),
                    fmt_num(r.get("cpu_us_per_req"), 2),
                    fmt_ms(lat.get("p50")),
                    fmt_ms(lat.get("p90")),
                    fmt_ms(lat.get("p99")),
                    fmt_ms(lat.get("p999")),
                    fmt_ms(lat.get("max")),
                    str(bad_responses(res)),
                ]
            )
        out.append("```")
        out.append(text_table(headers, rows))
        out.append("```")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="a `coregate-load compare --json` document (old or new format)")
    ap.add_argument("-o", "--out", help="write the Markdown here (default: stdout)")
    ap.add_argument("--title", help="first heading (default: from the file name)")
    ap.add_argument("--note", help="a paragraph to add under the heading (how the run was made)")
    a = ap.parse_args(argv)
    with open(a.json, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or "runs" not in doc or "medians" not in doc:
        print(f"{a.json}: not a compare document (no runs/medians)", file=sys.stderr)
        return 2
    md = summarize(doc, os.path.basename(a.json), a.title, a.note)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(md)
    else:
        sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
