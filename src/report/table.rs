//! The summary as a readable table: a pure function from a [`Summary`] to
//! text; and the pieces other tables for people share (dollars, costs,
//! aligned columns).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::summary::{EndpointFigures, Spread, Summary, MAX_NAMED};
use crate::printer::{count, count_as, heading};
use crate::scheduler::{PaceReport, StopReason};

/// The table without colour (for a file, a pipe, or a test).
pub fn render(s: &Summary) -> String {
    render_styled(s, false)
}

/// The table; `color` puts its title and headings in bold (stderr on a terminal).
pub fn render_styled(s: &Summary, color: bool) -> String {
    let mut out = String::new();
    let r = &s.requests;
    // Each row's heading, padded before it is styled so the columns line up.
    let head = |name: &str| heading(&format!("{name:<13}"), color);
    let _ = writeln!(
        out,
        "{} · {} · {:.1} s",
        heading("promptbatch", color),
        s.job,
        s.wall_s
    );
    if s.requests.resumed > 0 {
        let _ = writeln!(
            out,
            "  (the job as its output stands: resumed lines included)"
        );
    }
    let _ = writeln!(
        out,
        "  {}{} total: {} ok, {} failed, {} resumed, {} not sent",
        head("requests"),
        r.total,
        r.ok,
        r.failed,
        r.resumed,
        r.not_sent
    );
    if r.cached > 0 || s.this_run.cached > 0 {
        let _ = writeln!(
            out,
            "  {}{} of the ok lines answered from the cache, {} of them in this run (nothing sent or spent for those)",
            head("cached"),
            r.cached,
            s.this_run.cached
        );
    }
    let _ = writeln!(
        out,
        "  {}{} ({}, {} uncertain: may be billed)",
        head("attempts"),
        s.attempts,
        count_as(s.retries, "retry", "retries"),
        s.uncertain_attempts
    );
    if let Some(stopped) = s.stopped {
        let _ = writeln!(out, "  {}{}", head("stopped"), stop_reason(stopped));
        if let Some(why) = &s.stopped_because {
            let _ = writeln!(out, "    {} {why}", heading("last error", color));
        }
    }
    if !s.finish_reasons.is_empty() {
        let _ = writeln!(out, "  {}{}", head("finish"), counts(&s.finish_reasons));
    }
    if !s.errors.is_empty() {
        let _ = writeln!(out, "  {}{}", head("errors"), counts(&s.errors));
    }
    let t = &s.tokens;
    let _ = write!(
        out,
        "  {}{} prompt + {} completion = {}",
        head("tokens"),
        t.prompt,
        t.completion,
        t.total
    );
    if t.unreported > 0 {
        let _ = write!(
            out,
            " ({} reported no usage)",
            count(t.unreported, "request")
        );
    }
    out.push('\n');
    let c = &s.cost_usd;
    let _ = write!(
        out,
        "  {}{}",
        head("cost"),
        cost(c.total, c.unpriced_requests, c.by_model.is_empty())
    );
    if c.unpriced_requests > 0 {
        out.push_str(" (add [pricing] to price them)");
    }
    out.push('\n');
    if c.by_model.len() > 1 || c.by_param_set.len() > 1 {
        let _ = writeln!(
            out,
            "    {}{}",
            heading("by model   ", color),
            amounts(&c.by_model)
        );
        let _ = writeln!(
            out,
            "    {}{}",
            heading("by set     ", color),
            amounts(&c.by_param_set)
        );
    }
    if let Some(l) = &s.latency_ms {
        let _ = writeln!(out, "  {}{}", head("latency ms"), spread(l));
    }
    if let Some(l) = &s.ttft_ms {
        let _ = writeln!(out, "  {}{}", head("ttft ms"), spread(l));
    }
    if !s.by_endpoint.is_empty() {
        let _ = writeln!(out, "  {}", heading("by endpoint", color));
        out.push_str(&endpoints(&s.by_endpoint));
    }
    let run = &s.this_run;
    if run.sent != r.ok + r.failed || r.resumed > 0 {
        // A resumed run: the job's totals above, this run's own part here.
        let _ = writeln!(
            out,
            "  {}{} sent ({}, {}, {} uncertain), {}, {}",
            head("this run"),
            run.sent,
            count(run.attempts, "attempt"),
            count_as(run.retries, "retry", "retries"),
            run.uncertain_attempts,
            count(run.tokens.total, "token"),
            // This run's priced requests are not counted apart: nothing
            // spent and some unpriced reads as unpriced, not as $0.
            cost(
                run.cost_usd,
                run.unpriced_requests,
                run.cost_usd == 0.0 && run.unpriced_requests > 0
            )
        );
    }
    let _ = writeln!(
        out,
        "  {}{:.1} requests/s, {:.1} completion tokens/s",
        head("throughput"),
        s.throughput.requests_per_s,
        s.throughput.completion_tokens_per_s
    );
    if let Some(pace) = &s.pace {
        let _ = writeln!(out, "  {}{}", head("pace"), pace_text(pace));
    }
    for (name, pace) in &s.endpoint_paces {
        let _ = writeln!(out, "  {}{}: {}", head(""), name, pace_text(pace));
    }
    out
}

/// "342 requests/min, learned from 429s", "none (concurrency only)".
pub fn pace_text(pace: &PaceReport) -> String {
    let mut figures = Vec::new();
    if let Some(rpm) = pace.requests_per_minute {
        figures.push(format!("{} requests/min", per_minute(rpm)));
    }
    if let Some(tpm) = pace.tokens_per_minute {
        figures.push(format!("{} tokens/min", per_minute(tpm)));
    }
    figures.push(pace.source.describe().to_string());
    figures.join(", ")
}

/// Whole figures, except under ten (a pace of 1.5 a minute).
fn per_minute(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// A cost for people: unpriced requests are a count, never $0.
/// "$0.0012", "$0.0012 + 3 unpriced", or "unpriced (5 requests)" when
/// `nothing_priced` (no request had a cost at all).
pub fn cost(total: f64, unpriced: u64, nothing_priced: bool) -> String {
    match (unpriced, nothing_priced) {
        (0, _) => usd(total),
        (n, true) => format!("unpriced ({})", count(n, "request")),
        (n, false) => format!("{} + {n} unpriced", usd(total)),
    }
}

/// Why a run stopped early, and what to do about it.
pub fn stop_reason(stopped: StopReason) -> &'static str {
    match stopped {
        StopReason::Budget => "budget reached (max_cost_usd); rerun with a higher budget to resume",
        StopReason::EndpointRefused => {
            "the endpoint refuses every further request (key, credits, quota, or the same error on request after request); fix the account or the job and rerun to resume"
        }
        StopReason::EndpointUnreachable => {
            "the endpoint cannot be reached (connection refused, DNS or TLS failure); check the URL and the network, then rerun to resume"
        }
        StopReason::OutputFailed => {
            "the output could not be written (disk full?); fix the cause and rerun to resume"
        }
        StopReason::Interrupted => "interrupted; rerun to resume",
    }
}

/// The "by endpoint" block: one aligned row per endpoint (requests, cost,
/// latency), then what the folded entry holds, if there is one.
fn endpoints(by: &BTreeMap<String, EndpointFigures>) -> String {
    let mut rows = Vec::with_capacity(by.len());
    for (name, e) in by {
        let latency = match &e.latency_ms {
            Some(l) => format!("p50 {} ms · p95 {} ms", l.p50, l.p95),
            None => "no latency".to_string(),
        };
        rows.push(vec![
            // A name read from a file: made printable, as a server's words are.
            crate::client::printable(name).into_owned(),
            format!("{} ok", e.requests.ok),
            format!("{} failed", e.requests.failed),
            cost(e.cost_usd, e.unpriced_requests, e.cost_usd == 0.0),
            latency,
        ]);
    }
    let (lines, _) = columns(&rows, |i| i == 1 || i == 2);
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "    {line}");
    }
    if let Some((name, _)) = by.iter().find(|(_, e)| e.folded) {
        let _ = writeln!(
            out,
            "    ({} holds the endpoints past the first {MAX_NAMED} names, in sort order)",
            crate::client::printable(name)
        );
    }
    out
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    let mut items: Vec<_> = map.iter().collect();
    items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    items
        .iter()
        // A server's word (a finish reason): made printable, or an escape in it
        // would act on the terminal.
        .map(|(k, v)| format!("{} {v}", crate::client::printable(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn amounts(map: &BTreeMap<String, f64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", usd(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Dollars with enough digits that a run of tiny requests does not read as $0.00.
pub fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x >= 1e12 {
        // A figure no run spends (a server's claim): 3 digits, not 300.
        format!("${x:.3e}")
    } else if x >= 1.0 {
        format!("${x:.2}")
    } else if x.abs() >= 1e-6 {
        format!("${x:.6}")
    } else if x.abs() >= 1e-12 {
        // Below a millionth six decimals would read $0.000000 (a cost that
        // is not zero shown as zero): two significant digits instead.
        let decimals = (-x.abs().log10()).ceil() as usize + 1;
        format!("${x:.decimals$}")
    } else {
        format!("${x:.2e}")
    }
}

/// Rows of cells as lines: each column padded to its widest cell (in
/// characters), two spaces between columns, a `numeric` column aligned
/// right, no trailing spaces. Also the full width, for a rule. The report's
/// table and `validate`'s estimate both read this way.
pub fn columns<R: AsRef<[String]>>(
    rows: &[R],
    numeric: impl Fn(usize) -> bool,
) -> (Vec<String>, usize) {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            let n = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(n),
                None => widths.push(n),
            }
        }
    }
    let lines = (rows.iter())
        .map(|row| {
            let mut line = String::new();
            for (i, (cell, w)) in row.as_ref().iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric(i) {
                    let _ = write!(line, "{cell:>w$}");
                } else {
                    let _ = write!(line, "{cell:<w$}");
                }
            }
            line.trim_end().to_string()
        })
        .collect();
    let width = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    (lines, width)
}

fn spread(s: &Spread) -> String {
    format!(
        "min {} · mean {} · p50 {} · p90 {} · p95 {} · p99 {} · max {}",
        s.min, s.mean, s.p50, s.p90, s.p95, s.p99, s.max
    )
}

#[cfg(test)]
mod tests {
    use super::{columns, cost, usd};

    #[test]
    fn columns_pad_to_the_widest_cell_and_figures_sit_right() {
        let rows = [
            vec!["model".to_string(), "ok".into(), String::new()],
            vec!["gemma-ü".to_string(), "12".into(), "x".into()],
        ];
        let (lines, width) = columns(&rows, |i| i == 1);
        // Widths count characters, not bytes; no trailing spaces.
        assert_eq!(lines, ["model    ok", "gemma-ü  12  x"]);
        assert_eq!(width, 7 + 2 + 2 + 2 + 1);
    }

    #[test]
    fn unpriced_requests_are_a_count_never_zero_dollars() {
        assert_eq!(cost(0.0012, 0, false), "$0.001200");
        assert_eq!(cost(0.0012, 3, false), "$0.001200 + 3 unpriced");
        assert_eq!(cost(0.0, 5, true), "unpriced (5 requests)");
        assert_eq!(cost(0.0, 1, true), "unpriced (1 request)");
        // A free model's provider figure of $0 is a price, not a missing one.
        assert_eq!(cost(0.0, 2, false), "$0 + 2 unpriced");
        assert_eq!(cost(0.0, 0, false), "$0");
    }

    #[test]
    fn dollars_read_at_every_scale() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.0000123), "$0.000012");
        assert_eq!(usd(0.000001), "$0.000001");
        // A tiny cost is never shown as zero.
        assert_eq!(usd(0.0000003), "$0.00000030");
        assert_eq!(usd(0.0000001), "$0.00000010");
        assert_eq!(usd(0.00000099), "$0.00000099");
        assert_eq!(usd(2.5e-15), "$2.50e-15");
        assert_eq!(usd(12.5), "$12.50");
        // A server's claim of 1e308 is three digits and an exponent, not 300 digits.
        assert_eq!(usd(f64::MAX), "$1.798e308");
    }
}
