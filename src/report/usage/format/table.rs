//! `--format table`, the default: aligned columns for a terminal, one row
//! per group and a totals row, then the span, the cost's sources and the
//! price check. Columns that are zero everywhere (cached tokens, TTFT, ...)
//! are left out; an unknown cost reads `unpriced`, never $0.

use std::fmt::Write;

use super::{cost, footer, maybe};
use crate::report::table::columns;
use crate::report::usage::model::{Figures, Report};

/// The header and rows (groups, then totals) people read, and which
/// columns hold numbers (aligned right). Shared with `markdown`.
pub struct Grid {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub numeric: Vec<bool>,
}

struct Column {
    name: &'static str,
    /// Shown only when the totals row has something in it.
    optional: bool,
    cell: fn(&Figures) -> String,
}

const COLUMNS: &[Column] = &[
    Column {
        name: "ok",
        optional: false,
        cell: |f| f.requests.ok.to_string(),
    },
    Column {
        name: "failed",
        optional: false,
        cell: |f| f.requests.failed.to_string(),
    },
    Column {
        name: "prompt tok",
        optional: false,
        cell: |f| f.tokens.prompt.to_string(),
    },
    Column {
        name: "completion tok",
        optional: false,
        cell: |f| f.tokens.completion.to_string(),
    },
    Column {
        name: "cached tok",
        optional: true,
        cell: |f| f.tokens.cached.to_string(),
    },
    Column {
        name: "reasoning tok",
        optional: true,
        cell: |f| f.tokens.reasoning.to_string(),
    },
    Column {
        name: "no usage",
        optional: true,
        cell: |f| f.tokens.unreported.to_string(),
    },
    Column {
        name: "cost",
        optional: false,
        cell: |f| cost(f.cost_usd.total),
    },
    Column {
        name: "unpriced",
        optional: true,
        cell: |f| f.cost_usd.unpriced_requests.to_string(),
    },
    Column {
        name: "p50 ms",
        optional: false,
        cell: |f| maybe(f.latency_ms.map(|l| l.p50)),
    },
    Column {
        name: "p95 ms",
        optional: false,
        cell: |f| maybe(f.latency_ms.map(|l| l.p95)),
    },
    Column {
        name: "p99 ms",
        optional: false,
        cell: |f| maybe(f.latency_ms.map(|l| l.p99)),
    },
    Column {
        name: "ttft p50 ms",
        optional: true,
        cell: |f| maybe(f.ttft_ms.map(|t| t.p50)),
    },
    Column {
        name: "retries",
        optional: false,
        cell: |f| f.retries.to_string(),
    },
    Column {
        name: "uncertain",
        optional: true,
        cell: |f| f.uncertain_attempts.to_string(),
    },
];

/// Empty, zero or missing: an optional column with this in its totals is left out.
fn blank(cell: &str) -> bool {
    matches!(cell, "0" | "-" | "")
}

pub fn grid(report: &Report) -> Grid {
    let shown: Vec<&Column> = (COLUMNS.iter())
        .filter(|c| !c.optional || !blank(&(c.cell)(&report.totals)))
        .collect();
    let mut header: Vec<String> = report.by.iter().map(|f| f.name().to_string()).collect();
    let mut numeric = vec![false; header.len()];
    if header.is_empty() {
        header.push(String::new());
        numeric.push(false);
    }
    let lead = header.len();
    header.extend(shown.iter().map(|c| c.name.to_string()));
    numeric.extend(shown.iter().map(|_| true));
    let row = |values: Vec<String>, f: &Figures| {
        let mut row = values;
        row.extend(shown.iter().map(|c| (c.cell)(f)));
        row
    };
    let mut rows: Vec<Vec<String>> = (report.groups.iter())
        .map(|g| {
            let values = (g.values.iter())
                .map(|v| {
                    v.as_deref()
                        .map_or("-".into(), |v| crate::client::printable(v).into_owned())
                })
                .collect();
            row(values, &g.figures)
        })
        .collect();
    let mut totals = vec![String::new(); lead];
    totals[0] = "total".into();
    rows.push(row(totals, &report.totals));
    Grid {
        header,
        rows,
        numeric,
    }
}

pub fn render(report: &Report) -> String {
    let g = grid(report);
    let rows: Vec<&[String]> = std::iter::once(g.header.as_slice())
        .chain(g.rows.iter().map(Vec::as_slice))
        .collect();
    let (lines, width) = columns(&rows, |i| g.numeric.get(i) == Some(&true));
    let mut out = String::new();
    // Under the header's line: the groups, a rule, then the totals.
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if i == last && last > 1 {
            let _ = writeln!(out, "{}", "-".repeat(width));
        }
        let _ = writeln!(out, "{line}");
    }
    for note in footer(report) {
        let _ = writeln!(out, "{note}");
    }
    out
}
