//! The run summary: counts, tokens, cost and latency over the job's lines,
//! and what this run itself sent.
//!
//! A `Tally` observes records one by one (constant memory: latencies go into
//! HDR histograms) and becomes a [`Summary`] in the contract's shape: one
//! tally over the latest line of each of the job's keys (the job), one over
//! the requests this run sent (`this_run`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::Usage;
use crate::scheduler::pricing::{add_usd, is_amount};
use crate::scheduler::{PaceReport, StopReason};
use crate::sink::record::round1;
use crate::sink::record::Lenient;
use crate::sink::{Record, Status};

mod distribution;
mod endpoints;
mod readback;
use distribution::Distribution;
pub use endpoints::{EndpointFigures, EndpointRequests, Percentiles, MAX_NAMED, OTHER};
pub use readback::ReadBack;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub resumed: u64,
    pub not_sent: u64,
    /// Of `ok`: the keys whose line was answered from the response cache.
    #[serde(default)]
    pub cached: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Successful requests whose provider reported no usage.
    pub unreported: u64,
}

impl Tokens {
    /// One successful request's usage, or its absence (counted as unreported).
    pub(crate) fn add(&mut self, usage: Option<&Usage>) {
        match usage {
            Some(u) => {
                self.prompt = self.prompt.saturating_add(u.prompt_tokens);
                self.completion = self.completion.saturating_add(u.completion_tokens);
                self.total = self.total.saturating_add(u.total_tokens);
            }
            None => self.unreported += 1,
        }
    }
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
    /// Per endpoint name, over the same lines as the top level; absent
    /// when no line names an endpoint (a job without `[[endpoints]]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_endpoint: BTreeMap<String, EndpointFigures>,
    pub throughput: Throughput,
    pub this_run: ThisRun,
    /// Lines kept in the output for keys the job no longer has.
    pub other_keys_in_output: u64,
    /// The server's message behind `stopped` (shortened), for the table and
    /// the `--quiet` line; not part of the JSON contract.
    #[serde(skip)]
    pub stopped_because: Option<String>,
    /// The pace the run used and where it came from, for the table and the
    /// `end` event; not part of the summary file.
    #[serde(skip)]
    pub pace: Option<PaceReport>,
    /// With `[[endpoints]]`: each endpoint's own pace, by name, in the job's
    /// order (`pace` is then the job-wide `[limits]` one).
    #[serde(skip)]
    pub endpoint_paces: Vec<(String, PaceReport)>,
}

/// What this run did: the requests it sent and what they cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThisRun {
    pub sent: u64,
    /// Requests answered from the response cache (`--cache`): not sent,
    /// not in `sent`, nothing spent; their tokens are in `tokens` (they are
    /// the output's tokens).
    #[serde(default)]
    pub cached: u64,
    pub attempts: u64,
    pub retries: u64,
    pub uncertain_attempts: u64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// This run's successful requests without a cost, for the table (the
    /// JSON has the job's count only).
    #[serde(skip)]
    pub unpriced_requests: u64,
    pub wall_s: f64,
    pub throughput: Throughput,
}

/// What a summary needs besides the two tallies.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub job: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// The time requests were being sent (first dispatch to last outcome),
    /// which throughput is measured over; loading, the input scan and
    /// compaction count in `wall_s` only.
    pub busy: std::time::Duration,
    pub requests: RequestCounts,
    pub stopped: Option<StopReason>,
    pub stopped_because: Option<String>,
    pub other_keys_in_output: u64,
}

/// The figures of one output line the summary needs, read back from a file;
/// everything else on the line (content, input) is skipped unallocated.
#[derive(Debug, Deserialize)]
pub struct LineFigures {
    pub key: String,
    pub status: Status,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub param_set: String,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// A usage that is not one (a negative count, a field twice: a
    /// hand-edited line) is read as none, as the resume scan reads it: the
    /// line still counts, its tokens as unreported, never silently dropped.
    #[serde(default, deserialize_with = "usage_or_none")]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub uncertain_attempts: u32,
    #[serde(default)]
    pub error: Option<LineError>,
    #[serde(default)]
    pub cached: Option<bool>,
    /// The endpoint's name; anything but a string is read as none (a
    /// hand-edited line still counts, without an endpoint).
    #[serde(default, deserialize_with = "text_or_none")]
    pub endpoint: Option<String>,
}

fn text_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text: Option<Lenient<String>> = Deserialize::deserialize(d)?;
    Ok(text.and_then(|t| match t {
        Lenient::Read(text) => Some(text),
        Lenient::Other(_) => None,
    }))
}

fn usage_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
    let usage: Option<Lenient<Usage>> = Deserialize::deserialize(d)?;
    Ok(usage.and_then(|u| u.get().copied()))
}

#[derive(Debug, Deserialize)]
pub struct LineError {
    pub kind: String,
}

/// One line's figures, borrowed from a [`Record`] or a [`LineFigures`].
struct Figures<'a> {
    ok: bool,
    model: &'a str,
    param_set: &'a str,
    finish_reason: Option<&'a str>,
    usage: Option<&'a Usage>,
    cost_usd: Option<f64>,
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    attempts: u32,
    uncertain: u32,
    error_kind: Option<&'a str>,
    cached: bool,
    endpoint: Option<&'a str>,
}

/// A record's figures, kept without the record while its line waits to be
/// written: a few hundred bytes instead of the whole record (its row, its
/// content), so lines queued for a slow disk cost little more than their bytes.
#[derive(Debug)]
pub struct KeptFigures {
    ok: bool,
    model: String,
    param_set: String,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    attempts: u32,
    uncertain: u32,
    error_kind: Option<&'static str>,
    cached: bool,
    endpoint: Option<String>,
}

impl KeptFigures {
    /// The figures of `record`, which is no longer needed.
    pub fn of(record: Record) -> KeptFigures {
        KeptFigures {
            ok: record.status == Status::Ok,
            model: record.model,
            param_set: record.param_set,
            finish_reason: record.finish_reason,
            usage: record.usage,
            cost_usd: record.cost_usd,
            latency_ms: record.latency_ms,
            ttft_ms: record.ttft_ms,
            attempts: record.attempts,
            uncertain: record.uncertain_attempts,
            error_kind: record.error.map(|e| e.kind.as_str()),
            cached: record.cached == Some(true),
            endpoint: record.endpoint,
        }
    }

    pub fn ok(&self) -> bool {
        self.ok
    }
}

/// One more of `name` in `counts`; its name is copied only the first time
/// (a million lines read back would allocate a million copies of "stop").
fn count_in(counts: &mut BTreeMap<String, u64>, name: &str) {
    match counts.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            counts.insert(name.to_string(), 1);
        }
    }
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
    /// Lines answered from the response cache (part of `ok`).
    cached: u64,
    /// Per endpoint name, for lines that have one.
    by_endpoint: endpoints::ByEndpoint,
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
            cached: 0,
            by_endpoint: endpoints::ByEndpoint::default(),
        }
    }
}

/// The figures of a record or of a line read back: the two types share
/// these fields' names, so one spelling serves both. (`add` judges the cost.)
macro_rules! figures {
    ($r:expr) => {
        Figures {
            ok: $r.status == Status::Ok,
            model: &$r.model,
            param_set: &$r.param_set,
            finish_reason: $r.finish_reason.as_deref(),
            usage: $r.usage.as_ref(),
            cost_usd: $r.cost_usd,
            latency_ms: $r.latency_ms,
            ttft_ms: $r.ttft_ms,
            attempts: $r.attempts,
            uncertain: $r.uncertain_attempts,
            error_kind: $r.error.as_ref().map(|e| e.kind.as_str()),
            cached: $r.cached == Some(true),
            endpoint: $r.endpoint.as_deref(),
        }
    };
}

/// Updates the entry of `key` (made at zero if new) with `update`: the key
/// is copied only the first time it is seen, not once per line.
fn update<V: Default>(map: &mut BTreeMap<String, V>, key: &str, update: impl FnOnce(&mut V)) {
    if let Some(value) = map.get_mut(key) {
        update(value);
        return;
    }
    let mut value = V::default();
    update(&mut value);
    map.insert(key.to_string(), value);
}

impl Tally {
    pub fn observe(&mut self, r: &Record) {
        self.add(figures!(r));
    }

    /// A record whose figures were kept without it ([`KeptFigures`]).
    pub fn observe_kept(&mut self, r: &KeptFigures) {
        self.add(Figures {
            ok: r.ok,
            model: &r.model,
            param_set: &r.param_set,
            finish_reason: r.finish_reason.as_deref(),
            usage: r.usage.as_ref(),
            cost_usd: r.cost_usd,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            attempts: r.attempts,
            uncertain: r.uncertain,
            error_kind: r.error_kind,
            cached: r.cached,
            endpoint: r.endpoint.as_deref(),
        });
    }

    /// A line read back from an output file (resumed from an earlier run).
    pub fn observe_line(&mut self, r: &LineFigures) {
        self.add(figures!(r));
    }

    fn add(&mut self, r: Figures<'_>) {
        if let Some(name) = r.endpoint {
            self.by_endpoint.add(name, &r);
        }
        self.attempts = self.attempts.saturating_add(u64::from(r.attempts));
        self.uncertain = self.uncertain.saturating_add(u64::from(r.uncertain));
        self.cached += u64::from(r.cached);
        if r.ok {
            self.ok += 1;
            count_in(&mut self.finish_reasons, r.finish_reason.unwrap_or("none"));
            self.tokens.add(r.usage);
            if !r.cost_usd.is_some_and(is_amount) {
                self.costs.unpriced_requests += 1;
            }
            if let Some(ms) = r.latency_ms {
                self.latency.record(ms);
            }
            if let Some(ms) = r.ttft_ms {
                self.ttft.record(ms);
            }
        } else {
            self.failed += 1;
            count_in(&mut self.errors, r.error_kind.unwrap_or("unknown"));
        }
        if let Some(cost) = r.cost_usd.filter(|c| is_amount(*c)) {
            let costs = &mut self.costs;
            costs.total = add_usd(costs.total, cost);
            update(&mut costs.by_model, r.model, |v| *v = add_usd(*v, cost));
            update(&mut costs.by_param_set, r.param_set, |v| {
                *v = add_usd(*v, cost)
            });
        }
    }

    /// Requests observed.
    pub fn requests(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn cost(&self) -> f64 {
        self.costs.total
    }

    pub fn completion_tokens(&self) -> u64 {
        self.tokens.completion
    }

    /// Requests sent: those answered from the cache made no attempt.
    fn sent(&self) -> u64 {
        self.requests().saturating_sub(self.cached)
    }

    fn retries(&self) -> u64 {
        self.attempts.saturating_sub(self.sent())
    }

    /// The summary: `self` over the job's lines, `run` over what this run sent.
    pub fn summary(&self, run: &Tally, facts: RunFacts) -> Summary {
        let wall_s = (facts.finished - facts.started)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6;
        let wall_s = (wall_s * 1000.0).round() / 1000.0;
        let busy_s = facts.busy.as_secs_f64();
        let per_s = |n: u64| {
            if busy_s > 0.0 {
                round1(n as f64 / busy_s)
            } else {
                0.0
            }
        };
        let throughput = Throughput {
            requests_per_s: per_s(run.requests()),
            completion_tokens_per_s: per_s(run.tokens.completion),
        };
        Summary {
            job: facts.job,
            started_at: crate::sink::record::timestamp(facts.started),
            finished_at: crate::sink::record::timestamp(facts.finished),
            wall_s,
            requests: RequestCounts {
                cached: self.cached,
                ..facts.requests
            },
            attempts: self.attempts,
            retries: self.retries(),
            uncertain_attempts: self.uncertain,
            stopped: facts.stopped,
            finish_reasons: self.finish_reasons.clone(),
            errors: self.errors.clone(),
            tokens: self.tokens.clone(),
            cost_usd: self.costs.clone(),
            latency_ms: self.latency.spread(),
            ttft_ms: self.ttft.spread(),
            by_endpoint: self.by_endpoint.figures(),
            throughput: throughput.clone(),
            this_run: ThisRun {
                sent: run.sent(),
                cached: run.cached,
                attempts: run.attempts,
                retries: run.retries(),
                uncertain_attempts: run.uncertain,
                tokens: run.tokens.clone(),
                cost_usd: run.costs.total,
                unpriced_requests: run.costs.unpriced_requests,
                wall_s,
                throughput,
            },
            other_keys_in_output: facts.other_keys_in_output,
            stopped_because: facts.stopped_because,
            pace: None,
            endpoint_paces: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
