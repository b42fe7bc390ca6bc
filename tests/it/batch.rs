//! OpenAI Batch API files: request lines run as they are, and `[output]
//! batch_output` writes the Batch output format, read back here by code that
//! knows only what OpenAI documents (tests/fixtures/openai-batch).

use std::collections::HashMap;

use serde_json::Value;

use crate::common::*;

const REQUESTS: &str = include_str!("../fixtures/openai-batch/requests.jsonl");
const REQUEST_OBJECT: &str = include_str!("../fixtures/openai-batch/request-object.jsonl");
const DOCUMENTED_OUTPUT: &str = include_str!("../fixtures/openai-batch/output.jsonl");

/// One result as code written for OpenAI's batch API reads it.
#[derive(Debug, PartialEq)]
struct Result {
    content: Option<String>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    status_code: Option<u64>,
    error: Option<String>,
}

/// Reads a Batch output file the documented way: custom_id ->
/// response.body.choices[0].message.content and response.body.usage. Fails
/// on a custom_id seen twice.
fn load_results(text: &str) -> HashMap<String, Result> {
    let mut results = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["id"].is_string(), "each line has an id: {line}");
        let custom_id = v["custom_id"].as_str().expect("custom_id").to_string();
        let response = &v["response"];
        let body = &response["body"];
        let result = Result {
            content: body["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_string),
            prompt_tokens: body["usage"]["prompt_tokens"].as_u64(),
            completion_tokens: body["usage"]["completion_tokens"].as_u64(),
            status_code: response["status_code"].as_u64(),
            error: v["error"]["message"]
                .as_str()
                .or(body["error"]["message"].as_str())
                .map(str::to_string),
        };
        assert!(
            results.insert(custom_id.clone(), result).is_none(),
            "{custom_id} appears twice"
        );
    }
    results
}

#[test]
fn the_reader_reads_openais_documented_output() {
    let results = load_results(DOCUMENTED_OUTPUT);
    assert_eq!(results.len(), 2);
    assert_eq!(
        results["request-1"].content.as_deref(),
        Some("Hello! How can I assist you today?")
    );
    assert_eq!(results["request-2"].prompt_tokens, Some(22));
    assert_eq!(results["request-2"].status_code, Some(200));
}

/// A simulated job over `input`, also writing `batch.jsonl`.
fn simulated(input: &str) -> String {
    format!("name = \"b\"\n[input]\npath = \"{input}\"\n[output]\nbatch_output = \"batch.jsonl\"\n")
}

#[tokio::test]
async fn openais_documented_request_file_runs_unchanged_and_its_results_load_the_documented_way() {
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .job(&simulated("requests.jsonl"))
        .file("requests.jsonl", REQUESTS)
        .args(&["--simulate"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("b.jsonl");
    let by_id: HashMap<_, _> = records
        .iter()
        .map(|r| (r["id"].as_str().expect("id").to_string(), r))
        .collect();
    assert_eq!(by_id.len(), 2);
    // The body's fields are the request's parameters; the line as read is the input.
    assert_eq!(by_id["request-1"]["model"], "gpt-3.5-turbo-0125");
    assert_eq!(by_id["request-1"]["params"]["max_tokens"], 1000);
    assert_eq!(by_id["request-2"]["input"]["custom_id"], "request-2");
    assert_eq!(by_id["request-2"]["input"]["url"], "/v1/chat/completions");

    let results = load_results(&sb.read("batch.jsonl"));
    assert_eq!(results.len(), 2, "every custom_id once");
    for (id, record) in &by_id {
        let result = &results[id];
        assert_eq!(result.content.as_deref(), record["content"].as_str());
        assert!(result.content.is_some());
        assert_eq!(
            result.prompt_tokens,
            record["usage"]["prompt_tokens"].as_u64()
        );
        assert_eq!(
            result.completion_tokens,
            record["usage"]["completion_tokens"].as_u64()
        );
        assert_eq!(result.status_code, Some(200));
    }
    // The same file, named as a format, and the reference's request object.
    let cmd = sb.command(&[
        "run",
        "--input",
        "requests.jsonl",
        "--format",
        "openai-batch",
        "--simulate",
        "--output",
        "again.jsonl",
        "--progress",
        "off",
    ]);
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("again.jsonl").len(), 2);
    sb.write("object.jsonl", REQUEST_OBJECT);
    let out = run_job(&sb)
        .job(&simulated("object.jsonl").replace("name = \"b\"", "name = \"o\""))
        .args(&["--simulate"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(load_results(&sb.read("batch.jsonl"))["request-1"]
        .content
        .is_some());
}

#[tokio::test]
async fn the_batch_output_matches_the_output_after_failures_reruns_and_deletion() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let line = |id: &str, text: &str| {
        format!(
            "{{\"custom_id\":\"{id}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{text}\"}}]}}}}\n"
        )
    };
    let rows = [
        line("ok", "fine"),
        line("http", "[mock:fail=400,400,400,400]"),
        line("gone", "[mock:fail=reset,reset,reset,reset]"),
    ]
    .concat();
    let job = job_toml(
        &mock.url(),
        "[input]\npath = \"rows.jsonl\"\n[output]\npath = \"out.jsonl\"\nbatch_output = \"results/{name}-batch.jsonl\"\n",
    );
    let out = run_job(&sb).job(&job).rows(&rows).output().await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let batch = sb.read("results/t-batch.jsonl");
    let lines: HashMap<String, Value> = batch
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| (v["custom_id"].as_str().expect("custom_id").to_string(), v))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines["ok"]["response"]["status_code"], 200);
    assert_eq!(lines["ok"]["error"], Value::Null);
    // An HTTP error keeps its status and an error body.
    assert_eq!(lines["http"]["response"]["status_code"], 400);
    assert!(lines["http"]["response"]["body"]["error"]["message"].is_string());
    assert_eq!(lines["http"]["error"], Value::Null);
    // No HTTP answer: no response, and an error naming what happened.
    assert_eq!(lines["gone"]["response"], Value::Null);
    assert_eq!(lines["gone"]["error"]["code"], "connection");

    // Fixed rows rerun: the failures are sent again, the file follows the output.
    let fixed = [
        line("ok", "fine"),
        line("http", "now fine"),
        line("gone", "back"),
    ]
    .concat();
    std::fs::remove_file(sb.path("results/t-batch.jsonl")).expect("remove");
    let out = run_job(&sb).rows(&fixed).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let results = load_results(&sb.read("results/t-batch.jsonl"));
    assert_eq!(results.len(), 3);
    assert!(results.values().all(|r| r.status_code == Some(200)));
    let records = by_key(&sb.records("out.jsonl"));
    assert_eq!(
        results["http"].content.as_deref(),
        records["http/default"]["content"].as_str()
    );
    // A run with nothing to send still writes it (deleted in between).
    std::fs::remove_file(sb.path("results/t-batch.jsonl")).expect("remove");
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(load_results(&sb.read("results/t-batch.jsonl")).len(), 3);
}

#[tokio::test]
async fn request_lines_that_cannot_run_are_row_errors_naming_line_and_field() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let rows = concat!(
        "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n",
        "{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{\"model\":\"m\",\"input\":\"hi\"}}\n",
        "{\"custom_id\":\"\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n",
        "{\"custom_id\":\"s\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":\"hi\"}\n",
        "{\"custom_id\":\"t\",\"method\":\"POST\",\"url\":\"/chat/completions\",\"body\":{\"model\":\"m\",\"temperature\":7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n",
    );
    let job = job_toml(&mock.url(), "[input]\npath = \"rows.jsonl\"\n");
    let out = run_job(&sb).job(&job).rows(rows).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "rows.jsonl:2: field \"url\": \"/v1/embeddings\" is not supported",
        "rows.jsonl:2: field \"body.messages\"",
        "rows.jsonl:3: field \"custom_id\": is empty",
        "rows.jsonl:4: field \"body\": must be the request object",
        "rows.jsonl:5: field \"body.temperature\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("rows.jsonl:1:"), "{err}");
    assert_eq!(mock.stats().requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn an_unwritable_batch_output_is_exit_2_before_sending() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write("file", "not a folder");
    let job = prompt_job(
        &mock.url(),
        "[output]\nbatch_output = \"file/batch.jsonl\"\n",
    );
    let out = run_job(&sb)
        .job(&job)
        .rows("{\"prompt\":\"hi\"}\n")
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("batch output"), "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 0);
    // Nor may it be the output itself.
    let job = prompt_job(
        &mock.url(),
        "[output]\npath = \"o.jsonl\"\nbatch_output = \"o.jsonl\"\n",
    );
    let out = run_job(&sb).job(&job).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("batch_output"), "{}", stderr(&out));
}

#[tokio::test]
async fn several_parameter_sets_name_each_result_by_its_key() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let job = prompt_job(
        &mock.url(),
        "[output]\nbatch_output = \"b.jsonl\"\n[[params]]\nname = \"x\"\n[[params]]\nname = \"y\"\n",
    );
    let out = run_job(&sb)
        .job(&job)
        .rows("{\"id\":\"q\",\"prompt\":\"hi\"}\n")
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let results = load_results(&sb.read("b.jsonl"));
    let mut ids: Vec<_> = results.keys().cloned().collect();
    ids.sort();
    assert_eq!(ids, ["q/x", "q/y"]);
}
