//! Per-operation latencies: recorded as nanoseconds in a preallocated
//! `Vec<u32>` (4 bytes an operation, no allocation while measuring; a
//! latency above 4.29 s saturates), summarised as exact percentiles; and
//! the median the benchmarks quote.

use std::time::Duration;

/// A duration in nanoseconds, saturating at `u32::MAX` (4.29 s).
pub fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Latency percentiles of one run, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Percentiles {
    /// Exact nearest-rank percentiles of `latencies` (sorts it in place).
    pub fn of(latencies: &mut [u32]) -> Percentiles {
        if latencies.is_empty() {
            return Percentiles::default();
        }
        latencies.sort_unstable();
        let at = |q: f64| {
            let rank = (q * latencies.len() as f64).ceil() as usize;
            f64::from(latencies[rank.clamp(1, latencies.len()) - 1]) / 1e3
        };
        Percentiles { p50_us: at(0.50), p99_us: at(0.99), p999_us: at(0.999) }
    }
}

/// The median of `values` (NaN if there are none).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u32> = (1..=1000).rev().map(|i| i * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50_us, p.p99_us, p.p999_us), (500.0, 990.0, 999.0));
        assert_eq!(Percentiles::of(&mut [7000]).p999_us, 7.0);
        assert_eq!(nanos(Duration::from_secs(10)), u32::MAX);
    }
}
