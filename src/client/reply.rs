//! A whole (non-streamed) 2xx body turned into a [`Reply`], or a `bad_response` [`Failure`].
//!
//! A 2xx that is not a usable completion is retried upstream, so the failure
//! names what was wrong and shows the start of the body: that is what a user
//! needs to recognise a proxy's login page or a half-compatible server.

use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use super::classify;
use super::error_body::{collapse_whitespace, truncate};
use super::rate_headers;
use super::raw_json::readable;
use super::wire::{self, BodyCost, Completion};
use super::{ErrorKind, Failure, RawJson, Reply};

/// How much of a bad body is quoted in the message.
const EXCERPT_CAP: usize = 200;

/// Parses a 2xx completion body. Latency is the caller's to fill in.
pub fn parse_reply(
    body: &[u8],
    status: u16,
    headers: &HeaderMap,
    requested_model: &str,
) -> Result<Reply, Failure> {
    // An invalid UTF-8 byte in a good reply becomes U+FFFD rather than failing
    // it: a reply thrown away is paid for again. Valid UTF-8 is not copied.
    let text = String::from_utf8_lossy(body);
    // So do a lone surrogate escape (`\ud800`) and a number past a double
    // (`1e400`), which no reader takes where it decodes them.
    // A byte order mark before the JSON, which JSON readers may ignore (RFC 8259), is.
    let text = readable(text.strip_prefix('\u{feff}').unwrap_or(&text));
    let completion: Completion = serde_json::from_str(&text).map_err(|err| {
        bad_response(
            status,
            &format!("the body is not a JSON completion ({err})"),
            body,
        )
    })?;
    if completion.is_error() {
        // The server answered: nothing was left in flight.
        return Err(classify::in_band_failure(&text, status, false));
    }
    let cost = BodyCost::of(completion.meta.as_ref(), completion.usage.as_ref());
    let usage = completion.usage.as_ref().and_then(wire::usage);
    let choice = match completion.choices.0 {
        None => return Err(bad_response(status, "the reply has no choices", body)),
        Some(choices) => choices.into_iter().next(),
    };
    let Some(choice) = choice else {
        return Err(bad_response(
            status,
            "the reply has an empty choices list",
            body,
        ));
    };
    let Some(message) = choice.message else {
        return Err(bad_response(status, "choices[0] has no message", body));
    };
    let tool_calls = message.tool_calls.as_deref().and_then(kept_tool_calls);
    let content = match wire::content_text(message.content) {
        Some(text) => Some(text),
        // Nothing but tool calls: content stays null, as the output record says.
        None if tool_calls.is_some() => None,
        None => Some(String::new()),
    };
    Ok(Reply {
        content,
        finish_reason: wire::string(choice.finish_reason),
        usage,
        provider_cost_usd: wire::provider_cost(headers, &cost),
        response_id: wire::string(completion.id),
        provider: wire::string(completion.provider),
        response_model: wire::response_model(completion.model, requested_model),
        tool_calls,
        refusal: wire::string(message.refusal).filter(|r| !r.is_empty()),
        json: None,
        latency_ms: 0.0,
        ttft_ms: None,
        rate_limits: rate_headers::rate_headers(headers),
    })
}

/// Tool calls worth recording, compacted: not `[]` or `null` (some servers send those).
pub fn kept_tool_calls(raw: &RawValue) -> Option<RawJson> {
    Some(RawJson::compacted(raw)).filter(|calls| !calls.is_empty_or_null())
}

/// A 2xx we cannot use: what was wrong, and how the body started.
pub fn bad_response(status: u16, what: &str, body: &[u8]) -> Failure {
    let excerpt = truncate(
        &collapse_whitespace(&String::from_utf8_lossy(body)),
        EXCERPT_CAP,
    );
    let message = if excerpt.is_empty() {
        format!("{what}: the body is empty")
    } else {
        format!("{what}; the body starts: {excerpt}")
    };
    // The server answered 2xx: it ran the request and may have billed it, as
    // for a stream cut short, so the attempt counts at its worst case.
    Failure {
        uncertain: true,
        ..Failure::new(ErrorKind::BadResponse, Some(status), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Usage;
    use reqwest::header::HeaderValue;

    const AIMLAPI: &str = include_str!("../../tests/fixtures/aimlapi-chat-completion.json");
    const OPENROUTER: &str =
        include_str!("../../tests/fixtures/openrouter-shape-chat-completion.json");

    fn parse(body: &str) -> Result<Reply, Failure> {
        parse_reply(body.as_bytes(), 200, &HeaderMap::new(), "m")
    }

    #[test]
    fn aimlapi_fixture() {
        let reply = parse_reply(
            AIMLAPI.as_bytes(),
            200,
            &HeaderMap::new(),
            "google/gemma-3-4b-it",
        )
        .unwrap();
        assert_eq!(
            reply.content.as_deref(),
            Some("Hello! I'm just a program, so I don't have feelings, but I'm here and ready to help you. How can I assist you today?")
        );
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt_tokens: 137,
                completion_tokens: 914,
                total_tokens: 1051,
                cached_tokens: None,
                reasoning_tokens: None
            })
        );
        assert_eq!(reply.provider_cost_usd, None);
        assert_eq!(
            reply.response_id.as_deref(),
            Some("chatcmpl-CQ9FPg3osank0dx0k46Z53LTqtXMl")
        );
        assert_eq!(reply.provider, None);
        assert_eq!(reply.response_model, None);
        assert_eq!(reply.tool_calls, None);
        assert_eq!(reply.ttft_ms, None);
    }

    #[test]
    fn aimlapi_fixture_with_cost_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-aimlapi-usd-spent", HeaderValue::from_static("0.000123"));
        let reply = parse_reply(AIMLAPI.as_bytes(), 200, &headers, "google/gemma-3-4b-it").unwrap();
        assert_eq!(reply.provider_cost_usd, Some(0.000123));
    }

    #[test]
    fn openrouter_fixture() {
        let reply = parse_reply(
            OPENROUTER.as_bytes(),
            200,
            &HeaderMap::new(),
            "google/gemma-3-4b-it",
        )
        .unwrap();
        let content = reply.content.as_deref().unwrap();
        assert!(
            content.starts_with("Okay, this is a *huge* question"),
            "{content}"
        );
        assert!(
            content.ends_with("(e.g., human nature, history, ethics, the future?)"),
            "{content}"
        );
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
        // completion_tokens 0 with a long content: kept as reported, never recounted.
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt_tokens: 10,
                completion_tokens: 0,
                total_tokens: 10,
                cached_tokens: Some(0),
                reasoning_tokens: Some(0)
            })
        );
        assert_eq!(reply.provider_cost_usd, Some(0.0));
        assert_eq!(reply.provider.as_deref(), Some("Google AI Studio"));
        assert_eq!(
            reply.response_model.as_deref(),
            Some("google/gemma-3-4b-it:free")
        );
        assert_eq!(
            reply.response_id.as_deref(),
            Some("gen-1766960801-He9SRGgNx5QLMBSZW06F")
        );
    }

    #[test]
    fn a_lone_surrogate_does_not_fail_a_paid_reply() {
        // Read as it was, the reply was a bad_response, retried and paid again;
        // in tool calls the escape was kept into the record as text no reader takes.
        let reply = parse(r#"{"choices":[{"message":{"content":"a\ud800b","tool_calls":[{"id":"\udc00"}]}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#).unwrap();
        assert_eq!(reply.content.as_deref(), Some("a\u{FFFD}b"));
        let calls: serde_json::Value =
            serde_json::from_str(reply.tool_calls.unwrap().get()).unwrap();
        assert_eq!(calls[0]["id"], "\u{FFFD}");
    }

    #[test]
    fn a_number_past_a_double_is_one_bad_figure_not_a_lost_reply() {
        // Read as it was, "number out of range" failed the paid reply: retried, paid again.
        let reply = parse(r#"{"choices":[{"message":{"content":"a"},"index":1e400}],"usage":{"prompt_tokens":1e400,"completion_tokens":1,"cost":2e999}}"#).unwrap();
        assert_eq!(reply.content.as_deref(), Some("a"));
        // A token count past 2^53 is bad usage; an infinite cost is none.
        assert_eq!((reply.usage, reply.provider_cost_usd), (None, None));
    }

    #[test]
    fn a_vllm_error_in_a_200_is_classified_by_its_code() {
        let failure =
            parse(r#"{"object":"error","message":"boom","type":"InternalServerError","code":500}"#)
                .unwrap_err();
        assert_eq!(
            (failure.kind, failure.status),
            (ErrorKind::Server, Some(500))
        );
        assert!(failure.message.contains("boom"), "{}", failure.message);
    }

    #[test]
    fn a_byte_order_mark_before_the_json_is_ignored() {
        let reply = parse("\u{feff}{\"choices\":[{\"message\":{\"content\":\"a\"}}]}").unwrap();
        assert_eq!(reply.content.as_deref(), Some("a"));
    }

    #[test]
    fn a_refusal_is_kept() {
        let reply = parse(r#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#).unwrap();
        assert_eq!(reply.content.as_deref(), Some(""));
        assert_eq!(reply.refusal.as_deref(), Some("I can't help with that."));
    }

    #[test]
    fn tool_calls_and_content_parts() {
        let reply = parse(r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#).unwrap();
        assert_eq!(reply.content, None);
        let calls: serde_json::Value =
            serde_json::from_str(reply.tool_calls.unwrap().get()).unwrap();
        assert_eq!(calls[0]["id"], "c1");
        let reply =
            parse(r#"{"choices":[{"message":{"content":null,"tool_calls":[]}}],"usage":null}"#)
                .unwrap();
        assert_eq!(
            (reply.content.as_deref(), reply.tool_calls, reply.usage),
            (Some(""), None, None)
        );
        let reply = parse(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"reasoning":"hmm"}}],"model":"m"}"#).unwrap();
        assert_eq!(
            (reply.content.as_deref(), reply.response_model),
            (Some("ab"), None)
        );
    }

    #[test]
    fn unusable_bodies_are_bad_responses() {
        let table = [
            ("not json", "not a JSON completion"),
            ("", "not a JSON completion"),
            (r#"{"id":"x"}"#, "has no choices"),
            (r#"{"choices":[]}"#, "empty choices list"),
            (
                r#"{"choices":[{"finish_reason":"stop"}]}"#,
                "choices[0] has no message",
            ),
            (r#"{"choices":{"a":1}}"#, "not a JSON completion"),
        ];
        for (body, what) in table {
            let failure = parse(body).unwrap_err();
            assert_eq!(failure.kind, ErrorKind::BadResponse, "{body}");
            assert_eq!(failure.status, Some(200));
            assert!(failure.uncertain, "a 2xx may have been billed: {body}");
            assert!(
                failure.message.contains(what),
                "{body}: {}",
                failure.message
            );
        }
        let failure = parse("<html>login</html>").unwrap_err();
        assert!(
            failure
                .message
                .contains("the body starts: <html>login</html>"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn error_object_in_a_2xx() {
        // Classified by its own code, as if it were the HTTP status.
        let failure = parse(r#"{"error":{"message":"overloaded","code":503}}"#).unwrap_err();
        assert_eq!(
            (failure.kind, failure.status),
            (ErrorKind::Server, Some(503))
        );
        assert!(failure.message.contains("overloaded"));
        assert!(
            failure.message.contains("answered 200"),
            "{}",
            failure.message
        );
        let failure = parse(r#"{"error":{"message":"bad param","code":400}}"#).unwrap_err();
        assert_eq!(
            (failure.kind, failure.status),
            (ErrorKind::InvalidRequest, Some(400))
        );
        let failure = parse(r#"{"error":{"message":"nope","code":"invalid"}}"#).unwrap_err();
        assert_eq!(failure.kind, ErrorKind::BadResponse);
    }

    #[test]
    fn invalid_utf8_in_a_good_reply_is_replaced_not_refused() {
        let body = b"{\"choices\":[{\"message\":{\"content\":\"caf\xff \xe9t\xc3\xa9\"},\"finish_reason\":\"stop\"}]}";
        let reply = parse_reply(body, 200, &HeaderMap::new(), "m").unwrap();
        assert_eq!(
            reply.content.as_deref(),
            Some("caf\u{FFFD} \u{FFFD}t\u{e9}")
        );
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    }
}
