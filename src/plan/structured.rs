//! Structured output: which requests expect JSON back, the schema their reply
//! must meet, and the check of a reply's content against both.
//!
//! A request expects JSON when the job says `[output] json = true` or its
//! `response_format` asks for `json_object` or `json_schema`. The schema (in
//! `response_format.json_schema.schema`) is compiled before anything is
//! sent, once per distinct schema: a row's own `params` may name one, and a
//! million rows naming the same one must not compile it a million times,
//! and a million rows each naming its own must not keep a million compiled.
//! The check is pure (content in, JSON or a message out); the scheduler
//! decides what a failed check means for retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// How much of a bad reply's start its error message quotes (already redacted by the client).
const QUOTE_CHARS: usize = 120;

/// What a reply of one request must be: JSON, and valid against `schema` when one is given.
#[derive(Debug, Default)]
pub struct OutputCheck {
    schema: Option<jsonschema::Validator>,
}

impl OutputCheck {
    /// The reply's JSON (its content, unfenced, as text), or why it is not
    /// usable (the `bad_output` message).
    ///
    /// Without a schema the text is only checked to be JSON, with no tree
    /// built: a tree costs about 20 times its text, and a reply may hold
    /// 16 MiB. A schema needs the tree: [`Self::is_large`] says when the
    /// caller should build it off the async workers, one at a time.
    pub fn check<'a>(&self, content: Option<&'a str>) -> Result<&'a RawValue, String> {
        let Some(content) = content else {
            return Err("JSON was asked for, and the reply has no content".into());
        };
        let text = unfenced(content);
        let not_json = |e: serde_json::Error| {
            format!(
                "the reply is not JSON: {} at line {} column {}{}",
                category(&e),
                e.line(),
                e.column(),
                quote(content)
            )
        };
        // Read once as text: valid JSON, borrowed, no tree.
        let raw: &RawValue = serde_json::from_str(text).map_err(not_json)?;
        let Some(schema) = &self.schema else {
            return Ok(raw);
        };
        let value: Value = serde_json::from_str(text).map_err(not_json)?;
        let errors: Vec<String> = schema
            .iter_errors(&value)
            .take(3)
            .map(|e| {
                let at = match e.instance_path.as_str() {
                    "" => "/".to_string(),
                    path => path.to_string(),
                };
                // The rule's text quotes the failing value, which may be long.
                let rule = cut(&e.to_string(), QUOTE_CHARS);
                format!("at {at}: {rule} (schema rule {})", e.schema_path)
            })
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "the reply fails the response_format JSON Schema {}",
                errors.join("; ")
            ));
        }
        Ok(raw)
    }

    /// Whether checking `content` builds a tree big enough to matter
    /// (a schema, and more than [`LARGE_CONTENT`] bytes).
    pub fn is_large(&self, content: Option<&str>) -> bool {
        self.schema.is_some() && content.is_some_and(|c| c.len() > LARGE_CONTENT)
    }
}

/// Content past which a schema check's tree (about 20 times the text) is
/// built one at a time, off the async workers.
pub const LARGE_CONTENT: usize = 1024 * 1024;

fn category(e: &serde_json::Error) -> String {
    // serde_json's text ends with its own " at line L column C": say it once, in our words.
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// `; the reply starts: "..."`, cut to [`QUOTE_CHARS`] characters.
fn quote(content: &str) -> String {
    let start: String = content.chars().take(QUOTE_CHARS).collect();
    let more = if start.len() < content.len() {
        "…"
    } else {
        ""
    };
    format!("; the reply starts: {start:?}{more}")
}

/// The first `chars` characters of `text`, with `…` when there was more.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The JSON text of a reply: the content without surrounding whitespace, or
/// the inside of its one fenced block (```` ```json ```` or bare ```` ``` ````)
/// as models often write it: the whole content, or set off on lines of its
/// own amid prose ("Here is the JSON:" before it, a remark after). Two
/// blocks, or a fence inside a line, leave the content as it is: which one
/// was meant is no guess to make.
pub fn unfenced(content: &str) -> &str {
    let text = content.trim();
    if text.starts_with(['{', '[']) {
        // JSON as it stands (its strings may quote fences of their own).
        return text;
    }
    let mut fences = text.match_indices("```").map(|(at, _)| at);
    let (Some(open), Some(close), None) = (fences.next(), fences.next(), fences.next()) else {
        return text;
    };
    let on_own_line = |at: usize| at == 0 || text[..at].ends_with('\n');
    if !on_own_line(open) || !on_own_line(close) {
        return text;
    }
    // The info string runs to the end of the opening fence's line: `json`, `JSON` or nothing.
    let Some((info, body)) = text[open + 3..close].split_once('\n') else {
        return text;
    };
    let info = info.trim();
    if !(info.is_empty() || info.eq_ignore_ascii_case("json")) {
        return text;
    }
    // The closing fence ends its line.
    let after = &text[close + 3..];
    if !(after.is_empty() || after.starts_with(['\n', '\r'])) {
        return text;
    }
    body.trim()
}

/// Distinct schemas kept compiled at most. A job whose rows each bring a
/// schema of their own (an `enum` of the row's labels) would otherwise keep
/// one compiled validator per row, a few KB each: gigabytes over millions of
/// rows. Past the bound the kept ones are let go and compiled again as met.
const MOST_SCHEMAS: usize = 256;

/// Compiled schemas by their compact JSON text, shared by every request that names one.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    compiled: Mutex<HashMap<String, Arc<OutputCheck>>>,
    /// The check of requests that want JSON with no schema.
    any_json: Arc<OutputCheck>,
}

impl Schemas {
    /// The check of a request with these `extra` parameters: None when it
    /// expects no JSON, an error naming the key when its schema is no schema.
    pub fn for_params(
        &self,
        json: bool,
        extra: &Map<String, Value>,
    ) -> Result<Option<Arc<OutputCheck>>, (String, String)> {
        let format = extra.get("response_format").filter(|v| !v.is_null());
        let kind = format.and_then(|f| f.get("type")).and_then(Value::as_str);
        let asks = matches!(kind, Some("json_object" | "json_schema"));
        if !json && !asks {
            return Ok(None);
        }
        let schema = match kind {
            Some("json_schema") => format
                .and_then(|f| f.pointer("/json_schema/schema"))
                .filter(|s| !s.is_null()),
            _ => None,
        };
        let Some(schema) = schema else {
            return Ok(Some(Arc::clone(&self.any_json)));
        };
        let text = schema.to_string();
        let mut compiled = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(check) = compiled.get(&text) {
            return Ok(Some(Arc::clone(check)));
        }
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            (
                "extra.response_format.json_schema.schema".to_string(),
                format!(
                    "is not a usable JSON Schema: {e} (at {})",
                    pointer(&e.instance_path)
                ),
            )
        })?;
        let check = Arc::new(OutputCheck {
            schema: Some(validator),
        });
        if compiled.len() >= MOST_SCHEMAS {
            // Requests planned already hold their own Arc of their check.
            compiled.clear();
        }
        compiled.insert(text, Arc::clone(&check));
        Ok(Some(check))
    }

    /// How many distinct schemas were compiled (for tests).
    #[cfg(test)]
    pub fn compiled(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn pointer(location: &jsonschema::paths::Location) -> String {
    match location.as_str() {
        "" => "/".into(),
        path => path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema_check(schema: Value) -> Arc<OutputCheck> {
        let extra = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}});
        Schemas::default()
            .for_params(false, extra.as_object().expect("an object"))
            .expect("a schema")
            .expect("a check")
    }

    #[test]
    fn one_fenced_block_is_tolerated() {
        assert_eq!(unfenced("  {\"a\":1}\n"), "{\"a\":1}");
        assert_eq!(unfenced("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(unfenced("\n```\n[1, 2]\n```\n"), "[1, 2]");
        assert_eq!(unfenced("```JSON\n{}\n```"), "{}");
        // Two blocks, another language, or text around the block: as it is.
        let two = "```json\n1\n```\n```json\n2\n```";
        assert_eq!(unfenced(two), two);
        assert_eq!(unfenced("```python\n{}\n```"), "```python\n{}\n```");
        assert_eq!(unfenced("Here: ```json\n{}\n```"), "Here: ```json\n{}\n```");
        // Prose around the one block on lines of its own, as models write it.
        let prose = "Here is the JSON:\n\n```json\n{\"a\": 1}\n```\n\nHope this helps!";
        assert_eq!(unfenced(prose), "{\"a\": 1}");
        assert_eq!(unfenced("Sure.\n```\n[1]\n```"), "[1]");
        let two_amid_prose = "A:\n```json\n1\n```\nB:\n```json\n2\n```\n";
        assert_eq!(unfenced(two_amid_prose), two_amid_prose.trim());
        // JSON whose strings quote a block is JSON as it stands.
        let quoting = "{\"md\": \"```json\\n{}\\n```\"}";
        assert_eq!(unfenced(quoting), quoting);
    }

    /// Rows that each bring their own schema keep memory bounded: at most
    /// [`MOST_SCHEMAS`] compiled at once, and each row's check is its own.
    #[test]
    fn a_schema_per_row_keeps_a_bounded_number_compiled() {
        let schemas = Schemas::default();
        for i in 0..3 * MOST_SCHEMAS {
            let schema = json!({"enum": [format!("label{i}")]});
            let extra = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}});
            let check = schemas
                .for_params(false, extra.as_object().expect("an object"))
                .expect("a schema")
                .expect("a check");
            assert!(check.check(Some(&format!("\"label{i}\""))).is_ok());
            assert!(check.check(Some("\"other\"")).is_err());
            assert!(schemas.compiled() <= MOST_SCHEMAS, "{}", schemas.compiled());
        }
    }

    #[test]
    fn json_is_asked_for_by_the_job_or_response_format() {
        let schemas = Schemas::default();
        let none = Map::new();
        assert!(schemas.for_params(false, &none).expect("ok").is_none());
        assert!(schemas.for_params(true, &none).expect("ok").is_some());
        let object = json!({"response_format": {"type": "json_object"}});
        let check = schemas
            .for_params(false, object.as_object().expect("object"))
            .expect("ok")
            .expect("asks for JSON");
        assert_eq!(
            check
                .check(Some("```json\n{\"a\": 1}\n```"))
                .map(RawValue::get),
            Ok("{\"a\": 1}")
        );
        let text = json!({"response_format": {"type": "text"}});
        assert!(schemas
            .for_params(false, text.as_object().expect("object"))
            .expect("ok")
            .is_none());
    }

    #[test]
    fn a_parse_error_says_where_and_quotes_the_start() {
        let check = OutputCheck::default();
        let e = check
            .check(Some("{\"a\": 1,\n \"b\": }"))
            .expect_err("broken");
        assert!(e.contains("line 2 column 7"), "{e}");
        assert!(e.contains("the reply starts: \"{\\\"a\\\": 1,"), "{e}");
        let long = "x".repeat(1000);
        let e = check.check(Some(&long)).expect_err("not JSON");
        assert!(e.len() < 300, "{e}");
        assert!(check.check(None).is_err());
    }

    #[test]
    fn a_schema_failure_names_the_instance_path_and_the_rule() {
        let check = schema_check(json!({
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": {
                "type": "object", "properties": {"price": {"type": "number"}}}}}
        }));
        let good = json!({"items": [{"price": 1}, {"price": 2.5}]}).to_string();
        assert!(check.check(Some(&good)).is_ok());
        let bad = json!({"items": [{"price": 1}, {"price": 2}, {"price": "abc"}]}).to_string();
        let e = check.check(Some(&bad)).expect_err("violates");
        assert!(e.contains("at /items/2/price"), "{e}");
        assert!(e.contains("not of type \"number\""), "{e}");
        assert!(
            e.contains("/properties/items/items/properties/price/type"),
            "{e}"
        );
        let long = json!({"items": [{"price": "é".repeat(10_000)}]}).to_string();
        let e = check.check(Some(&long)).expect_err("violates");
        assert!(e.len() < 800 && e.contains("…"), "{e}");
        let e = check.check(Some("{}")).expect_err("missing items");
        assert!(e.contains("at /:") && e.contains("required"), "{e}");
    }

    #[test]
    fn a_schema_is_compiled_once_and_a_bad_one_is_named() {
        let schemas = Schemas::default();
        let extra = json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}});
        let extra = extra.as_object().expect("object");
        let a = schemas
            .for_params(false, extra)
            .expect("ok")
            .expect("check");
        let b = schemas
            .for_params(false, extra)
            .expect("ok")
            .expect("check");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(schemas.compiled(), 1);
        let bad = json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}});
        let (key, message) = schemas
            .for_params(false, bad.as_object().expect("object"))
            .expect_err("not a schema");
        assert_eq!(key, "extra.response_format.json_schema.schema");
        assert!(message.contains("not a usable JSON Schema"), "{message}");
    }
}
