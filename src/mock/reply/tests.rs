//! Unit tests of the deterministic reply (no server involved).

use serde_json::json;

use super::*;

fn body(text: &str) -> Value {
    json!({"model": "google/gemma-3-4b-it", "messages": [{"role": "user", "content": text}]})
}

#[test]
fn content_echoes_the_prompt_without_directives() {
    let reply = expected_reply(&body("What is  Rust? [mock:latency=5]"));
    assert!(
        reply.content.starts_with("You said: What is Rust? "),
        "{}",
        reply.content
    );
    assert!(!reply.content.contains("mock"));
    assert_eq!(reply.finish_reason, "stop");
    assert_eq!(reply.model, "google/gemma-3-4b-it");
    assert_eq!(
        reply.completion_tokens,
        reply.content.split_whitespace().count() as u64
    );
}

#[test]
fn lengths_vary_per_prompt_and_stay_in_range() {
    let mut lengths = std::collections::BTreeSet::new();
    for i in 0..200 {
        let words = expected_reply(&body(&format!("question {i}"))).completion_tokens;
        assert!((8..=60).contains(&words), "{words}");
        lengths.insert(words);
    }
    assert!(
        lengths.len() > 20,
        "only {} distinct lengths",
        lengths.len()
    );
    let long = "word ".repeat(500);
    let words = expected_reply(&body(&long)).completion_tokens;
    assert!((8..=60).contains(&words), "{words}");
}

#[test]
fn the_reply_does_not_depend_on_key_order_or_other_params() {
    let a = expected_reply(
        &json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}),
    );
    let b: Value = serde_json::from_str(
        r#"{"temperature": 1.5, "messages": [{"content": "hi", "role": "user"}]}"#,
    )
    .expect("valid JSON");
    assert_eq!(a, expected_reply(&b));
}

#[test]
fn prompt_tokens_count_text_bytes_and_messages() {
    let body = json!({"messages": [
        {"role": "system", "content": "12345678"},
        {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {"url": "x"}}]},
    ]});
    // 11 bytes -> 3 tokens, plus 4 per message.
    assert_eq!(expected_reply(&body).prompt_tokens, 3 + 8);
    assert!(expected_reply(&body).content.starts_with("You said: abc."));
}

#[test]
fn max_tokens_cuts_to_that_many_words() {
    let mut request = body("tell me more");
    request["max_tokens"] = json!(5);
    request["max_completion_tokens"] = json!(7);
    let reply = expected_reply(&request);
    assert_eq!(reply.finish_reason, "length");
    assert_eq!(reply.completion_tokens, 5);
    assert_eq!(reply.content, "You said: tell me more.");
    request["max_tokens"] = json!(1000);
    assert_eq!(expected_reply(&request).completion_tokens, 7);
    request["max_completion_tokens"] = json!(1000);
    assert_eq!(expected_reply(&request).finish_reason, "stop");
}

#[test]
fn stop_cuts_before_the_first_occurrence() {
    let mut request = body("one two three");
    request["stop"] = json!(["zzz", "two", ""]);
    let reply = expected_reply(&request);
    assert_eq!(reply.content, "You said: one ");
    assert_eq!((reply.finish_reason, reply.completion_tokens), ("stop", 3));
    request["stop"] = json!("three");
    request["max_tokens"] = json!(4);
    let reply = expected_reply(&request);
    assert_eq!(
        (reply.content.as_str(), reply.finish_reason),
        ("You said: one two", "length")
    );
}

#[test]
fn tool_directive_gives_a_tool_call_naming_the_first_tool() {
    let mut request = body("weather in Oslo [mock:tools]");
    request["tools"] =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    let reply = expected_reply(&request);
    assert_eq!(reply.finish_reason, "tool_calls");
    assert_eq!(reply.content, "");
    let calls = reply.tool_calls.expect("a tool call");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"text":"weather in Oslo"}"#
    );
}

#[test]
fn usage_and_cost_follow_stream_options_and_directives() {
    let config = MockConfig::default();
    let plain = expected_reply(&body("hi"));
    assert!(plain.usage_reported);
    assert_eq!(plain.cost_usd(&config), None);
    let priced = MockConfig {
        usd_per_million: Some(2.0),
        ..MockConfig::default()
    };
    assert_eq!(
        plain.cost_usd(&priced),
        Some(plain.total_tokens() as f64 * 2.0 / 1e6)
    );

    let mut stream = body("hi [mock:cost=openrouter]");
    stream["stream"] = json!(true);
    let reply = expected_reply(&stream);
    assert!(!reply.usage_reported);
    assert_eq!(reply.cost_usd(&config), None, "no usage, so no usage.cost");
    stream["stream_options"] = json!({"include_usage": true});
    let reply = expected_reply(&stream);
    assert!(reply.usage_reported);
    assert_eq!(
        reply.cost_usd(&config),
        Some(reply.total_tokens() as f64 * 0.10 / 1e6)
    );
    assert!(!expected_reply(&body("hi [mock:no-usage]")).usage_reported);
}

#[test]
fn model_directive_and_invalid_bodies() {
    assert_eq!(
        expected_reply(&body("x [mock:model=other/m]")).model,
        "other/m"
    );
    assert!(plan(&json!({"messages": []})).is_err());
    assert!(plan(&json!({"model": "m"})).is_err());
    assert!(plan(&body("[mock:fail=teapot]")).is_err());
    assert_eq!(
        expected_reply(&json!({}))
            .content
            .split(' ')
            .take(3)
            .collect::<Vec<_>>(),
        ["You", "said", "nothing."]
    );
}

#[test]
fn hashes_are_stable() {
    // Pinned: a change would alter every reply, which tests elsewhere may have recorded.
    assert_eq!(hash_bytes(b""), mix(0xcbf2_9ce4_8422_2325));
    assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
}
