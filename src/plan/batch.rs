//! OpenAI Batch API request lines as rows: `{"custom_id","method","url","body"}`.
//!
//! A file prepared for a provider's batch API runs as it is: `custom_id` is
//! the row's id, `body.messages` its messages, and every other field of
//! `body` (the model included) its `params`, checked like a JSONL row's. Only
//! chat completions are runnable here; a line for another endpoint
//! (`/v1/embeddings`, `/v1/responses`) is a row error that says so, rather
//! than a request sent to the wrong place. The record's `input` stays the line
//! as read, so the output says exactly what the request file held.

use serde_json::{Map, Value};

use super::messages::{self, Problem};
use crate::job::params::{self, describe, UnknownKeys};
use crate::job::ParamLayer;

/// The `url`s of a chat completions request line.
const URLS: [&str; 2] = ["/v1/chat/completions", "/chat/completions"];

/// The envelope's problems: `method`, `url`, and `body` being an object.
pub(super) fn envelope(fields: &Map<String, Value>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match fields.get("method") {
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => {}
        other => problems.push((
            Some("method".into()),
            format!(
                "must be \"POST\" (the only method of a batch request line), not {}",
                shown(other)
            ),
        )),
    }
    match fields.get("url") {
        Some(Value::String(url)) if URLS.contains(&url.as_str()) => {}
        other => problems.push((
            Some("url".into()),
            format!(
                "{} is not supported: promptbatch runs chat completions only (\"url\": \"/v1/chat/completions\")",
                shown(other)
            ),
        )),
    }
    match fields.get("body") {
        Some(Value::Object(_)) => {}
        other => problems.push((
            Some("body".into()),
            format!(
                "must be the request object ({{\"model\": ..., \"messages\": [...]}}), not {}",
                shown(other)
            ),
        )),
    }
    problems
}

/// The row's id: `custom_id`, a non-empty string.
pub(super) fn custom_id(fields: &Map<String, Value>) -> Result<String, Problem> {
    match fields.get("custom_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => Ok(id.clone()),
        Some(Value::String(_)) => Err((
            Some("custom_id".into()),
            "is empty; every request line needs a non-empty custom_id".into(),
        )),
        other => Err((
            Some("custom_id".into()),
            format!(
                "must be a non-empty string (the id that matches outputs to inputs), not {}",
                shown(other)
            ),
        )),
    }
}

/// `body.messages`, checked; nothing when the body is not an object (the envelope says so).
pub(super) fn messages(fields: &Map<String, Value>) -> Result<&[Value], Vec<Problem>> {
    let Some(Value::Object(body)) = fields.get("body") else {
        return Err(Vec::new());
    };
    match body.get("messages").filter(|m| !m.is_null()) {
        Some(value) => messages::check(value).map_err(|problems| {
            problems
                .into_iter()
                .map(|(field, message)| (field.map(|f| format!("body.{f}")), message))
                .collect()
        }),
        None => Err(vec![(
            Some("body.messages".into()),
            "is missing; a chat completions request needs its messages".into(),
        )]),
    }
}

/// `body` less its messages, as the row's parameters (`model` among them).
pub(super) fn params(fields: &Map<String, Value>) -> Result<Option<ParamLayer>, Vec<Problem>> {
    let Some(Value::Object(body)) = fields.get("body") else {
        return Ok(None);
    };
    let rest: Map<String, Value> = body
        .iter()
        .filter(|(key, _)| key.as_str() != "messages")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if rest.is_empty() {
        return Ok(None);
    }
    params::layer_from_map(&rest, UnknownKeys::IntoExtra)
        .map(Some)
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|p| (Some(format!("body.{}", p.key)), p.message))
                .collect()
        })
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None => "missing".into(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => describe(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn a_documented_line_has_no_envelope_problem() {
        let line = fields(json!({"custom_id": "request-1", "method": "POST",
            "url": "/v1/chat/completions", "body": {"model": "m", "messages": []}}));
        assert!(envelope(&line).is_empty());
        assert_eq!(custom_id(&line), Ok("request-1".to_string()));
    }

    #[test]
    fn other_endpoints_and_methods_are_named() {
        let line = fields(json!({"custom_id": "e", "method": "GET",
            "url": "/v1/embeddings", "body": "text"}));
        let problems = envelope(&line);
        let named: Vec<_> = problems
            .iter()
            .map(|p| p.0.clone().unwrap_or_default())
            .collect();
        assert_eq!(named, ["method", "url", "body"]);
        assert!(problems[1]
            .1
            .contains("\"/v1/embeddings\" is not supported"));
        assert!(problems[1].1.contains("/v1/chat/completions"));
    }

    #[test]
    fn custom_id_must_be_a_non_empty_string() {
        for bad in [json!({}), json!({"custom_id": ""}), json!({"custom_id": 7})] {
            let err = custom_id(&fields(bad)).unwrap_err();
            assert_eq!(err.0.as_deref(), Some("custom_id"));
        }
    }

    #[test]
    fn body_fields_become_params_and_problems_name_body_fields() {
        let line = fields(json!({"body": {"model": "m", "messages": [],
            "max_tokens": 1000, "response_format": {"type": "json_object"}}}));
        let layer = params(&line).expect("valid").expect("some");
        assert_eq!(layer.named["model"], json!("m"));
        assert_eq!(layer.named["max_tokens"], json!(1000));
        assert_eq!(
            layer.extra["response_format"],
            json!({"type": "json_object"})
        );
        let bad = fields(json!({"body": {"temperature": 9}}));
        let problems = params(&bad).unwrap_err();
        assert_eq!(problems[0].0.as_deref(), Some("body.temperature"));
    }

    #[test]
    fn missing_messages_are_named_under_body() {
        let line = fields(json!({"body": {"model": "m"}}));
        assert_eq!(
            messages(&line).unwrap_err()[0].0.as_deref(),
            Some("body.messages")
        );
        let bad = fields(json!({"body": {"messages": [{"role": "robot"}]}}));
        let field = messages(&bad).unwrap_err()[0].0.clone().unwrap_or_default();
        assert!(field.starts_with("body.messages[0]"), "{field}");
    }
}
