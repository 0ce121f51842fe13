//! Question: what does path normalisation add to a request, for the common case (a path that is
//! already normal) and for the paths that need work (escapes, dot segments, repeated slashes)?
//!
//! Decision it backs: normalising every request before routing (`router::normalize`, issue
//! "Trustworthy edge") instead of only when a route asks for it. The target is that an already
//! normal path costs one scan and no copy: a few nanoseconds, noise next to the ~10-15 µs of CPU a
//! proxied request costs. The naive alternative it is compared with always writes the normal form
//! (copy + dot-segment pass), which is what the slow path costs.
//!
//! Run: `cargo bench --bench path_normalize -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use coregate::router::{normalize, PathPolicy};
use criterion::{criterion_group, criterion_main, Criterion};

const NORMAL: &[&str] = &[
    "/api/users/42",
    "/api/v2/orders/2026-12-05/items/123456/detail.json",
    "/",
    "/static/app.9f3c21ab.js",
];

const NEEDS_WORK: &[&str] = &[
    "/api//users/./42",
    "/api/v2/orders/%32%30%32%36/../x/%7euser",
    "/a/b/c/../../d//e/%2e/f",
    "/%61pi/users/%c3%a9",
];

fn bench(c: &mut Criterion) {
    let policy = PathPolicy::default();
    let mut out = Vec::with_capacity(256);
    let mut g = c.benchmark_group("normalize");
    g.bench_function("already_normal", |b| {
        b.iter(|| {
            for p in NORMAL {
                black_box(normalize(black_box(p.as_bytes()), &policy, &mut out).unwrap());
            }
        })
    });
    g.bench_function("needs_work", |b| {
        b.iter(|| {
            for p in NEEDS_WORK {
                black_box(normalize(black_box(p.as_bytes()), &policy, &mut out).unwrap());
            }
        })
    });
    // the naive alternative for normal paths: always copy and run the full pass ("/." + path
    // forces the slow path; the result is the same path)
    let forced: Vec<String> = NORMAL.iter().map(|p| format!("/.{p}")).collect();
    g.bench_function("always_rewrite_normal", |b| {
        b.iter(|| {
            for p in &forced {
                black_box(normalize(black_box(p.as_bytes()), &policy, &mut out).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
