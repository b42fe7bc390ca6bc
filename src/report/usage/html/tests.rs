//! The page over hand-made reports: hostile names stay text, every edge
//! (nothing at all, 200 models, all unpriced, NaN, huge figures) renders
//! readably, and the totals are on the page.

use std::collections::BTreeMap;

use super::render;
use crate::report::usage::model::*;

fn figures(ok: u64, failed: u64, cost: Option<f64>, unpriced: u64) -> Figures {
    Figures {
        requests: Requests { ok, failed },
        tokens: Tokens {
            prompt: ok * 120,
            completion: ok * 80,
            cached: 7,
            reasoning: 0,
            unreported: 1,
        },
        cost_usd: Cost {
            total: cost,
            provider: cost.unwrap_or(0.0) * 0.75,
            pricing: cost.unwrap_or(0.0) * 0.25,
            unpriced_requests: unpriced,
        },
        latency_ms: Some(Percentiles {
            p50: 812.4,
            p95: 1904.0,
            p99: 2650.5,
        }),
        ttft_ms: Some(Median { p50: 210.0 }),
        retries: 3,
        uncertain_attempts: 1,
    }
}

fn day(cost: f64, unpriced: u64, tokens: u64) -> DayModel {
    DayModel {
        cost_usd: cost,
        unpriced_requests: unpriced,
        tokens,
        requests: 10,
    }
}

/// Two models over three days, some errors, a latency histogram.
fn sample() -> Report {
    let models = ["google/gemma-3-27b-it", "google/gemma-3-4b-it"];
    let mut days = BTreeMap::new();
    for (d, date) in ["2026-11-22", "2026-11-23", "2026-11-24"]
        .iter()
        .enumerate()
    {
        let mut per = BTreeMap::new();
        for (m, model) in models.iter().enumerate() {
            per.insert(
                model.to_string(),
                day(0.01 * (d + m + 1) as f64, 0, 1000 * (d + m + 1) as u64),
            );
        }
        days.insert(date.to_string(), per);
    }
    let latency = (0..20_u32)
        .map(|i| Bucket {
            lo_ms: 200.0 * f64::from(i),
            hi_ms: 200.0 * f64::from(i + 1),
            count: u64::from(20 - i) * 3,
        })
        .collect();
    Report {
        by: vec![Field::Day, Field::Model],
        groups: vec![
            Group {
                values: vec![Some("2026-11-22".into()), Some(models[0].into())],
                figures: figures(40, 2, Some(0.01), 0),
            },
            Group {
                values: vec![None, Some(models[1].into())],
                figures: figures(10, 0, Some(0.02), 0),
            },
        ],
        totals: figures(50, 2, Some(0.03), 0),
        span_s: 5400.0,
        files: vec![FileFacts {
            path: "out/faq-2026-11-22.jsonl".into(),
            lines: 52,
            duplicates: 4,
            span_s: 5400.0,
        }],
        pricing_check: Some(PricingCheck {
            requests: 12,
            provider_usd: 0.004,
            pricing_usd: 0.005,
        }),
        charts: Charts {
            days,
            latency,
            by_status: BTreeMap::from([("ok".into(), 50), ("error".into(), 2)]),
            by_error_kind: BTreeMap::from([("rate_limited".into(), 2)]),
        },
    }
}

/// The names of every tag the page opens or closes.
fn tags(page: &str) -> Vec<String> {
    page.match_indices('<')
        .map(|(at, _)| {
            page[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!' || *c == '/')
                .collect::<String>()
                .trim_start_matches('/')
                .to_ascii_lowercase()
        })
        .collect()
}

const OUR_TAGS: &[&str] = &[
    "!doctype",
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "main",
    "header",
    "h1",
    "h2",
    "h3",
    "p",
    "section",
    "div",
    "span",
    "figure",
    "figcaption",
    "svg",
    "rect",
    "circle",
    "line",
    "text",
    "g",
    "ul",
    "li",
    "wbr",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "th",
    "td",
    "footer",
];

fn assert_clean(page: &str) {
    for tag in tags(page) {
        assert!(
            OUR_TAGS.contains(&tag.as_str()),
            "a tag the page does not make: <{tag}"
        );
    }
    for bad in ["NaN", "inf<", ">inf", "=\"inf", "-inf", "undefined"] {
        assert!(!page.contains(bad), "{bad} on the page");
    }
}

#[test]
fn names_from_the_files_stay_text() {
    let mut r = sample();
    let evil = r#"<script>alert(1)</script>"><svg onload=alert(2)>' onmouseover="x"#;
    r.groups[0].values = vec![Some(evil.into()), Some(evil.into())];
    r.files[0].path = format!("out/{evil}.jsonl");
    r.charts.by_error_kind.insert(evil.into(), 3);
    r.charts.by_status.insert(evil.into(), 1);
    let day = r.charts.days.values_mut().next().expect("a day");
    day.insert(evil.into(), DayModel::default());
    day.insert(
        format!("{evil}2"),
        super::super::model::DayModel {
            cost_usd: 1.0,
            unpriced_requests: 1,
            tokens: 5,
            requests: 2,
        },
    );
    r.charts.days.insert(evil.into(), BTreeMap::new());
    let page = render(&r);
    assert_clean(&page);
    assert!(!page.contains("<script"));
    assert!(!page.contains("<svg onload"));
    assert!(!page.contains(r#"onmouseover=""#));
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;svg onload=alert(2)&gt;")
    );
}

#[test]
fn a_name_can_neither_reorder_the_figures_nor_widen_the_table_off_the_page() {
    let mut r = sample();
    let long = format!("m/{}", "x".repeat(300));
    r.groups[0].values = vec![Some("a\u{202E}LTR".into()), Some(long.clone())];
    let page = render(&r);
    assert!(
        !page.contains('\u{202E}'),
        "a bidi override reached the page"
    );
    assert!(page.contains("a\u{FFFD}LTR"));
    // The long name's cell may break anywhere (break-word does not let a
    // table column shrink below the longest unbroken run).
    assert!(page.contains(r#"<td class="key long">m/<wbr>xxx"#));
    let rule = page
        .split('\n')
        .find(|l| l.starts_with("td.key.long"))
        .expect("the long cells' rule");
    assert!(rule.contains("overflow-wrap: anywhere"), "{rule}");
}

#[test]
fn the_page_fetches_nothing_and_runs_nothing() {
    let page = render(&sample());
    assert_clean(&page);
    for fetch in [
        "src=", "href=", "url(", "@import", "http:", "https:", "<script", "<link",
    ] {
        assert!(!page.contains(fetch), "{fetch} on the page");
    }
    // And the browser is told so: were a name ever to slip past the
    // escaping, it could still neither run nor fetch anything.
    let head = page.split("</head>").next().expect("a head");
    assert!(
        head.contains(r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">"#),
        "{head}"
    );
}

#[test]
fn the_totals_and_charts_are_on_the_page() {
    let page = render(&sample());
    for (name, value) in [
        ("requests_ok", "50"),
        ("requests_failed", "2"),
        ("tokens_prompt", "6000"),
        ("tokens_completion", "4000"),
        ("tokens_cached", "7"),
        ("tokens_unreported", "1"),
        ("cost_usd_total", "0.03"),
        ("cost_usd_unpriced_requests", "0"),
        ("latency_ms_p95", "1904"),
        ("ttft_ms_p50", "210"),
        ("retries", "3"),
        ("uncertain_attempts", "1"),
        ("lines", "52"),
        ("duplicates", "4"),
        ("span_s", "5400"),
    ] {
        let cell = format!(r#"data-total="{name}" data-value="{value}""#);
        assert!(page.contains(&cell), "{cell} is not on the page");
    }
    assert!(page.contains(r#"data-headline="requests" data-value="52""#));
    assert!(page.contains(r#"data-headline="tokens" data-value="10000""#));
    assert!(page.contains(">$0.03<"), "the headline cost");
    assert!(page.contains(">6,000<"), "tokens with thousands separators");
    for id in [
        "chart-cost-per-day",
        "chart-tokens-per-day",
        "chart-latency",
        "chart-requests-by-status",
        "chart-errors-by-kind",
    ] {
        assert!(page.contains(&format!(r#"<svg id="{id}""#)), "{id}");
    }
    // Three days of two models: six segments in each day chart.
    assert_eq!(page.matches(r#"<rect class="seg""#).count(), 12);
    assert_eq!(page.matches(r#"<rect class="bin""#).count(), 20);
    for mark in ["p50", "p95", "p99"] {
        assert!(page.contains(&format!(r#"data-mark="{mark}""#)), "{mark}");
    }
    assert!(page.contains(r#"data-label="rate_limited" data-value="2""#));
    assert!(page.contains(r#"id="pricing-check""#));
    assert!(page.contains("(+25.0%) higher"), "the pricing check");
    // A group without a day shows a dash, not an empty cell.
    assert!(page.contains(r#"<td class="key none" title="no value">—</td>"#));
}

#[test]
fn an_empty_report_still_reads() {
    let r = Report {
        by: vec![],
        groups: vec![],
        totals: Figures::default(),
        span_s: 0.0,
        files: vec![],
        pricing_check: None,
        charts: Charts::default(),
    };
    let page = render(&r);
    assert_clean(&page);
    assert!(page.contains("No request has a finish time"));
    assert!(page.contains("No latency recorded"));
    assert!(page.contains("No failed request."));
    assert!(page.contains(r#"data-total="requests_ok" data-value="0""#));
    assert!(
        !page.contains("$0"),
        "nothing was priced, so no dollar figure"
    );
    assert!(!page.contains(r#"id="pricing-check""#));
}

#[test]
fn unpriced_requests_are_a_count_never_zero_dollars() {
    let mut r = sample();
    for g in &mut r.groups {
        g.figures = figures(10, 0, None, 10);
    }
    r.totals = figures(20, 0, None, 20);
    r.pricing_check = None;
    for models in r.charts.days.values_mut() {
        for m in models.values_mut() {
            *m = day(0.0, 5, 100);
        }
    }
    let page = render(&r);
    assert_clean(&page);
    assert!(!page.contains("$0"), "an unpriced request shown as $0");
    assert!(page.contains("No priced request: 30 unpriced"));
    assert!(page.contains("+20 unpriced requests"));
    assert!(page.contains(r#"data-total="cost_usd_unpriced_requests" data-value="20""#));
    assert!(page.contains(r#"<td class="none" data-total="cost_usd_total">—</td>"#));

    // Priced and unpriced together: the dollars, and the count beside them.
    let mut r = sample();
    r.totals.cost_usd.unpriced_requests = 1;
    let first = r.charts.days.values_mut().next().expect("a day");
    first
        .values_mut()
        .next()
        .expect("a model")
        .unpriced_requests = 1;
    let page = render(&r);
    assert!(page.contains("+1 unpriced request"), "singular");
    assert!(page.contains(r#"data-unpriced="1""#));
}

#[test]
fn two_hundred_models_stack_as_the_top_seven_and_other() {
    let mut r = sample();
    let mut per = BTreeMap::new();
    for i in 0..200_u32 {
        per.insert(
            format!("vendor/model-{i:03}"),
            day(0.001 * f64::from(i), 0, 10 * u64::from(i)),
        );
    }
    r.charts.days = BTreeMap::from([("2026-11-24".to_string(), per)]);
    let page = render(&r);
    assert_clean(&page);
    // One day: 7 models + "other" in each of the two day charts.
    assert_eq!(page.matches(r#"<rect class="seg""#).count(), 16);
    assert!(page.contains("other (193 models)"));
    // The most expensive model leads the legend.
    let top = page.find("vendor/model-199").expect("top model");
    let other = page.find("other (193 models)").expect("other");
    assert!(top < other);
}

#[test]
fn nan_and_huge_figures_never_reach_the_page() {
    let mut r = sample();
    r.totals.latency_ms = Some(Percentiles {
        p50: f64::NAN,
        p95: f64::INFINITY,
        p99: f64::MAX,
    });
    r.totals.cost_usd.total = Some(f64::NAN);
    r.totals.tokens.prompt = u64::MAX;
    r.span_s = f64::NAN;
    r.files[0].span_s = f64::INFINITY;
    for models in r.charts.days.values_mut() {
        for m in models.values_mut() {
            m.cost_usd = f64::MAX;
            m.tokens = u64::MAX;
        }
    }
    r.charts.latency.push(Bucket {
        lo_ms: 4000.0,
        hi_ms: f64::INFINITY,
        count: u64::MAX,
    });
    r.pricing_check = Some(PricingCheck {
        requests: 1,
        provider_usd: 0.0,
        pricing_usd: 1.0,
    });
    let page = render(&r);
    assert_clean(&page);
    assert!(page.contains("18,446,744,073,709,551,615"));
    // A figure that is not a number has no value to read back, only a dash.
    assert!(page.contains(r#"<td class="none" data-total="cost_usd_total">—</td>"#));
    assert!(page.contains(r#"<td class="none" data-total="latency_ms_p50">—</td>"#));
}

#[test]
fn no_latency_and_one_day_read() {
    let mut r = sample();
    r.totals.latency_ms = None;
    r.charts.latency.clear();
    let first = r.charts.days.keys().next().cloned().expect("a day");
    r.charts.days.retain(|d, _| *d == first);
    let page = render(&r);
    assert_clean(&page);
    assert!(page.contains("No latency recorded"));
    // One day keeps its year.
    assert!(page.contains(">2026-11-22</text>"));
    assert_eq!(page.matches(r#"<rect class="seg""#).count(), 4);
}

#[test]
fn percentile_marks_sit_in_order_inside_their_buckets() {
    let page = render(&sample());
    let x = |mark: &str| -> f64 {
        let at = page.find(&format!(r#"data-mark="{mark}""#)).expect(mark);
        let rest = &page[at..];
        let x1 = &rest[rest.find("x1=\"").expect("x1") + 4..];
        x1[..x1.find('"').expect("end")].parse().expect("a number")
    };
    let (p50, p95, p99) = (x("p50"), x("p95"), x("p99"));
    assert!(p50 < p95 && p95 < p99, "{p50} {p95} {p99}");
    // 812.4 ms is 4.06 buckets of 200 ms from the left edge at x=64.
    let slot = (640.0 - 64.0 - 14.0) / 20.0;
    assert!((p50 - (64.0 + slot * 4.062)).abs() < 0.2, "{p50}");
}

#[test]
fn many_days_thin_their_labels_and_mark_unpriced_days_with_a_dot() {
    let mut r = sample();
    r.charts.days = (0..40_u32)
        .map(|d| {
            let unpriced = if d % 9 == 0 { 4 } else { 0 };
            let model = BTreeMap::from([("m".to_string(), day(0.5, unpriced, 100))]);
            (format!("2026-{:02}-{:02}", 10 + d / 28, d % 28 + 1), model)
        })
        .collect();
    let page = render(&r);
    assert_clean(&page);
    let days = r.charts.days.len();
    let cost = &page[page.find("chart-cost-per-day").expect("cost")..];
    let cost = &cost[..cost.find("</svg>").expect("end")];
    // At most ten day labels under the axis; no figure over each bar.
    let ticks = cost.matches(r#"<text class="tick""#).count() - 5;
    assert!(ticks <= 10, "{ticks} day labels");
    assert!(!cost.contains(r#"<text class="value""#));
    let unpriced_days = r
        .charts
        .days
        .values()
        .filter(|m| m["m"].unpriced_requests > 0)
        .count();
    assert_eq!(
        cost.matches(r#"<circle class="unpriced""#).count(),
        unpriced_days
    );
    assert_eq!(days, 40);
}

#[test]
fn log_spaced_buckets_are_said_to_widen() {
    let mut r = sample();
    assert!(
        !render(&r).contains("Buckets widen"),
        "200 ms buckets are linear"
    );
    r.charts.latency = [250.0, 500.0, 1000.0, 2000.0, 4000.0]
        .windows(2)
        .map(|w| Bucket {
            lo_ms: w[0],
            hi_ms: w[1],
            count: 5,
        })
        .collect();
    let page = render(&r);
    assert!(page.contains("Buckets widen with latency"));
    // 812.4 ms sits 62% of the way through the 500–1000 ms bucket (the second bar).
    let at = page.find(r#"data-mark="p50""#).expect("p50");
    let x1 = &page[at..][page[at..].find("x1=\"").expect("x1") + 4..];
    let x: f64 = x1[..x1.find('"').expect("end")].parse().expect("a number");
    let slot = (640.0 - 64.0 - 14.0) / 4.0;
    assert!((x - (64.0 + slot * 1.6248)).abs() < 0.2, "{x}");
}
