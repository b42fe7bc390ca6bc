//! `report --format html`: one self-contained page (inline CSS and SVG, no
//! script, nothing fetched) — headline figures, then the charts (`days`,
//! `svg`),
//! then the same tables as the other formats: one row per group and a
//! totals row, the files read, and the pricing check.
//!
//! Every text that comes from the files (models, jobs, paths, error kinds)
//! is escaped (`fmt::esc`); the totals carry `data-total` (the CSV column
//! names) and `data-value` (the raw figure) so a test can read them back.

mod days;
mod fmt;
mod svg;
#[cfg(test)]
mod tests;

use std::fmt::Write;

use self::fmt::{count, esc, esc_path, fin, ms, plural, span, usd};
use super::model::{Figures, Report};

const STYLE: &str = include_str!("html/page.css");

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(16 * 1024 + 600 * report.groups.len());
    let _ = write!(
        page,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="generator" content="promptbatch {version}"><title>promptbatch report</title><style>{STYLE}</style></head><body><main>"#,
        version = env!("CARGO_PKG_VERSION"),
    );
    header(&mut page, report);
    headline(&mut page, report);
    let _ = write!(
        page,
        r#"<section class="charts">{}{}{}{}</section>"#,
        days::cost_per_day(report),
        days::tokens_per_day(report),
        svg::latency(report),
        svg::requests(report),
    );
    groups(&mut page, report);
    files(&mut page, report);
    pricing_check(&mut page, report);
    let _ = write!(
        page,
        r#"<footer>Made by promptbatch {} from the output files listed above: every line is one API call, and the same call seen twice is counted once.</footer></main></body></html>"#,
        env!("CARGO_PKG_VERSION")
    );
    page.push('\n');
    page
}

fn header(page: &mut String, report: &Report) {
    let by = if report.by.is_empty() {
        "not grouped".to_string()
    } else {
        format!(
            "by {}",
            report
                .by
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = write!(
        page,
        r#"<header><h1>Usage report</h1><p>{} · {} · {} of runs</p></header>"#,
        esc(&by),
        plural(report.files.len() as u64, "file", "files"),
        span(report.span_s),
    );
}

/// The figures people look for first: requests, cost, tokens, latency, span.
fn headline(page: &mut String, report: &Report) {
    let t = &report.totals;
    let requests = t.requests.ok.saturating_add(t.requests.failed);
    let tokens = t.tokens.prompt.saturating_add(t.tokens.completion);
    let unpriced = t.cost_usd.unpriced_requests;
    let cost = match t.cost_usd.total {
        Some(total) => usd(total),
        None if unpriced > 0 => "unpriced".to_string(),
        None => "—".to_string(),
    };
    let mut cost_detail = match (t.cost_usd.total, t.cost_usd.provider, t.cost_usd.pricing) {
        (None, ..) => "no request has a cost".to_string(),
        (Some(_), _, 0.0) => "all from the provider".to_string(),
        (Some(_), 0.0, _) => "all from prices".to_string(),
        (Some(_), provider, pricing) => {
            format!("provider {} · prices {}", usd(provider), usd(pricing))
        }
    };
    if unpriced > 0 {
        let _ = write!(
            cost_detail,
            r#" · <span class="warn">+{}</span>"#,
            plural(unpriced, "unpriced request", "unpriced requests")
        );
    }
    let latency = match t.latency_ms {
        Some(p) => (
            format!("{} ms", ms(p.p50)),
            format!("p95 {} ms · p99 {} ms", ms(p.p95), ms(p.p99)),
        ),
        None => ("—".to_string(), "no ok request with a latency".to_string()),
    };
    page.push_str(r#"<section class="headline">"#);
    stat(
        page,
        "requests",
        "Requests",
        &count(requests),
        Some(requests.to_string()),
        &format!(
            "{} ok · {}{} failed{} · {}",
            count(t.requests.ok),
            if t.requests.failed > 0 {
                r#"<span class="warn">"#
            } else {
                ""
            },
            count(t.requests.failed),
            if t.requests.failed > 0 { "</span>" } else { "" },
            plural(t.retries, "retry", "retries"),
        ),
    );
    stat(
        page,
        "cost_usd",
        "Cost",
        &cost,
        t.cost_usd
            .total
            .filter(|c| c.is_finite())
            .map(|c| c.to_string()),
        &cost_detail,
    );
    stat(
        page,
        "tokens",
        "Tokens",
        &count(tokens),
        Some(tokens.to_string()),
        &format!(
            "{} prompt · {} completion{}",
            count(t.tokens.prompt),
            count(t.tokens.completion),
            if t.tokens.unreported > 0 {
                format!(
                    r#" · <span class="warn">{} without usage</span>"#,
                    count(t.tokens.unreported)
                )
            } else {
                String::new()
            }
        ),
    );
    stat(
        page,
        "latency_ms_p50",
        "Latency p50",
        &latency.0,
        t.latency_ms
            .map(|p| p.p50)
            .filter(|v| v.is_finite())
            .map(|v| v.to_string()),
        &latency.1,
    );
    stat(
        page,
        "span_s",
        "Time span",
        &span(report.span_s),
        Some(fin(report.span_s).to_string()),
        &format!(
            "summed over the runs of {}",
            plural(report.files.len() as u64, "file", "files")
        ),
    );
    page.push_str("</section>");
}

/// One headline card; `detail` is trusted markup made here.
fn stat(page: &mut String, key: &str, label: &str, value: &str, raw: Option<String>, detail: &str) {
    let raw = raw.map_or(String::new(), |r| format!(r#" data-value="{}""#, esc(&r)));
    let _ = write!(
        page,
        r#"<div class="stat" data-headline="{key}"{raw}><div class="label">{label}</div><div class="value" title="{v}">{v}</div><div class="detail">{detail}</div></div>"#,
        v = esc(value),
    );
}

/// A table cell: what people read, and the raw figure (None: no figure).
struct Cell {
    text: String,
    raw: Option<String>,
    /// No figure, or a zero: drawn faint so the figures that matter stand out.
    faint: bool,
}

impl Cell {
    fn n(v: u64) -> Cell {
        Cell {
            text: count(v),
            raw: Some(v.to_string()),
            faint: v == 0,
        }
    }

    fn f(v: Option<f64>, show: fn(f64) -> String) -> Cell {
        match v.filter(|v| v.is_finite()) {
            Some(v) => Cell {
                text: show(v),
                raw: Some(fin(v).to_string()),
                faint: v == 0.0,
            },
            None => Cell {
                text: "—".to_string(),
                raw: None,
                faint: true,
            },
        }
    }
}

/// The figures' columns, named as the CSV header names them, under the
/// heading they share.
const COLUMNS: [(&str, &str, &str); 17] = [
    ("Requests", "ok", "requests_ok"),
    ("Requests", "failed", "requests_failed"),
    ("Tokens", "prompt", "tokens_prompt"),
    ("Tokens", "completion", "tokens_completion"),
    ("Tokens", "cached", "tokens_cached"),
    ("Tokens", "reasoning", "tokens_reasoning"),
    ("Tokens", "unreported", "tokens_unreported"),
    ("Cost (USD)", "total", "cost_usd_total"),
    ("Cost (USD)", "provider", "cost_usd_provider"),
    ("Cost (USD)", "prices", "cost_usd_pricing"),
    ("Cost (USD)", "unpriced", "cost_usd_unpriced_requests"),
    ("Latency ms", "p50", "latency_ms_p50"),
    ("Latency ms", "p95", "latency_ms_p95"),
    ("Latency ms", "p99", "latency_ms_p99"),
    ("TTFT ms", "p50", "ttft_ms_p50"),
    ("Retries", "", "retries"),
    ("Uncertain attempts", "", "uncertain_attempts"),
];

/// The cells of a row, in [`COLUMNS`] order.
fn cells(f: &Figures) -> Vec<Cell> {
    // A group with nothing priced shows no dollar figure at all.
    let priced = f.cost_usd.total.is_some();
    let part = |v: f64| Cell::f(priced.then_some(v), usd);
    vec![
        Cell::n(f.requests.ok),
        Cell::n(f.requests.failed),
        Cell::n(f.tokens.prompt),
        Cell::n(f.tokens.completion),
        Cell::n(f.tokens.cached),
        Cell::n(f.tokens.reasoning),
        Cell::n(f.tokens.unreported),
        Cell::f(f.cost_usd.total, usd),
        part(f.cost_usd.provider),
        part(f.cost_usd.pricing),
        Cell::n(f.cost_usd.unpriced_requests),
        Cell::f(f.latency_ms.map(|p| p.p50), ms),
        Cell::f(f.latency_ms.map(|p| p.p95), ms),
        Cell::f(f.latency_ms.map(|p| p.p99), ms),
        Cell::f(f.ttft_ms.map(|m| m.p50), ms),
        Cell::n(f.retries),
        Cell::n(f.uncertain_attempts),
    ]
}

/// One row per group, then the totals row.
fn groups(page: &mut String, report: &Report) {
    let columns = &COLUMNS;
    let keys: Vec<&str> = if report.by.is_empty() {
        vec![""]
    } else {
        report.by.iter().map(|f| f.name()).collect()
    };
    let title = if report.groups.is_empty() {
        "Totals".to_string()
    } else {
        format!(
            "{} and totals",
            plural(report.groups.len() as u64, "group", "groups")
        )
    };
    let _ = write!(
        page,
        r#"<section><h2>{}</h2><div class="scroll"><table id="groups"><thead><tr>"#,
        esc(&title)
    );
    for key in &keys {
        let _ = write!(page, r#"<th class="key" rowspan="2">{}</th>"#, esc(key));
    }
    let mut i = 0;
    while i < columns.len() {
        let head = columns[i].0;
        let span = columns[i..].iter().take_while(|c| c.0 == head).count();
        if columns[i].1.is_empty() {
            let _ = write!(page, r#"<th class="wrap" rowspan="2">{}</th>"#, esc(head));
        } else {
            let _ = write!(page, r#"<th colspan="{span}">{}</th>"#, esc(head));
        }
        i += span;
    }
    page.push_str("</tr><tr>");
    for (_, sub, _) in columns {
        if !sub.is_empty() {
            let _ = write!(page, "<th>{}</th>", esc(sub));
        }
    }
    page.push_str("</tr></thead><tbody>");
    for g in &report.groups {
        page.push_str("<tr>");
        for v in &g.values {
            match v {
                Some(v) => key_cell(page, v),
                None => page.push_str(r#"<td class="key none" title="no value">—</td>"#),
            }
        }
        row(page, &g.figures, "data-col");
        page.push_str("</tr>");
    }
    let _ = write!(
        page,
        r#"</tbody><tfoot><tr><td class="key" colspan="{}">Total</td>"#,
        keys.len()
    );
    row(page, &report.totals, "data-total");
    page.push_str("</tr></tfoot></table></div></section>");
}

/// A `--by` value or a path: kept on one line unless it is long, then
/// broken after a `/` where it must.
fn key_cell(page: &mut String, v: &str) {
    if v.chars().count() > 40 {
        let _ = write!(page, r#"<td class="key long">{}</td>"#, esc_path(v));
    } else {
        let _ = write!(page, r#"<td class="key">{}</td>"#, esc(v));
    }
}

fn row(page: &mut String, f: &Figures, attr: &str) {
    for (cell, (_, _, name)) in cells(f).into_iter().zip(&COLUMNS) {
        let raw = cell
            .raw
            .map_or(String::new(), |r| format!(r#" data-value="{r}""#));
        let class = if cell.faint { r#" class="none""# } else { "" };
        let _ = write!(
            page,
            r#"<td{class} {attr}="{name}"{raw}>{}</td>"#,
            esc(&cell.text)
        );
    }
}

/// The output files read, with their lines, duplicates and run spans.
fn files(page: &mut String, report: &Report) {
    let _ = write!(
        page,
        r#"<section><h2>{} read</h2><div class="scroll"><table id="files" class="narrow"><thead><tr><th class="key">file</th><th>lines</th><th>duplicates</th><th>run span</th></tr></thead><tbody>"#,
        esc(&plural(report.files.len() as u64, "file", "files"))
    );
    let (mut lines, mut duplicates) = (0_u64, 0_u64);
    for f in &report.files {
        lines = lines.saturating_add(f.lines);
        duplicates = duplicates.saturating_add(f.duplicates);
        let _ = write!(
            page,
            r#"<tr>{}<td>{}</td><td>{}</td><td data-value="{}">{}</td></tr>"#,
            {
                let mut cell = String::new();
                key_cell(&mut cell, &f.path);
                cell
            },
            count(f.lines),
            count(f.duplicates),
            fin(f.span_s),
            span(f.span_s),
        );
    }
    let _ = write!(
        page,
        r#"</tbody><tfoot><tr><td class="key">Total</td><td data-total="lines" data-value="{lines}">{}</td><td data-total="duplicates" data-value="{duplicates}">{}</td><td data-total="span_s" data-value="{}">{}</td></tr></tfoot></table></div></section>"#,
        count(lines),
        count(duplicates),
        fin(report.span_s),
        span(report.span_s),
    );
}

/// Where both the provider's cost and a `--pricing` price are known.
fn pricing_check(page: &mut String, report: &Report) {
    let Some(c) = &report.pricing_check else {
        return;
    };
    let difference = c.pricing_usd - c.provider_usd;
    let compared = if difference == 0.0 {
        "the same".to_string()
    } else {
        let pct = difference / c.provider_usd * 100.0;
        format!(
            "{}{} {}",
            usd(difference.abs()),
            if pct.is_finite() {
                format!(" ({pct:+.1}%)")
            } else {
                String::new()
            },
            if difference > 0.0 { "higher" } else { "lower" }
        )
    };
    let _ = write!(
        page,
        r#"<section id="pricing-check"><h2>Prices against the provider's figures</h2><p>{} had both a cost from the provider and a price from --pricing: provider <span data-check="provider_usd" data-value="{}">{}</span>, prices <span data-check="pricing_usd" data-value="{}">{}</span>; the prices are {}. The provider's figure is the one counted.</p></section>"#,
        esc(&plural(c.requests, "request", "requests")),
        fin(c.provider_usd),
        usd(c.provider_usd),
        fin(c.pricing_usd),
        usd(c.pricing_usd),
        compared,
    );
}
