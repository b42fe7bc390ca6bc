//! Batch mode against the built-in mock's Batch API: records like chat
//! mode's, files split at the cap, a run killed with a batch in flight
//! resumed without a second submission, expiry and partial failure as error
//! lines resent by the next run, --cancel-batches, batch prices and the
//! budget holding a submitted batch.

use std::time::Duration;

use promptbatch::mock::{MockConfig, MockServer, BATCH_LATE};
use serde_json::Value;

use crate::common::*;

const PRICES: &str =
    "[pricing]\n\"m\" = { input = 2.0, output = 4.0, batch_input = 1.0, batch_output = 2.0 }\n";

async fn batch_mock(complete_ms: u64, expire_ms: Option<u64>) -> MockServer {
    mock(MockConfig {
        batch_complete: Duration::from_millis(complete_ms),
        batch_expire: expire_ms.map(Duration::from_millis),
        ..MockConfig::default()
    })
    .await
}

fn rows(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect()
}

/// A batch-mode job at `url` with `extra` TOML ([endpoint] keys first).
fn batch_job(url: &str, endpoint: &str, extra: &str) -> String {
    prompt_job(url, &format!("max_tokens = 50\n{extra}")).replace(
        "timeout_secs = 5\n",
        &format!("timeout_secs = 5\nmode = \"batch\"\n{endpoint}"),
    )
}

fn state(sb: &Sandbox) -> Option<Value> {
    let text = std::fs::read_to_string(sb.path("out.jsonl.batches.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn with_output(job: String) -> String {
    format!("{job}[output]\npath = \"out.jsonl\"\n")
}

#[tokio::test]
async fn batch_records_equal_chat_records_and_a_rerun_sends_nothing() {
    let mock = batch_mock(200, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(3));
    let chat = prompt_job(
        &mock.url(),
        &format!("max_tokens = 50\n{PRICES}[output]\npath = \"chat.jsonl\"\n"),
    );
    let out = run_job(&sb).job(&chat).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run_job(&sb)
        .job(&with_output(batch_job(&mock.url(), "", PRICES)))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stats = mock.batch_stats();
    assert_eq!((stats.files_uploaded(), stats.batches_created()), (1, 1));
    let chat = by_key(&sb.records("chat.jsonl"));
    let batch = by_key(&sb.records("out.jsonl"));
    assert_eq!(batch.len(), 3);
    for (key, record) in &batch {
        let same = &chat[key];
        for field in [
            "status",
            "content",
            "finish_reason",
            "usage",
            "request_sha256",
            "model",
            "params",
            "input",
        ] {
            assert_eq!(record[field], same[field], "{key} {field}");
        }
        assert!(
            record["batch_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("batch_")),
            "{record}"
        );
        assert!(record["latency_ms"].is_null(), "{record}");
        // Batch prices: half the chat prices here.
        let usage = &record["usage"];
        let expected = usage["prompt_tokens"].as_f64().unwrap() * 1.0 / 1e6
            + usage["completion_tokens"].as_f64().unwrap() * 2.0 / 1e6;
        let cost = record["cost_usd"].as_f64().expect("priced");
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
        assert!((same["cost_usd"].as_f64().unwrap() - 2.0 * expected).abs() < 1e-12);
    }
    let summary = sb.summary("out.summary.json");
    assert_eq!(summary["requests"]["ok"], 3, "{summary}");
    assert!(state(&sb).is_none(), "settled batches leave the file");
    // Nothing left to send: no file, no batch.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!((stats.files_uploaded(), stats.batches_created()), (1, 1));
    assert_eq!(sb.records("out.jsonl").len(), 3);
}

#[tokio::test]
async fn files_split_at_the_request_cap_and_failed_lines_are_error_lines() {
    let mock = batch_mock(100, None).await;
    let sb = Sandbox::new();
    let mut lines = rows(6);
    lines.push_str("{\"prompt\": \"broken [mock:fail=500]\"}\n");
    sb.write("rows.jsonl", &lines);
    let out = run_job(&sb)
        .job(&with_output(batch_job(&mock.url(), "", "")))
        .env("PROMPTBATCH_BATCH_MAX_REQUESTS", "3")
        .output()
        .await;
    assert_eq!(code(&out), 1, "one request failed: {}", stderr(&out));
    let stats = mock.batch_stats();
    assert_eq!(
        (
            stats.files_uploaded(),
            stats.batches_created(),
            stats.lines_uploaded()
        ),
        (3, 3, 7)
    );
    let records = sb.records("out.jsonl");
    assert_eq!(records.len(), 7);
    let failed: Vec<&Value> = records.iter().filter(|r| r["status"] == "error").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"]["kind"], "server");
    assert_eq!(failed[0]["error"]["status"], 500);
    assert!(failed[0]["batch_id"].is_string());
}

#[tokio::test]
async fn a_run_killed_with_a_batch_in_flight_is_resumed_without_a_second_batch() {
    let mock = batch_mock(2_500, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(4));
    let mut child = run_job(&sb)
        .job(&with_output(batch_job(&mock.url(), "", "")))
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    wait_until("a batch id in batches.json", || {
        state(&sb).is_some_and(|s| s["batches"][0]["batch_id"].is_string())
    })
    .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(!exists(&sb.path("out.jsonl")) || sb.records("out.jsonl").is_empty());
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stats = mock.batch_stats();
    assert_eq!((stats.files_uploaded(), stats.batches_created()), (1, 1));
    let records = by_key(&sb.records("out.jsonl"));
    assert_eq!(records.len(), 4);
    assert!(records.values().all(|r| r["status"] == "ok"));
    assert!(state(&sb).is_none());
}

#[tokio::test]
async fn an_uploaded_file_without_a_recorded_batch_is_found_not_submitted_again() {
    let mock = batch_mock(300, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(3));
    // Submits, then stops waiting at once: the batch stays in flight.
    let job = with_output(batch_job(&mock.url(), "batch_wait_secs = 0\n", ""));
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 1, "requests still in flight: {}", stderr(&out));
    assert!(stderr(&out).contains("still in flight"), "{}", stderr(&out));
    // As if killed after the upload, before the batch's id was written.
    let mut st = state(&sb).expect("batches.json");
    assert_eq!(st["batches"][0]["input_file_id"], "file-mock-1");
    st["batches"][0]["batch_id"] = Value::Null;
    sb.write("out.jsonl.batches.json", &st.to_string());
    let out = run_job(&sb)
        .job(&with_output(batch_job(&mock.url(), "", "")))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stats = mock.batch_stats();
    assert_eq!((stats.files_uploaded(), stats.batches_created()), (1, 1));
    assert_eq!(sb.records("out.jsonl").len(), 3);
}

#[tokio::test]
async fn expired_requests_are_error_lines_and_only_they_are_resent() {
    let expiring = batch_mock(3_000, Some(200)).await;
    let sb = Sandbox::new();
    let mut lines = rows(2);
    lines.push_str(&format!("{{\"prompt\": \"slow one {BATCH_LATE}\"}}\n"));
    sb.write("rows.jsonl", &lines);
    let out = run_job(&sb)
        .job(&with_output(batch_job(&expiring.url(), "", "")))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = sb.records("out.jsonl");
    let failed: Vec<&Value> = records.iter().filter(|r| r["status"] == "error").collect();
    assert_eq!((records.len(), failed.len()), (3, 1));
    assert_eq!(failed[0]["error"]["kind"], "timeout");
    let healthy = batch_mock(100, None).await;
    let out = run_job(&sb)
        .job(&with_output(batch_job(&healthy.url(), "", "")))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        healthy.batch_stats().lines_uploaded(),
        1,
        "only the expired request is resent"
    );
    let records = by_key(&sb.records("out.jsonl"));
    assert_eq!(records.len(), 3);
    assert!(records.values().all(|r| r["status"] == "ok"));
}

#[tokio::test]
async fn cancel_batches_cancels_those_in_flight_and_records_them() {
    let mock = batch_mock(10_000, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(4));
    let job = with_output(batch_job(&mock.url(), "batch_wait_secs = 0\n", ""));
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let out = run_job(&sb).args(&["--cancel-batches"]).output().await;
    assert_eq!(code(&out), 1, "cancelled requests failed: {}", stderr(&out));
    let stats = mock.batch_stats();
    assert_eq!((stats.batches_created(), stats.batches_cancelled()), (1, 1));
    let records = sb.records("out.jsonl");
    assert_eq!(records.len(), 4, "one line per key of the cancelled batch");
    assert!(records.iter().all(|r| r["batch_id"].is_string()));
    assert!(state(&sb).is_none());
}

#[tokio::test]
async fn the_budget_holds_a_submitted_batch_at_its_worst_case() {
    let mock = batch_mock(10_000, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(3));
    let job = |budget: f64| {
        with_output(batch_job(
            &mock.url(),
            "batch_wait_secs = 0\n",
            &format!("{PRICES}[limits]\nmax_cost_usd = {budget}\n"),
        ))
    };
    let out = run_job(&sb).job(&job(1.0)).output().await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let worst = state(&sb).expect("batches.json")["batches"][0]["worst_case_usd"]
        .as_f64()
        .expect("worst case");
    assert!(worst > 0.0);
    // Three more requests of the same size: they fit only if the first batch counted nothing.
    sb.write(
        "rows.jsonl",
        &format!(
            "{}{}",
            rows(3),
            rows(6)
                .lines()
                .skip(3)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        ),
    );
    let out = run_job(&sb).job(&job(worst * 1.5)).output().await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(mock.batch_stats().batches_created(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_while_polling_keeps_the_batch_and_exits_130() {
    let mock = batch_mock(10_000, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(2));
    let mut cmd = run_job(&sb)
        .job(&with_output(batch_job(&mock.url(), "", "")))
        .command();
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    wait_until("a batch id in batches.json", || {
        state(&sb).is_some_and(|s| s["batches"][0]["batch_id"].is_string())
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let stats = mock.batch_stats();
    assert_eq!((stats.batches_created(), stats.batches_cancelled()), (1, 0));
    assert!(state(&sb).is_some(), "the batch stays for the next run");
}

#[tokio::test]
async fn the_batch_sample_runs_under_simulate() {
    let sb = Sandbox::new();
    sb.write("batch.toml", include_str!("../../samples/batch.toml"));
    sb.write("questions.csv", include_str!("../../samples/questions.csv"));
    let mut cmd = sb.command(&[
        "run",
        "batch.toml",
        "--simulate",
        "--progress",
        "off",
        "--no-state",
    ]);
    cmd.env_remove("OPENAI_API_KEY");
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("out/batch-nightly.jsonl");
    assert_eq!(records.len(), 25);
    assert!(records
        .iter()
        .all(|r| r["batch_id"].is_string() && r["status"] == "ok"));
}

#[tokio::test]
async fn a_refused_key_stops_the_run_and_no_secret_is_kept_anywhere() {
    let mock = mock(MockConfig {
        require_key: Some("another-key".into()),
        batch_complete: Duration::from_millis(100),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(2));
    // Secrets printed (stderr, stdout) are checked by `output` itself.
    let out = run_job(&sb)
        .job(&with_output(batch_job(&mock.url(), "", "")))
        .output()
        .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert_eq!(mock.batch_stats().files_uploaded(), 0);
    for name in ["out.jsonl", "out.summary.json", "out.jsonl.batches.json"] {
        if exists(&sb.path(name)) {
            assert_no_secret(name, sb.read(name).as_bytes());
        }
    }
}

#[tokio::test]
async fn batches_json_names_no_secret() {
    let mock = batch_mock(5_000, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(2));
    let job = with_output(batch_job(&mock.url(), "batch_wait_secs = 0\n", ""));
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = sb.read("out.jsonl.batches.json");
    assert!(text.contains("batch_mock_"), "{text}");
    assert_no_secret("batches.json", text.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sb.path("out.jsonl.batches.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_recorded_batch_whose_lines_are_in_the_output_is_not_asked_for_again() {
    let mock = batch_mock(100, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(2));
    let job = with_output(batch_job(&mock.url(), "", ""));
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // As a run killed after writing its lines and before pruning leaves it,
    // the batch since forgotten by the server (a 404 when asked).
    let requests: Vec<Value> = (sb.records("out.jsonl").iter())
        .map(|r| serde_json::json!([r["key"], r["request_sha256"]]))
        .collect();
    let left = serde_json::json!({"batches": [{
        "input_file_id": "file-gone", "batch_id": "batch_gone", "status": "recorded",
        "created_at": "2026-11-26T00:00:00Z", "worst_case_usd": 0.0, "requests": requests,
    }]});
    sb.write("out.jsonl.batches.json", &left.to_string());
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(state(&sb).is_none(), "the recorded batch is pruned");
    let stats = mock.batch_stats();
    assert_eq!((stats.files_uploaded(), stats.batches_created()), (1, 1));
    assert_eq!(sb.records("out.jsonl").len(), 2);
}

#[tokio::test]
async fn a_batch_the_server_no_longer_knows_stops_the_run_saying_how_to_drop_it() {
    let mock = batch_mock(100, None).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(1));
    let job = with_output(batch_job(&mock.url(), "", ""));
    let left = serde_json::json!({"batches": [{
        "input_file_id": "file-gone", "batch_id": "batch_unknown", "status": "in_progress",
        "created_at": "2026-11-26T00:00:00Z", "worst_case_usd": 0.0, "requests": [],
    }]});
    sb.write("out.jsonl.batches.json", &left.to_string());
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("batch_unknown") && err.contains("out.jsonl.batches.json"),
        "{err}"
    );
    // Nothing submitted behind the user's back.
    assert_eq!(mock.batch_stats().batches_created(), 0);
    assert!(state(&sb).is_some());
}
