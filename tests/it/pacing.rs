//! Pacing without a configured rate, end to end: from the endpoint's
//! `x-ratelimit-*` headers before any 429, and from a pace an earlier run
//! learned and kept in the state file (`--no-state` aside).

use std::time::Duration;

use promptbatch::mock::{MockConfig, MockServer};
use serde_json::Value;

use crate::common::*;

/// `n` prompt rows.
fn rows(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect()
}

/// The usual job at `url`, `concurrency` at once, retrying long enough to outlast a limit.
fn job(url: &str, concurrency: usize) -> String {
    prompt_job(url, &format!("[limits]\nconcurrency = {concurrency}\n"))
        .replace("max_attempts = 4", "max_attempts = 30")
}

fn rates_file(sb: &Sandbox) -> std::path::PathBuf {
    sb.state_home().join("promptbatch").join("rates.json")
}

/// The JSON `end` event of a run's stderr.
fn end_event(text: &str) -> Value {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "end")
        .unwrap_or_else(|| panic!("no end event in {text}"))
}

#[tokio::test]
async fn rate_headers_pace_a_run_before_its_first_429() {
    // 10 requests per 250 ms, announced on every answer as OpenAI does; 32
    // requests at once would pass it before any answer: the first goes alone.
    let mock = mock(MockConfig {
        limit_requests: 10,
        limit_window: Duration::from_millis(250),
        rate_headers: true,
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(150))
        .job(&job(&mock.url(), 32))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let limited = mock.stats().limited();
    assert!(limited <= 1, "{limited} of 150 bounced\n{}", stderr(&out));
    let text = stderr(&out);
    let pace = text
        .lines()
        .find(|l| l.trim_start().starts_with("pace"))
        .unwrap_or_else(|| panic!("no pace row in {text}"));
    assert!(pace.contains("from the endpoint's rate headers"), "{pace}");
    // 10 per 250 ms is 2400 a minute: the run held nearly all of it.
    let rpm: f64 = pace
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{pace}"));
    assert!((1900.0..=2500.0).contains(&rpm), "{pace}");
    // Nothing learned from 429s: nothing kept.
    assert!(!exists(&rates_file(&sb)));
    mock.shutdown().await;
}

/// Two runs against one limit that sends no headers; returns each run's bounces.
async fn two_runs(mock: &MockServer, sb: &Sandbox, second: &[&str]) -> (u64, u64, String) {
    let out = run_job(sb)
        .rows(&rows(200))
        .job(&job(&mock.url(), 32))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = mock.stats().limited();
    let mut args = vec!["--fresh", "--log-format", "json"];
    args.extend(second);
    let out = run_job(sb).args(&args).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (first, mock.stats().limited() - first, stderr(&out))
}

#[tokio::test]
async fn a_second_run_starts_at_the_pace_the_first_learned() {
    // 20 requests per 500 ms, enforced with 429s only (the AI/ML API's way).
    let mock = mock(MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_millis(500),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let (first, second, text) = two_runs(&mock, &sb, &[]).await;
    // At least the shortest run of 429s that shows a limit: how many more
    // bounce depends on how fast a loaded machine sends the first burst.
    assert!(first >= 6, "the first run meets the limit: {first} bounced");
    assert!(
        second <= 2,
        "{second} of 200 bounced in the second run\n{text}"
    );
    let start = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "start")
        .expect("a start event");
    assert_eq!(start["pace"]["source"], "state_file", "{start}");
    let rpm = start["pace"]["requests_per_minute"].as_f64().expect("rpm");
    // 20 per 500 ms is 2400 a minute; the learned pace sits a little under it.
    assert!((1800.0..=2500.0).contains(&rpm), "{rpm}");
    let end = end_event(&text);
    assert_eq!(end["pace"]["source"], "state_file", "{end}");

    // What the file holds: the origin and model, the pace, nothing secret.
    let kept: Value = serde_json::from_str(&sb.read(".state/promptbatch/rates.json")).unwrap();
    let port = mock
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let entry = &kept["entries"][format!("http://127.0.0.1:{port} m")];
    assert!(entry["requests_per_minute"].as_f64().is_some(), "{kept}");
    assert!(entry["learned_at"].is_string(), "{kept}");
    mock.shutdown().await;
}

#[tokio::test]
async fn no_state_neither_reads_nor_writes_the_state_file() {
    let mock = mock(MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_millis(500),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    // A key in the URL's user part, and a secret header: neither is kept.
    let url = mock
        .url()
        .replace("http://", &format!("http://u:{SENTINEL_KEY}@"));
    let out = run_job(&sb)
        .rows(&rows(120))
        .job(&job(&url, 32))
        .args(&["--no-state"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(mock.stats().limited() > 0, "the limit was met");
    assert!(!exists(&rates_file(&sb)), "--no-state wrote nothing");

    // Without --no-state the run keeps its pace; with it, the next run ignores it.
    let out = run_job(&sb).args(&["--fresh"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let kept = sb.read(".state/promptbatch/rates.json");
    assert_no_secret("rates.json", kept.as_bytes());
    assert!(!kept.contains("u:"), "{kept}");
    let out = run_job(&sb)
        .args(&["--fresh", "--no-state", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let end = end_event(&stderr(&out));
    assert_ne!(end["pace"]["source"], "state_file", "{end}");
    assert_eq!(sb.read(".state/promptbatch/rates.json"), kept, "untouched");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_ignored_with_a_warning() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(".state/promptbatch/rates.json", "{ this is not json");
    let out = run_job(&sb)
        .rows(&rows(3))
        .job(&job(&mock.url(), 2))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("ignored the state file"), "{text}");
    assert!(text.contains("none (concurrency only)"), "{text}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_configured_rate_is_named_and_wins() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(3))
        .job(&job(&mock.url(), 2))
        .args(&["--rpm", "6000"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("6000 requests/min, configured"), "{text}");
    mock.shutdown().await;
}

/// The pace row of the stderr table.
fn pace_row(text: &str) -> &str {
    text.lines()
        .find(|l| l.trim_start().starts_with("pace"))
        .unwrap_or_else(|| panic!("no pace row in {text}"))
}

#[tokio::test]
async fn a_short_first_run_learns_a_pace_the_second_keeps_under() {
    // 20 requests per second, enforced with 429s only; 150 rows, 16 at once
    // (the default): each window 20 pass and the 16 sent next all bounce.
    let mock = mock(MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_secs(1),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(150))
        .job(&job(&mock.url(), 16))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    let first = mock.stats().limited();
    assert!(first > 0, "the first run meets the limit");
    assert!(
        pace_row(&text).contains("learned from 429s"),
        "{}",
        pace_row(&text)
    );
    // The first run slowed down once the limit showed: a window's crowd and
    // a few more bounced, not 16 in every window.
    assert!(first <= 40, "{first} bounced in the first run\n{text}");
    let kept: Value = serde_json::from_str(&sb.read(".state/promptbatch/rates.json")).unwrap();
    let rpm = kept["entries"]
        .as_object()
        .and_then(|e| e.values().next())
        .and_then(|e| e["requests_per_minute"].as_f64())
        .unwrap_or_else(|| panic!("no pace kept: {kept}"));
    // 20 a second is 1200 a minute: kept a little under it, never over.
    assert!((1000.0..=1200.0).contains(&rpm), "{rpm}");

    // A scheduled run comes later: the window the first run ended in is over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = run_job(&sb).args(&["--fresh"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    let second = mock.stats().limited() - first;
    assert!(
        second <= 1,
        "{second} of 150 bounced in the second run\n{text}"
    );
    assert!(
        pace_row(&text).contains("learned by an earlier run"),
        "{}",
        pace_row(&text)
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn stray_429s_teach_no_pace_and_keep_none() {
    // 5 % of answers 429 at random with Retry-After: 1, 64 at once: an
    // overloaded upstream, not a limit.
    let mock = mock(MockConfig {
        rate_429: 0.05,
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(1500))
        .job(&job(&mock.url(), 64))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(mock.stats().status_count(429) > 30, "{text}");
    assert!(
        pace_row(&text).contains("none (concurrency only)"),
        "{}",
        pace_row(&text)
    );
    assert!(!exists(&rates_file(&sb)), "nothing kept\n{text}");
    mock.shutdown().await;
}
