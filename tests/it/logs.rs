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

/// What a run with `--log-format json --json` said: its exit code, its
/// stderr events (each line checked to be one) and its stdout. Progress is
/// off unless the run asks for it: the start event is sent either way.
struct Said {
    code: i32,
    events: Vec<Value>,
    stdout: String,
}

async fn said(run: RunJob<'_>) -> Said {
    let out = run.args(&["--log-format", "json", "--json"]).output().await;
    Said {
        code: code(&out),
        events: parsed(&out),
        stdout: stdout(&out),
    }
}

/// A run that sent requests: one start naming the output and the summary, the
/// end last with the exit code and the summary's figures, and on stdout the
/// summary exactly as the file has it.
fn assert_ended(sb: &Sandbox, said: &Said, exit: i32, stopped: Value) {
    let events = &said.events;
    assert_eq!(said.code, exit, "{events:#?}");
    let start = named(events, "start");
    assert_eq!(start.len(), 1, "{events:#?}");
    assert_eq!(start[0]["job"], "t");
    assert_eq!(start[0]["output"].as_str(), sb.path("t.jsonl").to_str());
    assert_eq!(
        start[0]["summary_path"].as_str(),
        sb.path("t.summary.json").to_str()
    );
    assert!(start[0]["concurrency"].as_u64().is_some(), "{}", start[0]);
    assert!(start[0]["pace"].is_object(), "{}", start[0]);
    let end = events.last().expect("an event");
    assert_eq!(end["event"], "end", "{events:#?}");
    assert_eq!(end["exit_code"], exit);
    assert_eq!(end["stopped"], stopped);
    let summary = sb.summary("t.summary.json");
    for figure in ["requests", "tokens", "cost_usd", "attempts", "this_run"] {
        assert_eq!(end[figure], summary[figure], "{figure}");
    }
    assert_eq!(said.stdout, sb.read("t.summary.json"));
}

#[tokio::test]
async fn every_stderr_line_is_json_and_stdout_the_summary_whatever_the_run_ends_in() {
    let mock = mock(MockConfig {
        usd_per_million: Some(2.0),
        ..MockConfig::default()
    })
    .await;
    let url = mock.url();

    // 0: every request ok.
    let sb = Sandbox::new();
    let run = run_job(&sb)
        .job(&prompt_job(&url, ""))
        .rows("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n");
    let ok = said(run).await;
    assert_ended(&sb, &ok, 0, Value::Null);
    assert_eq!(ok.events.last().expect("end")["level"], "info");

    // 1: one request failed.
    let sb = Sandbox::new();
    let run = run_job(&sb)
        .job(&prompt_job(&url, ""))
        .rows("{\"prompt\": \"a\"}\n{\"prompt\": \"[mock:fail=500] b\"}\n")
        .args(&["--max-attempts", "1", "--progress", "log"]);
    let failed = said(run).await;
    assert_ended(&sb, &failed, 1, Value::Null);
    assert_eq!(failed.events.last().expect("end")["requests"]["failed"], 1);

    // 3: the budget stops it.
    let sb = Sandbox::new();
    let rows: String = (1..=10)
        .map(|i| format!("{{\"prompt\": \"question number {i}\"}}\n"))
        .collect();
    let run = run_job(&sb)
        .job(&prompt_job(&url, "max_tokens = 100\n[limits]\nconcurrency = 4\nmax_cost_usd = 0.0005\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"))
        .rows(&rows);
    let budget = said(run).await;
    assert_ended(&sb, &budget, 3, "budget".into());
    let start = &named(&budget.events, "start")[0];
    assert_eq!(start["max_cost_usd"], 0.0005);
    mock.shutdown().await;

    // 4: the endpoint refuses the key.
    let (keyed, sb) = keyed_job(20).await;
    let refused = said(run_job(&sb).env("TEST_KEY", "wrong")).await;
    assert_ended(&sb, &refused, 4, "endpoint_refused".into());
    keyed.shutdown().await;
}

#[tokio::test]
async fn a_bad_job_or_bad_flags_are_one_json_error_and_nothing_on_stdout() {
    let sb = Sandbox::new();
    let job = prompt_job(
        "http://127.0.0.1:9/v1/chat/completions",
        "[limits]\nconcurency = 2\n",
    );
    let bad_job = said(run_job(&sb).job(&job).rows("{\"prompt\": \"a\"}\n")).await;
    assert_eq!(bad_job.code, 2);
    assert_eq!(bad_job.events.len(), 1, "{:#?}", bad_job.events);
    assert_eq!(bad_job.events[0]["event"], "error");
    let message = bad_job.events[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("concurency") && message.contains("concurrency"),
        "{message}"
    );
    assert_eq!(bad_job.stdout, "");
    assert!(!sb.path("t.summary.json").exists());

    // A usage error is said before the flags are understood: still one event.
    for (flags, says) in [
        (
            &["run", "--log-format", "json", "--concurrency", "many"][..],
            "--concurrency",
        ),
        (&["run", "--bogus", "--log-format=json"][..], "--bogus"),
    ] {
        let out = output(sb.command(flags)).await;
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let events = parsed(&out);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0]["level"], "error");
        assert!(
            events[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{events:#?}"
        );
        assert_eq!(stdout(&out), "");
    }
    // Without --log-format json it stays clap's own text.
    let out = output(sb.command(&["run", "--bogus"])).await;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("error: unexpected argument"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn run_json_prints_the_summary_on_stdout_even_with_quiet() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .job(&prompt_job(&mock.url(), ""))
        .rows("{\"prompt\": \"a\"}\n{\"prompt\": \"[mock:fail=500,500,500] b\"}\n")
        .args(&["--json", "--quiet", "--max-attempts", "1"])
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let summary: Value = serde_json::from_str(&stdout(&out)).expect("the summary on stdout");
    assert_eq!(summary, sb.summary("t.summary.json"));
    assert_eq!(summary["requests"]["failed"], 1);
    // --quiet: the one line saying why, on stderr, and nothing else.
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    // Without --json, stdout stays empty.
    let out = run_job(&sb)
        .args(&["--fresh", "--max-attempts", "1"])
        .output()
        .await;
    assert_eq!(code(&out), 1);
    assert_eq!(stdout(&out), "");
    mock.shutdown().await;
}

/// The time a text line starts with, if it does: `2026-11-26T02:00:05Z `.
fn stamp(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (time, _) = line.split_once(' ')?;
    if time.len() != 20 || !time.ends_with('Z') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[tokio::test]
async fn off_a_terminal_every_text_line_starts_with_the_utc_time() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // Fails every attempt of the three runs below.
    let rows = "{\"prompt\": \"a\"}\n{\"prompt\": \"[mock:fail=500,500,500] b\"}\n";
    let first = run_job(&sb)
        .job(&prompt_job(&mock.url(), ""))
        .rows(rows)
        .args(&["--max-attempts", "1"])
        .output()
        .await;
    assert_eq!(code(&first), 1, "{}", stderr(&first));
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    // --fresh: a notice; --progress log: the start line; a failure: the table's errors.
    let out = run_job(&sb)
        .args(&["--fresh", "--progress", "log", "--max-attempts", "1"])
        .output()
        .await;
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    let mut stamped = Vec::new();
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        // The summary table's rows under its stamped first line keep their columns.
        if line.starts_with("  ") {
            continue;
        }
        let at = stamp(line).unwrap_or_else(|| panic!("a line without its time: {line:?}\n{err}"));
        assert!(before <= at && at <= after, "{line}");
        stamped.push(line.split_once(' ').expect("a stamp").1);
    }
    for (what, starts) in [
        (
            "the --fresh notice",
            "promptbatch: --fresh: moved the old output",
        ),
        ("the start", "promptbatch: 2 rows checked"),
        ("the table", "promptbatch · t · "),
    ] {
        assert!(
            stamped.iter().any(|l| l.starts_with(starts)),
            "no stamped line for {what}:\n{err}"
        );
    }
    assert!(err.contains("\n  requests     2 total"), "{err}");

    // An error before sending, and the one --quiet line, are stamped too.
    let out = run_job(&sb)
        .args(&["--quiet", "--max-attempts", "1"])
        .output()
        .await;
    assert_eq!(code(&out), 1);
    let line = stderr(&out);
    assert!(
        stamp(&line).is_some() && line.contains(" promptbatch: "),
        "{line}"
    );
    let out = run_job(&sb).args(&["--concurrency", "0"]).output().await;
    assert_eq!(code(&out), 2);
    let line = stderr(&out);
    assert!(
        stamp(&line).is_some() && line.contains("Z error: "),
        "{line}"
    );
    mock.shutdown().await;
}
