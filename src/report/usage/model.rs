//! What a usage report says: groups of figures keyed by the `--by` fields,
//! a totals row, the time span, and the series the HTML charts draw.
//!
//! Built in one pass over output files (see `fold`); every format
//! (`table`, `json`, `csv`, `markdown`, `html`) is a pure function from a
//! [`Report`] to bytes.

use std::collections::BTreeMap;

use serde::Serialize;

/// A field a report can group by (`--by day,model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Model,
    ParamSet,
    Job,
    /// UTC day of `finished_at`, `YYYY-MM-DD`.
    Day,
    Status,
    FinishReason,
    ErrorKind,
    /// The output file the line was read from, as given.
    File,
    /// The name of the endpoint that answered (jobs with `[[endpoints]]`).
    Endpoint,
}

impl Field {
    /// The name used on the command line and in JSON and CSV headers.
    pub fn name(self) -> &'static str {
        match self {
            Field::Model => "model",
            Field::ParamSet => "param_set",
            Field::Job => "job",
            Field::Day => "day",
            Field::Status => "status",
            Field::FinishReason => "finish_reason",
            Field::ErrorKind => "error_kind",
            Field::File => "file",
            Field::Endpoint => "endpoint",
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The `--by` fields, in the order given.
    pub by: Vec<Field>,
    /// One per distinct combination of the `--by` values, sorted by them.
    /// Empty when `by` is empty (the totals row is then the report).
    pub groups: Vec<Group>,
    pub totals: Figures,
    /// Sum over files of each file's run span (first `started_at` to last
    /// `finished_at`), never the gap between runs.
    pub span_s: f64,
    /// The output files read, in the order given, each with its figures.
    pub files: Vec<FileFacts>,
    /// Lines with both a provider cost and a `--pricing` price: how far
    /// the two differ. None when no line has both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_check: Option<PricingCheck>,
    /// What the HTML charts draw; not part of the JSON or CSV shapes.
    #[serde(skip)]
    pub charts: Charts,
}

/// One group: the values of the `--by` fields, then its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// One value per `--by` field, in the same order; `None` where the
    /// line has none (no finish reason, no error, no `finished_at`).
    pub values: Vec<Option<String>>,
    pub figures: Figures,
}

/// The figures of a group or of the totals row (DESIGN.md, Reports).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: Requests,
    pub tokens: Tokens,
    pub cost_usd: Cost,
    /// Over `ok` lines with a latency; None when there is none.
    pub latency_ms: Option<Percentiles>,
    /// Over streamed `ok` lines with a TTFT; None when none was streamed.
    pub ttft_ms: Option<Median>,
    /// Sum of `attempts - 1`.
    pub retries: u64,
    pub uncertain_attempts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Requests {
    pub ok: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
    /// `ok` lines whose provider reported no usage.
    pub unreported: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Sum of the known costs; None when nothing is priced and some `ok`
    /// line is unpriced (never shown as $0).
    pub total: Option<f64>,
    /// The part that came from the provider's own figures.
    pub provider: f64,
    /// The part that came from prices (the job's `[pricing]` as recorded,
    /// or `--pricing`).
    pub pricing: f64,
    /// `ok` lines with no cost from either source (a failed line never is).
    pub unpriced_requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Median {
    pub p50: f64,
}

/// One output file read: its path as given, the lines counted from it and
/// its run span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileFacts {
    pub path: String,
    /// Lines counted (after dedupe against the files before it).
    pub lines: u64,
    /// Lines left out as the same call seen before.
    pub duplicates: u64,
    pub span_s: f64,
}

/// Where both a provider cost and a `--pricing` price are known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PricingCheck {
    pub requests: u64,
    pub provider_usd: f64,
    pub pricing_usd: f64,
}

/// The series the HTML charts draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Charts {
    /// Cost and tokens per UTC day, stacked by model; days in order.
    pub days: BTreeMap<String, BTreeMap<String, DayModel>>,
    /// Latency histogram of `ok` lines: contiguous buckets, low to high.
    pub latency: Vec<Bucket>,
    /// Requests by status (`ok`, `error`).
    pub by_status: BTreeMap<String, u64>,
    /// Failed requests by error kind.
    pub by_error_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayModel {
    /// Known cost; unpriced lines are counted in `unpriced_requests`.
    pub cost_usd: f64,
    pub unpriced_requests: u64,
    /// Prompt plus completion tokens reported.
    pub tokens: u64,
    pub requests: u64,
}

/// `[lo_ms, hi_ms)` held `count` lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lo_ms: f64,
    pub hi_ms: f64,
    pub count: u64,
}
