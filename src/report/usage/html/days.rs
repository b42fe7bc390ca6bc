//! The two charts over UTC days: cost and tokens per day, stacked by
//! model (the top models by cost, the rest as one "other" stack, in the
//! same colours in both), with a legend; unpriced requests are counted
//! above their day's bar and in a note, never drawn as $0.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::fmt::{clip, compact, count, esc, fin, plural, usd, usd_axis};
use super::svg::{
    empty, figure, nice_top, open_svg, y_axis, BOTTOM, H, LEFT, OTHER, PALETTE, RIGHT, TOP, W,
};
use crate::report::usage::model::Report;

/// Models past this many are drawn as one "other" stack.
const TOP_MODELS: usize = PALETTE.len();
/// Up to this many days, each bar has its figures written over it.
const LABELLED_DAYS: usize = 16;

/// The models the day charts draw, most expensive first, and the name of
/// the stack the rest are folded into.
struct Series {
    names: Vec<String>,
    /// How many models the "other" stack holds (0: no such stack).
    others: usize,
}

impl Series {
    fn of(report: &Report) -> Series {
        let mut totals: BTreeMap<&str, (f64, u64, u64)> = BTreeMap::new();
        for models in report.charts.days.values() {
            for (model, m) in models {
                let t = totals.entry(model).or_default();
                t.0 += fin(m.cost_usd);
                t.1 = t.1.saturating_add(m.tokens);
                t.2 = t.2.saturating_add(m.requests);
            }
        }
        let mut ranked: Vec<_> = totals.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1 .0
                .total_cmp(&a.1 .0)
                .then(b.1 .1.cmp(&a.1 .1))
                .then(b.1 .2.cmp(&a.1 .2))
                .then(a.0.cmp(b.0))
        });
        // Up to TOP_MODELS models get a stack each; past that the first
        // TOP_MODELS - 1 do and one "other" stack holds the rest.
        let keep = if ranked.len() <= TOP_MODELS {
            ranked.len()
        } else {
            TOP_MODELS - 1
        };
        Series {
            names: ranked[..keep].iter().map(|r| r.0.to_string()).collect(),
            others: ranked.len() - keep,
        }
    }

    /// The stack a model is drawn in: its own, or "other" (the last).
    fn index(&self, model: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == model)
            .unwrap_or(self.names.len())
    }

    fn len(&self) -> usize {
        self.names.len() + usize::from(self.others > 0)
    }

    fn name(&self, i: usize) -> String {
        match self.names.get(i) {
            Some(name) => name.clone(),
            None => format!("other ({} models)", self.others),
        }
    }

    fn colour(&self, i: usize) -> &'static str {
        if i < self.names.len() {
            PALETTE[i % PALETTE.len()]
        } else {
            OTHER
        }
    }
}

/// Which figure of a day a stacked chart draws.
#[derive(Clone, Copy)]
enum Measure {
    Cost,
    Tokens,
}

/// Cost per UTC day stacked by model, unpriced requests noted as counts.
pub(super) fn cost_per_day(report: &Report) -> String {
    stacked(report, Measure::Cost)
}

/// Tokens (prompt + completion) per UTC day stacked by model.
pub(super) fn tokens_per_day(report: &Report) -> String {
    stacked(report, Measure::Tokens)
}

fn stacked(report: &Report, measure: Measure) -> String {
    let (id, title) = match measure {
        Measure::Cost => ("chart-cost-per-day", "Cost per day (UTC), by model"),
        Measure::Tokens => ("chart-tokens-per-day", "Tokens per day (UTC), by model"),
    };
    let series = Series::of(report);
    let days = &report.charts.days;
    // values[day][stack], and the unpriced requests of each day.
    let mut values = vec![vec![0.0_f64; series.len()]; days.len()];
    let mut unpriced = vec![0_u64; days.len()];
    let mut per_series = vec![0.0_f64; series.len()];
    let mut unpriced_series = vec![0_u64; series.len()];
    for (d, models) in days.values().enumerate() {
        for (model, m) in models {
            let v = match measure {
                Measure::Cost => fin(m.cost_usd).max(0.0),
                Measure::Tokens => m.tokens as f64,
            };
            let s = series.index(model);
            values[d][s] += v;
            per_series[s] += v;
            unpriced[d] = unpriced[d].saturating_add(m.unpriced_requests);
            unpriced_series[s] = unpriced_series[s].saturating_add(m.unpriced_requests);
        }
    }
    let total_unpriced: u64 = unpriced.iter().fold(0, |a, b| a.saturating_add(*b));
    let fmt: fn(f64) -> String = match measure {
        Measure::Cost => usd,
        Measure::Tokens => |v| count(v as u64),
    };
    let axis: fn(f64) -> String = match measure {
        Measure::Cost => usd_axis,
        Measure::Tokens => compact,
    };
    let drawn: f64 = per_series.iter().sum();

    let mut svg = open_svg(id, title, W, H);
    if days.is_empty() {
        empty(
            &mut svg,
            W,
            H,
            "No request has a finish time to put on a day.",
        );
    } else if drawn <= 0.0 {
        let why = match measure {
            Measure::Cost if total_unpriced > 0 => format!(
                "No priced request: {} unpriced (see --pricing).",
                count(total_unpriced)
            ),
            Measure::Cost => "No cost recorded.".to_string(),
            Measure::Tokens => "No tokens reported.".to_string(),
        };
        empty(&mut svg, W, H, &why);
    } else {
        let highest = values.iter().map(|v| v.iter().sum()).fold(0.0, f64::max);
        let top = nice_top(highest, matches!(measure, Measure::Tokens));
        y_axis(&mut svg, top, axis);
        let slot = (W - LEFT - RIGHT) / days.len() as f64;
        let bar = (slot * 0.72).min(56.0);
        let label_every = days.len().div_ceil(10);
        // Month and day only when every day is of the same year.
        let first = days.keys().next().map_or("", |d| d.get(..5).unwrap_or(""));
        let strip = days.len() > 1 && days.keys().all(|d| d.len() == 10 && d.starts_with(first));
        let plot_h = H - TOP - BOTTOM;
        for (d, day) in days.keys().enumerate() {
            let x = LEFT + slot * d as f64 + (slot - bar) / 2.0;
            let mut y = H - BOTTOM;
            let _ = write!(svg, r#"<g class="day" data-day="{}">"#, esc(day));
            for (s, v) in values[d].iter().enumerate() {
                if *v <= 0.0 {
                    continue;
                }
                let h = (v / top * plot_h).clamp(0.0, y - TOP);
                y -= h;
                let _ = write!(
                    svg,
                    r#"<rect class="seg" x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{}" data-series="{}" data-value="{v}"><title>{} · {}: {}</title></rect>"#,
                    series.colour(s),
                    esc(&series.name(s)),
                    esc(day),
                    esc(&series.name(s)),
                    fmt(*v),
                );
            }
            let day_total: f64 = values[d].iter().sum();
            let cx = x + bar / 2.0;
            if days.len() <= LABELLED_DAYS && day_total > 0.0 {
                let _ = write!(
                    svg,
                    r#"<text class="value" x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    y - 4.0,
                    esc(&axis(day_total))
                );
            }
            if let (Measure::Cost, n) = (measure, unpriced[d]) {
                if n > 0 {
                    let title = format!(
                        "{day}: {} not in the bar",
                        plural(n, "unpriced request", "unpriced requests")
                    );
                    if days.len() <= LABELLED_DAYS {
                        let above = if day_total > 0.0 { y - 16.0 } else { y - 4.0 };
                        let _ = write!(
                            svg,
                            r#"<text class="unpriced" x="{cx:.1}" y="{above:.1}" text-anchor="middle" data-unpriced="{n}">+{}<title>{}</title></text>"#,
                            count(n),
                            esc(&title),
                        );
                    } else {
                        // No room for a number over a narrow bar: a dot, the
                        // count in its tooltip and in the note below.
                        let _ = write!(
                            svg,
                            r#"<circle class="unpriced" cx="{cx:.1}" cy="{:.1}" r="{:.1}" data-unpriced="{n}"><title>{}</title></circle>"#,
                            y - 5.0,
                            (bar / 2.0).clamp(1.5, 3.5),
                            esc(&title),
                        );
                    }
                }
            }
            if d % label_every == 0 {
                let _ = write!(
                    svg,
                    r#"<text class="tick" x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    H - BOTTOM + 16.0,
                    esc(&day_label(day, strip))
                );
            }
            svg.push_str("</g>");
        }
    }
    svg.push_str("</svg>");

    let mut legend = String::from(r#"<ul class="legend">"#);
    for (s, total) in per_series.iter().enumerate() {
        let name = series.name(s);
        // A model's unpriced requests are a count beside its dollars, never $0.
        let figure = match (measure, unpriced_series[s]) {
            (Measure::Cost, 0) => fmt(*total),
            (Measure::Cost, n) if *total <= 0.0 => format!("{} unpriced", count(n)),
            (Measure::Cost, n) => format!("{} + {} unpriced", fmt(*total), count(n)),
            (Measure::Tokens, _) => fmt(*total),
        };
        let _ = write!(
            legend,
            r#"<li title="{}"><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true"><rect width="10" height="10" rx="2" fill="{}"/></svg>{} <span class="num">{}</span></li>"#,
            esc(&name),
            series.colour(s),
            esc(&clip(&name, 40)),
            esc(&figure),
        );
    }
    legend.push_str("</ul>");
    let note = match measure {
        Measure::Cost if total_unpriced > 0 => format!(
            r#"<p class="note warn" data-unpriced="{total_unpriced}">+{} not in the bars; each day's count is over its bar.</p>"#,
            plural(total_unpriced, "unpriced request", "unpriced requests")
        ),
        Measure::Tokens => {
            r#"<p class="note">Prompt plus completion tokens, as the providers reported them.</p>"#
                .to_string()
        }
        Measure::Cost => String::new(),
    };
    figure("wide", title, &svg, &format!("{legend}{note}"))
}

/// `11-24` when the year goes without saying.
fn day_label(day: &str, strip: bool) -> String {
    match day.get(5..) {
        Some(rest) if strip => rest.to_string(),
        _ => day.to_string(),
    }
}
