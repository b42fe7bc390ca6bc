//! Planner tests of what is sent: merged parameters, streaming, body bytes
//! and hash, request ids, sizes and budget checks.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{body, errors, job, layer, one, plan, GPT};
use crate::job::Price;
use crate::plan::hex;

#[test]
fn parameters_merge_defaults_set_row_then_overrides() {
    let mut j = job();
    j.defaults = layer(
        json!({"model": GPT, "temperature": 0.5, "max_tokens": 100, "top_p": 0.9,
                              "extra": {"user": "a", "response_format": {"type": "json_object"}}}),
    );
    j.param_sets[0].layer = layer(json!({"temperature": 0.2, "seed": 7}));
    j.overrides = layer(json!({"seed": 9}));
    let r = one(
        &j,
        json!({"prompt": "p", "params": {"temperature": 1.0, "max_tokens": null, "seed": 3,
                                          "response_format": null, "logprobs": true}}),
    );
    let b = body(&r);
    assert_eq!(b["model"], json!(GPT));
    assert_eq!(b["temperature"], json!(1.0));
    assert_eq!(b["seed"], json!(9), "--param beats the row");
    assert_eq!(b["top_p"], json!(0.9));
    assert!(b.get("max_tokens").is_none(), "null removes");
    assert!(
        b.get("response_format").is_none(),
        "null removes extra keys too"
    );
    assert_eq!(b["logprobs"], json!(true), "unknown row keys pass through");
    assert_eq!(b["user"], json!("a"));
    let expected =
        json!({"temperature": 1.0, "seed": 9, "top_p": 0.9, "user": "a", "logprobs": true});
    assert_eq!(Value::Object((*r.params).clone()), expected);
    assert_eq!(r.max_output_tokens, None);
}

#[test]
fn row_params_problems_name_the_key() {
    let e = errors(
        &job(),
        json!({"prompt": "p", "params": {"temperature": 5, "top_k": -1}}),
    );
    let fields: Vec<_> = e.iter().map(|e| e.field.as_deref()).collect();
    assert_eq!(
        fields,
        vec![Some("params.temperature"), Some("params.top_k")]
    );
    let e = errors(&job(), json!({"prompt": "p", "params": [1]}));
    assert_eq!(e[0].field.as_deref(), Some("params"));
    // A token cap past 2^31 in a row is a parameter error too.
    let e = errors(
        &job(),
        json!({"prompt": "p", "params": {"max_tokens": 4_294_967_296u64}}),
    );
    assert_eq!(e[0].field.as_deref(), Some("params.max_tokens"));
    assert!(e[0].message.contains("2147483648"), "{}", e[0].message);
}

#[test]
fn no_model_after_merging_names_the_set() {
    let mut j = job();
    j.defaults = Default::default();
    j.param_sets[0].name = "precise".into();
    let e = errors(&j, json!({"prompt": "p"}));
    assert!(
        e[0].message
            .starts_with("no model for parameter set \"precise\""),
        "{}",
        e[0].message
    );
    // A row may bring the model itself.
    assert_eq!(
        one(&j, json!({"prompt": "p", "params": {"model": "m"}})).model,
        "m"
    );
}

#[test]
fn extra_cannot_shadow_chat_parameters_or_messages() {
    let e = errors(
        &job(),
        json!({"prompt": "p", "params": {"extra": {"messages": [], "temperature": 1}}}),
    );
    let fields: Vec<_> = e.iter().map(|e| e.field.as_deref()).collect();
    assert_eq!(
        fields,
        vec![Some("extra.messages"), Some("extra.temperature")]
    );
}

#[test]
fn streaming_adds_include_usage_unless_extra_sets_stream_options() {
    let mut j = job();
    j.defaults = layer(json!({"model": GPT, "stream": true}));
    let r = one(&j, json!({"prompt": "p"}));
    assert!(r.stream);
    assert_eq!(body(&r)["stream_options"], json!({"include_usage": true}));
    assert!(!r.params.contains_key("stream_options"));

    j.defaults = layer(json!({"model": GPT, "stream": true,
                              "extra": {"stream_options": {"include_usage": false}}}));
    let r = one(&j, json!({"prompt": "p"}));
    assert_eq!(body(&r)["stream_options"], json!({"include_usage": false}));

    j.defaults = layer(json!({"model": GPT}));
    let r = one(&j, json!({"prompt": "p"}));
    assert!(!r.stream && body(&r).get("stream_options").is_none());
}

#[test]
fn the_hash_is_of_canonical_json_and_ignores_streaming() {
    let mut j = job();
    j.defaults =
        layer(json!({"model": GPT, "temperature": 0.2, "extra": {"b": {"z": 1, "a": "é"}}}));
    let plain = one(&j, json!({"prompt": "p", "params": {"seed": 4}}));
    let expected = r#"{"b":{"a":"é","z":1},"messages":[{"content":"p","role":"user"}],"model":"gpt-4o-mini","seed":4,"temperature":0.2}"#;
    assert_eq!(plain.body, expected.as_bytes());
    assert_eq!(plain.sha256, hex(&Sha256::digest(expected.as_bytes())));
    assert_eq!(plain.sha256.len(), 64);

    // Same request written in another order: same hash.
    let reordered: Map<String, Value> =
        serde_json::from_str(r#"{"params": {"seed": 4}, "prompt": "p"}"#).expect("json");
    j.defaults = layer(
        serde_json::from_str(
            r#"{"extra": {"b": {"a": "é", "z": 1}}, "temperature": 0.2, "model": "gpt-4o-mini"}"#,
        )
        .expect("json"),
    );
    assert_eq!(one(&j, Value::Object(reordered)).sha256, plain.sha256);

    // Streaming on or off, stream_options or not: same hash, different body.
    j.overrides = layer(json!({"stream": true}));
    let streamed = one(&j, json!({"prompt": "p", "params": {"seed": 4}}));
    assert_ne!(streamed.body, plain.body);
    assert_eq!(streamed.sha256, plain.sha256);
    j.overrides = layer(json!({"stream": false}));
    assert_eq!(
        one(&j, json!({"prompt": "p", "params": {"seed": 4}})).sha256,
        plain.sha256
    );

    // A different parameter: a different hash.
    assert_ne!(
        one(&j, json!({"prompt": "p", "params": {"seed": 5}})).sha256,
        plain.sha256
    );
}

#[test]
fn client_request_ids_are_sanitized_and_bounded() {
    let mut j = job();
    j.name = "faq nightly".into();
    let r = one(&j, json!({"id": "q/17 é", "prompt": "p"}));
    assert_eq!(r.client_request_id(1), "faq_nightly:q_17__:default:1");
    let long = "x".repeat(150);
    let r = one(&j, json!({"id": long, "prompt": "p"}));
    assert!(r.client_request_id(999).len() <= 128);
    assert_eq!(r.id, long, "only the header is shortened, not the id");
}

#[test]
fn prompt_bytes_and_message_count_cover_every_message() {
    let mut j = job();
    j.input.system = Some("Sé".into()); // 3 bytes
    let r = one(&j, json!({"prompt": "héllo"})); // 6 bytes
    assert_eq!((r.prompt_bytes, r.message_count), (9, 2));
    // An image part counts as the model's image token bound, whatever its URL's size.
    let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
    let data_url = format!("data:image/png;base64,{}", "A".repeat(100_000));
    for url in ["https://example.com/cat.png", data_url.as_str()] {
        let own = json!([
            {"role": "user", "content": [{"type": "text", "text": "abc"}, image(url)]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}
        ]);
        let r = one(&j, json!({"messages": own.clone()}));
        assert_eq!(
            r.prompt_bytes,
            3 + 1024 + r#"[{"id":"1"}]"#.len() as u64,
            "{}",
            &url[..20]
        );
        assert_eq!(r.message_count, 2);
        assert_eq!(r.image_tokens, 1024, "the image's share, for the estimate");
        j.pricing.image_tokens = 256;
        let r = one(&j, json!({"messages": own}));
        assert_eq!(r.prompt_bytes, 3 + 256 + r#"[{"id":"1"}]"#.len() as u64);
        assert_eq!(r.image_tokens, 256);
        j.pricing.image_tokens = 1024;
    }
    let own = json!([{"role": "user", "content": [{"type": "text", "text": "abc"}, image("u")]}]);
    let r = one(&j, json!({"messages": own}));
    assert_eq!(r.prompt_token_bound(), 3 + 1024 + 8);
}

#[test]
fn a_budget_needs_a_price_and_a_token_cap() {
    let mut j = job();
    j.limits.max_cost_usd = 1.0;
    let e = errors(&j, json!({"prompt": "p"}));
    assert_eq!(e.len(), 2);
    assert!(
        e[0].message.contains("model \"gpt-4o-mini\""),
        "{}",
        e[0].message
    );
    assert!(e[0].message.contains("[pricing]"));
    assert!(e[1].message.contains("max_tokens or max_completion_tokens"));

    j.pricing.models.insert(
        GPT.into(),
        Price {
            input: 0.1,
            output: 0.2,
        },
    );
    j.defaults = layer(json!({"model": GPT, "max_completion_tokens": 64}));
    assert_eq!(one(&j, json!({"prompt": "p"})).max_output_tokens, Some(64));
    // Both set: the larger bounds the reply, whichever the server honours.
    j.defaults = layer(json!({"model": GPT, "max_tokens": 32, "max_completion_tokens": 64}));
    assert_eq!(one(&j, json!({"prompt": "p"})).max_output_tokens, Some(64));
    j.defaults = layer(json!({"model": GPT, "max_tokens": 640, "max_completion_tokens": 64}));
    assert_eq!(one(&j, json!({"prompt": "p"})).max_output_tokens, Some(640));
    j.limits.max_cost_usd = 0.0;
    j.defaults = layer(json!({"model": "unpriced"}));
    assert!(
        plan(&j, json!({"prompt": "p"})).is_ok(),
        "no budget, no checks"
    );
}

#[test]
fn extra_parameters_count_as_prompt_and_choices_multiply_the_cap() {
    let mut j = job();
    let plain = one(&j, json!({"prompt": "hi"}));
    // A tool schema is read by the model: its bytes bound prompt tokens too.
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let r = one(
        &j,
        json!({"prompt": "hi", "params": {"tools": tools.clone()}}),
    );
    assert_eq!(
        r.prompt_bytes,
        plain.prompt_bytes + "tools".len() as u64 + tools.to_string().len() as u64
    );
    // Every one of n choices is billed up to the cap.
    j.defaults = layer(json!({"model": GPT, "max_tokens": 100}));
    let r = one(&j, json!({"prompt": "hi", "params": {"n": 3}}));
    assert_eq!(r.max_output_tokens, Some(300));
    let r = one(
        &j,
        json!({"prompt": "hi", "params": {"n": 2, "best_of": 5}}),
    );
    assert_eq!(r.max_output_tokens, Some(500));
    assert_eq!(
        one(&j, json!({"prompt": "hi"})).max_output_tokens,
        Some(100)
    );
}
