//! The benchmark's final table: every figure of the performance targets beside
//! its target, met or NOT met, with the requests/s, CPU per request and peak
//! memory of the run it comes from; printed as text and written as JSON.
//!
//! Pure: the scenarios hand in numbers, this file judges and lays them out,
//! so its shape is tested without timing anything.

use serde_json::{json, Value};

/// One row of the targets table, as the performance targets word it.
pub struct Spec {
    pub figure: &'static str,
    pub unit: &'static str,
    pub target: &'static str,
}

pub const NGINX_RPS: Spec = Spec {
    figure:
        "requests/s, static nginx answer, concurrency 64, 50,000 requests, full records written",
    unit: "requests/s",
    target: ">= 40,000",
};
pub const NGINX_CPU: Spec = Spec {
    figure: "CPU per request of the promptbatch process, same run",
    unit: "µs",
    target: "<= 20 µs",
};
pub const FIRST_REQUEST: Spec = Spec {
    figure: "start to first request sent (one-row job), median",
    unit: "ms",
    target: "<= 5 ms",
};
pub const HEADERS: Spec = Spec {
    figure: "share of an enforced limit reached with no configured rate, pacing from x-ratelimit-* headers (once under way)",
    unit: "%",
    target: ">= 95 %, <= 1 % bounced",
};
pub const LEARNED: Spec = Spec {
    figure: "second scheduled run against a limit that sends no headers: first second's pace, share of the learned pace",
    unit: "%",
    target: "starts at the learned pace (first second >= 90 % of it), <= 1 % bounced",
};
pub const FRESH: Spec = Spec {
    figure: "peak memory, fresh run of 1,000,000 rows",
    unit: "MiB",
    target: "< 64 MiB",
};
pub const RERUN: Spec = Spec {
    figure: "rerun over a complete 1,000,000-line output (nothing to send): time, peak memory",
    unit: "s",
    target: "< 2 s, < 64 MiB",
};

/// A bound a figure is read against.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

impl Bound {
    /// Whether `v` keeps to the bound; a figure that is not a number does not.
    pub fn holds(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(b) => v >= b,
            Bound::AtMost(b) => v <= b,
            Bound::Below(b) => v < b,
        }
    }
}

/// What the run a row comes from cost, beside the row's own figure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    pub requests_per_s: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    pub peak_mib: Option<f64>,
    /// Share of the requests the server answered with 429, where it counts.
    pub bounced_pct: Option<f64>,
}

pub struct Row {
    pub spec: Spec,
    pub value: Option<f64>,
    pub met: bool,
    pub run: Run,
    /// Why there is no figure: nginx missing, the scenario filtered out.
    pub skipped: Option<String>,
}

impl Row {
    /// A measured row; `met` is every bound of its target judged by the
    /// caller with [`Bound::holds`].
    pub fn measured(spec: Spec, value: f64, met: bool, run: Run) -> Row {
        Row {
            spec,
            value: Some(value),
            met: met && value.is_finite(),
            run,
            skipped: None,
        }
    }

    pub fn skipped(spec: Spec, why: impl Into<String>) -> Row {
        Row {
            spec,
            value: None,
            met: false,
            run: Run::default(),
            skipped: Some(why.into()),
        }
    }

    /// The figure as printed: a skipped row says why instead.
    fn value_text(&self) -> String {
        match (&self.skipped, self.value) {
            (Some(why), _) => format!("skipped: {why}"),
            (None, Some(v)) => format!("{} {}", number(v), self.spec.unit),
            (None, None) => "-".into(),
        }
    }

    fn verdict(&self) -> &'static str {
        if self.met {
            "met"
        } else {
            "NOT met"
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "figure": self.spec.figure,
            "value": self.value,
            "unit": self.spec.unit,
            "target": self.spec.target,
            "met": self.met,
            "requests_per_s": self.run.requests_per_s,
            "cpu_us_per_request": self.run.cpu_us_per_request,
            "peak_mib": self.run.peak_mib,
            "bounced_pct": self.run.bounced_pct,
            "skipped": self.skipped,
        })
    }
}

/// A figure rounded for people: thousands grouped above 1,000, one or two
/// decimals below.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        return if v < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        };
    }
    if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn optional(v: Option<f64>) -> String {
    v.map(number).unwrap_or_else(|| "-".into())
}

/// The table as text: one block per row, the figure's words on their own
/// line (they are long), its numbers on the next.
pub fn render(rows: &[Row], scale: f64) -> String {
    let mut out = String::from("Targets");
    if scale != 1.0 {
        // The targets are for the full counts; a scaled run only shows the way.
        out.push_str(&format!(
            " (PROMPTBATCH_BENCH_SCALE={scale}: counts scaled, so read the figures against the targets with care)"
        ));
    }
    out.push('\n');
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!("{}. {}\n", i + 1, r.spec.figure));
        match r.skipped {
            Some(_) => out.push_str(&format!(
                "   {} (target {})\n",
                r.value_text(),
                r.spec.target
            )),
            None => out.push_str(&format!(
                "   {} (target {}): {}\n",
                r.value_text(),
                r.spec.target,
                r.verdict()
            )),
        }
        if r.skipped.is_none() {
            let bounced = r
                .run
                .bounced_pct
                .map(|b| format!(", {} % bounced", number(b)))
                .unwrap_or_default();
            out.push_str(&format!(
                "   run: {} requests/s, {} µs CPU per request, {} MiB peak{bounced}\n",
                optional(r.run.requests_per_s),
                optional(r.run.cpu_us_per_request),
                optional(r.run.peak_mib),
            ));
        }
    }
    let met = rows.iter().filter(|r| r.met).count();
    let skipped = rows.iter().filter(|r| r.skipped.is_some()).count();
    out.push_str(&format!(
        "{met} of {} met, {} NOT met, {skipped} skipped\n",
        rows.len(),
        rows.len() - met - skipped
    ));
    out
}

/// The JSON document: the table's rows, every scenario's figures, and how
/// the run was made. Its keys stay the same from run to run; a figure not
/// measured is null.
pub fn document(rows: &[Row], scenarios: Vec<Value>, scale: f64) -> Value {
    json!({
        "schema_version": 1,
        "promptbatch_version": env!("CARGO_PKG_VERSION"),
        "scale": scale,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "scenarios": scenarios,
    })
}
