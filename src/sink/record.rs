//! The output record: one JSON line per request, exactly the contract's fields.
//!
//! Built from a scheduler [`Outcome`]; read back (whole or just its head) by
//! the resume scan and the usage report.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cache::Hit;
use crate::client::{ErrorKind, RawJson, Reply, Usage};
use crate::job::Pricing;
pub use crate::scheduler::pricing::CostSource;
use crate::scheduler::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub message: String,
}

/// One line of the output JSONL. Field order is the contract's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub job: String,
    pub id: String,
    pub param_set: String,
    pub status: Status,
    pub model: String,
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub cost_source: Option<CostSource>,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub attempts: u32,
    pub uncertain_attempts: u32,
    pub client_request_id: String,
    pub request_sha256: String,
    pub error: Option<RecordError>,
    pub response_id: Option<String>,
    pub provider: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub params: Arc<Map<String, Value>>,
    pub input: Arc<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<RawJson>,
    /// The model's refusal text, when it refused instead of answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Structured output: the content parsed as JSON, when JSON was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<RawJson>,
    /// With a budget: what this request counts against it (its cost, or its
    /// worst case when unknown, plus a worst case per uncertain attempt), so
    /// a rerun charges exactly what this run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_charge_usd: Option<f64>,
    /// The charges of this key's earlier lines that compaction dropped, so
    /// the file's total charge never shrinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_charge_usd: Option<f64>,
    /// Answered from the response cache (`--cache`) without sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// Of a line answered from the cache: what its reply cost when it was
    /// sent (null when that was not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_cost_usd: Option<f64>,
    /// The name of the endpoint that gave the final answer, when the job
    /// has `[[endpoints]]`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Batch mode: the provider batch that answered the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

/// The few fields resume and compaction need; parsing skips the rest
/// without allocating it, and borrows the strings it keeps from the line
/// (a copy only for a string with escapes), so reading a million lines
/// allocates nothing per line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordHead<'a> {
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    pub status: Status,
    #[serde(default, borrow)]
    pub request_sha256: Cow<'a, str>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub budget_charge_usd: Option<f64>,
    #[serde(default)]
    pub prior_charge_usd: Option<f64>,
    /// The requested model and what its reply used: `validate` expects a
    /// request to use what earlier replies of its model did.
    #[serde(default, borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<Lenient<UsageHead>>,
}

/// A field read when it has the expected shape, skipped otherwise: a figure
/// nothing but an estimate reads is no reason to refuse a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Lenient<T> {
    Read(T),
    Other(serde::de::IgnoredAny),
}

impl<T> Lenient<T> {
    pub fn get(&self) -> Option<&T> {
        match self {
            Lenient::Read(value) => Some(value),
            Lenient::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UsageHead {
    #[serde(default)]
    pub completion_tokens: Option<Lenient<u64>>,
}

impl RecordHead<'_> {
    /// The completion tokens of an `ok` line that reported them.
    pub fn completion_tokens(&self) -> Option<u64> {
        if self.status != Status::Ok {
            return None;
        }
        let usage = self.usage.as_ref()?.get()?;
        usage.completion_tokens.as_ref()?.get().copied()
    }

    /// What the line itself counts against a budget: its `budget_charge_usd`
    /// when a budget was set, else its cost.
    pub fn charge(&self) -> f64 {
        self.budget_charge_usd.or(self.cost_usd).unwrap_or(0.0)
    }

    /// Its own charge plus what compaction folded into it from dropped lines.
    pub fn total_charge(&self) -> f64 {
        // Saturating: two huge figures make no infinity, which sums would skip.
        crate::scheduler::pricing::add_usd(self.charge(), self.prior_charge_usd.unwrap_or(0.0))
    }

    /// A cost or charge that is negative or not finite was not written by a
    /// run: it would give a budget room it does not have.
    pub fn bad_figure(&self) -> Option<String> {
        [
            ("cost_usd", self.cost_usd),
            ("budget_charge_usd", self.budget_charge_usd),
            ("prior_charge_usd", self.prior_charge_usd),
        ]
        .into_iter()
        .find_map(|(name, value)| {
            value.filter(|v| !v.is_finite() || *v < 0.0).map(|v| {
                format!("{name} is {v}, and a run never writes a negative or infinite figure")
            })
        })
    }
}

/// The fields every record has, with their types: a first line without them
/// is not a promptbatch output (a data file with `key` and `status` columns,
/// say), and is never appended to or compacted. Parsed only to prove the
/// fields are there (hence `_` names: nothing reads them).
#[derive(Debug, Deserialize)]
pub struct RecordCheck {
    #[serde(rename = "key")]
    _key: String,
    #[serde(rename = "job")]
    _job: String,
    #[serde(rename = "id")]
    _id: String,
    #[serde(rename = "param_set")]
    _param_set: String,
    #[serde(rename = "status")]
    _status: Status,
    #[serde(rename = "attempts")]
    _attempts: u32,
    #[serde(rename = "uncertain_attempts")]
    _uncertain_attempts: u32,
    #[serde(rename = "client_request_id")]
    _client_request_id: String,
    #[serde(rename = "request_sha256")]
    _request_sha256: String,
    #[serde(rename = "params")]
    _params: Map<String, Value>,
    #[serde(rename = "input")]
    _input: Map<String, Value>,
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Record {
    pub fn from_outcome(job: &str, outcome: Outcome, pricing: &Pricing) -> Record {
        let Outcome {
            request: req,
            result,
            attempts,
            uncertain_attempts,
            started_at,
            finished_at,
            budget_charge_usd,
            endpoint,
            batch_id,
        } = outcome;
        let client_request_id = req.client_request_id(attempts.max(1));
        let mut record = Record {
            key: req.key,
            job: job.to_string(),
            id: req.id,
            param_set: req.param_set.to_string(),
            status: Status::Ok,
            model: req.model,
            content: None,
            finish_reason: None,
            usage: None,
            cost_usd: None,
            cost_source: None,
            latency_ms: None,
            ttft_ms: None,
            attempts,
            uncertain_attempts,
            client_request_id,
            request_sha256: req.sha256,
            error: None,
            response_id: None,
            provider: None,
            started_at: started_at.map(timestamp),
            finished_at: finished_at.map(timestamp),
            params: req.params,
            input: req.input,
            response_model: None,
            tool_calls: None,
            refusal: None,
            json: None,
            budget_charge_usd,
            prior_charge_usd: None,
            cached: None,
            cached_cost_usd: None,
            endpoint,
            batch_id: batch_id.clone(),
        };
        match result {
            Ok(reply) => {
                let (cost, source) = pricing.reply_cost(&record.model, &reply).unzip();
                let cost = cost.map(significant);
                record.content = reply.content;
                record.finish_reason = reply.finish_reason;
                record.usage = reply.usage;
                record.cost_usd = cost;
                record.cost_source = source;
                // A batch answers no request on its own: no latency to tell.
                record.latency_ms = batch_id.is_none().then(|| round1(reply.latency_ms));
                record.ttft_ms = reply.ttft_ms.map(round1);
                record.response_id = reply.response_id;
                record.provider = reply.provider;
                record.response_model = reply.response_model;
                record.tool_calls = reply.tool_calls;
                record.refusal = reply.refusal;
                record.json = reply.json;
            }
            Err(failure) => {
                record.status = Status::Error;
                record.error = Some(RecordError {
                    kind: failure.kind,
                    status: failure.status,
                    message: failure.message,
                });
            }
        }
        record
    }

    /// A request answered from the cache: a fresh `ok` line of the request
    /// with the stored reply's fields (whatever they are: `json` and any
    /// field a reply grows ride along), no attempt, nothing spent.
    /// `latency_ms` is null: nothing was sent, and the lookup's time is no
    /// latency of an endpoint (it would drag the run's percentiles down).
    pub fn from_hit(job: &str, hit: Hit) -> Record {
        let Hit {
            request,
            reply,
            started_at,
            finished_at,
        } = hit;
        let outcome = Outcome {
            request,
            result: Ok(Reply::default()),
            attempts: 0,
            uncertain_attempts: 0,
            started_at: Some(started_at),
            finished_at: Some(finished_at),
            budget_charge_usd: None,
            endpoint: None,
            batch_id: None,
        };
        let mut base = Record::from_outcome(job, outcome, &Pricing::default());
        base.latency_ms = None;
        base.cached = Some(true);
        // Fields as text, never as trees: a stored `json` may be megabytes.
        let merged = (|| {
            let stored: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&reply)?;
            let cost = stored
                .get("cost_usd")
                .and_then(|raw| serde_json::from_str::<Option<f64>>(raw.get()).ok())
                .flatten();
            let mut fields: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(&serde_json::to_string(&base)?)?;
            fields.extend(stored);
            let mut record: Record = serde_json::from_str(&serde_json::to_string(&fields)?)?;
            record.cached_cost_usd = cost;
            Ok::<_, serde_json::Error>(record)
        })();
        match merged {
            Ok(mut record) => {
                // Nothing spent: a known 0, from no provider and no price
                // (`cached_cost_usd` keeps the figure and the stored line
                // where it came from).
                record.cost_usd = Some(0.0);
                record.cost_source = None;
                record
            }
            Err(e) => {
                // Only a store edited by hand: the line fails, and a rerun sends it.
                base.status = Status::Error;
                base.error = Some(RecordError {
                    kind: ErrorKind::BadResponse,
                    status: None,
                    message: format!("the cached reply could not be read ({e}); run again without --cache, or delete the cache"),
                });
                base
            }
        }
    }

    /// Appends the record as one JSON line, newline included, to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("a record always serializes");
        out.push(b'\n');
    }
}

/// To 12 significant digits: float noise such as 6.100000000000001e-6 (from
/// a product of tokens and a price, or a sum of thousands of small costs in
/// a report) is no figure anyone sent; anything a provider sends (its own
/// decimal text) keeps every digit it had.
pub fn significant(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// To one decimal: latencies to 0.1 ms (finer figures are noise and only
/// lengthen the line), here and in the summary and the report.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::significant;

    #[test]
    fn costs_lose_float_noise_but_no_digit_a_provider_sent() {
        assert_eq!(significant(6.100000000000001e-6), 6.1e-6);
        assert_eq!(significant(0.000012345678), 0.000012345678);
        assert_eq!(significant(0.1 + 0.2), 0.3);
        assert_eq!(significant(0.0), 0.0);
    }
}
