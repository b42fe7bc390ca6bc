//! The report's formats, each a pure function from a [`Report`] to text:
//! `table` for a terminal, `json` and `csv` for programs, `markdown` for a
//! README or a ticket, `html` for people (charts and tables in one file).

pub mod csv;
pub mod json;
pub mod markdown;
pub mod table;

use std::path::Path;

use super::model::{Figures, Report};
use crate::cli::ReportFormat;
use crate::printer::count_as as count;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    Markdown,
    Html,
}

impl From<ReportFormat> for Format {
    fn from(f: ReportFormat) -> Format {
        match f {
            ReportFormat::Table => Format::Table,
            ReportFormat::Json => Format::Json,
            ReportFormat::Csv => Format::Csv,
            ReportFormat::Markdown => Format::Markdown,
            ReportFormat::Html => Format::Html,
        }
    }
}

impl Format {
    /// The format a file's extension asks for (`-o week.html`), if any.
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            _ => return None,
        })
    }
}

/// `report` in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table::render(report),
        Format::Json => json::render(report),
        Format::Csv => csv::render(report),
        Format::Markdown => markdown::render(report),
        Format::Html => super::html::render(report),
    }
}

/// The flat columns of a group's figures (`requests_ok`, ..., `uncertain_attempts`)
/// with their values, in the JSON's order; null where there is no figure.
pub fn flat(figures: &Figures) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let value = serde_json::to_value(figures).unwrap_or_default();
    flatten("", &value, &mut out);
    // Absent percentiles serialise as one null: give them their columns.
    let mut full = Vec::with_capacity(COLUMNS.len());
    for name in COLUMNS {
        let found = out.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        full.push((name.to_string(), found.unwrap_or(serde_json::Value::Null)));
    }
    full
}

/// Every flat column of [`Figures`], in order.
pub const COLUMNS: [&str; 17] = [
    "requests_ok",
    "requests_failed",
    "tokens_prompt",
    "tokens_completion",
    "tokens_cached",
    "tokens_reasoning",
    "tokens_unreported",
    "cost_usd_total",
    "cost_usd_provider",
    "cost_usd_pricing",
    "cost_usd_unpriced_requests",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "ttft_ms_p50",
    "retries",
    "uncertain_attempts",
];

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flatten(&name, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// A cost for people: dollars, or `unpriced` when nothing is known (never $0).
pub fn cost(total: Option<f64>) -> String {
    match total {
        Some(usd) => crate::report::table::usd(usd),
        None => "unpriced".to_string(),
    }
}

/// A figure that may be missing, for people.
pub fn maybe(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// The lines under a table for people: span, files, price check.
pub fn footer(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    let files = report.files.len() as u64;
    let duplicates: u64 = report.files.iter().map(|f| f.duplicates).sum();
    let mut what = format!(
        "{} over {}, span {:.1} s (the sum of each file's run)",
        count(
            report.totals.requests.ok + report.totals.requests.failed,
            "request",
            "requests"
        ),
        count(files, "file", "files"),
        report.span_s
    );
    if duplicates > 0 {
        what.push_str(&format!(
            "; {} of calls already counted left out (copies, shards)",
            count(duplicates, "repeated line", "repeated lines")
        ));
    }
    lines.push(what);
    let c = &report.totals.cost_usd;
    let usd = crate::report::table::usd;
    let mut sources = Vec::new();
    if c.provider > 0.0 {
        sources.push(format!("{} from the provider", usd(c.provider)));
    }
    if c.pricing > 0.0 {
        sources.push(format!("{} from prices", usd(c.pricing)));
    }
    let mut what = format!("cost {}", cost(c.total));
    if !sources.is_empty() {
        what.push_str(&format!(": {}", sources.join(", ")));
    }
    if c.unpriced_requests > 0 {
        what.push_str(&format!(
            "; {} unpriced (no provider cost, no price for the model: see --pricing)",
            count(c.unpriced_requests, "request", "requests")
        ));
    }
    lines.push(what);
    if let Some(check) = &report.pricing_check {
        lines.push(price_check(check));
    }
    lines
}

/// Where both the provider and `--pricing` priced lines: how far they differ.
pub fn price_check(c: &super::model::PricingCheck) -> String {
    let diff = c.pricing_usd - c.provider_usd;
    let pct = if c.provider_usd > 0.0 {
        format!(" ({:+.1}%)", diff / c.provider_usd * 100.0)
    } else {
        String::new()
    };
    format!(
        "price check over {} with both figures: provider {}, --pricing {}, difference {}{}{pct}",
        count(c.requests, "request", "requests"),
        crate::report::table::usd(c.provider_usd),
        crate::report::table::usd(c.pricing_usd),
        if diff < 0.0 { "-" } else { "+" },
        crate::report::table::usd(diff.abs()),
    )
}
