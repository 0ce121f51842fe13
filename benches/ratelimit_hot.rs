//! The rate limiter's hot path against the two obvious alternatives, at 1 and N threads sharing
//! one budget:
//! - `coregate`: `LimitsRt::admit` for a gateway-scoped `client_ip` limit (key text, foldhash
//!   fingerprint, local lease hit, both RateLimit header items formatted), one `LimitsRt` per
//!   thread over one shared `LimitsShared`, exactly as the gateway's workers use it;
//! - `shared_atomic`: the same GCRA bucket as one shared `AtomicU64`, a CAS on every request;
//! - `mutex`: a classic `Mutex<(tokens, last refill)>` bucket.
//!
//! Time per check per thread (lower is better; contention shows as growth with threads).
//! Run: `cargo bench --bench ratelimit_hot`.

// The Mutex bucket is the baseline being compared against; the gateway itself never takes one.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use coregate::config::parse_str;
use coregate::metrics::WorkerStats;
use coregate::ratelimit::gcra::{self, Shape};
use coregate::ratelimit::key::KeyInput;
use coregate::ratelimit::{LimitsRt, LimitsShared, Output};
use coregate::router::HeaderSource;
use criterion::{criterion_group, criterion_main, Criterion};

const CONFIG: &str = r#"
[[upstream]]
name = "u"
endpoints = ["127.0.0.1:9"]
[[rate_limit]]
name = "per_ip"
key = "client_ip"
rate = "1000000000/s"
burst = 1000000000
[[route]]
upstream = "u"
rate_limits = ["per_ip"]
"#;

struct NoHeaders;
impl HeaderSource for NoHeaders {
    fn header(&self, _: &[u8]) -> Option<&[u8]> {
        None
    }
}

/// Polls a future that never waits (gateway-scoped limits do not).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("gateway-scoped admit awaited"),
    }
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64 + 1_000_000_000
}

/// Runs `per_thread(iters)` on `threads` threads at once; the wall time of the slowest.
fn concurrently(
    threads: usize,
    iters: u64,
    per_thread: Arc<dyn Fn(u64) + Send + Sync>,
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (b, f) = (barrier.clone(), per_thread.clone());
            std::thread::spawn(move || {
                b.wait();
                let t = Instant::now();
                f(iters);
                t.elapsed()
            })
        })
        .collect();
    barrier.wait();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let cfg = Arc::new(parse_str(CONFIG, "bench.toml").expect("bench config"));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut counts = vec![1, 2];
    if cores > 2 {
        counts.push(cores.min(8));
    }
    let mut g = c.benchmark_group("limiter");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for &n in &counts {
        let shared = LimitsShared::new(&cfg, n);
        let cfg2 = cfg.clone();
        let limiter = Arc::new(move |iters: u64| {
            let stats = WorkerStats::default();
            let rt = LimitsRt::new(shared.clone(), stats.limit_metrics(&["per_ip"], &[]));
            let route = &cfg2.routes[0];
            let mut out = Output::default();
            let input = KeyInput {
                headers: &NoHeaders,
                client_ip: b"10.1.2.3",
                identity: None,
                route: &route.name,
            };
            for _ in 0..iters {
                let r = ready(rt.admit(route, &input, &mut out));
                black_box((r.is_ok(), out.headers.len()));
            }
        });
        g.bench_function(format!("coregate/{n}_threads"), |b| {
            b.iter_custom(|iters| concurrently(n, iters, limiter.clone()))
        });

        let shape = Shape::new(1_000_000_000, 1_000_000_000, 1_000_000_000, 1.0);
        let tat = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let atomic = Arc::new(move |iters: u64| {
            for _ in 0..iters {
                let now = now_ns(epoch);
                let mut cur = tat.load(Ordering::Acquire);
                loop {
                    let t = gcra::take(&shape, cur, now, 1, 1);
                    if t.granted == 0 {
                        break;
                    }
                    match tat.compare_exchange_weak(cur, t.tat, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => break,
                        Err(c) => cur = c,
                    }
                }
                black_box(cur);
            }
        });
        g.bench_function(format!("shared_atomic/{n}_threads"), |b| {
            b.iter_custom(|iters| concurrently(n, iters, atomic.clone()))
        });

        let bucket = Arc::new(Mutex::new((1e9_f64, Instant::now())));
        let mutex = Arc::new(move |iters: u64| {
            for _ in 0..iters {
                let mut b = bucket.lock().unwrap();
                let now = Instant::now();
                let refill = now.duration_since(b.1).as_secs_f64() * 1e9;
                b.0 = (b.0 + refill).min(1e9);
                b.1 = now;
                let ok = b.0 >= 1.0;
                if ok {
                    b.0 -= 1.0;
                }
                black_box(ok);
            }
        });
        g.bench_function(format!("mutex/{n}_threads"), |b| {
            b.iter_custom(|iters| concurrently(n, iters, mutex.clone()))
        });
    }
    g.finish();
}

criterion_group!(limiter, benches);
criterion_main!(limiter);
