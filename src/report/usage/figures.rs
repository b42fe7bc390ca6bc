//! The running figures of one group (or of the totals row): counts and sums
//! as lines arrive, latencies in HDR histograms, so memory stays fixed
//! whatever the number of lines.

use hdrhistogram::Histogram;

use super::line::UsageLine;
use super::model::{Cost, Figures, Median, Percentiles, Requests, Tokens};
use crate::scheduler::pricing::add_usd;
use crate::sink::record::{round1, significant};

/// Histogram units per millisecond: 0.1 ms, the precision figures are shown at.
const UNITS_PER_MS: f64 = 10.0;

/// Where a line's cost came from, once `--pricing` has had its say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Priced {
    Provider(f64),
    Pricing(f64),
    Unpriced,
}

/// A group's latencies while it has few: kept exact (0.1 ms units), so
/// thousands of small groups (`--by file,model` over a month of runs) cost
/// a few bytes a line instead of a histogram each (tens of kilobytes).
const EXACT: usize = 2048;

/// Latencies: exact while few, then percentiles from a histogram (3
/// significant digits), clamped to the exact extremes so a bucket's edge
/// never shows beyond them. Either way memory stays bounded: at most
/// [`EXACT`] values, or one histogram.
#[derive(Debug)]
pub struct Spread {
    exact: Vec<u64>,
    hist: Option<Histogram<u64>>,
    min: f64,
    max: f64,
}

impl Spread {
    fn new() -> Spread {
        Spread {
            exact: Vec::new(),
            hist: None,
            min: f64::INFINITY,
            max: 0.0,
        }
    }

    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let units = (ms * UNITS_PER_MS).round() as u64;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
        if let Some(hist) = &mut self.hist {
            // Auto-resizing: recording a finite value cannot fail.
            let _ = hist.record(units);
            return;
        }
        self.exact.push(units);
        if self.exact.len() > EXACT {
            let mut hist = Histogram::new(3).expect("3 significant digits is a valid precision");
            for v in self.exact.drain(..) {
                let _ = hist.record(v);
            }
            self.exact = Vec::new();
            self.hist = Some(hist);
        }
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        let units = match &self.hist {
            Some(hist) => hist.value_at_quantile(q),
            None if self.exact.is_empty() => return None,
            None => {
                // The nearest rank, as the histogram reads it.
                let mut sorted = self.exact.clone();
                sorted.sort_unstable();
                let at = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[at - 1]
            }
        };
        let v = units as f64 / UNITS_PER_MS;
        Some(round1(v.clamp(self.min, self.max)))
    }

    /// The recorded values (ms; a histogram bucket's top), ascending, with counts.
    pub fn values(&self) -> Vec<(f64, u64)> {
        if let Some(hist) = &self.hist {
            return (hist.iter_recorded())
                .map(|v| {
                    (
                        v.value_iterated_to() as f64 / UNITS_PER_MS,
                        v.count_at_value(),
                    )
                })
                .collect();
        }
        let mut sorted = self.exact.clone();
        sorted.sort_unstable();
        let mut out: Vec<(f64, u64)> = Vec::new();
        for units in sorted {
            let ms = units as f64 / UNITS_PER_MS;
            match out.last_mut() {
                Some(last) if last.0 == ms => last.1 += 1,
                _ => out.push((ms, 1)),
            }
        }
        out
    }

    /// Bytes held for the values (the histogram's counts, or the exact values).
    #[cfg(test)]
    fn held(&self) -> usize {
        let hist = (self.hist.as_ref()).map_or(0, |h| h.distinct_values() * 8);
        hist + self.exact.capacity() * 8
    }
}

/// What a group has seen so far.
#[derive(Debug)]
pub struct Acc {
    requests: Requests,
    tokens: Tokens,
    provider: f64,
    pricing: f64,
    priced: u64,
    unpriced: u64,
    pub latency: Spread,
    ttft: Spread,
    retries: u64,
    uncertain: u64,
}

impl Default for Acc {
    fn default() -> Acc {
        Acc {
            requests: Requests::default(),
            tokens: Tokens::default(),
            provider: 0.0,
            pricing: 0.0,
            priced: 0,
            unpriced: 0,
            latency: Spread::new(),
            ttft: Spread::new(),
            retries: 0,
            uncertain: 0,
        }
    }
}

impl Acc {
    pub fn add(&mut self, line: &UsageLine<'_>, priced: Priced) {
        let ok = line.ok();
        if ok {
            self.requests.ok += 1;
            if let Some(ms) = line.latency_ms {
                self.latency.record(ms);
            }
            if let Some(ms) = line.ttft_ms {
                self.ttft.record(ms);
            }
        } else {
            self.requests.failed += 1;
        }
        let t = &mut self.tokens;
        match &line.usage {
            Some(u) => {
                t.prompt = t.prompt.saturating_add(u.prompt_tokens);
                t.completion = t.completion.saturating_add(u.completion_tokens);
                t.cached = t.cached.saturating_add(u.cached());
                t.reasoning = t.reasoning.saturating_add(u.reasoning());
            }
            None if ok => t.unreported += 1,
            None => {}
        }
        match priced {
            Priced::Provider(usd) => {
                self.provider = add_usd(self.provider, usd);
                self.priced += 1;
            }
            Priced::Pricing(usd) => {
                self.pricing = add_usd(self.pricing, usd);
                self.priced += 1;
            }
            // A failed request is never unpriced: nothing was answered.
            Priced::Unpriced if ok => self.unpriced += 1,
            Priced::Unpriced => {}
        }
        self.retries += u64::from(line.attempts.saturating_sub(1));
        self.uncertain += u64::from(line.uncertain_attempts);
    }

    pub fn figures(&self) -> Figures {
        let total = (self.priced > 0 || self.unpriced == 0)
            .then(|| significant(add_usd(self.provider, self.pricing)));
        let latency_ms = match (
            self.latency.quantile(0.50),
            self.latency.quantile(0.95),
            self.latency.quantile(0.99),
        ) {
            (Some(p50), Some(p95), Some(p99)) => Some(Percentiles { p50, p95, p99 }),
            _ => None,
        };
        Figures {
            requests: self.requests.clone(),
            tokens: self.tokens.clone(),
            cost_usd: Cost {
                total,
                provider: significant(self.provider),
                pricing: significant(self.pricing),
                unpriced_requests: self.unpriced,
            },
            latency_ms,
            ttft_ms: self.ttft.quantile(0.50).map(|p50| Median { p50 }),
            retries: self.retries,
            uncertain_attempts: self.uncertain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_stay_within_the_exact_range_and_round_to_a_tenth() {
        let mut s = Spread::new();
        for ms in 1..=100 {
            s.record(ms as f64 * 10.0 + 0.04);
        }
        // Three significant digits: within 0.1% of the exact value.
        let near = |q: f64, exact: f64| {
            let got = s.quantile(q).expect("a value");
            assert!(
                (got - exact).abs() <= exact * 1e-3 + 0.1,
                "{q}: {got} vs {exact}"
            );
        };
        near(0.5, 500.04);
        near(0.99, 990.04);
        // Never above the largest value recorded.
        assert_eq!(s.quantile(1.0), Some(1000.0));
        assert_eq!(Spread::new().quantile(0.5), None);
    }

    #[test]
    fn a_small_group_holds_its_few_values_not_a_histogram() {
        let mut s = Spread::new();
        for ms in [812.4, 3000.0, 15.5] {
            s.record(ms);
        }
        // A histogram reaching 3 s holds thousands of counters; three values need three.
        assert!(s.held() <= 64, "{} bytes", s.held());
        assert_eq!(s.quantile(0.5), Some(812.4));
        assert_eq!(s.quantile(0.99), Some(3000.0));
        assert_eq!(s.values(), [(15.5, 1), (812.4, 1), (3000.0, 1)]);
    }

    #[test]
    fn exact_values_and_the_histogram_read_the_same_percentiles() {
        let mut small = Spread::new();
        let mut big = Spread::new();
        for i in 0..(EXACT as u64 * 3) {
            let ms = (i * 7919 % 5000) as f64 / 10.0 + 1.0;
            big.record(ms);
            if i < EXACT as u64 {
                small.record(ms);
            }
        }
        assert!(big.hist.is_some() && small.hist.is_none());
        assert!(big.exact.capacity() == 0, "the exact values are let go");
        for (s, n) in [(&small, EXACT), (&big, EXACT * 3)] {
            let mut all: Vec<f64> = (0..n as u64)
                .map(|i| (i * 7919 % 5000) as f64 / 10.0 + 1.0)
                .collect();
            all.sort_by(f64::total_cmp);
            for q in [0.5, 0.95, 0.99] {
                let exact = all[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
                let got = s.quantile(q).expect("a value");
                assert!(
                    (got - exact).abs() <= exact * 1e-3 + 0.1,
                    "{q}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn nothing_priced_with_an_unpriced_answer_is_no_total_never_zero() {
        let ok: UsageLine = serde_json::from_str(
            r#"{"key":"a","job":"j","param_set":"p","status":"ok","model":"m","attempts":3}"#,
        )
        .expect("line");
        let failed: UsageLine = serde_json::from_str(
            r#"{"key":"b","job":"j","param_set":"p","status":"error","model":"m","attempts":1,"uncertain_attempts":1}"#,
        )
        .expect("line");
        let mut acc = Acc::default();
        acc.add(&failed, Priced::Unpriced);
        // Only a failure: nothing unpriced, the total is a known $0.
        assert_eq!(acc.figures().cost_usd.total, Some(0.0));
        acc.add(&ok, Priced::Unpriced);
        let f = acc.figures();
        assert_eq!(f.cost_usd.total, None);
        assert_eq!(f.cost_usd.unpriced_requests, 1);
        assert_eq!((f.retries, f.uncertain_attempts), (2, 1));
        assert_eq!(f.tokens.unreported, 1);
        acc.add(&ok, Priced::Provider(0.5));
        acc.add(&ok, Priced::Pricing(0.25));
        let c = acc.figures().cost_usd;
        assert_eq!((c.total, c.provider, c.pricing), (Some(0.75), 0.5, 0.25));
    }
}
