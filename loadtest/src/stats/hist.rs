//! Latency histograms: one `Histogram<u64>` per load thread (µs, 1..=60 s, 3 significant figures),
//! merged once at the end, then summarised into `model::Percentiles` and the recorded buckets that
//! `RunResult::histogram` stores (and the HTML percentile plot is drawn from).

use hdrhistogram::Histogram;

use super::model::Percentiles;

/// Highest trackable latency: 60 s in µs.
pub const MAX_US: u64 = 60_000_000;

/// A fresh histogram with the bounds every part of the generator uses.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

/// Record one latency in µs, clamped into the trackable range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// Fold per-thread histograms into one. All parts share the same bounds, so adding cannot fail;
/// a part that somehow does not fit is folded value by value with saturation.
pub fn merge(parts: &[Histogram<u64>]) -> Histogram<u64> {
    let mut out = new_hist();
    for p in parts {
        if out.add(p).is_err() {
            for v in p.iter_recorded() {
                out.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }
    out
}

/// The summary percentiles (all zero for an empty histogram).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        min: h.min_nz(),
        mean: h.mean(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
    }
}

/// Recorded buckets as (highest equivalent value in µs, count), ascending, non-zero counts only.
pub fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Rebuild a histogram from stored buckets (used to re-derive percentiles from a `RunResult`).
pub fn from_buckets(buckets: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = new_hist();
    for &(v, n) in buckets {
        h.saturating_record_n(v.clamp(1, MAX_US), n);
    }
    h
}

/// Value at `q` (0..=1) from stored buckets, without rebuilding a histogram: the smallest bucket
/// value whose cumulative count reaches `q` of the total.
pub fn quantile_of_buckets(buckets: &[(u64, u64)], q: f64) -> u64 {
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return 0;
    }
    let want = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for &(v, n) in buckets {
        seen += n;
        if seen >= want {
            return v;
        }
    }
    buckets.last().map_or(0, |b| b.0)
}
