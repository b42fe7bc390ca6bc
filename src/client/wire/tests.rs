//! The wire rules: cost precedence, usage forms and bounds, and which parts
//! of a reply are kept.

use super::*;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};

/// The typed form of a test's JSON, as a reply would be read.
fn typed<T: for<'de> Deserialize<'de>>(value: &Value) -> Option<T> {
    serde_json::from_value::<Obj<T>>(value.clone()).unwrap().0
}

fn usage(value: &Value) -> Option<Usage> {
    typed::<WireUsage>(value).as_ref().and_then(super::usage)
}

fn body_cost(meta: Option<&Value>, usage: Option<&Value>) -> BodyCost {
    let meta = meta.and_then(typed::<Meta>);
    let usage = usage.and_then(typed::<WireUsage>);
    BodyCost::of(meta.as_ref(), usage.as_ref())
}

fn content_text(value: Option<Value>) -> Option<String> {
    let content = value.map(|v| serde_json::from_value::<Option<Content>>(v).unwrap());
    super::content_text(content.flatten())
}

#[test]
fn cost_precedence() {
    let full_body = body_cost(
        Some(&json!({"usage": {"usd_spent": "0.5", "credits_used": 4000000}})),
        Some(&json!({"cost": 0.25})),
    );
    let all_headers = [
        ("x-aimlapi-usd-spent", "0.75"),
        ("x-aimlapi-credits-used", "6000000"),
    ];
    let credits_header = [("x-aimlapi-credits-used", "6000000")];
    let no_usd = BodyCost {
        usd_spent: None,
        ..full_body
    };
    let only_credits = BodyCost {
        usd_spent: None,
        openrouter: None,
        ..full_body
    };
    let only_openrouter = BodyCost {
        openrouter: Some(0.25),
        ..BodyCost::default()
    };
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let table: &[(Headers, BodyCost, Option<f64>)] = &[
        (&all_headers, full_body, Some(0.75)),
        (&credits_header, full_body, Some(0.5)),
        (&credits_header, no_usd, Some(3.0)),
        (&[], no_usd, Some(2.0)),
        (&[], only_credits, Some(2.0)),
        (&[], only_openrouter, Some(0.25)),
        (
            &[("x-aimlapi-usd-spent", "-1")],
            only_openrouter,
            Some(0.25),
        ),
        (&[("x-aimlapi-usd-spent", "NaN")], BodyCost::default(), None),
        (&[], BodyCost::default(), None),
    ];
    for (pairs, body, expected) in table {
        let mut headers = HeaderMap::new();
        for (name, value) in *pairs {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        assert_eq!(
            provider_cost(&headers, body),
            *expected,
            "{pairs:?} {body:?}"
        );
    }
}

#[test]
fn openrouter_cost_forms() {
    let cost = |usage: Value| body_cost(None, Some(&usage)).openrouter;
    assert_eq!(cost(json!({"cost": 0})), Some(0.0));
    assert_eq!(cost(json!({"cost": "0.002"})), Some(0.002));
    assert_eq!(
        cost(
            json!({"cost": 0.001, "is_byok": true, "cost_details": {"upstream_inference_cost": 0.01}})
        ),
        Some(0.011)
    );
    assert_eq!(
        cost(
            json!({"cost": 0.001, "is_byok": false, "cost_details": {"upstream_inference_cost": 0.01}})
        ),
        Some(0.001)
    );
    assert_eq!(cost(json!({"cost": -3})), None);
    // Finite alone, infinite together: a lie, not a figure.
    assert_eq!(
        cost(
            json!({"cost": 1e308, "is_byok": true, "cost_details": {"upstream_inference_cost": 1e308}})
        ),
        None
    );
    assert_eq!(cost(json!({"prompt_tokens": 3})), None);
}

#[test]
fn usage_forms() {
    let u = usage(&json!({"prompt_tokens": 5, "completion_tokens": "7"})).unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (5, 7, 12)
    );
    assert_eq!((u.cached_tokens, u.reasoning_tokens), (None, None));
    let u = usage(&json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 3}}))
    .unwrap();
    assert_eq!(
        (u.total_tokens, u.cached_tokens, u.reasoning_tokens),
        (20, Some(2), Some(3))
    );
    assert_eq!(usage(&json!({"cost": 0})), None);
    assert_eq!(usage(&Value::Null), None);
    // Counts past 2^53, negative, fractional or not numbers make a bad usage.
    for bad in [
        json!(u64::MAX),
        json!(9_007_199_254_740_993u64),
        json!("9007199254740993"),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!("-3"),
        json!("NaN"),
        json!(true),
    ] {
        for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            let mut u = json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12});
            u[field] = bad.clone();
            assert_eq!(usage(&u), None, "{field} = {bad}");
        }
        let u = json!({"prompt_tokens": 5, "completion_tokens": 7,
            "completion_tokens_details": {"reasoning_tokens": bad}});
        assert_eq!(usage(&u), None, "reasoning_tokens = {bad}");
    }
    let u = usage(
        &json!({"prompt_tokens": 9_007_199_254_740_990u64, "completion_tokens": 2.0,
        "total_tokens": null}),
    )
    .unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        ((1 << 53) - 2, 2, 1 << 53)
    );
    // Half a usage is not filled in with zeros.
    assert_eq!(usage(&json!({"prompt_tokens": 11})), None);
    assert_eq!(
        usage(&json!({"completion_tokens": 3, "total_tokens": 3})),
        None
    );
}

#[test]
fn lying_counts_are_bad_usage_never_clamped_or_summed_past_the_bound() {
    let max = MAX_TOKEN_COUNT;
    let bad = [
        json!({"prompt_tokens": u64::MAX, "completion_tokens": 1}),
        json!({"prompt_tokens": max + 1, "completion_tokens": 1, "total_tokens": 5}),
        json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 1e300}),
        json!({"prompt_tokens": -1, "completion_tokens": 1}),
        json!({"prompt_tokens": 1.5, "completion_tokens": 1}),
        json!({"prompt_tokens": "1e400", "completion_tokens": 1}),
        json!({"prompt_tokens": "18446744073709551615", "completion_tokens": 1}),
        json!({"prompt_tokens": 1, "completion_tokens": true}),
        // Each within the bound, their sum (the missing total) past it.
        json!({"prompt_tokens": max, "completion_tokens": max}),
    ];
    for value in bad {
        assert_eq!(usage(&value), None, "{value}");
    }
    let u = usage(&json!({"prompt_tokens": max, "completion_tokens": 0.0, "total_tokens": "9007199254740992"}))
    .unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (max, 0, max)
    );
    // A lying detail is a lying usage.
    for details in [
        json!({"prompt_tokens_details": {"cached_tokens": -4}}),
        json!({"completion_tokens_details": {"reasoning_tokens": u64::MAX}}),
    ] {
        let mut value = json!({"prompt_tokens": 1, "completion_tokens": 1});
        value
            .as_object_mut()
            .unwrap()
            .extend(details.as_object().unwrap().clone());
        assert_eq!(usage(&value), None, "{value}");
    }
}

#[test]
fn only_the_choices_used_are_kept() {
    let parse = |text: &str| serde_json::from_str::<Completion>(text).map(|c| c.choices.0);
    let many = format!(
        r#"{{"choices":[{{"index":1}},{}{{"index":0,"finish_reason":"stop"}},{{"index":0}}]}}"#,
        "{},".repeat(1000)
    );
    let kept = parse(&many).unwrap().expect("choices");
    // The first, then the first of index 0 (`{}` has none, so counts as 0).
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].index, Some(Scalar::Number(1.into())));
    assert_eq!(kept[1].index, None);
    assert!(parse(r#"{"choices":null}"#).unwrap().is_none());
    assert!(parse(r#"{}"#).unwrap().is_none());
    assert_eq!(
        parse(r#"{"choices":[]}"#).unwrap().map(|c| c.len()),
        Some(0)
    );
    assert!(parse(r#"{"choices":{"a":1}}"#).is_err());
    assert!(parse(r#"{"choices":[1]}"#).is_err());
}

#[test]
fn a_repeated_key_keeps_its_last_value_as_a_tree_would() {
    let completion: Completion = serde_json::from_str(
        r#"{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":5,"completion_tokens":2,
        "prompt_tokens_details":{"cached_tokens":1,"cached_tokens":3},"pad":[{},{}]}}"#,
    )
    .unwrap();
    let u = completion.usage.as_ref().and_then(super::usage).unwrap();
    assert_eq!(
        (u.prompt_tokens, u.total_tokens, u.cached_tokens),
        (5, 7, Some(3))
    );
    // So at every level: the reply, a choice, a message.
    let completion: Completion = serde_json::from_str(
        r#"{"id":"a","choices":[{"message":{"content":"x"}}],"id":"b","choices":[{"index":0,
        "message":{"content":"y","content":"z","refusal":"r","refusal":null},"finish_reason":"stop","finish_reason":"length"}]}"#,
    )
    .unwrap();
    assert_eq!(
        completion.id.and_then(Scalar::into_string).as_deref(),
        Some("b")
    );
    let choice = completion.choices.0.unwrap().into_iter().next().unwrap();
    assert_eq!(
        choice
            .finish_reason
            .and_then(Scalar::into_string)
            .as_deref(),
        Some("length")
    );
    let message = choice.message.unwrap();
    assert_eq!(super::content_text(message.content).as_deref(), Some("z"));
    assert_eq!(message.refusal, None);
}

#[test]
fn content_forms() {
    assert_eq!(content_text(Some(json!("hi"))), Some("hi".into()));
    assert_eq!(
        content_text(Some(
            json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}, {"type": "thinking", "text": "no"}])
        )),
        Some("ab".into())
    );
    assert_eq!(content_text(Some(Value::Null)), None);
    assert_eq!(content_text(None), None);
}
