//! What `validate` prints on stdout: the job's requests and the estimate of
//! what they cost, as a small aligned table for people or (`--json`) as one
//! JSON document for scripts. Pure functions from figures to text.

use std::fmt::Write;

use serde::Serialize;

use super::estimate::{Basis, Priced, Row, Totals};
use super::scan::Scan;
use crate::job::Job;
use crate::plan::request::{PROMPT_BOUND_METHOD, PROMPT_ESTIMATE_METHOD};
use crate::printer::count;
use crate::report::table::{columns, usd};

/// How the expected cost is made, in words.
pub const EXPECTED_METHOD: &str = "the prompt estimate at the input price + the mean completion tokens of the output's earlier ok lines of the model, else half the token cap, at the output price";

/// How the worst case is made, in words.
fn worst_method() -> String {
    format!("the prompt bound ({PROMPT_BOUND_METHOD}) at the input price + the token cap at the output price")
}

/// What validate found, beside the estimate.
pub struct Validated<'a> {
    pub job: &'a Job,
    pub input: &'a str,
    pub scan: &'a Scan,
    pub priced: &'a Priced,
    /// What the output already records as charged (a budget counts it).
    pub recorded_usd: f64,
    /// Said on stderr too; here as data.
    pub warnings: &'a [String],
    /// With `--cache`: how many of the requests to send it would answer.
    pub cached: Option<u64>,
}

/// The table and the lines around it.
pub fn text(v: &Validated) -> String {
    let (job, scan, priced) = (v.job, v.scan, v.priced);
    let mut out = String::new();
    let sets = job.param_sets.len() as u64;
    let _ = writeln!(
        out,
        "job {:?}: {} x {} = {} from {}",
        job.name,
        count(scan.shard_rows, "row"),
        count(sets, "parameter set"),
        count(scan.requests(), "request"),
        v.input
    );
    if job.shard.is_split() {
        let _ = writeln!(
            out,
            "shard {}: the {} of {} checked whose id hashes to {} (limits: {})",
            job.shard,
            count(scan.shard_rows, "row"),
            scan.rows,
            job.shard.index,
            shard_limits(job)
        );
    }
    let mut table = vec![[
        "set",
        "model",
        "requests",
        "prompt tokens (est.)",
        "worst case",
        "expected",
        "expected from",
    ]
    .map(String::from)];
    for row in &priced.sets {
        table.push([
            row.param_set.clone(),
            row.model.clone(),
            row.sums.requests.to_string(),
            row.sums.prompt_tokens.to_string(),
            worst_cell(row.worst_case_usd, row.price.is_some()),
            cost_cell(row.expected_usd),
            basis_cell(row),
        ]);
    }
    let t = &priced.totals;
    table.push([
        "total".into(),
        String::new(),
        t.sums.requests.to_string(),
        t.sums.prompt_tokens.to_string(),
        cost_cell(t.worst_case_usd),
        cost_cell(t.expected_usd),
        left_out(t),
    ]);
    out.push_str(&align(&table));
    let _ = writeln!(out, "prompt tokens (est.): {PROMPT_ESTIMATE_METHOD}");
    let _ = writeln!(out, "worst case: {}", worst_method());
    let _ = writeln!(out, "expected: {EXPECTED_METHOD}");
    let _ = write!(
        out,
        "output {}: {} already done, {} to send",
        job.output.path.display(),
        count(scan.resumed, "request"),
        scan.to_send()
    );
    if let Some(n) = v.cached {
        let _ = write!(out, " ({n} of them answered from the cache)");
    }
    if scan.resumed > 0 && scan.to_send() > 0 {
        let s = &priced.to_send;
        let _ = write!(
            out,
            ": worst case {}, expected {}",
            cost_cell(s.worst_case_usd),
            cost_cell(s.expected_usd)
        );
    }
    out.push('\n');
    out.push_str("nothing was sent\n");
    out
}

/// This shard's limits as it runs with them (divided, or not with `per_shard`).
fn limit_figures(job: &Job) -> Vec<String> {
    let l = &job.limits;
    let mut parts = Vec::new();
    if l.requests_per_minute > 0 {
        parts.push(format!("{} requests/min", l.requests_per_minute));
    }
    if l.tokens_per_minute > 0 {
        parts.push(format!("{} tokens/min", l.tokens_per_minute));
    }
    if l.max_cost_usd > 0.0 {
        parts.push(format!("budget {}", usd(l.max_cost_usd)));
    }
    parts
}

fn shard_limits(job: &Job) -> String {
    let parts = limit_figures(job);
    let how = match job.limits.per_shard {
        true => "each shard's own, per_shard = true",
        false => "the job's divided by the number of shards",
    };
    match parts.is_empty() {
        true => "none set".into(),
        false => format!("{}, {how}", parts.join(", ")),
    }
}

/// The run's start line on a shard: `" in shard 1/4 (8 rows; 150
/// requests/min: the job's divided by 4; from --shard)"`; nothing when the job is whole.
pub(super) fn start_words(job: &Job, scan: &Scan) -> String {
    if !job.shard.is_split() {
        return String::new();
    }
    let parts = limit_figures(job);
    let limits = match (parts.is_empty(), job.limits.per_shard) {
        (true, _) => String::new(),
        (false, true) => format!("; {} (per_shard)", parts.join(", ")),
        (false, false) => format!(
            "; {}: the job's divided by {}",
            parts.join(", "),
            job.shard.count
        ),
    };
    format!(
        " in shard {} ({}{limits}; from {})",
        job.shard,
        count(scan.shard_rows, "row"),
        job.shard_from,
    )
}

/// A figure, or "unknown" (never $0 for what is not known).
fn cost_cell(usd_figure: Option<f64>) -> String {
    usd_figure.map_or_else(|| "unknown".into(), usd)
}

fn worst_cell(worst: Option<f64>, priced: bool) -> String {
    match worst {
        Some(x) => usd(x),
        // Priced but without a cap: no bound to give.
        None if priced => "unbounded".into(),
        None => "unknown".into(),
    }
}

fn basis_cell(row: &Row) -> String {
    if row.price.is_none() {
        return format!("no [pricing] for {}", row.model);
    }
    let basis = match row.basis {
        Basis::EarlierLines(n) => count(n, "earlier line"),
        Basis::HalfTokenCap => "half the token cap".into(),
        Basis::Unknown => "no token cap, no earlier line".into(),
    };
    match (row.basis, row.sums.uncapped) {
        (Basis::Unknown, _) | (_, 0) => basis,
        (_, n) => format!("{basis}; {n} without a token cap"),
    }
}

/// What the totals leave out, in words.
fn left_out(t: &Totals) -> String {
    let mut parts = Vec::new();
    if t.unpriced_requests > 0 {
        parts.push(format!(
            "{} unpriced",
            count(t.unpriced_requests, "request")
        ));
    }
    if t.uncapped_requests > 0 {
        parts.push(format!(
            "{} without a token cap",
            count(t.uncapped_requests, "request")
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("leaves out {}", parts.join(", "))
    }
}

/// Columns padded to their widest cell; figures (columns 2-5) to the right.
fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let (lines, _) = columns(rows, |i| (2..=5).contains(&i));
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// `validate --json`: one document, its fields in this order.
#[derive(Serialize)]
struct Document<'a> {
    job: &'a str,
    input: &'a str,
    output: String,
    rows: u64,
    /// `{"index", "count", "rows", "per_shard"}` when the job is split, else null.
    shard: Option<ShardJson>,
    param_sets: Vec<&'a str>,
    requests: u64,
    resumed: u64,
    to_send: u64,
    /// With `--cache`: how many of `to_send` it would answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    cached: Option<u64>,
    estimate: EstimateJson<'a>,
    budget_usd: Option<f64>,
    recorded_cost_usd: f64,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct ShardJson {
    index: u64,
    count: u64,
    /// The rows of this shard (`rows` counts every row checked).
    rows: u64,
    per_shard: bool,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u64>,
    max_cost_usd: Option<f64>,
}

#[derive(Serialize)]
struct EstimateJson<'a> {
    method: &'static str,
    bound_method: &'static str,
    worst_case_method: String,
    expected_method: &'static str,
    sets: Vec<SetJson<'a>>,
    totals: TotalsJson,
    to_send: TotalsJson,
}

#[derive(Serialize)]
struct SetJson<'a> {
    param_set: &'a str,
    model: &'a str,
    requests: u64,
    prompt_tokens: u64,
    prompt_tokens_bound: u64,
    token_cap: Option<u64>,
    uncapped_requests: u64,
    expected_completion_tokens: Option<u64>,
    worst_case_usd: Option<f64>,
    expected_usd: Option<f64>,
    expected_basis: Option<&'static str>,
    earlier_lines: u64,
    priced: bool,
}

#[derive(Serialize)]
struct TotalsJson {
    requests: u64,
    prompt_tokens: u64,
    prompt_tokens_bound: u64,
    token_cap: Option<u64>,
    worst_case_usd: Option<f64>,
    expected_usd: Option<f64>,
    unpriced_requests: u64,
    uncapped_requests: u64,
}

/// The same as one JSON document: what scripts read with `validate --json`.
pub fn json(v: &Validated) -> String {
    let (job, scan, priced) = (v.job, v.scan, v.priced);
    let budget = job.limits.max_cost_usd;
    let doc = Document {
        job: &job.name,
        input: v.input,
        output: job.output.path.display().to_string(),
        rows: scan.rows,
        shard: job.shard.is_split().then(|| ShardJson {
            index: job.shard.index,
            count: job.shard.count,
            rows: scan.shard_rows,
            per_shard: job.limits.per_shard,
            requests_per_minute: Some(job.limits.requests_per_minute).filter(|n| *n > 0),
            tokens_per_minute: Some(job.limits.tokens_per_minute).filter(|n| *n > 0),
            max_cost_usd: Some(job.limits.max_cost_usd).filter(|n| *n > 0.0),
        }),
        param_sets: job.param_sets.iter().map(|s| s.name.as_str()).collect(),
        requests: scan.requests(),
        resumed: scan.resumed,
        to_send: scan.to_send(),
        cached: v.cached,
        estimate: EstimateJson {
            method: PROMPT_ESTIMATE_METHOD,
            bound_method: PROMPT_BOUND_METHOD,
            worst_case_method: worst_method(),
            expected_method: EXPECTED_METHOD,
            sets: priced.sets.iter().map(set_json).collect(),
            totals: totals_json(&priced.totals),
            to_send: totals_json(&priced.to_send),
        },
        budget_usd: (budget > 0.0).then_some(budget),
        recorded_cost_usd: v.recorded_usd,
        warnings: v.warnings,
    };
    serde_json::to_string(&doc).expect("plain fields always serialize")
}

fn set_json(row: &Row) -> SetJson<'_> {
    let (expected_basis, earlier_lines) = match row.basis {
        Basis::EarlierLines(n) => (Some("earlier_lines"), n),
        Basis::HalfTokenCap => (Some("half_token_cap"), 0),
        Basis::Unknown => (None, 0),
    };
    SetJson {
        param_set: &row.param_set,
        model: &row.model,
        requests: row.sums.requests,
        prompt_tokens: row.sums.prompt_tokens,
        prompt_tokens_bound: row.sums.prompt_bound,
        token_cap: row.sums.token_cap(),
        uncapped_requests: row.sums.uncapped,
        expected_completion_tokens: row.expected_completion_tokens,
        worst_case_usd: row.worst_case_usd,
        expected_usd: row.expected_usd,
        expected_basis,
        earlier_lines,
        priced: row.price.is_some(),
    }
}

fn totals_json(t: &Totals) -> TotalsJson {
    TotalsJson {
        requests: t.sums.requests,
        prompt_tokens: t.sums.prompt_tokens,
        prompt_tokens_bound: t.sums.prompt_bound,
        token_cap: t.sums.token_cap(),
        worst_case_usd: t.worst_case_usd,
        expected_usd: t.expected_usd,
        unpriced_requests: t.unpriced_requests,
        uncapped_requests: t.uncapped_requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "earlier line"), "1 earlier line");
        assert_eq!(count(0, "request"), "0 requests");
        assert_eq!(count(2, "request"), "2 requests");
    }

    #[test]
    fn columns_align_and_figures_sit_right() {
        let rows = [
            ["set", "model", "n", "p", "w", "e", "from"].map(String::from),
            ["precise", "m", "12", "3", "$1", "$0.5", "x"].map(String::from),
        ];
        let text = align(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "set      model   n  p   w     e  from");
        assert_eq!(lines[1], "precise  m      12  3  $1  $0.5  x");
    }
}
