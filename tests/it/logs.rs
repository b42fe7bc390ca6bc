//! What a run says on stderr for log shippers: with `--log-format json`, every
//! line is one JSON object (ts, level, event, message), and the end event
//! carries the summary's figures.

use crate::common::*;
use serde_json::Value;

/// Two rows, one of which the mock fails once (no retry): exit 1.
fn flags<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--input",
        "rows.jsonl",
        "--endpoint",
        url,
        "--api-key-env",
        "",
        "--model",
        "m",
        "--output",
        "o.jsonl",
        "--max-attempts",
        "1",
        "--log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    args
}

/// Every non-blank stderr line, parsed; fails unless each is a JSON object
/// with the four fields every event has.
fn parsed(out: &std::process::Output) -> Vec<Value> {
    stderr(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
            assert!(event["ts"].is_string(), "{line}");
            assert!(
                matches!(event["level"].as_str(), Some("info" | "warn" | "error")),
                "{line}"
            );
            assert!(event["event"].is_string(), "{line}");
            assert!(event["message"].is_string(), "{line}");
            event
        })
        .collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_the_end_carries_the_summary() {
    let mock = MockServer::start(MockConfig {
        usd_per_million: Some(2.0),
        ..MockConfig::default()
    })
    .await
    .expect("mock starts");
    let url = mock.url();
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"prompt\": \"hi\"}\n{\"prompt\": \"[mock:fail=500] there\"}\n",
    );
    let out = output(sb.command(&flags(&url, &["--progress", "log"]))).await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = parsed(&out);
    let start = named(&events, "start");
    assert_eq!(start.len(), 1, "{events:?}");
    assert_eq!(start[0]["rows"], 2);
    assert_eq!(start[0]["to_send"], 2);
    // The end is the last line, and says what the summary file says.
    let end = events.last().expect("an event");
    assert_eq!(end["event"], "end", "{events:?}");
    assert_eq!(end["level"], "warn");
    assert_eq!(end["exit_code"], 1);
    let summary = sb.summary("o.summary.json");
    assert_eq!(end["requests"], summary["requests"]);
    assert_eq!(end["requests"]["failed"], 1);
    assert_eq!(end["cost_usd"], summary["cost_usd"]);
    assert!(
        end["cost_usd"]["total"].as_f64().is_some_and(|c| c > 0.0),
        "{end}"
    );
    assert_eq!(end["tokens"], summary["tokens"]);
    let written = sb.path("o.jsonl");
    assert_eq!(end["output"].as_str(), written.to_str());
    // No table: its figures are in the end event.
    assert!(!stderr(&out).contains("requests     "), "{}", stderr(&out));

    // A notice is an event too.
    let out = output(sb.command(&flags(&url, &["--fresh"]))).await;
    assert!(code(&out) <= 1, "{}", stderr(&out));
    let events = parsed(&out);
    let notices = named(&events, "notice");
    assert!(
        notices
            .iter()
            .any(|n| n["message"].as_str().is_some_and(|m| m.contains("--fresh"))),
        "{events:?}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn json_logs_say_a_run_that_cannot_start_as_one_error_event() {
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\": \"hi\"}\n");
    let mut args = flags("http://127.0.0.1:9/v1/chat/completions", &[]);
    args[6] = "PB_TEST_UNSET_KEY";
    let mut cmd = sb.command(&args);
    cmd.env_remove("PB_TEST_UNSET_KEY");
    let out = output(cmd).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let events = parsed(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["level"], "error");
    assert_eq!(events[0]["event"], "error");
    let message = events[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("PB_TEST_UNSET_KEY is not set"),
        "{message}"
    );
}

#[tokio::test]
async fn a_quiet_json_run_says_only_its_end_and_only_when_it_did_not_succeed() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let url = mock.url();
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\": \"[mock:fail=500] hi\"}\n");
    let out = output(sb.command(&flags(&url, &["--quiet"]))).await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = parsed(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "end");
    assert_eq!(events[0]["requests"]["failed"], 1);
    assert!(
        events[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 of 1 request failed")),
        "{events:?}"
    );

    sb.write("rows.jsonl", "{\"prompt\": \"hello\"}\n");
    let out = output(sb.command(&flags(&url, &["--quiet"]))).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    mock.shutdown().await;
}
