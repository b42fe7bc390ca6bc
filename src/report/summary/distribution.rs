//! Latencies for the summary in bounded memory: exact minimum, maximum and
//! mean, percentiles from an HDR histogram of microseconds (3 significant
//! digits), however many lines there are. The top level and each endpoint
//! of `by_endpoint` keep one each.

use hdrhistogram::Histogram;

use super::Spread;
use crate::sink::record::round1;

/// Exact min, max and mean; percentiles from a histogram of microseconds (3 significant digits).
#[derive(Debug)]
pub(super) struct Distribution {
    hist: Histogram<u64>,
    sum: f64,
    min: f64,
    max: f64,
}

impl Distribution {
    pub(super) fn new() -> Distribution {
        Distribution {
            hist: Histogram::new(3).expect("3 significant digits is a valid precision"),
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
        }
    }

    /// Takes in the values `other` recorded.
    pub(super) fn merge(&mut self, other: &Distribution) {
        if other.hist.is_empty() {
            return;
        }
        // Auto-resizing histograms of one precision: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub(super) fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        // Auto-resizing histogram: recording cannot fail for a finite value.
        let _ = self.hist.record((ms * 1000.0).round() as u64);
        self.sum += ms;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    pub(super) fn spread(&self) -> Option<Spread> {
        let n = self.hist.len();
        if n == 0 {
            return None;
        }
        // A histogram bucket reports its upper edge: keep percentiles within the exact range.
        let q = |q: f64| {
            round1((self.hist.value_at_quantile(q) as f64 / 1000.0).clamp(self.min, self.max))
        };
        Some(Spread {
            min: round1(self.min),
            mean: round1(self.sum / n as f64),
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            max: round1(self.max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Distribution;

    /// An endpoint folded into `other` merges its latencies: the result is
    /// what recording them all in one would give.
    #[test]
    fn merged_distributions_spread_as_one_that_saw_every_value() {
        let (mut a, mut b, mut all) = (
            Distribution::new(),
            Distribution::new(),
            Distribution::new(),
        );
        for i in 1..=300 {
            let ms = f64::from(i * 7 % 1000) + 0.25;
            if i % 3 == 0 { &mut a } else { &mut b }.record(ms);
            all.record(ms);
        }
        a.merge(&b);
        assert_eq!(a.spread(), all.spread());
        // Merging nothing changes nothing (an empty one has min = infinity).
        a.merge(&Distribution::new());
        assert_eq!(a.spread(), all.spread());
    }
}
