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
    assert!(first > 20, "the first run meets the limit: {first} bounced");
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
