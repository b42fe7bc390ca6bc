//! Promises that hold against hostile servers: the real binary against a small
//! adversarial HTTP server (not the product's mock) that sends what no good
//! server would: a body of hundreds of megabytes, one that never ends, a
//! stream that never finishes, nothing but `: ping` comments, a trickle, a
//! stream ended before its finish reason, a redirect to another origin, bad
//! UTF-8, an error object inside a 200.
//!
//! Every run must end in time, with the right record, the right number of
//! requests and a bounded peak memory (the child's own high-water mark). To add a
//! scenario: one variant in `server::Behaviour`, its bytes in `Behaviour::answer`,
//! and a test that runs it.

mod measure;
mod memory;
mod quotes;
mod server;

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use measure::{run_measured, Finished};
use server::{Behaviour, Hostile};

const KEY: &str = "sk-hostile-test-key";
const SECRET_HEADER: &str = "hostile-secret-header-value";
/// No run here may take longer; a run still going then is killed and fails its test.
const WALL: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// One scenario: the job's endpoint bounds and whether it streams.
struct Scenario {
    stream: bool,
    timeout_secs: u64,
    max_attempt_secs: u64,
    max_reply_bytes: Option<u64>,
    /// `[output] json = true`: the reply must be JSON.
    json: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            stream: false,
            timeout_secs: 30,
            max_attempt_secs: 60,
            max_reply_bytes: Some(MIB),
            json: false,
        }
    }
}

/// Runs one request through the real binary against `url` (2 attempts at most):
/// how the run ended and its one record.
async fn run(url: &str, scenario: Scenario) -> (Finished, Value) {
    let sb = Sandbox::new();
    let cap = scenario
        .max_reply_bytes
        .map(|bytes| format!("max_reply_bytes = {bytes}\n"))
        .unwrap_or_default();
    let job = format!(
        r#"name = "t"
[endpoint]
url = "{url}"
api_key_env = "HOSTILE_KEY"
timeout_secs = {timeout}
max_attempt_secs = {deadline}
{cap}headers = {{ "x-api-key" = "{SECRET_HEADER}", "X-Custom" = "custom" }}
[input]
path = "rows.jsonl"
[defaults]
model = "m"
stream = {stream}
[retry]
initial_backoff_ms = 1
max_backoff_ms = 10
[output]
json = {json}
"#,
        timeout = scenario.timeout_secs,
        deadline = scenario.max_attempt_secs,
        stream = scenario.stream,
        json = scenario.json,
    );
    let cmd = run_job(&sb)
        .rows("{\"id\": \"a\", \"prompt\": \"hello\"}\n")
        .job(&job)
        .args(&["--max-attempts", "2"])
        .env("HOSTILE_KEY", KEY)
        .command();
    let finished = run_measured(cmd, sb.path("stderr.txt")).await;
    assert!(
        finished.elapsed < WALL,
        "the run took {:?}: {}",
        finished.elapsed,
        finished.stderr
    );
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 1, "{}", finished.stderr);
    let record = records.into_iter().next().expect("one record");
    let text = record.to_string();
    assert!(
        !text.contains(KEY) && !text.contains(SECRET_HEADER),
        "{text}"
    );
    (finished, record)
}

/// An error record of `kind` after `attempts` attempts; exit code 1.
fn assert_failed(finished: &Finished, record: &Value, kind: &str, attempts: u64) {
    assert_eq!(finished.code, 1, "{}", finished.stderr);
    assert_eq!(record["status"], "error", "{record}");
    assert_eq!(record["content"], Value::Null, "{record}");
    assert_eq!(record["error"]["kind"], kind, "{record}");
    assert_eq!(record["attempts"], attempts, "{record}");
}

/// The message of a record's error.
fn error_message(record: &Value) -> &str {
    record["error"]["message"].as_str().expect("message")
}

/// A streamed run with the default bounds.
fn streaming() -> Scenario {
    Scenario {
        stream: true,
        ..Scenario::default()
    }
}

/// A run whose reads (or, not streaming, whole reply) must come within 1 s.
fn one_second(stream: bool) -> Scenario {
    Scenario {
        stream,
        timeout_secs: 1,
        ..Scenario::default()
    }
}

/// A reply of these status line, content type and body.
fn fixed(status: &'static str, content_type: &str, body: impl Into<String>) -> Behaviour {
    Behaviour::Fixed {
        status,
        headers: format!("content-type: {content_type}\r\n"),
        body: body.into(),
    }
}

fn json_200(body: String) -> Behaviour {
    fixed("200 OK", "application/json", body)
}

fn assert_peak_below(finished: &Finished, mib: u64) {
    let peak = finished
        .peak_rss_bytes
        .expect("the run lasted long enough to sample its memory");
    eprintln!("peak memory {} MiB", peak / MIB);
    assert!(
        peak < mib * MIB,
        "peak memory {} MiB, bound {mib} MiB",
        peak / MIB
    );
}

#[tokio::test]
async fn a_200_mb_reply_is_refused_at_the_default_cap_without_holding_it() {
    let server = Hostile::start(Behaviour::Oversized { bytes: 200 * MIB }).await;
    let scenario = Scenario {
        max_reply_bytes: None,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = error_message(&record);
    assert!(
        message.contains("max_reply_bytes (16777216 bytes)"),
        "{message}"
    );
    assert_eq!(server.requests(), 2);
    assert_peak_below(&finished, 200);
}

#[tokio::test]
async fn an_endless_body_ends_at_a_small_cap() {
    let server = Hostile::start(Behaviour::EndlessBody).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "bad_response", 2);
    assert_eq!(record["uncertain_attempts"], 2, "{record}");
    assert_eq!(server.requests(), 2);
    assert_peak_below(&finished, 100);
}

#[tokio::test]
async fn an_endless_stream_of_content_ends_at_the_cap() {
    let server = Hostile::start(Behaviour::EndlessChunks {
        every: Duration::ZERO,
    })
    .await;
    let scenario = Scenario {
        stream: true,
        max_reply_bytes: Some(64 * 1024),
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = error_message(&record);
    assert!(message.contains("the streamed reply"), "{message}");
    assert_eq!(server.requests(), 2);
    assert_peak_below(&finished, 100);
}

#[tokio::test]
async fn an_endless_healthy_looking_stream_meets_the_attempt_deadline() {
    // A data event every 50 ms keeps the per-read timer happy; only the
    // attempt's hard deadline ends it.
    let server = Hostile::start(Behaviour::EndlessChunks {
        every: Duration::from_millis(50),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        timeout_secs: 30,
        max_attempt_secs: 2,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = error_message(&record);
    assert!(message.contains("max_attempt_secs (2 s)"), "{message}");
    assert_eq!(record["uncertain_attempts"], 2, "{record}");
    assert_eq!(server.requests(), 2);
}

/// A one-second scenario against `behaviour` ends as a timeout after its two attempts.
async fn times_out_twice(behaviour: Behaviour, stream: bool) {
    let server = Hostile::start(behaviour).await;
    let (finished, record) = run(&server.url, one_second(stream)).await;
    assert_failed(&finished, &record, "timeout", 2);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_stream_of_pings_times_out_per_read() {
    times_out_twice(
        Behaviour::Pings {
            every: Duration::from_millis(50),
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn a_trickled_stream_times_out_per_read() {
    // One byte every 200 ms: bytes keep coming, but a data event would take
    // longer than the 1 s timeout to complete.
    times_out_twice(
        Behaviour::Trickle {
            stream: true,
            every: Duration::from_millis(200),
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn a_trickled_whole_reply_meets_the_total_timeout() {
    times_out_twice(
        Behaviour::Trickle {
            stream: false,
            every: Duration::from_millis(100),
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn a_stream_ended_with_done_before_its_finish_reason_is_retried_not_kept() {
    let server = Hostile::start(Behaviour::DoneBeforeFinish).await;
    let scenario = streaming();
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "connection", 2);
    let message = error_message(&record);
    assert!(message.contains("cut short"), "{message}");
    assert_eq!(record["uncertain_attempts"], 2, "{record}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_307_to_another_port_reaches_nothing_there() {
    let elsewhere = Hostile::start(Behaviour::Good).await;
    let server = Hostile::start(Behaviour::Redirect {
        location: elsewhere.url.clone(),
    })
    .await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    let message = error_message(&record);
    assert!(message.contains(&elsewhere.url), "{message}");
    assert_eq!(server.requests(), 1, "a redirect is not retried");
    assert_eq!(
        elsewhere.requests(),
        0,
        "the other origin got: {:?}",
        elsewhere.heads.lock().expect("lock")
    );
    // The first server did get the credentials: their absence over there means something.
    let heads = server.heads.lock().expect("lock").clone();
    assert!(heads[0].contains(SECRET_HEADER), "{heads:?}");
}

#[tokio::test]
async fn invalid_utf8_in_a_good_reply_is_kept_once() {
    let server = Hostile::start(Behaviour::InvalidUtf8).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(record["content"], "caf\u{FFFD}", "{record}");
    assert_eq!(server.requests(), 1, "a good reply is not paid for twice");
}

#[tokio::test]
async fn an_error_object_in_a_200_is_classified_by_its_code() {
    let server = Hostile::start(Behaviour::ErrorIn200 { code: 400 }).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    assert_eq!(server.requests(), 1, "a code-400 error is not retried");

    let server = Hostile::start(Behaviour::ErrorIn200 { code: 503 }).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "server", 2);
    assert_eq!(server.requests(), 2, "a code-503 error is retried");
}

/// A 200 JSON reply with this `usage`.
fn reply_with(usage: &str) -> Behaviour {
    json_200(format!(
        r#"{{"id":"c1","choices":[{{"index":0,"message":{{"content":"fine"}},"finish_reason":"stop"}}],"usage":{usage}}}"#
    ))
}

#[tokio::test]
async fn odd_but_paid_json_is_kept_and_paid_once() {
    for (body, content) in [
        // A lone surrogate: no JSON reader takes it as a string.
        (
            r#"{"choices":[{"message":{"content":"a\ud800b"}}]}"#,
            "a\u{FFFD}b",
        ),
        // A repeated key: the last one counts, as in a tree.
        (
            r#"{"choices":[],"choices":[{"message":{"content":"x","content":"y"}}]}"#,
            "y",
        ),
    ] {
        let server = Hostile::start(json_200(body.to_string())).await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert_eq!(finished.code, 0, "{body}: {}", finished.stderr);
        assert_eq!(record["content"], content, "{record}");
        assert_eq!(server.requests(), 1, "{body}");
    }
}

#[tokio::test]
async fn lying_token_counts_are_recorded_as_no_usage() {
    for usage in [
        // No total: prompt + completion would overflow.
        r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1}"#,
        r#"{"prompt_tokens":9007199254740993,"completion_tokens":1,"total_tokens":5}"#,
        r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":1e300}"#,
        // Past a double: a JSON reader fails the whole reply on it.
        r#"{"prompt_tokens":1e400,"completion_tokens":1}"#,
    ] {
        let server = Hostile::start(reply_with(usage)).await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert_eq!(finished.code, 0, "{usage}: {}", finished.stderr);
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(record["usage"], Value::Null, "{usage}: {record}");
        assert_eq!(server.requests(), 1);
    }
}

#[tokio::test]
async fn costs_that_add_up_to_infinity_are_no_cost() {
    let usage = r#"{"prompt_tokens":1,"completion_tokens":1,"cost":1e308,"is_byok":true,"cost_details":{"upstream_inference_cost":1e308}}"#;
    let server = Hostile::start(reply_with(usage)).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(
        (&record["cost_usd"], &record["cost_source"]),
        (&Value::Null, &Value::Null),
        "{record}"
    );
}

#[tokio::test]
async fn a_stream_of_blank_finish_reasons_cut_short_is_retried_not_kept() {
    let delta = r#"data: {"choices":[{"index":0,"delta":{"content":"part"},"finish_reason":""}]}"#;
    let server = Hostile::start(fixed(
        "200 OK",
        "text/event-stream",
        format!("{delta}\n\n{delta}\n\ndata: [DONE]\n\n"),
    ))
    .await;
    let scenario = streaming();
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "connection", 2);
    let message = error_message(&record);
    assert!(message.contains("cut short"), "{message}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn data_after_the_finish_reason_does_not_hold_the_attempt_to_its_deadline() {
    let server = Hostile::start(Behaviour::SseForever {
        first: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"done\"},\"finish_reason\":\"stop\"}]}\n\n".to_string(),
        then: "data: {\"choices\":[{\"index\":0,\"delta\":{}}]}\n\n".to_string(),
        every: Duration::from_millis(20),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        timeout_secs: 1,
        // Past the suite's wall: only the per-read timer can end this run in time.
        max_attempt_secs: 600,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(record["content"], "done", "{record}");
    assert!(
        finished.elapsed < Duration::from_secs(20),
        "{:?}",
        finished.elapsed
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn one_long_sse_id_then_many_events_keeps_memory_bounded() {
    // One `id:` line of 256 KiB, then bursts of tiny events: each event
    // carries the id, and a copy per event of one read came to gigabytes.
    let server = Hostile::start(Behaviour::SseForever {
        first: format!("id: {}\n", "i".repeat(256 * 1024)),
        then: "data: {\"choices\":[{\"index\":0,\"delta\":{}}]}\n\n".repeat(1000),
        every: Duration::from_millis(1),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        max_attempt_secs: 3,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = error_message(&record);
    assert!(message.contains("max_attempt_secs (3 s)"), "{message}");
    assert!(
        finished.elapsed < Duration::from_secs(20),
        "{:?}",
        finished.elapsed
    );
    assert_peak_below(&finished, 100);
}

#[tokio::test]
async fn millions_of_empty_choices_cost_no_more_than_one() {
    // 15 MiB of `{},`: as a list of choices it took gigabytes.
    let filler = "{},".repeat(5 * 1024 * 1024);
    let server = Hostile::start(json_200(format!(
            r#"{{"choices":[{{"index":0,"message":{{"content":"fine"}},"finish_reason":"stop"}},{filler}{{}}]}}"#
        )))
    .await;
    let scenario = Scenario {
        max_reply_bytes: None,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["content"], "fine", "{record}");
    assert_peak_below(&finished, 150);
}

/// `http = "2"` against a server that speaks only HTTP/1.1: it answers the
/// HTTP/2 preface in HTTP/1.1, which the client reads as a malformed frame.
/// Each failure says so and names the setting that fixes it, instead of an
/// h2 frame error a user cannot act on.
#[tokio::test]
async fn http_2_against_an_http_1_only_server_names_the_setting_to_change() {
    let server = Hostile::start(Behaviour::Good).await;
    let sb = Sandbox::new();
    let job = prompt_job(&server.url, "[limits]\nconcurrency = 2\n")
        .replace("timeout_secs = 5", "timeout_secs = 5\nhttp = \"2\"");
    let out = run_job(&sb)
        .rows("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n")
        .job(&job)
        .output()
        .await;
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 2);
    for r in records {
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("does not speak HTTP/2") && message.contains("http = \"1.1\""),
            "{message}"
        );
    }
}
