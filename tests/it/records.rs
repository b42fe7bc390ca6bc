//! Records and what was sent: prompts and parameters, streaming, provider
//! costs and tool calls, and the README's quickstart.

use crate::common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn records_match_prompts_and_only_set_parameters_are_sent() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .file("rows.csv", "id,question\r\na,What is 2+2?\r\nb,\"Name a colour, please\"\r\nc,\"Two\r\nlines\"\r\n")
        .job(&job_toml(
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
        ))
        .output()
        .await;
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
async fn streaming_joins_deltas_and_keeps_usage() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows("{\"id\": \"s\", \"prompt\": \"stream me\"}\n{\"id\": \"n\", \"prompt\": \"[mock:no-usage] no usage here\"}\n")
        .job(&prompt_job(&mock.url(), "stream = true\n"))
        .output()
        .await;
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
async fn provider_costs_models_and_tool_calls_are_recorded_as_sent() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb).rows(concat!(
            "{\"id\": \"hdr\", \"prompt\": \"[mock:cost=aiml-header] a\"}\n",
            "{\"id\": \"body\", \"prompt\": \"[mock:cost=aiml-body] b\"}\n",
            "{\"id\": \"credits\", \"prompt\": \"[mock:cost=aiml-credits] c\"}\n",
            "{\"id\": \"or\", \"prompt\": \"[mock:cost=openrouter] d\"}\n",
            "{\"id\": \"priced\", \"prompt\": \"e\"}\n",
            "{\"id\": \"other\", \"prompt\": \"[mock:model=someone/else] f\", \"params\": {\"model\": \"unpriced/model\"}}\n",
            "{\"id\": \"tools\", \"prompt\": \"[mock:tools] g\"}\n",
        )).job(&prompt_job(
            &mock.url(),
            "[pricing]\nm = { input = 1.0, output = 2.0 }\n",
        )).output().await;
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
