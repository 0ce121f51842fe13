//! The BFF layer's pure costs, as the pipeline calls them:
//! - `fields_keep/N`: `response_fields` (`transform::fields::keep`) over a JSON list of user
//!   objects of about N KiB, keeping three members of each (the mobile-BFF case); reported per
//!   KiB by dividing by N;
//! - `body_transform/N`: a `response_body` transform (unwrap, drop two members, rename one,
//!   wrap) over the same documents;
//! - `merge4`: the aggregate target's merge of four 1 KiB part documents;
//! - `store_hit`: one cache lookup that hits (key of a typical request, one Vary header);
//! - `store_fill`: one insert of a 1 KiB response into a warm store (eviction included).
//!
//! Run: `cargo bench --bench bff_cost`.

use std::hint::black_box;
use std::time::Instant;

use coregate::cache::freshness::Freshness;
use coregate::cache::store::Store;
use coregate::transform::fields::{keep, FieldSet};
use coregate::transform::json::BodyTransform;
use coregate::transform::merge::{merge, Outcome, Part, Placement};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A JSON list of user objects, about `kib` KiB.
fn users(kib: usize) -> Vec<u8> {
    let item = |i: usize| {
        format!(
            r#"{{"id":{i},"name":"User number {i}","email":"user{i}@example.com","avatar":{{"small":"https://cdn.example.com/a/{i}/s.png","big":"https://cdn.example.com/a/{i}/b.png"}},"roles":["reader","writer"],"created":"2026-01-02T03:04:05Z","internal":{{"shard":7,"flags":[1,2,3]}}}}"#
        )
    };
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < kib * 1024 {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item(i));
        i += 1;
    }
    out.push(']');
    out.into_bytes()
}

fn fresh(now: Instant) -> Freshness {
    Freshness {
        stored_at: now,
        initial_age: 0,
        lifetime: 3600,
        stale_while_revalidate: 0,
        stale_if_error: 0,
        must_revalidate: false,
    }
}

fn bench(c: &mut Criterion) {
    let mut set = FieldSet::default();
    for p in ["id", "name", "avatar.small"] {
        set.add(p).unwrap();
    }
    let mut t = BodyTransform::default();
    t.set_unwrap("result").unwrap();
    t.set_drop(&["internal", "email"]).unwrap();
    t.set_rename(&[("created", "created_at")]).unwrap();
    t.set_wrap("data").unwrap();
    let mut g = c.benchmark_group("fields_keep");
    for kib in [1, 16, 64] {
        let doc = users(kib);
        g.throughput(Throughput::Bytes(doc.len() as u64));
        let mut out = Vec::with_capacity(doc.len());
        g.bench_function(format!("{kib}KiB"), |b| {
            b.iter(|| {
                out.clear();
                keep(black_box(&doc), &set, &mut out).unwrap();
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("body_transform");
    for kib in [1, 16, 64] {
        let doc = [&b"{\"result\":"[..], &users(kib), b"}"].concat();
        g.throughput(Throughput::Bytes(doc.len() as u64));
        let mut out = Vec::with_capacity(doc.len());
        g.bench_function(format!("{kib}KiB"), |b| {
            b.iter(|| {
                out.clear();
                t.apply(black_box(&doc), &mut out).unwrap();
            })
        });
    }
    g.finish();

    let doc = users(1);
    let names = ["profile", "orders", "recs", "settings"];
    let places: Vec<Placement> = names
        .iter()
        .map(|n| Placement::Key(n.to_string()))
        .collect();
    let mut out = Vec::with_capacity(8 * 1024);
    c.bench_function("merge4", |b| {
        b.iter(|| {
            let parts: Vec<Part> = names
                .iter()
                .zip(&places)
                .map(|(n, p)| Part {
                    name: n,
                    placement: p,
                    outcome: Outcome::Json(black_box(&doc)),
                })
                .collect();
            out.clear();
            black_box(merge(&parts, &mut out));
        })
    });

    let now = Instant::now();
    let mut store: Store<Vec<u8>> = Store::new(64 << 20);
    let key = |i: usize| format!("/api/products/popular\0popular\0api.example.com\0\x02page={i}");
    for i in 0..10_000 {
        let vary = vec![(
            b"accept-encoding".to_vec().into_boxed_slice(),
            Some(b"gzip".to_vec().into_boxed_slice()),
        )];
        store.insert(
            key(i).as_bytes(),
            vary,
            Vec::new(),
            fresh(now),
            1024,
            vec![0u8; 1024],
            now,
        );
    }
    let hit = key(42);
    let header = |_: &[u8]| Some(&b"gzip"[..]);
    c.bench_function("store_hit", |b| {
        b.iter(|| {
            black_box(
                store
                    .lookup(black_box(hit.as_bytes()), now, &header)
                    .is_some(),
            )
        })
    });
    let mut small: Store<Vec<u8>> = Store::new(2 << 20);
    let mut i = 0usize;
    c.bench_function("store_fill", |b| {
        b.iter(|| {
            i += 1;
            let k = key(i % 50_000);
            small.insert(
                k.as_bytes(),
                Vec::new(),
                Vec::new(),
                fresh(now),
                1024,
                vec![0u8; 1024],
                now,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
