//! The pipeline end to end: records, parameters, concurrency, retries, refusals, budget, resume.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

fn job_toml(url: &str, extra: &str) -> String {
    format!(
        r#"name = "t"
[endpoint]
url = "{url}"
api_key_env = "AIMLAPI_API_KEY"
headers = {{ "x-api-key" = "{SENTINEL_HEADER}" }}
timeout_secs = 5
[retry]
max_attempts = 4
initial_backoff_ms = 1
max_backoff_ms = 20
{extra}"#
    )
}

/// The usual job: prompt rows from rows.jsonl, model "m", then `extra` TOML.
fn prompt_job(url: &str, extra: &str) -> String {
    job_toml(
        url,
        &format!("[input]\npath = \"rows.jsonl\"\n[defaults]\nmodel = \"m\"\n{extra}"),
    )
}

/// The request bodies the mock received, by X-Client-Request-Id.
fn bodies(mock: &MockServer) -> HashMap<String, Value> {
    mock.received()
        .into_iter()
        .map(|r| {
            let id = r
                .header("x-client-request-id")
                .expect("every attempt carries X-Client-Request-Id")
                .to_string();
            (id, r.body)
        })
        .collect()
}

async fn mock(config: MockConfig) -> MockServer {
    MockServer::start(MockConfig {
        record: true,
        ..config
    })
    .await
    .expect("mock starts")
}

#[tokio::test]
async fn records_match_prompts_and_only_set_parameters_are_sent() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.csv",
        "id,question\r\na,What is 2+2?\r\nb,\"Name a colour, please\"\r\nc,\"Two\r\nlines\"\r\n",
    );
    sb.write(
        "job.toml",
        &job_toml(
            &mock.url(),
            r#"
[input]
path = "rows.csv"
system = "Be brief."
template = "Q: {{question}}"
[defaults]
model = "google/gemma-3-4b-it"
max_tokens = 50
[[params]]
name = "precise"
temperature = 0.2
[[params]]
name = "creative"
model = "google/gemma-3-27b-it"
temperature = 1.1
top_k = 40
"#,
        ),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 6);
    let sent = bodies(&mock);
    assert_eq!(sent.len(), 6, "one attempt per request");
    for r in &records {
        let body = &sent[r["client_request_id"].as_str().expect("id")];
        let expected = promptbatch::mock::expected_reply(body);
        assert_eq!(r["status"], "ok");
        assert_eq!(r["content"], json!(expected.content), "{r}");
        assert_eq!(
            r["usage"]["completion_tokens"],
            json!(expected.completion_tokens)
        );
        assert_eq!(r["usage"]["prompt_tokens"], json!(expected.prompt_tokens));
        // Gemma: the system text is folded into the first user turn.
        let messages = body["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 1, "{body}");
        let question = r["input"]["question"].as_str().expect("question");
        assert_eq!(
            messages[0],
            json!({"role": "user", "content": format!("Be brief.\n\nQ: {question}")})
        );
        let mut keys: Vec<&str> = body
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        match r["param_set"].as_str().expect("set") {
            "precise" => {
                assert_eq!(keys, ["max_tokens", "messages", "model", "temperature"]);
                assert_eq!(body["model"], "google/gemma-3-4b-it");
                assert_eq!(body["temperature"], 0.2);
            }
            "creative" => {
                assert_eq!(
                    keys,
                    ["max_tokens", "messages", "model", "temperature", "top_k"]
                );
                assert_eq!(body["model"], "google/gemma-3-27b-it");
                assert_eq!(r["model"], "google/gemma-3-27b-it");
                assert_eq!(body["top_k"], 40);
            }
            other => panic!("unexpected set {other}"),
        }
        assert_eq!(
            r["key"],
            format!(
                "{}/{}",
                r["id"].as_str().expect("id"),
                r["param_set"].as_str().expect("set")
            )
        );
    }
    assert_eq!(
        by_key(&records)["c/precise"]["input"]["question"],
        "Two\r\nlines"
    );

    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["total"], 6);
    assert_eq!(summary["requests"]["ok"], 6);
    assert_eq!(summary["attempts"], 6);
    assert_eq!(summary["retries"], 0);
    let completion: u64 = records
        .iter()
        .map(|r| r["usage"]["completion_tokens"].as_u64().expect("tokens"))
        .sum();
    assert_eq!(summary["tokens"]["completion"], completion);
    assert_eq!(summary["cost_usd"]["unpriced_requests"], 6);
    assert_eq!(summary["cost_usd"]["total"], 0.0);
    mock.shutdown().await;
}

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
    sb.write("rows.jsonl", &rows);
    sb.write(
        "job.toml",
        &prompt_job(&mock.url(), "[limits]\nconcurrency = 4\n"),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
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
    sb.write(
        "rows.jsonl",
        concat!(
            "{\"id\": \"r1\", \"prompt\": \"[mock:fail=429,500] hello [mock:retry-after-ms=5]\"}\n",
            "{\"id\": \"r2\", \"prompt\": \"[mock:fail=503html,malformed,empty] there\"}\n",
            "{\"id\": \"r3\", \"prompt\": \"plain\"}\n",
        ),
    );
    sb.write("job.toml", &prompt_job(&mock.url(), ""));
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
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
    sb.write(
        "rows.jsonl",
        "{\"id\": \"bad\", \"prompt\": \"[mock:fail=400] x\"}\n{\"id\": \"good\", \"prompt\": \"y\"}\n",
    );
    sb.write("job.toml", &prompt_job(&mock.url(), ""));
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
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
    sb.write("job.toml", &job);
    let mut cmd = sb.command(&["run", "job.toml", "--progress", "log"]);
    cmd.env("TEST_KEY", KEY);
    let out = output(cmd).await;
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
    let out = output(sb.command(&["run", "job.toml"])).await;
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
async fn validate_sends_nothing_and_rejects_bad_parameters() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"id\": 1, \"prompt\": \"ok\"}\n{\"id\": 2, \"prompt\": \"x\", \"params\": {\"top_k\": -1}}\n{\"id\": 3}\n",
    );
    sb.write("job.toml", &prompt_job(&mock.url(), ""));

    let out = output(sb.command(&["validate", "job.toml", "--param", "temperature=5"])).await;
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("--param temperature"), "{err}");

    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("rows.jsonl:2") && err.contains("top_k"),
        "{err}"
    );
    assert!(err.contains("rows.jsonl:3"), "{err}");

    let out = output(sb.command(&["run", "job.toml"])).await;
    assert_eq!(code(&out), 2, "run checks the whole input first");
    assert!(!sb.path("t.jsonl").exists() || sb.read("t.jsonl").is_empty());

    sb.write(
        "rows.jsonl",
        "{\"id\": 1, \"prompt\": \"ok\"}\n{\"id\": 2, \"prompt\": \"fine\"}\n",
    );
    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("2 requests"), "{}", stdout(&out));
    assert_eq!(
        mock.stats().requests(),
        0,
        "validate and a rejected run send nothing"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_rerun_resumes_sending_only_what_is_missing_failed_or_edited() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"id\": \"a\", \"prompt\": \"one\"}\n{\"id\": \"b\", \"prompt\": \"[mock:fail=400] two\"}\n{\"id\": \"c\", \"prompt\": \"three\"}\n",
    );
    sb.write("job.toml", &prompt_job(&mock.url(), ""));
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 1);
    assert_eq!(mock.stats().requests(), 3);

    // Edit row c, fix row b: a is skipped, b (failed) and c (edited) are sent.
    sb.write(
        "rows.jsonl",
        "{\"id\": \"a\", \"prompt\": \"one\"}\n{\"id\": \"b\", \"prompt\": \"two\"}\n{\"id\": \"c\", \"prompt\": \"three, edited\"}\n",
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 5);
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 3, "compacted to one line per key");
    assert!(records.iter().all(|r| r["status"] == "ok"));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["resumed"], 1);
    assert_eq!(summary["requests"]["ok"], 3);
    // The job's lines (a's included); this run sent two.
    assert_eq!(summary["attempts"], 3);
    assert_eq!(summary["this_run"]["attempts"], 2);

    // Nothing left to do: nothing is sent.
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 0);
    assert_eq!(mock.stats().requests(), 5);
    assert_eq!(sb.summary("t.summary.json")["requests"]["resumed"], 3);
    mock.shutdown().await;
}

/// A mock that wants the key "right", and a job of `rows` prompts sent one at
/// a time with the key from TEST_KEY.
async fn keyed_job(rows: usize) -> (MockServer, Sandbox) {
    let mock = mock(MockConfig {
        require_key: Some("right".into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let lines: String = (1..=rows)
        .map(|i| format!("{{\"prompt\": \"q{i}\"}}\n"))
        .collect();
    sb.write("rows.jsonl", &lines);
    let job = prompt_job(&mock.url(), "[limits]\nconcurrency = 1\n").replace(
        "api_key_env = \"AIMLAPI_API_KEY\"",
        "api_key_env = \"TEST_KEY\"",
    );
    sb.write("job.toml", &job);
    (mock, sb)
}

#[tokio::test]
async fn repeated_refusals_stop_the_run_with_exit_4() {
    let (mock, sb) = keyed_job(20).await;
    let mut cmd = sb.command(&["run", "job.toml", "--progress", "off"]);
    cmd.env("TEST_KEY", "wrong");
    let out = output(cmd).await;
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

#[tokio::test]
async fn streaming_joins_deltas_and_keeps_usage() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"id\": \"s\", \"prompt\": \"stream me\"}\n{\"id\": \"n\", \"prompt\": \"[mock:no-usage] no usage here\"}\n",
    );
    sb.write("job.toml", &prompt_job(&mock.url(), "stream = true\n"));
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    let sent = bodies(&mock);
    let s = &records["s/default"];
    let body = &sent[s["client_request_id"].as_str().expect("id")];
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    let expected = promptbatch::mock::expected_reply(body);
    assert_eq!(s["content"], json!(expected.content));
    assert_eq!(
        s["usage"]["completion_tokens"],
        json!(expected.completion_tokens)
    );
    assert!(s["ttft_ms"].is_number());
    assert_eq!(records["n/default"]["usage"], Value::Null);
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["tokens"]["unreported"], 1);
    assert!(summary["ttft_ms"].is_object());
    mock.shutdown().await;
}

#[tokio::test]
async fn the_budget_stops_dispatch_with_exit_3() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let rows: String = (1..=10)
        .map(|i| format!("{{\"prompt\": \"question number {i}\"}}\n"))
        .collect();
    sb.write("rows.jsonl", &rows);
    // Worst case per request: ~(30 bytes + 8) input tokens + 100 output tokens at $1 per 1M
    // = about $0.00013; a $0.0005 budget holds 3 worst cases, and more as replies settle below
    // theirs. Four at a time must still leave nothing for a rerun with the same budget.
    sb.write(
        "job.toml",
        &prompt_job(&mock.url(), "max_tokens = 100\n[limits]\nconcurrency = 4\nmax_cost_usd = 0.0005\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "budget");
    let total = summary["cost_usd"]["total"].as_f64().expect("cost");
    assert!(total > 0.0 && total <= 0.0005, "{total}");
    assert!(summary["requests"]["not_sent"].as_u64().expect("n") > 0);
    let sent = mock.stats().requests();
    // A rerun with the same budget spends nothing more, and says why in one --quiet line.
    let out = output(sb.command(&["run", "job.toml", "--quiet"])).await;
    assert_eq!(code(&out), 3);
    assert_eq!(mock.stats().requests(), sent);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("budget reached") && err.contains("t.jsonl"),
        "{err}"
    );
    // The summary still describes the job: what the first run spent.
    let again = sb.summary("t.summary.json");
    assert_eq!(again["cost_usd"]["total"].as_f64(), Some(total));
    assert_eq!(again["this_run"]["sent"], 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_second_run_on_the_same_output_is_refused() {
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\": \"hi\"}\n");
    let _held = promptbatch::sink::OutputLock::acquire(&sb.path("rows-out.jsonl")).expect("lock");
    let out = output(sb.command(&[
        "run",
        "--input",
        "rows.jsonl",
        "--model",
        "m",
        "--output",
        "rows-out.jsonl",
        "--simulate",
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
}

#[tokio::test]
async fn the_readme_quickstart_runs_with_simulate() {
    let sb = Sandbox::new();
    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/quickstart.toml");
    let out = output(sb.command(&[
        "run",
        job,
        "--simulate",
        "--output",
        "q.jsonl",
        "--param",
        "max_tokens=40",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("q.jsonl");
    assert_eq!(records.len(), 50);
    let summary = sb.summary("q.summary.json");
    assert_eq!(summary["requests"]["ok"], 50);
    assert!(
        stderr(&out).contains("latency ms"),
        "the summary table is printed"
    );

    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/conversations.toml");
    let out = output(sb.command(&["run", job, "--simulate", "--output", "c.jsonl"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("c.jsonl").len(), 7);
}

#[tokio::test]
async fn provider_costs_models_and_tool_calls_are_recorded_as_sent() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        concat!(
            "{\"id\": \"hdr\", \"prompt\": \"[mock:cost=aiml-header] a\"}\n",
            "{\"id\": \"body\", \"prompt\": \"[mock:cost=aiml-body] b\"}\n",
            "{\"id\": \"credits\", \"prompt\": \"[mock:cost=aiml-credits] c\"}\n",
            "{\"id\": \"or\", \"prompt\": \"[mock:cost=openrouter] d\"}\n",
            "{\"id\": \"priced\", \"prompt\": \"e\"}\n",
            "{\"id\": \"other\", \"prompt\": \"[mock:model=someone/else] f\", \"params\": {\"model\": \"unpriced/model\"}}\n",
            "{\"id\": \"tools\", \"prompt\": \"[mock:tools] g\"}\n",
        ),
    );
    sb.write(
        "job.toml",
        &prompt_job(
            &mock.url(),
            "[pricing]\nm = { input = 1.0, output = 2.0 }\n",
        ),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    let sent = bodies(&mock);
    let expect = |key: &str| {
        let r = &records[key];
        let body = &sent[r["client_request_id"].as_str().expect("id")];
        (r.clone(), promptbatch::mock::expected_reply(body))
    };
    for key in [
        "hdr/default",
        "body/default",
        "credits/default",
        "or/default",
    ] {
        let (r, e) = expect(key);
        let cost = e
            .cost_usd(&MockConfig::default())
            .expect("the mock sent a cost");
        assert_eq!(r["cost_source"], "provider", "{key}");
        assert!(
            (r["cost_usd"].as_f64().expect("cost") - cost).abs() < 1e-15,
            "{key}: {r}"
        );
    }
    assert_eq!(records["or/default"]["provider"], "MockProvider");
    let (priced, e) = expect("priced/default");
    assert_eq!(priced["cost_source"], "pricing");
    let by_price = (e.prompt_tokens as f64 * 1.0 + e.completion_tokens as f64 * 2.0) / 1e6;
    assert!((priced["cost_usd"].as_f64().expect("cost") - by_price).abs() < 1e-15);
    let other = &records["other/default"];
    assert_eq!(other["model"], "unpriced/model");
    assert_eq!(other["response_model"], "someone/else");
    assert_eq!(other["cost_usd"], Value::Null);
    let tools = &records["tools/default"];
    assert_eq!(tools["content"], Value::Null);
    assert_eq!(tools["finish_reason"], "tool_calls");
    assert!(
        tools["tool_calls"][0]["function"]["name"].is_string(),
        "{tools}"
    );

    let summary = sb.summary("t.summary.json");
    let total: f64 = records
        .values()
        .filter_map(|r| r["cost_usd"].as_f64())
        .sum();
    assert!((summary["cost_usd"]["total"].as_f64().expect("total") - total).abs() < 1e-12);
    assert_eq!(summary["cost_usd"]["unpriced_requests"], 1);
    assert!(summary["cost_usd"]["by_model"]
        .get("unpriced/model")
        .is_none());
    assert_eq!(summary["finish_reasons"]["tool_calls"], 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn stdin_limit_fresh_and_a_cut_last_line() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let url = mock.url();
    let args = [
        "run",
        "--input",
        "-",
        "--model",
        "m",
        "--endpoint",
        url.as_str(),
        "--api-key-env",
        "",
        "--output",
        "o.jsonl",
        "--limit",
        "2",
        "--progress",
        "off",
    ];
    let run_with_stdin = |extra: &'static [&'static str]| {
        let mut cmd = sb.command(&[&args[..], extra].concat());
        cmd.stdin(std::process::Stdio::piped());
        async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut child = cmd
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(b"{\"prompt\": \"a\"}\n\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n")
                    .expect("write");
                child.wait_with_output().expect("wait")
            })
            .await
            .expect("join")
        }
    };
    let out = run_with_stdin(&[]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("o.jsonl");
    assert_eq!(records.len(), 2, "--limit 2 takes the first two rows");
    assert_eq!(
        records[0]["job"], "promptbatch",
        "stdin has no stem to name the job"
    );

    // A crash mid-write leaves half a line: the next run cuts it off and says so.
    let mut text = sb.read("o.jsonl");
    text.push_str("{\"key\":\"3/def");
    sb.write("o.jsonl", &text);
    let out = run_with_stdin(&[]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cut off an incomplete last line"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.records("o.jsonl").len(), 2);
    assert_eq!(mock.stats().requests(), 2, "both rows were already done");

    // --fresh starts over and keeps the old output as a dated .bak.
    let out = run_with_stdin(&["--fresh"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 4);
    let backups = sb.backups("o.jsonl");
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(sb.read(&backups[0]).lines().count(), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn the_budget_counts_unknown_costs_and_lost_attempts_across_reruns() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // No usage reported: each answer counts at its worst case. Two resets per
    // request: each lost attempt counts at its worst case too, and a retry
    // after one needs room of its own.
    let rows: String = (1..=12)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"prompt\": \"[mock:no-usage] q{i}\"}}\n")
            } else {
                format!("{{\"prompt\": \"[mock:fail=reset,reset] q{i}\"}}\n")
            }
        })
        .collect();
    sb.write("rows.jsonl", &rows);
    sb.write(
        "job.toml",
        &prompt_job(&mock.url(), "max_tokens = 100\n[limits]\nconcurrency = 3\nmax_cost_usd = 0.001\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let charged = |records: Vec<Value>| -> f64 {
        records
            .iter()
            .map(|r| {
                r["budget_charge_usd"]
                    .as_f64()
                    .expect("a budget run records its charge")
            })
            .sum()
    };
    let first = charged(sb.records("t.jsonl"));
    assert!(first <= 0.001 + 1e-12, "charged {first} past the budget");
    // A rerun with the same budget: the cap holds over both runs.
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let both = charged(sb.records("t.jsonl"));
    assert!(
        both <= 0.001 + 1e-12,
        "charged {both} past the budget over two runs"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_retry_the_budget_denies_is_never_sent_and_never_charged() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"prompt\": \"[mock:fail=reset,reset] q\"}\n",
    );
    // The worst case is (prompt bound + 100 tokens) at $1 per 1M: a little
    // over $0.0001, so $0.0002 holds one attempt and not two.
    sb.write(
        "job.toml",
        &prompt_job(&mock.url(), "max_tokens = 100\n[limits]\nmax_cost_usd = 0.0002\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"),
    );
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 1, "the retry was not sent");
    let records = sb.records("t.jsonl");
    let r = &records[0];
    assert_eq!(r["uncertain_attempts"], 1, "{r}");
    let charge = r["budget_charge_usd"].as_f64().expect("charged");
    // One uncertain attempt at its worst case, nothing for the denied one.
    assert!(
        charge > 0.0001 && charge < 0.00015,
        "charged {charge}: the denied retry was counted"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn lines_of_edited_requests_do_not_count_as_done() {
    let (mock, sb) = keyed_job(5).await;
    let mut cmd = sb.command(&["run", "job.toml", "--progress", "off"]);
    cmd.env("TEST_KEY", "right");
    assert_eq!(code(&output(cmd).await), 0);

    // Every request is edited; the key is now wrong, so the run stops after 3 refusals.
    let mut cmd = sb.command(&[
        "run",
        "job.toml",
        "--progress",
        "off",
        "--param",
        "temperature=0.5",
    ]);
    cmd.env("TEST_KEY", "wrong");
    let out = output(cmd).await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(
        summary["requests"]["ok"], 0,
        "old lines of edited requests are not done"
    );
    assert_eq!(summary["requests"]["failed"], 3);
    assert_eq!(summary["requests"]["not_sent"], 2);
    assert_eq!(summary["requests"]["resumed"], 0);
    mock.shutdown().await;
}
