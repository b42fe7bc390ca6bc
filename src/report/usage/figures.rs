//! The running figures of one group (or of the totals row): counts and sums
//! as lines arrive, latencies in HDR histograms, so memory stays fixed
//! whatever the number of lines.

use hdrhistogram::Histogram;

use super::line::UsageLine;
use super::model::{Cost, Figures, Median, Percentiles, Requests, Tokens};
use crate::scheduler::pricing::add_usd;

/// Histogram units per millisecond: 0.1 ms, the precision figures are shown at.
const UNITS_PER_MS: f64 = 10.0;

/// Where a line's cost came from, once `--pricing` has had its say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Priced {
    Provider(f64),
    Pricing(f64),
    Unpriced,
}

/// Latencies: percentiles from a histogram (3 significant digits), clamped
/// to the exact extremes so a bucket's edge never shows beyond them.
#[derive(Debug)]
pub struct Spread {
    pub hist: Histogram<u64>,
    min: f64,
    max: f64,
}

impl Spread {
    fn new() -> Spread {
        Spread {
            hist: Histogram::new(3).expect("3 significant digits is a valid precision"),
            min: f64::INFINITY,
            max: 0.0,
        }
    }

    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        // Auto-resizing: recording a finite value cannot fail.
        let _ = self.hist.record((ms * UNITS_PER_MS).round() as u64);
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.hist.is_empty() {
            return None;
        }
        let v = self.hist.value_at_quantile(q) as f64 / UNITS_PER_MS;
        Some(round1(v.clamp(self.min, self.max)))
    }

    /// The recorded values (ms, the bucket's top) with their counts.
    pub fn values(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        (self.hist.iter_recorded()).map(|v| {
            (
                v.value_iterated_to() as f64 / UNITS_PER_MS,
                v.count_at_value(),
            )
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A sum of dollars to 12 significant digits: the float noise of adding
/// thousands of small figures (0.00011259999999999999) is no one's figure.
pub fn significant(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
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
