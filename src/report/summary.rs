//! The run summary: counts, tokens, cost and latency over the records of a run.
//!
//! A `Tally` observes records one by one (constant memory: latencies go into
//! HDR histograms) and becomes a [`Summary`] in the contract's shape.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::job::pricing::{add_usd, is_amount};
use crate::scheduler::StopReason;
use crate::sink::{Record, Status};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub resumed: u64,
    pub not_sent: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Successful requests whose provider reported no usage.
    pub unreported: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    pub total: f64,
    pub by_model: BTreeMap<String, f64>,
    pub by_param_set: BTreeMap<String, f64>,
    /// Successful requests with no cost: no provider figure and no `[pricing]` entry.
    pub unpriced_requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub requests_per_s: f64,
    pub completion_tokens_per_s: f64,
}

/// `<output stem>.summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub job: String,
    pub started_at: String,
    pub finished_at: String,
    pub wall_s: f64,
    pub requests: RequestCounts,
    pub attempts: u64,
    pub retries: u64,
    pub uncertain_attempts: u64,
    pub stopped: Option<StopReason>,
    pub finish_reasons: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub tokens: Tokens,
    pub cost_usd: Costs,
    pub latency_ms: Option<Spread>,
    pub ttft_ms: Option<Spread>,
    pub throughput: Throughput,
}

/// Exact min, max and mean; percentiles from a histogram of microseconds (3 significant digits).
#[derive(Debug)]
struct Distribution {
    hist: Histogram<u64>,
    sum: f64,
    min: f64,
    max: f64,
}

impl Distribution {
    fn new() -> Distribution {
        Distribution {
            hist: Histogram::new(3).expect("3 significant digits is a valid precision"),
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
        }
    }

    fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        // Auto-resizing histogram: recording cannot fail for a finite value.
        let _ = self.hist.record((ms * 1000.0).round() as u64);
        self.sum += ms;
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
    }

    fn spread(&self) -> Option<Spread> {
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

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Observes the records of a run (or of output files, for `report`).
#[derive(Debug)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    attempts: u64,
    uncertain: u64,
    finish_reasons: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    tokens: Tokens,
    costs: Costs,
    latency: Distribution,
    ttft: Distribution,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            ok: 0,
            failed: 0,
            attempts: 0,
            uncertain: 0,
            finish_reasons: BTreeMap::new(),
            errors: BTreeMap::new(),
            tokens: Tokens::default(),
            costs: Costs::default(),
            latency: Distribution::new(),
            ttft: Distribution::new(),
        }
    }
}

impl Tally {
    pub fn observe(&mut self, r: &Record) {
        // Every sum saturates: figures come from servers and hand-edited files.
        self.attempts = self.attempts.saturating_add(u64::from(r.attempts));
        self.uncertain = self
            .uncertain
            .saturating_add(u64::from(r.uncertain_attempts));
        match r.status {
            Status::Ok => {
                self.ok += 1;
                let reason = r.finish_reason.as_deref().unwrap_or("none");
                *self.finish_reasons.entry(reason.to_string()).or_default() += 1;
                match &r.usage {
                    Some(u) => {
                        let t = &mut self.tokens;
                        t.prompt = t.prompt.saturating_add(u.prompt_tokens);
                        t.completion = t.completion.saturating_add(u.completion_tokens);
                        t.total = t.total.saturating_add(u.total_tokens);
                    }
                    None => self.tokens.unreported += 1,
                }
                if !r.cost_usd.is_some_and(is_amount) {
                    self.costs.unpriced_requests += 1;
                }
                if let Some(ms) = r.latency_ms {
                    self.latency.record(ms);
                }
                if let Some(ms) = r.ttft_ms {
                    self.ttft.record(ms);
                }
            }
            Status::Error => {
                self.failed += 1;
                let kind = r.error.as_ref().map_or("unknown", |e| e.kind.as_str());
                *self.errors.entry(kind.to_string()).or_default() += 1;
            }
        }
        if let Some(cost) = r.cost_usd.filter(|c| is_amount(*c)) {
            let costs = &mut self.costs;
            costs.total = add_usd(costs.total, cost);
            let by_model = costs.by_model.entry(r.model.clone()).or_default();
            *by_model = add_usd(*by_model, cost);
            let by_set = costs.by_param_set.entry(r.param_set.clone()).or_default();
            *by_set = add_usd(*by_set, cost);
        }
    }

    /// Requests observed (sent in this run).
    pub fn requests(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn cost(&self) -> f64 {
        self.costs.total
    }

    pub fn completion_tokens(&self) -> u64 {
        self.tokens.completion
    }

    /// `busy`: the time requests were being sent (first dispatch to last
    /// outcome), which throughput is measured over; loading, the input scan
    /// and compaction count in `wall_s` only.
    pub fn summary(
        &self,
        job: &str,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        busy: std::time::Duration,
        requests: RequestCounts,
        stopped: Option<StopReason>,
    ) -> Summary {
        let wall_s = (finished - started).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        let busy_s = busy.as_secs_f64();
        let per_s = |n: u64| {
            if busy_s > 0.0 {
                round1(n as f64 / busy_s)
            } else {
                0.0
            }
        };
        Summary {
            job: job.to_string(),
            started_at: crate::sink::record::timestamp(started),
            finished_at: crate::sink::record::timestamp(finished),
            wall_s: (wall_s * 1000.0).round() / 1000.0,
            requests,
            attempts: self.attempts,
            retries: self.attempts.saturating_sub(self.requests()),
            uncertain_attempts: self.uncertain,
            stopped,
            finish_reasons: self.finish_reasons.clone(),
            errors: self.errors.clone(),
            tokens: self.tokens.clone(),
            cost_usd: self.costs.clone(),
            latency_ms: self.latency.spread(),
            ttft_ms: self.ttft.spread(),
            throughput: Throughput {
                requests_per_s: per_s(self.requests()),
                completion_tokens_per_s: per_s(self.tokens.completion),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ErrorKind, Usage};
    use crate::sink::record::{CostSource, RecordError};
    use std::sync::Arc;

    fn record(status: Status, latency: f64, cost: Option<f64>, usage: Option<Usage>) -> Record {
        Record {
            key: "k".into(),
            job: "j".into(),
            id: "1".into(),
            param_set: "precise".into(),
            status,
            model: "m".into(),
            content: (status == Status::Ok).then(|| "hi".into()),
            finish_reason: (status == Status::Ok).then(|| "stop".into()),
            usage,
            cost_usd: cost,
            cost_source: cost.map(|_| CostSource::Pricing),
            latency_ms: Some(latency),
            ttft_ms: None,
            attempts: 1,
            uncertain_attempts: 0,
            client_request_id: "j:1:precise:1".into(),
            request_sha256: "0".repeat(64),
            error: (status == Status::Error).then(|| RecordError {
                kind: ErrorKind::Server,
                status: Some(500),
                message: "boom".into(),
            }),
            response_id: None,
            provider: None,
            started_at: None,
            finished_at: None,
            params: Default::default(),
            input: Arc::new(Default::default()),
            response_model: None,
            tool_calls: None,
            refusal: None,
            budget_charge_usd: None,
        }
    }

    #[test]
    fn percentiles_over_one_to_a_hundred_ms() {
        let mut t = Tally::default();
        for ms in 1..=100 {
            t.observe(&record(Status::Ok, ms as f64, None, None));
        }
        let s = t.latency.spread().expect("latencies");
        assert_eq!((s.min, s.max, s.mean), (1.0, 100.0, 50.5));
        assert_eq!((s.p50, s.p90, s.p95, s.p99), (50.0, 90.0, 95.0, 99.0));
    }

    #[test]
    fn percentiles_never_pass_the_exact_max() {
        let mut t = Tally::default();
        for ms in [4613.1, 4000.0, 3000.0] {
            t.observe(&record(Status::Ok, ms, None, None));
        }
        let s = t.latency.spread().expect("latencies");
        assert_eq!(s.max, 4613.1);
        assert!(s.p99 <= s.max && s.p95 <= s.max && s.p50 >= s.min, "{s:?}");
    }

    #[test]
    fn no_successes_means_no_latency_spread() {
        let mut t = Tally::default();
        t.observe(&record(Status::Error, 5.0, None, None));
        assert_eq!(t.latency.spread(), None);
    }

    #[test]
    fn tokens_cost_and_errors_are_totalled() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 20,
            total_tokens: 30,
            ..Usage::default()
        };
        let mut t = Tally::default();
        t.observe(&record(Status::Ok, 10.0, Some(0.5), Some(usage)));
        t.observe(&record(Status::Ok, 10.0, None, None));
        let mut failed = record(Status::Error, 10.0, None, None);
        failed.attempts = 3;
        failed.uncertain_attempts = 1;
        t.observe(&failed);
        let start = Utc::now();
        let s = t.summary(
            "j",
            start,
            start + chrono::Duration::seconds(3),
            std::time::Duration::from_secs(2),
            RequestCounts::default(),
            None,
        );
        assert_eq!(s.wall_s, 3.0);
        assert_eq!(s.attempts, 5);
        assert_eq!(s.retries, 2);
        assert_eq!(s.uncertain_attempts, 1);
        assert_eq!(s.tokens.total, 30);
        assert_eq!(s.tokens.unreported, 1);
        assert_eq!(s.cost_usd.total, 0.5);
        assert_eq!(s.cost_usd.unpriced_requests, 1);
        assert_eq!(s.cost_usd.by_param_set.get("precise"), Some(&0.5));
        assert_eq!(s.errors.get("server"), Some(&1));
        assert_eq!(s.finish_reasons.get("stop"), Some(&2));
        assert_eq!(s.throughput.requests_per_s, 1.5);
        assert_eq!(s.throughput.completion_tokens_per_s, 10.0);
    }

    #[test]
    fn sums_saturate_and_skip_costs_that_are_not_amounts() {
        let huge = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            total_tokens: u64::MAX,
            ..Usage::default()
        };
        let mut t = Tally::default();
        t.observe(&record(Status::Ok, 10.0, Some(f64::MAX), Some(huge)));
        t.observe(&record(Status::Ok, 10.0, Some(f64::MAX), Some(huge)));
        t.observe(&record(Status::Ok, 10.0, Some(f64::NAN), None));
        let mut failed = record(Status::Error, 10.0, Some(-1.0), None);
        failed.attempts = u32::MAX;
        t.observe(&failed);
        assert_eq!(t.tokens.total, u64::MAX, "never wrapped to a small number");
        assert_eq!(t.tokens.prompt, u64::MAX);
        assert_eq!(t.completion_tokens(), u64::MAX);
        assert_eq!(t.cost(), f64::MAX, "never infinite");
        assert_eq!(t.costs.by_model.values().copied().sum::<f64>(), f64::MAX);
        assert_eq!(t.costs.unpriced_requests, 1, "a NaN cost is no cost");
    }
}
