//! Structured output: replies asked to be JSON (`[output] json`, a
//! `response_format`), parsed into `json` or recorded as `bad_output` naming
//! what failed, retried up to `[retry] bad_output_attempts`, counted in the
//! summary and the report, and resent by a rerun.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

/// A prompt whose Nth attempt gets the Nth of `replies` from the mock, exactly.
fn replying(id: &str, replies: &[&str]) -> String {
    let encoded: Vec<String> = replies.iter().map(|r| STANDARD.encode(r)).collect();
    let prompt = format!("order {id} [mock:reply={}]", encoded.join(","));
    format!("{}\n", json!({"id": id, "prompt": prompt}))
}

/// A job of rows.jsonl for model "m", with `retry` lines in `[retry]` and
/// `defaults` lines in `[defaults]` (the last section: more may follow).
fn base_job(url: &str, retry: &str, defaults: &str) -> String {
    format!(
        r#"name = "t"
[endpoint]
url = "{url}"
timeout_secs = 5
[input]
path = "rows.jsonl"
[retry]
initial_backoff_ms = 1
max_backoff_ms = 20
{retry}
[defaults]
model = "m"
{defaults}
"#
    )
}

/// A job whose requests ask for JSON of the order schema, with `retry` lines in `[retry]`.
fn schema_job(url: &str, retry: &str) -> String {
    let schema = r#"{ type = "object", required = ["items"], properties = { items = { type = "array", items = { type = "object", properties = { price = { type = "number" } } } } } }"#;
    base_job(
        url,
        retry,
        &format!(
            "extra = {{ response_format = {{ type = \"json_schema\", json_schema = {{ name = \"order\", schema = {schema} }} }} }}"
        ),
    )
}

const GOOD: &str = r#"{"items": [{"price": 1}, {"price": 2.5}]}"#;
const BROKEN: &str = "{\"items\": [\n  {\"price\": }\n]}";
const VIOLATING: &str = r#"{"items": [{"price": 1}, {"price": 2}, {"price": "abc"}]}"#;

/// How many attempts of `id` reached the mock (their X-Client-Request-Id end in the attempt).
fn attempts_at_mock(bodies: &std::collections::HashMap<String, Value>, id: &str) -> usize {
    let prefix = format!("t:{id}:default:");
    bodies.keys().filter(|k| k.starts_with(&prefix)).count()
}

#[tokio::test]
async fn json_replies_are_parsed_checked_against_the_schema_and_retried() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let fenced = format!("\n```json\n{GOOD}\n```\n");
    let rows = [
        replying("good", &[GOOD]),
        replying("fenced", &[&fenced]),
        replying("broken", &[BROKEN]),
        replying("violating", &[VIOLATING]),
        replying("once", &[BROKEN, GOOD]),
    ]
    .concat();
    let out = run_job(&sb)
        .rows(&rows)
        .job(&schema_job(&mock.url(), "bad_output_attempts = 3"))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    let parsed = json!({"items": [{"price": 1}, {"price": 2.5}]});
    for id in ["good", "fenced"] {
        let r = &records[&format!("{id}/default")];
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["json"], parsed, "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
    // The content stays the reply's text, fence and all.
    assert_eq!(records["fenced/default"]["content"], fenced.as_str());

    let broken = &records["broken/default"];
    assert_eq!(broken["status"], "error");
    assert_eq!(broken["error"]["kind"], "bad_output");
    assert_eq!(broken["attempts"], 3);
    assert!(broken["content"].is_null() && broken.get("json").is_none());
    let message = broken["error"]["message"].as_str().expect("a message");
    assert!(message.contains("line 2 column 13"), "{message}");
    assert!(message.contains("the reply starts:"), "{message}");

    let violating = &records["violating/default"];
    assert_eq!(violating["error"]["kind"], "bad_output");
    let message = violating["error"]["message"].as_str().expect("a message");
    assert!(message.contains("at /items/2/price"), "{message}");
    assert!(
        message.contains("/properties/items/items/properties/price/type"),
        "{message}"
    );

    let once = &records["once/default"];
    assert_eq!(once["status"], "ok", "{once}");
    assert_eq!(once["attempts"], 2);
    assert_eq!(once["json"], parsed);

    // Counted at the mock: 1 + 1 + 3 + 3 + 2 attempts.
    let bodies = bodies(&mock);
    assert_eq!(mock.stats().requests(), 10);
    assert_eq!(attempts_at_mock(&bodies, "broken"), 3);
    assert_eq!(attempts_at_mock(&bodies, "once"), 2);

    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["errors"]["bad_output"], 2, "{summary:#}");
    assert_eq!(summary["requests"]["failed"], 2);
    assert_eq!(summary["attempts"], 10);

    let report = output(sb.command(&[
        "report",
        "t.jsonl",
        "--by",
        "error_kind",
        "--format",
        "json",
    ]))
    .await;
    assert_eq!(code(&report), 0, "{}", stderr(&report));
    let doc: Value = serde_json::from_str(&stdout(&report)).expect("JSON");
    let group = doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["error_kind"] == "bad_output")
        .unwrap_or_else(|| panic!("a bad_output group: {doc:#}"));
    assert_eq!(group["requests"]["failed"], 2);

    // A rerun resends the two bad_output lines (3 attempts each), nothing else.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 16);
    mock.shutdown().await;
}

/// Models often write a lead-in line and a remark around the block: the one
/// block on lines of its own is the JSON, sent once; two blocks are a guess
/// not made.
#[tokio::test]
async fn one_fenced_block_amid_prose_is_the_json() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let amid_prose = format!("Here is the order:\n```json\n{GOOD}\n```\nLet me know!");
    let two = format!("A:\n```json\n{GOOD}\n```\nB:\n```json\n{{}}\n```");
    let rows = [replying("prose", &[&amid_prose]), replying("two", &[&two])].concat();
    let out = run_job(&sb)
        .rows(&rows)
        .job(&schema_job(&mock.url(), ""))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    let prose = &records["prose/default"];
    assert_eq!(prose["status"], "ok", "{prose}");
    assert_eq!(
        prose["json"],
        json!({"items": [{"price": 1}, {"price": 2.5}]})
    );
    assert_eq!(prose["content"], amid_prose.as_str());
    assert_eq!(records["two/default"]["error"]["kind"], "bad_output");
    assert_eq!(mock.stats().requests(), 2, "nothing retried");
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_output_alone_is_not_retried_by_default_and_json_true_asks_every_reply() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // The mock's usual reply echoes the prompt: not JSON.
    let rows = [
        replying("good", &[r#"[1, "two"]"#]),
        "{\"id\": \"prose\", \"prompt\": \"hello\"}\n".to_string(),
        format!(
            "{}\n",
            json!({"id": "streamed", "prompt": format!("s [mock:reply={}]", STANDARD.encode("```\n{\"a\": [1, 2, 3]}\n```")), "params": {"stream": true}})
        ),
    ]
    .concat();
    let out = run_job(&sb)
        .rows(&rows)
        .job(&prompt_job(&mock.url(), "[output]\njson = true\n"))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    assert_eq!(records["good/default"]["json"], json!([1, "two"]));
    let prose = &records["prose/default"];
    assert_eq!(prose["error"]["kind"], "bad_output");
    assert_eq!(
        prose["attempts"], 1,
        "default bad_output_attempts = 1: not retried"
    );
    assert!(prose["error"]["message"]
        .as_str()
        .expect("message")
        .contains("not JSON"));
    // A stream's joined content is checked like a whole reply.
    let streamed = &records["streamed/default"];
    assert_eq!(streamed["status"], "ok", "{streamed}");
    assert_eq!(streamed["json"], json!({"a": [1, 2, 3]}));
    assert_eq!(mock.stats().requests(), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_output_retries_have_their_own_allowance_beside_max_attempts() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // A 500, then broken JSON twice, then good: with max_attempts = 2 and
    // bad_output_attempts = 3 both allowances hold, and 4 attempts are made.
    let encoded: Vec<String> = ["x", BROKEN, BROKEN, GOOD]
        .iter()
        .map(|r| STANDARD.encode(r))
        .collect();
    let prompt = format!("[mock:fail=500] mixed [mock:reply={}]", encoded.join(","));
    let out = run_job(&sb)
        .rows(&format!("{}\n", json!({"id": "mixed", "prompt": prompt})))
        .job(&schema_job(
            &mock.url(),
            "max_attempts = 2\nbad_output_attempts = 3",
        ))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let record = &sb.records("t.jsonl")[0];
    assert_eq!(record["attempts"], 4, "{record}");
    assert_eq!(record["status"], "ok");
    assert_eq!(mock.stats().requests(), 4);
    mock.shutdown().await;
}

#[tokio::test]
async fn an_invalid_schema_is_exit_2_before_anything_is_sent() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let job = prompt_job(
        &mock.url(),
        "extra = { response_format = { type = \"json_schema\", json_schema = { name = \"x\", schema = { type = 5 } } } }\n",
    );
    let rows: String = (0..30)
        .map(|i| format!("{{\"id\": \"{i}\", \"prompt\": \"hi\"}}\n"))
        .collect();
    let out = run_job(&sb).rows(&rows).job(&job).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("extra.response_format.json_schema.schema"),
        "{err}"
    );
    assert!(err.contains("not a usable JSON Schema"), "{err}");
    // Said once for every row alike, not once per row.
    assert_eq!(err.matches("not a usable").count(), 1, "{err}");
    assert!(err.contains("30 rows, the first at line 1"), "{err}");
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn every_bad_output_attempt_was_billed_and_counts_against_the_budget() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&replying("broken", &[BROKEN]))
        .job(&format!(
            "{}max_tokens = 100\n[limits]\nmax_cost_usd = 1\n[pricing]\nm = {{ input = 1.0, output = 2.0 }}\n",
            schema_job(&mock.url(), "bad_output_attempts = 3")
        ))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let record = &sb.records("t.jsonl")[0];
    assert_eq!(record["error"]["kind"], "bad_output");
    assert_eq!(mock.stats().requests(), 3);
    // Each of the 3 identical attempts cost its usage at the job's prices.
    let body = &mock.received()[0].body;
    let reply = promptbatch::mock::expected_reply(body);
    let one = (reply.prompt_tokens as f64 * 1.0 + reply.completion_tokens as f64 * 2.0) / 1e6;
    let charge = record["budget_charge_usd"].as_f64().expect("charged");
    assert!((charge - 3.0 * one).abs() < 1e-12, "{charge} vs 3 x {one}");
    mock.shutdown().await;
}

/// Regression guard: 50 identical errors in a row stop a run as an endpoint
/// that refuses everything; replies that are not the JSON asked for come
/// from an endpoint that works, and must not.
#[tokio::test]
async fn identical_bad_outputs_never_stop_the_run_as_a_refusing_endpoint() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let reply = STANDARD.encode("not json at all");
    let rows: String = (0..55)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": i.to_string(), "prompt": format!("q [mock:reply={reply}]")})
            )
        })
        .collect();
    let out = run_job(&sb)
        .rows(&rows)
        .job(&prompt_job(
            &mock.url(),
            "[output]\njson = true\n[limits]\nconcurrency = 1\n",
        ))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert!(summary["stopped"].is_null(), "{summary:#}");
    assert_eq!(summary["errors"]["bad_output"], 55);
    assert_eq!(mock.stats().requests(), 55);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_bad_output_message_quotes_the_reply_only_once_redacted() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // The mock's reply quotes the key and the x-api-key header it was sent.
    let out = run_job(&sb)
        .rows("{\"id\": \"echo\", \"prompt\": \"[mock:echo-auth] hello\"}\n")
        .job(&prompt_job(&mock.url(), "[output]\njson = true\n"))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_printed_no_secret(&out);
    let record = &sb.records("t.jsonl")[0];
    let message = record["error"]["message"].as_str().expect("a message");
    assert!(message.contains("the reply starts:"), "{message}");
    assert_no_secret("the bad_output message", message.as_bytes());
    mock.shutdown().await;
}

#[tokio::test]
async fn a_cut_reply_is_bad_output_never_retried_and_tool_calls_pass() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let rows = concat!(
        // The mock's echo is not JSON, and 3 words is less than it says.
        "{\"id\": \"cut\", \"prompt\": \"hello there\", \"params\": {\"max_tokens\": 3}}\n",
        "{\"id\": \"tools\", \"prompt\": \"[mock:tools] call it\"}\n",
    );
    let out = run_job(&sb)
        .rows(rows)
        .job(&format!(
            "{}[output]\njson = true\n",
            base_job(&mock.url(), "bad_output_attempts = 3", "")
        ))
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let records = by_key(&sb.records("t.jsonl"));
    let cut = &records["cut/default"];
    assert_eq!(cut["error"]["kind"], "bad_output");
    assert_eq!(cut["attempts"], 1, "a length reply is never retried: {cut}");
    assert!(cut["error"]["message"]
        .as_str()
        .expect("message")
        .contains("raise max_tokens"));
    let tools = &records["tools/default"];
    assert_eq!(tools["status"], "ok", "{tools}");
    assert!(tools["tool_calls"].is_array() && tools.get("json").is_none());
    assert_eq!(mock.stats().requests(), 2);
    mock.shutdown().await;
}
