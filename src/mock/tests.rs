//! Server tests: replies, streams, cost reports, routes; shared helpers.
//!
//! Each test starts its own server on 127.0.0.1:0 and talks to it with
//! reqwest, an HTTP client independent of `crate::client`.

use serde_json::{json, Value};

use super::*;

mod faults;
mod server;

/// reqwest is built without its `json` feature; these stand in for it.
pub(super) trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

pub(super) async fn read_json(response: reqwest::Response) -> Result<Value, String> {
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

pub(super) async fn start(config: MockConfig) -> (MockServer, reqwest::Client) {
    let server = MockServer::start(config)
        .await
        .expect("the mock binds a free loopback port");
    (server, reqwest::Client::new())
}

pub(super) fn chat(text: &str) -> Value {
    json!({"model": "google/gemma-3-4b-it", "messages": [{"role": "user", "content": text}]})
}

pub(super) fn streaming(text: &str, include_usage: bool) -> Value {
    let mut body = chat(text);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

pub(super) async fn post(
    client: &reqwest::Client,
    server: &MockServer,
    body: &Value,
) -> reqwest::Response {
    client
        .post(server.url())
        .json_body(body)
        .send()
        .await
        .expect("the mock answers")
}

pub(super) async fn post_json(
    client: &reqwest::Client,
    server: &MockServer,
    body: &Value,
) -> (u16, Value) {
    let response = post(client, server, body).await;
    let status = response.status().as_u16();
    (status, read_json(response).await.expect("a JSON body"))
}

/// The `data:` payloads of an SSE body, `[DONE]` included as a string.
pub(super) fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string())))
        .collect()
}

pub(super) fn joined_content(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

/// Regression: ids were the body's hash, so a report over two runs of the
/// same job took the second run's calls for copies of the first's.
#[tokio::test]
async fn every_reply_has_its_own_id_even_to_the_same_body_on_another_server() {
    let body = chat("same");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (server, client) = start(MockConfig::default()).await;
        for _ in 0..2 {
            let reply: Value = read_json(post(&client, &server, &body).await)
                .await
                .expect("JSON");
            ids.push(reply["id"].as_str().expect("id").to_string());
        }
    }
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");
}

#[tokio::test]
async fn a_plain_reply_is_the_expected_reply() {
    let (server, client) = start(MockConfig::default()).await;
    let body = chat("What is the capital of France?");
    let response = post(&client, &server, &body).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("x-aimlapi-usd-spent").is_none());
    let reply: Value = read_json(response).await.expect("JSON");
    let expected = expected_reply(&body);
    assert!(expected
        .content
        .starts_with("You said: What is the capital of France? "));
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "google/gemma-3-4b-it");
    assert!(reply["id"]
        .as_str()
        .expect("id")
        .starts_with("chatcmpl-mock-"));
    assert!(reply["created"].as_u64().expect("created") > 1_700_000_000);
    let choice = &reply["choices"][0];
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": expected.content, "refusal": null})
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(
        reply["usage"],
        json!({"prompt_tokens": expected.prompt_tokens, "completion_tokens": expected.completion_tokens,
               "total_tokens": expected.total_tokens()})
    );
    let stats = server.stats();
    assert_eq!(
        (stats.requests(), stats.successes(), stats.status_count(200)),
        (1, 1, 1)
    );
    assert_eq!(stats.in_flight(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn max_tokens_and_stop_shape_the_reply_on_the_wire() {
    let (server, client) = start(MockConfig::default()).await;
    let mut body = chat("alpha beta gamma delta");
    body["max_completion_tokens"] = json!(4);
    let (_, reply) = post_json(&client, &server, &body).await;
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "You said: alpha beta"
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    assert_eq!(reply["usage"]["completion_tokens"], 4);

    let mut body = chat("alpha beta gamma delta");
    body["stop"] = json!(["gamma"]);
    let (_, reply) = post_json(&client, &server, &body).await;
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "You said: alpha beta "
    );
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn a_stream_reassembles_to_the_same_content_with_usage_last() {
    let (server, client) = start(MockConfig::default()).await;
    let body = streaming("Tell me a story about the sea", true);
    let response = post(&client, &server, &body).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.expect("a complete stream"));
    let expected = expected_reply(&body);

    assert_eq!(events.last(), Some(&json!("[DONE]")));
    assert_eq!(
        events[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(events.len() > 5, "content comes in several chunks");
    assert_eq!(joined_content(&events), expected.content);
    let chunks = &events[..events.len() - 1];
    assert!(chunks
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk" && e["model"] == expected.model));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["completion_tokens"],
        expected.completion_tokens
    );
    assert_eq!(usage["usage"]["total_tokens"], expected.total_tokens());
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|e| e["usage"].is_null()));
    assert_eq!(server.stats().successes(), 1);
}

#[tokio::test]
async fn usage_is_absent_without_include_usage_or_with_no_usage() {
    let (server, client) = start(MockConfig::default()).await;
    for body in [
        streaming("hello", false),
        streaming("hello [mock:no-usage]", true),
    ] {
        let text = post(&client, &server, &body)
            .await
            .text()
            .await
            .expect("stream");
        assert!(!text.contains("usage"), "{text}");
        let events = events(&text);
        assert_eq!(events.last(), Some(&json!("[DONE]")));
        assert_eq!(joined_content(&events), expected_reply(&body).content);
    }
    let body = chat("hello [mock:no-usage]");
    let (_, reply) = post_json(&client, &server, &body).await;
    assert!(reply.get("usage").is_none());
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        expected_reply(&body).content
    );
}

#[tokio::test]
async fn tool_calls_and_model_directives() {
    let (server, client) = start(MockConfig::default()).await;
    let (_, reply) = post_json(
        &client,
        &server,
        &chat("weather? [mock:tools][mock:model=google/gemma-3-27b-it]"),
    )
    .await;
    assert_eq!(reply["model"], "google/gemma-3-27b-it");
    let message = &reply["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["tool_calls"][0]["function"]["name"], "mock_tool");
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");

    let text = post(&client, &server, &streaming("weather? [mock:tools]", false))
        .await
        .text()
        .await
        .expect("stream");
    let events = events(&text);
    let arguments: String = events
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(arguments, r#"{"text":"weather?"}"#);
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn cost_is_reported_in_every_provider_shape() {
    let config = MockConfig {
        usd_per_million: Some(4.0),
        ..MockConfig::default()
    };
    let (server, client) = start(config.clone()).await;
    let body = chat("price me");
    let usd = expected_reply(&body).cost_usd(&config).expect("priced");
    let response = post(&client, &server, &body).await;
    assert_eq!(
        response.headers()["x-aimlapi-usd-spent"].to_str().ok(),
        Some(usd.to_string().as_str())
    );

    let (server, client) = start(MockConfig::default()).await;
    let usd = |body: &Value| {
        expected_reply(body)
            .cost_usd(&MockConfig::default())
            .expect("priced")
    };
    let body = chat("price me [mock:cost=aiml-header]");
    let header = post(&client, &server, &body).await.headers()["x-aimlapi-usd-spent"].clone();
    assert_eq!(
        header.to_str().expect("ascii").parse::<f64>().ok(),
        Some(usd(&body))
    );
    let body = chat("price me [mock:cost=aiml-credits]");
    let header = post(&client, &server, &body).await.headers()["x-aimlapi-credits-used"].clone();
    let credits: f64 = header.to_str().expect("ascii").parse().expect("number");
    assert!((credits / 2e6 - usd(&body)).abs() < 1e-15);
    let body = chat("price me [mock:cost=aiml-body]");
    let (_, reply) = post_json(&client, &server, &body).await;
    assert_eq!(
        reply["meta"]["usage"]["usd_spent"].as_f64(),
        Some(usd(&body))
    );
    let body = chat("price me [mock:cost=openrouter]");
    let (_, reply) = post_json(&client, &server, &body).await;
    assert_eq!(reply["usage"]["cost"].as_f64(), Some(usd(&body)));
    assert_eq!(reply["provider"], "MockProvider");

    let body = streaming("price me [mock:cost=openrouter]", true);
    let chunks = events(
        &post(&client, &server, &body)
            .await
            .text()
            .await
            .expect("stream"),
    );
    assert_eq!(
        chunks[chunks.len() - 2]["usage"]["cost"].as_f64(),
        Some(usd(&body))
    );
    let body = streaming("price me [mock:cost=aiml-body]", false);
    let chunks = events(
        &post(&client, &server, &body)
            .await
            .text()
            .await
            .expect("stream"),
    );
    assert_eq!(
        chunks[chunks.len() - 2]["meta"]["usage"]["usd_spent"].as_f64(),
        Some(usd(&body))
    );
}

#[tokio::test]
async fn routes_and_bad_bodies_answer_in_openai_shape() {
    let (server, client) = start(MockConfig::default()).await;
    let base = format!("http://{}", server.addr());
    let models = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .expect("answer");
    let models = read_json(models).await.expect("JSON");
    assert!(models["data"]
        .as_array()
        .expect("list")
        .iter()
        .any(|m| m["id"] == "google/gemma-3-4b-it"));

    let unknown = client
        .get(format!("{base}/v2/nothing"))
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), 404);
    let unknown: Value = read_json(unknown).await.expect("JSON");
    assert_eq!(unknown["error"]["type"], "invalid_request_error");

    let short = client
        .post(format!("{base}/chat/completions"))
        .json_body(&chat("hi"))
        .send()
        .await
        .expect("answer");
    assert_eq!(short.status(), 200, "the path without /v1 works too");

    for (body, needle) in [
        (r#"{"messages": "#.to_string(), "not valid JSON"),
        (r#"{"model": "m"}"#.to_string(), "messages"),
        (chat("[mock:fail=nope]").to_string(), "unknown mock fault"),
    ] {
        let response = client
            .post(server.url())
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 400);
        let error: Value = read_json(response).await.expect("JSON");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["code"], Value::Null);
        assert!(
            error["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{error}"
        );
    }
    assert_eq!(server.stats().status_count(400), 3);
}
