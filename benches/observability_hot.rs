//! What observability costs a worker, per request and per scrape:
//! - `record_request`: what `proxy::finish` and the exchange add to every proxied request —
//!   route and upstream status counters, body byte counters, three latency histograms (route
//!   total, route upstream, upstream);
//! - `span_start`: W3C trace context — parse a `traceparent`, draw a span id, format the one sent
//!   upstream (and starting a fresh trace when there is none);
//! - `snapshot/R routes`: the stall a worker takes when `/metrics` is scraped — copying its whole
//!   registry (R routes, R/2 upstreams, every histogram populated) into a `WorkerSnap`;
//! - `merge_render/W workers`: the admin thread's side (not a worker's): merging W snapshots of
//!   16 routes and rendering the Prometheus text;
//! - `access_log_line`: `LogBuf::record` of a typical line (formatting into the worker's buffer,
//!   hand-offs to the writer thread amortised; the writer appends to /dev/null on another core).
//!
//! Run: `cargo bench --bench observability_hot`.

use std::hint::black_box;
use std::time::Duration;

// the gateway's allocator, so snapshot copies cost what they cost in the gateway
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use coregate::metrics::snapshot::{merge, Extra};
use coregate::metrics::{prom, WorkerStats};
use coregate::trace::{Span, SpanIds};
use criterion::{criterion_group, criterion_main, Criterion};

/// A registry with `routes` routes and `routes / 2` upstreams, each histogram holding a spread of
/// 100k latencies (so snapshots copy realistically populated histograms).
fn populated(routes: usize) -> WorkerStats {
    let s = WorkerStats::default();
    for r in 0..routes {
        let rs = s.route(&format!("route-{r}"));
        let us = s.upstream(&format!("upstream-{}", r / 2));
        for i in 0..100_000u64 {
            let v = 50 + (i * 7919) % 200_000;
            rs.total.record_us(v);
            rs.upstream.record_us(v / 2);
            us.latency.record_us(v / 2);
            rs.record(200);
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("observability");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);

    let stats = populated(4);
    let route = stats.route("route-1");
    let up = stats.upstream("upstream-0");
    let mut n = 0u64;
    g.bench_function("record_request", |b| {
        b.iter(|| {
            n = n.wrapping_add(37);
            let total = 120 + (n & 1023);
            route.record(black_box(200));
            route.bytes_in.add(black_box(0));
            route.bytes_out.add(black_box(512));
            route.total.record_us(total);
            route.upstream.record_us(total - 20);
            up.record(200);
            up.latency.record_us(total - 20);
        })
    });

    let mut ids = SpanIds::default();
    let tp: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    g.bench_function("span_start/continued", |b| {
        b.iter(|| {
            let s = Span::start(Some(black_box(tp)), &mut ids, None);
            black_box(s.traceparent())
        })
    });
    g.bench_function("span_start/new_trace", |b| {
        b.iter(|| {
            let s = Span::start(black_box(None), &mut ids, None);
            black_box(s.traceparent())
        })
    });

    for routes in [4usize, 16, 64] {
        let s = populated(routes);
        g.bench_function(format!("snapshot/{routes} routes"), |b| {
            b.iter(|| black_box(s.snapshot(0)))
        });
    }

    let one = populated(16);
    for workers in [2usize, 8] {
        let snaps: Vec<_> = (0..workers).map(|w| one.snapshot(w)).collect();
        g.bench_function(format!("merge_render/{workers} workers"), |b| {
            b.iter(|| {
                let m = merge(snaps.clone(), Extra::default());
                black_box(prom::render(&m).len())
            })
        });
    }
    let cfg = coregate::config::parse_str(
        "[access_log]\nsink = \"file\"\npath = \"/dev/null\"\n\n[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"u\"\n",
        "bench.toml",
    )
    .unwrap();
    let log = coregate::accesslog::AccessLog::start(&cfg.access_log).unwrap();
    let buf = coregate::accesslog::LogBuf::new(log.clone());
    let mut t = 1_795_000_000_000_000_000u64;
    let record = |t: u64| coregate::accesslog::Record {
        unix_ns: t,
        request_id: b"9f3c21ab-00-000000000001",
        trace_id: b"4bf92f3577b34da6a3ce929d0e0e4736",
        span_id: b"5e0c6a1f9b2d4c77",
        parent_span_id: b"",
        client_ip: "10.0.0.7",
        method: b"GET",
        path: b"/api/users/42?expand=orders",
        route: "users",
        upstream: Some("10.0.1.5:9001"),
        status: 200,
        bytes_in: 0,
        bytes_out: 512,
        total_us: 345,
        upstream_us: Some(300),
        subject: Some("acme"),
        ratelimit: "allowed",
        waf: "",
        waf_match: "",
    };
    g.bench_function("access_log_line", |b| {
        b.iter(|| {
            t += 1_000_017;
            buf.record(&record(t))
        })
    });
    // one OTLP span per request: encoding into the worker's buffer (the exporter posts to a
    // closed port, so batches are dropped; what is measured is the worker's share)
    let tcfg = coregate::config::parse_str(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:9/v1/traces\"\nbatch = 4096\n\n[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"u\"\n",
        "bench.toml",
    )
    .unwrap();
    let exporter = coregate::otlp::Exporter::start(tcfg.tracing.as_ref()).unwrap();
    let spans = coregate::otlp::SpanBuf::new(exporter.clone());
    g.bench_function("otlp_span", |b| {
        b.iter(|| {
            t += 1_000_017;
            spans.record(&record(t), *b"01")
        })
    });
    drop(spans);
    exporter.close(Duration::from_secs(1));
    buf.flush();
    log.close(Duration::from_secs(5));
    println!(
        "access log: {} lines written, {} dropped (the writer shares 2 cores with the bench)",
        log.lines_written(),
        log.lines_dropped()
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
