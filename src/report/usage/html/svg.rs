//! The page's charts as inline SVG: the latency histogram with p50/p95/p99
//! marked, requests by status and by error kind, and the drawing the day
//! charts (`days`) share. Each chart is a `<figure>` whose `<svg>` has a
//! stable id and whose marks carry `data-*` values, so a test (or a person
//! with the inspector) can read the figures back.
//!
//! Drawn in a fixed viewBox that CSS scales to the column; no script, no
//! font or image from elsewhere.

use std::fmt::Write;

use super::fmt::{clip, compact, count, esc, fin, ms, plural};
use crate::report::usage::model::{Bucket, Report};

/// Series colours (Tableau 10, told apart by most colour-blind readers);
/// the last is for "other".
pub(super) const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
];
pub(super) const OTHER: &str = "#9aa0a6";
const OK: &str = "#59a14f";
const FAILED: &str = "#e15759";
/// Bars past this many in a by-count chart are one "other" bar.
const TOP_ROWS: usize = 12;
/// The latency histogram draws at most this many bars (buckets merged).
const MAX_BUCKETS: usize = 60;

/// The wide charts' viewBox and plot area.
pub(super) const W: f64 = 640.0;
pub(super) const H: f64 = 280.0;
pub(super) const LEFT: f64 = 64.0;
pub(super) const RIGHT: f64 = 14.0;
pub(super) const TOP: f64 = 30.0;
pub(super) const BOTTOM: f64 = 36.0;

/// The latency histogram of `ok` requests with p50, p95 and p99 marked.
pub(super) fn latency(report: &Report) -> String {
    const TITLE: &str = "Latency of ok requests (ms)";
    let buckets = merge(&report.charts.latency);
    let marks = report.totals.latency_ms;
    let mut svg = open_svg("chart-latency", TITLE, W, H);
    let highest = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    if highest == 0 {
        let why = match marks {
            Some(p) => format!(
                "No histogram; p50 {} · p95 {} · p99 {} ms.",
                ms(p.p50),
                ms(p.p95),
                ms(p.p99)
            ),
            None => "No latency recorded.".to_string(),
        };
        empty(&mut svg, W, H, &why);
    } else {
        let top = nice_top(highest as f64, true);
        y_axis(&mut svg, top, compact);
        let slot = (W - LEFT - RIGHT) / buckets.len() as f64;
        let plot_h = H - TOP - BOTTOM;
        for (i, b) in buckets.iter().enumerate() {
            let h = b.count as f64 / top * plot_h;
            let _ = write!(
                svg,
                r#"<rect class="bin" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}" data-lo="{}" data-hi="{}" data-value="{}"><title>{}–{} ms: {}</title></rect>"#,
                LEFT + slot * i as f64 + 0.5,
                H - BOTTOM - h,
                (slot - 1.0).max(0.5),
                PALETTE[0],
                fin(b.lo_ms),
                fin(b.hi_ms),
                b.count,
                ms(b.lo_ms),
                ms(b.hi_ms),
                plural(b.count, "request", "requests"),
            );
        }
        // Bucket edges under the axis, at most about eight of them.
        let every = (buckets.len() + 1).div_ceil(8);
        for i in (0..=buckets.len()).step_by(every) {
            let edge = buckets
                .get(i)
                .map_or(buckets[buckets.len() - 1].hi_ms, |b| b.lo_ms);
            let _ = write!(
                svg,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + slot * i as f64,
                H - BOTTOM + 16.0,
                esc(&compact(fin(edge)))
            );
        }
        if let Some(p) = marks {
            let marks = [
                ("p50", p.p50, "#1f2328"),
                ("p95", p.p95, "#c0392b"),
                ("p99", p.p99, "#7d3c98"),
            ];
            // The lines first, then every label over them, so a label that
            // reaches the next line stays legible.
            let mut labels = String::new();
            for (k, (name, v, colour)) in marks.into_iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let x = LEFT + slot * position(&buckets, v);
                let (tx, anchor) = if x > W * 0.75 {
                    (x - 4.0, "end")
                } else {
                    (x + 4.0, "start")
                };
                let _ = write!(
                    svg,
                    r#"<g class="mark" data-mark="{name}" data-value="{v}"><line x1="{x:.1}" x2="{x:.1}" y1="{TOP:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"/></g>"#,
                    H - BOTTOM,
                );
                let _ = write!(
                    labels,
                    r#"<text class="mark" x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="{colour}">{name} {} ms</text>"#,
                    TOP - 8.0 + 12.0 * k as f64,
                    ms(v),
                );
            }
            svg.push_str(&labels);
        }
    }
    svg.push_str("</svg>");
    // Buckets are drawn equally wide; say so when they are not in ms.
    let widths = buckets.iter().map(|b| fin(b.hi_ms - b.lo_ms));
    let (narrow, wide) = widths.fold((f64::MAX, 0.0_f64), |(n, w), x| (n.min(x), w.max(x)));
    let note = if highest > 0 && wide > narrow * 1.5 {
        r#"<p class="note">Buckets widen with latency (a log scale): each bar is one bucket.</p>"#
    } else {
        ""
    };
    figure("wide", TITLE, &svg, note)
}

/// Requests by status, and failed requests by error kind, with counts.
pub(super) fn requests(report: &Report) -> String {
    let status: Vec<(String, u64, &str)> = report
        .charts
        .by_status
        .iter()
        .map(|(s, n)| (s.clone(), *n, if s == "ok" { OK } else { FAILED }))
        .collect();
    let mut kinds: Vec<(String, u64, &str)> = report
        .charts
        .by_error_kind
        .iter()
        .map(|(k, n)| (k.clone(), *n, FAILED))
        .collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let body = format!(
        r#"{}<h3>Failed requests by error kind</h3>{}"#,
        counts(
            "chart-requests-by-status",
            "Requests by status",
            status,
            "No request."
        ),
        counts(
            "chart-errors-by-kind",
            "Failed requests by error kind",
            kinds,
            "No failed request."
        ),
    );
    figure("wide", "Requests by status", &body, "")
}

/// Horizontal bars, one per row, largest first past [`TOP_ROWS`].
fn counts(id: &str, title: &str, mut rows: Vec<(String, u64, &str)>, none: &str) -> String {
    const LABEL: f64 = 150.0;
    const ROW: f64 = 26.0;
    if rows.len() > TOP_ROWS {
        let rest: u64 = rows[TOP_ROWS - 1..]
            .iter()
            .fold(0, |a, r| a.saturating_add(r.1));
        let kinds = rows.len() - (TOP_ROWS - 1);
        rows.truncate(TOP_ROWS - 1);
        rows.push((format!("other ({kinds})"), rest, OTHER));
    }
    let height = 8.0 + ROW * rows.len().max(1) as f64;
    let mut svg = open_svg(id, title, W, height);
    let highest = rows.iter().map(|r| r.1).max().unwrap_or(0);
    if highest == 0 {
        empty(&mut svg, W, height, none);
    }
    for (i, (label, n, colour)) in rows.iter().enumerate().filter(|_| highest > 0) {
        let y = 4.0 + ROW * i as f64;
        let w = *n as f64 / highest as f64 * (W - LABEL - 90.0);
        let w = if *n > 0 { w.max(1.5) } else { 0.0 };
        let _ = write!(
            svg,
            r#"<g class="row" data-label="{}" data-value="{n}"><text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}<title>{}</title></text><rect class="bar" x="{LABEL:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" rx="2" fill="{colour}"/><text class="value" x="{:.1}" y="{:.1}">{}</text></g>"#,
            esc(label),
            LABEL - 8.0,
            y + (ROW - 8.0) / 2.0 + 4.0,
            esc(&clip(label, 24)),
            esc(label),
            ROW - 8.0,
            LABEL + w + 6.0,
            y + (ROW - 8.0) / 2.0 + 4.0,
            count(*n),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// At most [`MAX_BUCKETS`] buckets, neighbours added together.
fn merge(buckets: &[Bucket]) -> Vec<Bucket> {
    let every = buckets.len().div_ceil(MAX_BUCKETS).max(1);
    buckets
        .chunks(every)
        .map(|c| Bucket {
            lo_ms: c[0].lo_ms,
            hi_ms: c[c.len() - 1].hi_ms,
            count: c.iter().fold(0, |a, b| a.saturating_add(b.count)),
        })
        .collect()
}

/// Where `v` falls, in bucket widths from the first bucket's low edge
/// (buckets are drawn equally wide whatever their span in ms).
fn position(buckets: &[Bucket], v: f64) -> f64 {
    for (i, b) in buckets.iter().enumerate() {
        if v < b.hi_ms || i + 1 == buckets.len() {
            let width = b.hi_ms - b.lo_ms;
            let within = if width > 0.0 {
                (v - b.lo_ms) / width
            } else {
                0.5
            };
            return i as f64 + fin(within).clamp(0.0, 1.0);
        }
    }
    0.0
}

/// The top of a y axis at or above `max`, four round steps from 0
/// (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten; whole steps for
/// counts).
pub(super) fn nice_top(max: f64, whole: bool) -> f64 {
    let max = fin(max);
    if max <= 0.0 {
        return if whole { 4.0 } else { 1.0 };
    }
    let rough = max / 4.0;
    let decade = 10f64.powf(rough.log10().floor());
    let mut step = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|s| *s >= rough)
        .unwrap_or(rough);
    if whole {
        step = step.max(1.0).ceil();
    }
    let top = step * 4.0;
    if top.is_finite() && top >= max {
        top
    } else {
        max
    }
}

/// Four grid lines with labels, from 0 to `top`.
pub(super) fn y_axis(svg: &mut String, top: f64, label: fn(f64) -> String) {
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let y = H - BOTTOM - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&label(v)),
        );
    }
}

pub(super) fn open_svg(id: &str, title: &str, w: f64, h: f64) -> String {
    format!(
        r#"<svg id="{id}" class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(title)
    )
}

pub(super) fn empty(svg: &mut String, w: f64, h: f64, why: &str) {
    let _ = write!(
        svg,
        r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle" data-empty="true">{}</text>"#,
        w / 2.0,
        h / 2.0,
        esc(why)
    );
}

pub(super) fn figure(class: &str, title: &str, svg: &str, after: &str) -> String {
    format!(
        r#"<figure class="{class}"><figcaption>{}</figcaption>{svg}{after}</figure>"#,
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::nice_top;

    #[test]
    fn axes_end_four_round_steps_up() {
        assert_eq!(nice_top(0.000382, false), 0.0004);
        assert_eq!(nice_top(0.79, false), 0.8);
        assert_eq!(nice_top(0.81, false), 1.0);
        assert_eq!(nice_top(7.92e6, true), 8e6);
        assert_eq!(nice_top(9_500.0, true), 10_000.0);
        assert_eq!(nice_top(3.0, true), 4.0);
        assert_eq!(nice_top(11_800.0, true), 12_000.0);
        assert_eq!(nice_top(1.0, true), 4.0);
        assert_eq!(nice_top(0.0, false), 1.0);
        assert_eq!(nice_top(f64::NAN, true), 4.0);
        assert_eq!(nice_top(f64::MAX, false), f64::MAX);
    }
}
