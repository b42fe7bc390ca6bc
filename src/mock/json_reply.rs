//! The mock's reply to a request whose `response_format` asks for JSON, so a
//! structured-output job runs under `--simulate` as it would against a model
//! that follows its format.
//!
//! `json_object` gets `{"reply": "<the echo>"}`; `json_schema` gets a small
//! instance of the schema: each property of an object, one item of an array,
//! the first of an `enum` or `anyOf`/`oneOf`, a `const`, the echo for a
//! string, the `minimum` (else 1) for a number. Not a full generator: a
//! schema with patterns, formats or lengths may reject it, as it may reject
//! a real model's reply (a prompt's `[mock:reply=...]` sets any reply).
//! Not cut by `max_tokens`: the replies are short.

use serde_json::{json, Map, Value};

/// Nesting followed at most: a recursive schema ends in `null` past it.
const MAX_DEPTH: u32 = 8;

/// The JSON text to reply with, when `body` asks for JSON.
pub(crate) fn for_request(body: &Value, echo: &str) -> Option<String> {
    let format = body.get("response_format")?;
    let text = format!("You said: {echo}");
    match format.get("type")?.as_str()? {
        "json_object" => Some(json!({ "reply": text }).to_string()),
        "json_schema" => {
            let schema = format
                .pointer("/json_schema/schema")
                .unwrap_or(&Value::Null);
            Some(instance(schema, &text, 0).to_string())
        }
        _ => None,
    }
}

fn instance(schema: &Value, text: &str, depth: u32) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    let first = |key: &str| {
        schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|options| options.first())
    };
    if let Some(value) = first("enum") {
        return value.clone();
    }
    if let Some(option) = first("anyOf").or_else(|| first("oneOf")) {
        return instance(option, text, depth + 1);
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut object = Map::new();
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (name, property) in properties {
                    object.insert(name.clone(), instance(property, text, depth + 1));
                }
            }
            Value::Object(object)
        }
        "array" => {
            let item = schema.get("items").unwrap_or(&Value::Null);
            json!([instance(item, text, depth + 1)])
        }
        "integer" => json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(1.0)),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_and_schema_requests_get_json_that_fits() {
        let body = json!({"response_format": {"type": "json_object"}});
        assert_eq!(
            for_request(&body, "hi"),
            Some(r#"{"reply":"You said: hi"}"#.into())
        );
        let schema = json!({"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "price": {"type": "number", "minimum": 2}, "n": {"type": "integer"}}}},
            "kind": {"enum": ["a", "b"]}, "ok": {"type": ["boolean", "null"]}}});
        let body =
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}});
        let reply: Value =
            serde_json::from_str(&for_request(&body, "x").expect("JSON")).expect("parses");
        assert_eq!(
            reply,
            json!({"items": [{"price": 2.0, "n": 1}], "kind": "a", "ok": true})
        );
        assert_eq!(
            for_request(&json!({"response_format": {"type": "text"}}), "x"),
            None
        );
        assert_eq!(for_request(&json!({}), "x"), None);
    }
}
