//! Measured samples of a benchmark run (request latencies, delivery lateness) and their
//! nearest-rank percentiles. Samples are signed microseconds (lateness can be negative: a
//! message received before its delivery time), kept in a vector that is sorted once at the end.

use std::time::Duration;

/// Samples of one run, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<i64>);

impl Samples {
    /// Records a duration (a request's latency).
    pub fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros().min(i64::MAX as u128) as i64);
    }

    /// Records a signed value in microseconds.
    pub fn record_us(&mut self, us: i64) {
        self.0.push(us);
    }

    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts once; call before the percentile queries.
    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }

    /// Nearest-rank percentile (`p` in 0..=100) in milliseconds; 0 when empty.
    /// Expects [`Samples::sort`] to have been called.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let n = self.0.len();
        // The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        self.0[rank.clamp(1, n) - 1] as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().map(|&v| v as f64).sum::<f64>() / self.0.len() as f64 / 1000.0
    }

    /// How many samples are below zero.
    pub fn negative(&self) -> u64 {
        self.0.iter().filter(|&&v| v < 0).count() as u64
    }
}

/// A small deterministic generator (SplitMix64) for spreading delivery times and picking
/// message groups; statistical quality is ample for that, and it needs no extra crate.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Samples::default();
        for ms in (1..=1000u64).rev() {
            l.record(Duration::from_millis(ms));
        }
        l.sort();
        assert_eq!(l.percentile_ms(50.0), 500.0);
        assert_eq!(l.percentile_ms(99.0), 990.0);
        assert_eq!(l.percentile_ms(99.9), 999.0);
        assert_eq!(l.percentile_ms(100.0), 1000.0);
        assert_eq!(l.percentile_ms(0.0), 1.0);
        assert!((l.mean_ms() - 500.5).abs() < 1e-9);
        assert_eq!(Samples::default().percentile_ms(50.0), 0.0);
        assert_eq!(Samples::default().mean_ms(), 0.0);
    }

    #[test]
    fn negative_samples_sort_first_and_are_counted() {
        let mut s = Samples::default();
        for us in [5_000, -2_000, 1_000, 0] {
            s.record_us(us);
        }
        s.sort();
        assert_eq!(s.percentile_ms(0.0), -2.0);
        assert_eq!(s.percentile_ms(50.0), 0.0);
        assert_eq!(s.percentile_ms(100.0), 5.0);
        assert_eq!(s.negative(), 1);
        assert_eq!(s.len(), 4);
        let mut one = Samples::default();
        one.record_us(7_000);
        one.sort();
        assert_eq!(
            (one.percentile_ms(50.0), one.percentile_ms(99.0)),
            (7.0, 7.0)
        );
    }

    #[test]
    fn splitmix_is_uniform_enough_and_deterministic() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let x = a.next_f64();
            assert_eq!(x, b.next_f64());
            assert!((0.0..1.0).contains(&x));
            buckets[(x * 10.0) as usize] += 1;
        }
        // Each tenth gets 10,000 +- 5 %.
        assert!(
            buckets.iter().all(|&n| (9_500..=10_500).contains(&n)),
            "{buckets:?}"
        );
        assert_ne!(SplitMix::new(1).next_u64(), SplitMix::new(2).next_u64());
    }
}
