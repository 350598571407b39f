//! Latency samples and their percentiles: every operation's duration is kept (a few hundred
//! thousand at most per workload), sorted once, and read by nearest rank. No histogram
//! buckets, so p99 is exact.

use std::time::Duration;

/// Durations of individual operations, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    nanos: Vec<u64>,
    sorted: bool,
}

impl Latencies {
    /// An empty set with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self { nanos: Vec::with_capacity(n), sorted: true }
    }

    /// Records one operation.
    pub fn push(&mut self, d: Duration) {
        self.nanos.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    /// Adds another thread's samples.
    pub fn merge(&mut self, other: Latencies) {
        self.nanos.extend(other.nanos);
        self.sorted = false;
    }

    /// Drops every sample.
    pub fn clear(&mut self) {
        self.nanos.clear();
        self.sorted = true;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// The `p`-th percentile (0.0..=1.0) by nearest rank; zero without samples.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.nanos.is_empty() {
            return Duration::ZERO;
        }
        if !self.sorted {
            self.nanos.sort_unstable();
            self.sorted = true;
        }
        let rank = ((self.nanos.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        Duration::from_nanos(self.nanos[rank])
    }

    /// Median and 99th percentile.
    pub fn p50_p99(&mut self) -> (Duration, Duration) {
        (self.percentile(0.5), self.percentile(0.99))
    }
}

/// Median of a non-empty list (the mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for i in (1..=100).rev() {
            l.push(Duration::from_micros(i));
        }
        assert_eq!(l.percentile(0.5), Duration::from_micros(51));
        assert_eq!(l.percentile(0.99), Duration::from_micros(99));
        assert_eq!(l.percentile(1.0), Duration::from_micros(100));
        assert_eq!(l.percentile(0.0), Duration::from_micros(1));
        assert_eq!(Latencies::default().percentile(0.5), Duration::ZERO);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
