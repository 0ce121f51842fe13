//! What the resilience checks add to a request on the hot path (issue 15 goal: at most 50 ns):
//! - `breaker_closed`: `Breaker::admit` + `Breaker::record` of a success on a closed breaker with a
//!   10-bucket time window (what every call to an upstream with `circuit_breaker` pays), with
//!   the one clock read it needs;
//! - `breaker_open`: `Breaker::admit` refusing (what an open breaker costs before the 503);
//! - `bulkhead`: `Bulkheads::enter` and dropping the permit on a `max_concurrent` route (one
//!   atomic add and one subtract on a counter the workers share).
//!
//! Run: `cargo bench --bench resilience_hot`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use coregate::config::parse_str;
use coregate::proxy::bulkhead::{Bulkheads, Who};
use coregate::upstream::breaker::{Breaker, BreakerConfig, Outcome, WindowKind};
use criterion::{criterion_group, criterion_main, Criterion};

fn cfg() -> BreakerConfig {
    BreakerConfig {
        failure_rate: 0.5,
        slow_call_rate: 2.0,
        slow_call_duration: Duration::from_secs(60),
        min_calls: 20,
        window: WindowKind::Time(Duration::from_secs(10)),
        open_for: Duration::from_secs(5),
        open_for_max: Duration::from_secs(5),
        half_open_calls: 3,
        failure_statuses: vec![(500, 500), (502, 504)],
        failure_grpc_statuses: vec![],
        cluster: false,
    }
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut closed = Breaker::new(cfg(), now);
    c.bench_function("breaker_closed", |b| {
        b.iter(|| {
            black_box(closed.admit(Instant::now));
            // the one clock read: the call's end, which the gateway reads anyway for its latency
            let t = Instant::now();
            let o = closed.outcome(black_box(200), None, Duration::from_micros(300));
            black_box(closed.record(t, o, false));
        })
    });
    // open for an hour: the bench must not see it turn half-open
    let mut open = Breaker::new(
        BreakerConfig {
            open_for: Duration::from_secs(3600),
            open_for_max: Duration::from_secs(3600),
            ..cfg()
        },
        now,
    );
    let fail = Outcome {
        failed: true,
        slow: false,
    };
    for _ in 0..20 {
        open.record(now, fail, false);
    }
    c.bench_function("breaker_open", |b| {
        b.iter(|| black_box(open.admit(Instant::now)))
    });
    let config = parse_str(
        "[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"u\"\nmax_concurrent = 100\n",
        "bench.toml",
    )
    .expect("bench config");
    let heads = Bulkheads::new(&config, None);
    // a free slot is taken on the first poll (no runtime needed): permit taken and given back
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let who = Who {
        tenant: None,
        consumer: None,
        client_ip: "10.0.0.1",
    };
    c.bench_function("bulkhead", |b| {
        b.iter(|| {
            let mut f = std::pin::pin!(heads.enter(black_box(0), &who));
            let p = std::future::Future::poll(f.as_mut(), &mut cx);
            black_box(&p);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
