//! Merging per-thread latency histograms (`stats::hist::merge`) must equal one histogram fed every
//! value: the same count at every recorded value and the same percentiles, for random values and
//! several ways of splitting them across "threads".

use coregate_load::stats::hist;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Log-uniform-ish latency in 1 µs ..= 60 s, plus some out-of-range values that clamp.
    fn latency(&mut self) -> u64 {
        let decade = self.next() % 9; // up to 1e8 µs: exercises clamping at 60 s
        let scale = 10u64.pow(decade as u32);
        1 + self.next() % (scale * 9)
    }
}

#[test]
fn merge_equals_single_histogram() {
    for (seed, parts) in [(1u64, 1usize), (7, 2), (42, 3), (99, 8), (12345, 16)] {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let n = 20_000 + (rng.next() % 30_000) as usize;
        let values: Vec<u64> = (0..n).map(|_| rng.latency()).collect();

        let mut single = hist::new_hist();
        let mut split: Vec<_> = (0..parts).map(|_| hist::new_hist()).collect();
        for &v in &values {
            hist::record(&mut single, v);
            // Uneven split: random part per value (some parts may get few).
            let p = (rng.next() % parts as u64) as usize;
            hist::record(&mut split[p], v);
        }
        let merged = hist::merge(&split);

        assert_eq!(merged.len(), values.len() as u64, "seed {seed}");
        assert_eq!(
            hist::buckets(&merged),
            hist::buckets(&single),
            "seed {seed}: bucket counts differ"
        );
        for (v, c) in hist::buckets(&single) {
            assert_eq!(merged.count_at(v), c, "seed {seed}: count at {v}");
        }
        assert_eq!(
            hist::percentiles(&merged),
            hist::percentiles(&single),
            "seed {seed}"
        );
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                single.value_at_quantile(q),
                "seed {seed} q {q}"
            );
            let b = hist::buckets(&merged);
            assert_eq!(
                hist::quantile_of_buckets(&b, q),
                hist::quantile_of_buckets(&hist::buckets(&single), q)
            );
        }
        assert_eq!(merged.max(), single.max());
        assert!(
            merged.max() <= hist::MAX_US + hist::MAX_US / 1000,
            "clamped to 60 s"
        );
    }
}

#[test]
fn merge_of_nothing_is_empty() {
    let m = hist::merge(&[]);
    assert!(m.is_empty());
    assert_eq!(hist::percentiles(&m), Default::default());
    assert!(hist::buckets(&m).is_empty());
    let e = hist::merge(&[hist::new_hist(), hist::new_hist()]);
    assert!(e.is_empty());
}

#[test]
fn buckets_round_trip() {
    let mut rng = Rng(5);
    let mut h = hist::new_hist();
    for _ in 0..10_000 {
        hist::record(&mut h, rng.latency());
    }
    let b = hist::buckets(&h);
    assert!(b.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
    assert!(b.iter().all(|x| x.1 > 0), "non-zero counts only");
    let back = hist::from_buckets(&b);
    assert_eq!(hist::buckets(&back), b);
    assert_eq!(hist::percentiles(&back), hist::percentiles(&h));
}
