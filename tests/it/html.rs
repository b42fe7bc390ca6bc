//! `report --format html` in a real browser: the page made from a realistic
//! report is opened in headless Chromium, its screenshot must not be blank
//! (many colours, the series' colours in the chart area), and the DOM the
//! browser built must hold every chart with its marks and the right totals,
//! with hostile names left as text (no script of theirs ran).
//!
//! Chromium is Debian's `chromium` (`scripts/test` installs it when it is
//! missing); `PROMPTBATCH_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use promptbatch::report::usage::html::render;
use promptbatch::report::usage::model::*;

const MODELS: [&str; 2] = ["google/gemma-3-27b-it", "google/gemma-3-4b-it"];
/// The colour of the first (most expensive) model's stacks.
const FIRST_SERIES: [u8; 3] = [0x4e, 0x79, 0xa7];
/// The colour of failed requests' bars.
const FAILED: [u8; 3] = [0xe1, 0x57, 0x59];
const EVIL: &str =
    r#"<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>"#;

/// A week of a nightly job over two Gemma models, with rate limits one
/// night, a few timeouts and server errors, and one night's small-model
/// requests unpriced; `--by day,model`.
pub fn sample_report() -> Report {
    let days = [
        "2026-11-18",
        "2026-11-19",
        "2026-11-20",
        "2026-11-21",
        "2026-11-22",
        "2026-11-23",
        "2026-11-24",
    ];
    let volume = [1.0, 1.08, 0.93, 1.15, 1.02, 0.61, 0.55];
    let mut groups = Vec::new();
    let mut charts = Charts::default();
    let mut files = Vec::new();
    for (d, day) in days.iter().enumerate() {
        let mut day_lines = 0;
        for (m, model) in MODELS.iter().enumerate() {
            let base = if m == 0 { 2400.0 } else { 7500.0 };
            let sent = (base * volume[d]) as u64 + 17 * d as u64;
            let rate_limited = if d == 2 && m == 0 { 37 } else { 0 };
            let timeouts = ((d * 3 + m) % 5) as u64;
            let server = if m == 1 { (d % 3) as u64 } else { 0 };
            let failed = rate_limited + timeouts + server;
            let ok = sent - failed;
            let prompt = ok * 418 + 31 * d as u64;
            let completion = ok * if m == 0 { 312 } else { 259 } + 7 * d as u64;
            let unpriced = if d == 4 && m == 1 { 12 } else { 0 };
            let per_million = if m == 0 { 0.27 } else { 0.04 };
            let cost = (prompt + completion) as f64 / 1e6 * per_million * (ok - unpriced) as f64
                / ok as f64;
            let p50 = if m == 0 { 1710.0 } else { 980.0 } * (1.0 + 0.04 * d as f64);
            groups.push(Group {
                values: vec![Some(day.to_string()), Some(model.to_string())],
                figures: Figures {
                    requests: Requests { ok, failed },
                    tokens: Tokens {
                        prompt,
                        completion,
                        cached: if m == 1 { ok * 96 } else { 0 },
                        reasoning: 0,
                        unreported: 0,
                    },
                    cost_usd: Cost {
                        total: Some(cost),
                        provider: cost,
                        pricing: 0.0,
                        unpriced_requests: unpriced,
                    },
                    latency_ms: Some(Percentiles {
                        p50,
                        p95: p50 * 2.3,
                        p99: p50 * 3.2,
                    }),
                    ttft_ms: (m == 1).then_some(Median { p50: 212.0 }),
                    retries: failed * 2 + rate_limited * 3 + 4,
                    uncertain_attempts: timeouts / 2,
                },
            });
            charts.days.entry(day.to_string()).or_default().insert(
                model.to_string(),
                DayModel {
                    cost_usd: cost,
                    unpriced_requests: unpriced,
                    tokens: prompt + completion,
                    requests: sent,
                },
            );
            *charts.by_status.entry("ok".into()).or_default() += ok;
            *charts.by_status.entry("error".into()).or_default() += failed;
            for (kind, n) in [
                ("rate_limited", rate_limited),
                ("timeout", timeouts),
                ("server", server),
            ] {
                if n > 0 {
                    *charts.by_error_kind.entry(kind.into()).or_default() += n;
                }
            }
            day_lines += sent;
        }
        files.push(FileFacts {
            path: format!("out/faq-nightly-{day}.jsonl"),
            lines: day_lines,
            duplicates: if d == 3 { 120 } else { 0 },
            span_s: 2400.0 + 180.0 * d as f64,
        });
    }
    // A log-normal latency (median 1.2 s) in the log-spaced buckets the
    // report draws (ten a decade: 250, 320, 400, 500, 630, 800, 1000 ...).
    let ok_total: u64 = groups.iter().map(|g| g.figures.requests.ok).sum();
    let (mu, sigma) = (1200_f64.ln(), 0.5);
    let edges = [
        250.0, 320.0, 400.0, 500.0, 630.0, 800.0, 1000.0, 1250.0, 1600.0, 2000.0, 2500.0, 3200.0,
        4000.0, 5000.0, 6300.0, 8000.0,
    ];
    let below = |ms: f64| normal_cdf((ms.ln() - mu) / sigma);
    charts.latency = edges
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            // The first and last buckets hold the tails.
            let lo = if i == 0 { 0.0 } else { below(w[0]) };
            let hi = if i == edges.len() - 2 {
                1.0
            } else {
                below(w[1])
            };
            Bucket {
                lo_ms: w[0],
                hi_ms: w[1],
                count: ((hi - lo) * ok_total as f64).round() as u64,
            }
        })
        .collect();
    let mut totals = sum(&groups);
    totals.latency_ms = Some(Percentiles {
        p50: 1200.0,
        p95: 1200.0 * (1.645 * sigma).exp(),
        p99: 1200.0 * (2.326 * sigma).exp(),
    });
    totals.ttft_ms = Some(Median { p50: 212.0 });
    Report {
        by: vec![Field::Day, Field::Model],
        span_s: files.iter().map(|f| f.span_s).sum(),
        groups,
        totals,
        files,
        pricing_check: Some(PricingCheck {
            requests: 240,
            provider_usd: 0.0412,
            pricing_usd: 0.0437,
        }),
        charts,
    }
}

/// The standard normal distribution below `z` (Abramowitz and Stegun
/// 7.1.26, within 1.5e-7: plenty for a picture).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The totals row, summed here over the groups (percentiles aside).
fn sum(groups: &[Group]) -> Figures {
    let mut t = Figures::default();
    let mut cost = 0.0;
    for g in groups.iter().map(|g| &g.figures) {
        t.requests.ok += g.requests.ok;
        t.requests.failed += g.requests.failed;
        t.tokens.prompt += g.tokens.prompt;
        t.tokens.completion += g.tokens.completion;
        t.tokens.cached += g.tokens.cached;
        t.tokens.reasoning += g.tokens.reasoning;
        t.tokens.unreported += g.tokens.unreported;
        cost += g.cost_usd.total.unwrap_or(0.0);
        t.cost_usd.provider += g.cost_usd.provider;
        t.cost_usd.pricing += g.cost_usd.pricing;
        t.cost_usd.unpriced_requests += g.cost_usd.unpriced_requests;
        t.retries += g.retries;
        t.uncertain_attempts += g.uncertain_attempts;
    }
    t.cost_usd.total = Some(cost);
    t
}

/// The browser: `PROMPTBATCH_CHROMIUM`, else Debian's. Fails saying how to
/// get it, never skips: a missing browser must not pass as a tested page.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PROMPTBATCH_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the HTML report test opens the page in headless Chromium. \
         Run scripts/test (as root it installs Debian's chromium package), or \
         `apt-get install chromium`, or set PROMPTBATCH_CHROMIUM to a Chromium binary.",
        path.display()
    );
    path
}

/// Runs headless Chromium on `page` with `extra` flags, in a profile of its
/// own, killed after a minute; returns what it printed on stdout.
fn browse(page: &Path, extra: &[String]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Containers have a small /dev/shm; colours exactly as written.
            "--disable-dev-shm-usage",
            "--force-color-profile=srgb",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 60 s: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    std::fs::read_to_string(&out).expect("chromium's stdout")
}

/// The DOM of `page` once Chromium has laid it out.
pub fn dom(page: &Path) -> String {
    browse(page, &["--dump-dom".to_string()])
}

/// Opens `page` and saves what a `width`×`height` window shows as a PNG.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) {
    browse(
        page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ],
    );
    assert!(png.exists(), "chromium wrote no screenshot");
}

/// RGB pixels of a PNG, with its width and height.
fn pixels(png: &Path) -> (Vec<[u8; 3]>, u32, u32) {
    let file = std::io::BufReader::new(std::fs::File::open(png).expect("open the screenshot"));
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut buf).expect("decode the PNG");
    let samples = info.color_type.samples();
    assert!(samples >= 3, "a colour screenshot: {:?}", info.color_type);
    let rgb = buf[..info.buffer_size()]
        .chunks(samples)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (rgb, info.width, info.height)
}

/// The value of `data-value` on the element carrying `attr`.
pub fn value_of(dom: &str, attr: &str) -> String {
    let at = dom
        .find(attr)
        .unwrap_or_else(|| panic!("{attr} is not in the DOM"));
    let rest = &dom[at..dom[at..].find('>').map_or(dom.len(), |e| at + e)];
    let v = &rest[rest
        .find("data-value=\"")
        .unwrap_or_else(|| panic!("{attr} has no value"))
        + 12..];
    v[..v.find('"').expect("end of the value")].to_string()
}

#[test]
fn the_html_report_renders_in_chromium_with_its_charts_and_totals() {
    let mut report = sample_report();
    // Hostile names from the files: they must stay text, their script never run.
    report.groups.push(Group {
        values: vec![Some("2026-11-24".into()), Some(EVIL.into())],
        figures: Figures::default(),
    });
    report.charts.by_error_kind.insert(EVIL.into(), 1);
    let expected = sum(&report.groups);

    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, render(&report)).expect("write the page");

    let png = dir.path().join("report.png");
    screenshot(&page, &png, 1366, 2000);
    let (rgb, width, height) = pixels(&png);
    assert_eq!((width, height), (1366, 2000), "the window's size");
    let distinct: std::collections::HashSet<[u8; 3]> = rgb.iter().copied().collect();
    assert!(
        distinct.len() > 50,
        "a blank page: {} colours",
        distinct.len()
    );
    // The charts sit in the first screen: their bars are in the page's colours.
    let first_screen = &rgb[..(width * 900) as usize];
    let series = first_screen.iter().filter(|p| **p == FIRST_SERIES).count();
    let failed = first_screen.iter().filter(|p| **p == FAILED).count();
    let inked = first_screen
        .iter()
        .filter(|p| p.iter().any(|c| *c < 200))
        .count();
    assert!(
        series > 2000,
        "the first model's stacks drew {series} pixels"
    );
    assert!(failed > 100, "the failed bars drew {failed} pixels");
    assert!(inked > first_screen.len() / 20, "{inked} pixels inked");

    let dom = browse(&page, &["--dump-dom".to_string()]);
    assert!(
        dom.contains("<title>promptbatch report</title>"),
        "a script ran"
    );
    assert!(
        !dom.contains("pwned</title>"),
        "a script from the files ran"
    );
    assert!(!dom.contains("<script"), "a script element from the files");
    assert!(!dom.contains("<img"), "an element from the files");
    assert!(
        dom.contains("&lt;script&gt;document.title="),
        "the name is shown as text"
    );
    for id in [
        "chart-cost-per-day",
        "chart-tokens-per-day",
        "chart-latency",
        "chart-requests-by-status",
        "chart-errors-by-kind",
    ] {
        assert!(
            dom.contains(&format!("<svg id=\"{id}\"")),
            "no {id} in the DOM"
        );
    }
    // 7 days × 2 models in each of the two day charts; 15 latency buckets.
    assert_eq!(dom.matches("<rect class=\"seg\"").count(), 28);
    assert_eq!(dom.matches("<rect class=\"bin\"").count(), 15);
    for mark in ["p50", "p95", "p99"] {
        assert!(
            dom.contains(&format!("data-mark=\"{mark}\"")),
            "no {mark} line"
        );
    }
    assert!(dom.contains(">p50 1,200 ms</text>"), "the p50 label");
    assert_eq!(
        value_of(&dom, "data-label=\"rate_limited\""),
        "37",
        "the rate-limited bar"
    );
    assert!(
        dom.contains("data-unpriced=\"12\""),
        "the unpriced night is marked"
    );
    assert!(
        dom.contains("+12 unpriced requests"),
        "and counted, not shown as $0"
    );

    // The totals row holds the sums over the groups.
    for (name, want) in [
        ("requests_ok", expected.requests.ok),
        ("requests_failed", expected.requests.failed),
        ("tokens_prompt", expected.tokens.prompt),
        ("tokens_completion", expected.tokens.completion),
        ("tokens_cached", expected.tokens.cached),
        (
            "cost_usd_unpriced_requests",
            expected.cost_usd.unpriced_requests,
        ),
        ("retries", expected.retries),
        ("uncertain_attempts", expected.uncertain_attempts),
    ] {
        assert_eq!(
            value_of(&dom, &format!("data-total=\"{name}\"")),
            want.to_string(),
            "the total {name}"
        );
    }
    let cost: f64 = value_of(&dom, "data-total=\"cost_usd_total\"")
        .parse()
        .expect("a number");
    let want = expected.cost_usd.total.expect("priced");
    assert!((cost - want).abs() < 1e-9, "total cost {cost} != {want}");
    let requests = expected.requests.ok + expected.requests.failed;
    assert_eq!(
        value_of(&dom, "data-headline=\"requests\""),
        requests.to_string()
    );
    // What people read: grouped digits and dollars.
    let shown = format!("{},{:03}", requests / 1000, requests % 1000);
    assert!(dom.contains(&format!(">{shown}<")), "{shown} is not shown");
    assert!(
        dom.contains(&format!(">${want:.2}<")),
        "${want:.2} is not shown"
    );
}

/// Makes docs/report.png, the README's picture, from the sample report:
/// `cargo test --test it readme_screenshot -- --ignored`.
#[test]
#[ignore = "writes docs/report.png; run by hand when the page changes"]
fn readme_screenshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, render(&sample_report())).expect("write the page");
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.png");
    std::fs::create_dir_all(png.parent().expect("docs/")).expect("docs/");
    screenshot(&page, &png, 1366, 900);
    if let Ok(keep) = std::env::var("PROMPTBATCH_KEEP_HTML") {
        std::fs::copy(&page, keep).expect("keep the page");
    }
}
