//! Stream assembly over hand-written SSE bodies, fed through the real parser.

use super::*;
use crate::client::sse::SseParser;
use reqwest::header::HeaderValue;

fn assemble_with(body: &str, headers: &HeaderMap) -> Result<(Reply, bool), Failure> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.feed(body.as_bytes(), &mut events);
    parser.finish(&mut events);
    let mut assembler = StreamAssembler::default();
    let mut first_content = false;
    for event in &events {
        first_content |= assembler.push(event, 200)?;
    }
    Ok((
        assembler.finish(headers, "google/gemma-3-4b-it", 200)?,
        first_content,
    ))
}

fn assemble(body: &str) -> Result<Reply, Failure> {
    assemble_with(body, &HeaderMap::new()).map(|(reply, _)| reply)
}

const OPENAI_STREAM: &str = r#"data: {"id":"c1","model":"google/gemma-3-4b-it","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}

data: {"id":"c1","model":"google/gemma-3-4b-it","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}

data: {"id":"c1","model":"google/gemma-3-4b-it","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null}

data: {"id":"c1","model":"google/gemma-3-4b-it","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}

data: {"id":"c1","model":"google/gemma-3-4b-it","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}

data: [DONE]

"#;

#[test]
fn joins_content_and_keeps_the_usage_only_final_chunk() {
    let (reply, first_content) = assemble_with(OPENAI_STREAM, &HeaderMap::new()).unwrap();
    assert!(first_content);
    assert_eq!(reply.content.as_deref(), Some("Hello"));
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        reply.usage,
        Some(Usage {
            prompt_tokens: 9,
            completion_tokens: 2,
            total_tokens: 11,
            cached_tokens: Some(4),
            reasoning_tokens: None
        })
    );
    assert_eq!(reply.response_id.as_deref(), Some("c1"));
    assert_eq!(reply.response_model, None);
    assert_eq!(reply.provider_cost_usd, None);
    assert_eq!(reply.tool_calls, None);
}

#[test]
fn missing_usage_stays_none() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
    let reply = assemble(body).unwrap();
    assert_eq!(reply.usage, None);
    assert_eq!(reply.finish_reason.as_deref(), Some("length"));
}

#[test]
fn cost_from_header_else_last_chunk() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"meta\":{\"usage\":{\"credits_used\":100}}}\n\n\
        data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"meta\":{\"usage\":{\"credits_used\":2000}}}\n\n\
        data: [DONE]\n\n";
    assert_eq!(assemble(body).unwrap().provider_cost_usd, Some(0.001));
    let mut headers = HeaderMap::new();
    headers.insert("x-aimlapi-usd-spent", HeaderValue::from_static("0.5"));
    assert_eq!(
        assemble_with(body, &headers).unwrap().0.provider_cost_usd,
        Some(0.5)
    );
    let openrouter = "data: {\"provider\":\"P\",\"model\":\"other\",\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,\"cost\":0}}\n\n";
    let reply = assemble(openrouter).unwrap();
    assert_eq!(reply.provider_cost_usd, Some(0.0));
    assert_eq!(reply.provider.as_deref(), Some("P"));
    assert_eq!(reply.response_model.as_deref(), Some("other"));
}

#[test]
fn error_event_after_200() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n\
        data: {\"error\":{\"message\":\"Provider overloaded\",\"code\":502}}\n\n";
    let failure = assemble(body).unwrap_err();
    assert_eq!(
        (failure.kind, failure.status, failure.uncertain),
        (ErrorKind::Server, Some(502), true)
    );
    assert!(
        failure.message.contains("Provider overloaded"),
        "{}",
        failure.message
    );
    let body =
        "event: error\ndata: {\"message\":\"rate limit hit\",\"type\":\"rate_limit_error\"}\n\n";
    assert_eq!(assemble(body).unwrap_err().kind, ErrorKind::RateLimited);
    let body = "data: {\"error\":{\"message\":\"bad\"}}\n\n";
    assert_eq!(assemble(body).unwrap_err().kind, ErrorKind::BadResponse);
}

#[test]
fn cut_stream_and_servers_without_done() {
    let cut = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
    let failure = assemble(cut).unwrap_err();
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Connection, true)
    );
    assert!(
        failure.message.contains("stream cut short after 1 chunk"),
        "{}",
        failure.message
    );
    // Cut in the middle of a line: also cut short, not a JSON error.
    let failure = assemble("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"cho")
        .unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Connection);
    // A blank finish reason (sent on every chunk by some servers) is none:
    // the stream below is still cut short.
    let blank = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"\"}]}\n\n";
    for body in [blank.to_string(), format!("{blank}data: [DONE]\n\n")] {
        let failure = assemble(&body).unwrap_err();
        assert_eq!(failure.kind, ErrorKind::Connection, "{body}");
        assert!(failure.message.contains("cut short"), "{}", failure.message);
    }
    // A finish reason without [DONE] is a complete reply.
    let body =
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n";
    assert_eq!(assemble(body).unwrap().content.as_deref(), Some("x"));
    // [DONE] alone is no reply.
    assert_eq!(
        assemble("data: [DONE]\n\n").unwrap_err().kind,
        ErrorKind::BadResponse
    );
    // [DONE] before any finish reason (llama.cpp interrupting): cut short, not ok.
    let failure = assemble(&format!("{cut}data: [DONE]\n\n")).unwrap_err();
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Connection, true)
    );
    assert!(
        failure
            .message
            .contains("sent [DONE] before any choice carried a finish reason"),
        "{}",
        failure.message
    );
}

#[test]
fn what_is_kept_is_counted() {
    let mut assembler = StreamAssembler::default();
    let event = |data: &str| SseEvent {
        data: data.to_string(),
        ..SseEvent::default()
    };
    assembler
        .push(
            &event(r#"{"choices":[{"delta":{"content":"hello","refusal":"no"}}]}"#),
            200,
        )
        .unwrap();
    assert_eq!(assembler.size(), 7);
    // Empty tool calls at new indexes cost something too.
    for index in 0..10 {
        let data = format!(r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":{index}}}]}}}}]}}"#);
        assembler.push(&event(&data), 200).unwrap();
    }
    assert!(assembler.size() >= 7 + 10 * 64, "{}", assembler.size());
    // Chunks that add nothing cost nothing.
    let before = assembler.size();
    assembler
        .push(&event(r#"{"choices":[{"delta":{}}]}"#), 200)
        .unwrap();
    assert_eq!(assembler.size(), before);
}

#[test]
fn non_json_data_is_a_bad_response() {
    let failure = assemble("data: hello\n\n").unwrap_err();
    assert_eq!(
        (failure.kind, failure.status),
        (ErrorKind::BadResponse, Some(200))
    );
    assert!(failure.message.contains("hello"), "{}", failure.message);
}

#[test]
fn tool_call_deltas_merge_by_index() {
    let body = r#"data: {"choices":[{"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}

data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}

data: {"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}

data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}

data: {"choices":[{"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"#;
    let (reply, first_content) = assemble_with(body, &HeaderMap::new()).unwrap();
    assert!(!first_content);
    assert_eq!(reply.content, None);
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    // Byte for byte what a JSON tree of the calls would write.
    assert_eq!(
        reply.tool_calls.as_ref().map(|calls| calls.get()),
        Some(serde_json::json!([
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]).to_string().as_str())
    );
}

#[test]
fn a_call_without_index_after_one_at_u64_max_does_not_overflow() {
    let body = r#"data: {"choices":[{"delta":{"tool_calls":[{"index":18446744073709551615,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}

data: {"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}

"#;
    let calls = assemble(body).unwrap().tool_calls.expect("tool calls");
    let calls: serde_json::Value = serde_json::from_str(calls.get()).unwrap();
    let names: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["g", "f"],
        "two calls, neither merged into the other"
    );
}

#[test]
fn content_parts_and_other_choices() {
    let body = r#"data: {"choices":[{"index":1,"delta":{"content":"not ours"}},{"index":0,"delta":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}

data: {"choices":[{"index":0,"delta":{"content":"c"},"finish_reason":"stop"}]}

"#;
    assert_eq!(assemble(body).unwrap().content.as_deref(), Some("abc"));
}

#[test]
fn a_lone_surrogate_does_not_fail_a_paid_chunk() {
    let reply = assemble(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\\ud800b\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
    )
    .unwrap();
    assert_eq!(reply.content.as_deref(), Some("a\u{FFFD}b"));
    assert_eq!(reply.usage.map(|u| u.total_tokens), Some(3));
}

#[test]
fn a_vllm_error_chunk_fails_with_its_message() {
    let failure = assemble(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"object\":\"error\",\"message\":\"boom\",\"code\":500}\n\ndata: [DONE]\n\n",
    )
    .unwrap_err();
    assert_eq!(
        (failure.kind, failure.status),
        (ErrorKind::Server, Some(500))
    );
    assert!(failure.message.contains("boom"), "{}", failure.message);
}

#[test]
fn arguments_sent_whole_as_an_object_are_kept_as_text() {
    let reply = assemble(
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":{\"city\": \"Paris\"}}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
    )
    .unwrap();
    let calls: serde_json::Value = serde_json::from_str(reply.tool_calls.unwrap().get()).unwrap();
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
}
