//! Sending: the concurrency cap, retries of transient errors, requests not
//! retried, the key, and refusals that stop the run.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn the_concurrency_cap_is_held_and_filled() {
    let mock = mock(MockConfig {
        latency: Duration::from_millis(40),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let rows: String = (1..=40)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect();
    let out = run_job(&sb)
        .rows(&rows)
        .job(&prompt_job(&mock.url(), "[limits]\nconcurrency = 4\n"))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), 40);
    assert_eq!(mock.stats().requests(), 40);
    assert_eq!(
        mock.stats().max_in_flight(),
        4,
        "never more than the cap, and the cap is reached"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn transient_errors_are_retried_to_success() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(concat!(
            "{\"id\": \"r1\", \"prompt\": \"[mock:fail=429,500] hello [mock:retry-after-ms=5]\"}\n",
            "{\"id\": \"r2\", \"prompt\": \"[mock:fail=503html,malformed,empty] there\"}\n",
            "{\"id\": \"r3\", \"prompt\": \"plain\"}\n",
        ))
        .job(&prompt_job(&mock.url(), ""))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    assert_eq!(records["r1/default"]["status"], "ok");
    assert_eq!(records["r1/default"]["attempts"], 3);
    assert_eq!(records["r1/default"]["client_request_id"], "t:r1:default:3");
    assert_eq!(records["r2/default"]["attempts"], 4);
    assert_eq!(records["r3/default"]["attempts"], 1);
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["attempts"], 8);
    assert_eq!(summary["retries"], 5);
    assert_eq!(summary["requests"]["ok"], 3);
    // Every attempt of r1 carried its own X-Client-Request-Id.
    let ids: Vec<String> = bodies(&mock)
        .into_keys()
        .filter(|k| k.starts_with("t:r1:"))
        .collect();
    assert_eq!(ids.len(), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_bad_request_is_recorded_once_and_not_retried() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows("{\"id\": \"bad\", \"prompt\": \"[mock:fail=400] x\"}\n{\"id\": \"good\", \"prompt\": \"y\"}\n")
        .job(&prompt_job(&mock.url(), ""))
        .output()
        .await;
    assert_eq!(code(&out), 1, "some requests failed: {}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    let bad = &records["bad/default"];
    assert_eq!(bad["status"], "error");
    assert_eq!(bad["attempts"], 1);
    assert_eq!(bad["content"], Value::Null);
    assert_eq!(bad["error"]["kind"], "invalid_request");
    assert_eq!(bad["error"]["status"], 400);
    assert!(bad["error"]["message"]
        .as_str()
        .expect("message")
        .contains("Invalid payload"));
    assert_eq!(mock.stats().requests(), 2);
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["failed"], 1);
    assert_eq!(summary["errors"]["invalid_request"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn the_api_key_is_sent_but_never_written_or_printed() {
    const KEY: &str = "sk-test-SECRET-0123456789abcdef";
    let mock = mock(MockConfig {
        require_key: Some(KEY.into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"prompt\": \"hi\"}\n{\"prompt\": \"[mock:fail=500] there\"}\n",
    );
    let job = prompt_job(&mock.url(), "")
        .replace(
            "api_key_env = \"AIMLAPI_API_KEY\"",
            "api_key_env = \"TEST_KEY\"",
        )
        .replace("max_attempts = 4", "max_attempts = 1");
    let out = run_job(&sb)
        .job(&job)
        .args(&["--progress", "log"])
        .env("TEST_KEY", KEY)
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    for r in mock.received() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    let everything = [
        sb.read("t.jsonl"),
        sb.read("t.summary.json"),
        stderr(&out),
        stdout(&out),
    ]
    .join("\n");
    assert!(
        !everything.contains("SECRET"),
        "the key leaked:\n{everything}"
    );
    assert_eq!(sb.records("t.jsonl").len(), 2);

    // Without the variable: exit 2, nothing sent, and the message says what to do.
    let before = mock.stats().requests();
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("TEST_KEY is not set"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mock.stats().requests(), before);
    mock.shutdown().await;
}

#[tokio::test]
async fn repeated_refusals_stop_the_run_with_exit_4() {
    let (mock, sb) = keyed_job(20).await;
    let out = run_job(&sb).env("TEST_KEY", "wrong").output().await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(
        mock.stats().requests(),
        3,
        "stops after 3 refusals in a row"
    );
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "endpoint_refused");
    assert_eq!(summary["requests"]["failed"], 3);
    assert_eq!(summary["requests"]["not_sent"], 17);
    let records = sb.records("t.jsonl");
    assert!(records
        .iter()
        .all(|r| r["error"]["kind"] == "auth" && r["attempts"] == 1));
    mock.shutdown().await;
}
