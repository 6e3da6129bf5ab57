//! A histogram with fixed bucket bounds, recorded with atomics only: cheap enough for the
//! request path, and never a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bounds of `gen_ai.client.operation.duration` (seconds), as the OpenTelemetry GenAI
/// semantic conventions advise.
pub const DURATION_SECONDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Bounds of `gen_ai.client.operation.time_to_first_chunk` (seconds).
pub const TIME_TO_FIRST_CHUNK_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bounds of `gen_ai.client.token.usage` (tokens).
pub const TOKENS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The most buckets any of the bounds above needs (one more than its bounds, for +Inf).
const MAX_BUCKETS: usize = 17;

pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket, not cumulative: `counts[i]` holds those in
    /// `(bounds[i-1], bounds[i]]`, the last one those above every bound.
    counts: [AtomicU64; MAX_BUCKETS],
    /// The sum of observations, as the bits of an f64.
    sum: AtomicF64,
}

/// A snapshot, ready to render: cumulative counts per bound, then the total.
pub struct HistogramView {
    pub bounds: &'static [f64],
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() < MAX_BUCKETS, "too many bounds");
        Histogram {
            bounds,
            counts: Default::default(),
            sum: AtomicF64::default(),
        }
    }

    pub fn observe(&self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.add(value);
    }

    /// Whether anything was observed (empty histograms are left out of the exposition).
    pub fn is_empty(&self) -> bool {
        self.counts[..=self.bounds.len()]
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0)
    }

    pub fn view(&self) -> HistogramView {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut total = 0u64;
        for c in &self.counts[..self.bounds.len()] {
            total += c.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        // The count is the sum of the buckets, so that it always equals the +Inf bucket.
        total += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramView {
            bounds: self.bounds,
            cumulative,
            count: total,
            sum: self.sum.get(),
        }
    }
}

/// An f64 that threads add to without a lock (a compare-and-swap loop on its bits).
#[derive(Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn add(&self, x: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + x).to_bits())
            });
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_inclusive_and_cumulative() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        assert!(h.is_empty());
        for v in [0.5, 1.0, 1.5, 4.0, 9.0, f64::NAN] {
            h.observe(v);
        }
        let v = h.view();
        assert_eq!(v.cumulative, vec![2, 3, 4]);
        assert_eq!(v.count, 5, "NaN is not an observation");
        assert_eq!(v.sum, 16.0);
        assert!(!h.is_empty());
    }

    #[test]
    fn the_sum_adds_up_across_threads() {
        let s = std::sync::Arc::new(AtomicF64::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| s.add(0.25)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(s.get(), 1000.0);
    }

    #[test]
    fn every_bound_list_fits() {
        for b in [DURATION_SECONDS, TIME_TO_FIRST_CHUNK_SECONDS, TOKENS] {
            let _ = Histogram::new(b);
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
