//! Latency summaries shared by every bench mode: percentiles from an HDR
//! histogram (microseconds) or from an exact sample, and number formats.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram tracks: 10 minutes, in microseconds. Larger
/// values saturate rather than fail.
const MAX_US: u64 = 600_000_000;

/// A histogram of microseconds, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_US, 3)
        .map_err(|e| anyhow::anyhow!("Failed to create a latency histogram: {e}"))
}

/// Records `d` in microseconds (at least 1, so a sub-microsecond answer
/// still counts).
pub fn record(h: &mut Histogram<u64>, d: std::time::Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// Exact percentiles of microsecond samples (sorted here).
    pub fn from_samples(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let ms = |q: f64| percentile(samples, q) as f64 / 1000.0;
        Self {
            count: samples.len() as u64,
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: ms(1.0),
        }
    }
}

/// The nearest-rank percentile of sorted samples: the smallest value with at
/// least `q` of the samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// A per-second rate, 0 when no time passed.
pub fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Milliseconds for a table: two decimals below 10 ms, one below 1 s, none above.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A count with thousands separators: 12345 -> "12,345".
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate for a table: thousands separators, one decimal below 100.
pub fn fmt_rate(r: f64) -> String {
    if r < 100.0 {
        format!("{r:.1}/s")
    } else {
        format!("{}/s", fmt_count(r.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 0.50), 50);
        assert_eq!(percentile(&s, 0.99), 99);
        assert_eq!(percentile(&s, 0.999), 100);
        assert_eq!(percentile(&s, 1.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
        assert_eq!(percentile(&[7], 0.5), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        // Two samples: the median is the lower one, p99 the higher.
        assert_eq!(percentile(&[10, 20], 0.5), 10);
        assert_eq!(percentile(&[10, 20], 0.99), 20);
    }

    #[test]
    fn samples_are_sorted_and_summarised_in_ms() {
        let mut s = vec![3000, 1000, 2000, 4000];
        let p = Percentiles::from_samples(&mut s);
        assert_eq!(p.count, 4);
        assert_eq!(p.p50_ms, 2.0);
        assert_eq!(p.p99_ms, 4.0);
        assert_eq!(p.max_ms, 4.0);
        assert_eq!(Percentiles::from_samples(&mut []), Percentiles::default());
    }

    #[test]
    fn histogram_percentiles_are_close_to_exact() {
        let mut h = histogram().unwrap();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.count, 1000);
        // 3 significant digits: within 0.1 %.
        assert!((p.p50_ms - 500.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() <= 1.0, "{p:?}");
        // Beyond the tracked range saturates instead of failing.
        record(&mut h, Duration::from_secs(7200));
        assert_eq!(h.len(), 1001);
    }

    #[test]
    fn numbers_format_for_people() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(1234567), "1,234,567");
        assert_eq!(fmt_ms(1.234), "1.23 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(1234.6), "1235 ms");
        assert_eq!(fmt_rate(12.34), "12.3/s");
        assert_eq!(fmt_rate(1884.4), "1,884/s");
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(per_second(10, 2.0), 5.0);
    }
}
