//! The `messages` of a request: checking a row's own conversation, building
//! one from a prompt, and folding system text into the first user turn.
//!
//! Gemma's chat template has no system role (the AI/ML API answers 400 to a
//! `system` message for some Gemma models), so in fold mode every system
//! message is removed and its text prepended to the first user message.

use serde_json::{json, Map, Value};

use crate::job::params::describe;

/// What a problem is about (`messages[2].content`) and what is wrong.
pub(super) type Problem = (Option<String>, String);

/// The messages of one request, as sent, and their size.
#[derive(Debug, Clone)]
pub(super) struct Built {
    pub messages: Value,
    /// UTF-8 bytes of the texts, `[pricing] image_tokens` per image part, and
    /// other content as its compact JSON: an upper bound of the prompt's tokens
    /// before the allowance per message.
    pub prompt_bytes: u64,
    /// Of `prompt_bytes`, what the image parts count for.
    pub image_tokens: u64,
    pub count: u64,
}

/// Messages for a `prompt` or template row: the job's system text, then the
/// user text, followed by the row's `image_url` parts (`[input] images`) when
/// it has any: the user message is then a list of parts, text first.
/// `image_tokens`: what one image part counts for (`[pricing] image_tokens`).
pub(super) fn from_text(
    system: Option<&str>,
    text: &str,
    fold: bool,
    images: &[Value],
    image_tokens: u64,
) -> Built {
    let user = |text: String| match images {
        [] => user(text),
        images => {
            let mut parts = Vec::with_capacity(images.len() + 1);
            parts.push(json!({"type": "text", "text": text}));
            parts.extend(images.iter().cloned());
            json!({"role": "user", "content": parts})
        }
    };
    let messages = match system {
        Some(system) if fold => vec![user(format!("{system}\n\n{text}"))],
        Some(system) => vec![
            json!({"role": "system", "content": system}),
            user(text.to_string()),
        ],
        None => vec![user(text.to_string())],
    };
    built(messages, image_tokens)
}

/// Messages for a row that brings its own (already checked by [`check`]):
/// as given, or with the system messages folded into the first user message.
/// `image_tokens`: what one image part counts for (`[pricing] image_tokens`).
pub(super) fn from_row(
    messages: &[Value],
    fold: bool,
    image_tokens: u64,
) -> Result<Built, Problem> {
    if !fold || !messages.iter().any(is_system) {
        return Ok(built(messages.to_vec(), image_tokens));
    }
    let mut texts = Vec::new();
    let mut rest = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        if !is_system(message) {
            rest.push(message.clone());
            continue;
        }
        match message.get("content").unwrap_or(&Value::Null) {
            Value::String(text) => texts.push(text.as_str()),
            Value::Array(parts) => {
                for (j, part) in parts.iter().enumerate() {
                    match part_text(part) {
                        Some(text) => texts.push(text),
                        None => {
                            return Err((
                                Some(format!("messages[{i}].content[{j}]")),
                                "a system message can only hold text parts when it is folded into the first user message (system_mode fold, or a Gemma model)".into(),
                            ))
                        }
                    }
                }
            }
            _ => {}
        }
    }
    texts.retain(|t| !t.is_empty());
    if texts.is_empty() {
        return Ok(built(rest, image_tokens));
    }
    let system = texts.join("\n\n");
    let first_user = rest
        .iter_mut()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let Some(Value::Object(first_user)) = first_user else {
        return Err((
            Some("messages".into()),
            "the system text is folded into the first user message (system_mode fold, or a Gemma model), but this conversation has no user message".into(),
        ));
    };
    let content = first_user.entry("content").or_insert(Value::Null);
    *content = match std::mem::take(content) {
        Value::String(text) => Value::String(format!("{system}\n\n{text}")),
        Value::Array(mut parts) => {
            parts.insert(0, json!({"type": "text", "text": format!("{system}\n\n")}));
            Value::Array(parts)
        }
        _ => Value::String(system),
    };
    Ok(built(rest, image_tokens))
}

/// Checks a row's `messages`: a non-empty list of objects, each with a string
/// `role` and a `content` that is a string, a list of parts, or null beside
/// `tool_calls`. Returns every problem, not the first.
pub(super) fn check(value: &Value) -> Result<&[Value], Vec<Problem>> {
    let Value::Array(messages) = value else {
        return Err(vec![(
            Some("messages".into()),
            format!(
                "must be a list of messages like [{{\"role\": \"user\", \"content\": \"...\"}}], not {}",
                describe(value)
            ),
        )]);
    };
    if messages.is_empty() {
        return Err(vec![(
            Some("messages".into()),
            "is empty; a conversation needs at least one message".into(),
        )]);
    }
    let mut problems = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            problems.push((
                Some(format!("messages[{i}]")),
                format!(
                    "must be an object with role and content, not {}",
                    describe(message)
                ),
            ));
            continue;
        };
        let role = message.get("role").and_then(Value::as_str);
        if !role.is_some_and(|r| ["system", "user", "assistant", "tool"].contains(&r)) {
            problems.push((
                Some(format!("messages[{i}].role")),
                format!(
                    "must be \"system\", \"user\", \"assistant\" or \"tool\", not {}",
                    message
                        .get("role")
                        .map_or_else(|| "missing".into(), describe)
                ),
            ));
        }
        check_content(message, i, &mut problems);
    }
    if problems.is_empty() {
        Ok(messages)
    } else {
        Err(problems)
    }
}

fn check_content(message: &Map<String, Value>, i: usize, problems: &mut Vec<Problem>) {
    let has_tool_calls = message.get("tool_calls").is_some_and(|v| !v.is_null());
    match message.get("content").unwrap_or(&Value::Null) {
        Value::String(_) => {}
        Value::Null if has_tool_calls => {}
        Value::Array(parts) => {
            for (j, part) in parts.iter().enumerate() {
                match part {
                    Value::Object(p) => {
                        let is_text = p.get("type").and_then(Value::as_str) == Some("text");
                        if is_text && !p.get("text").is_some_and(Value::is_string) {
                            problems.push((
                                Some(format!("messages[{i}].content[{j}].text")),
                                "a text part needs a string \"text\"".into(),
                            ));
                        }
                    }
                    other => problems.push((
                        Some(format!("messages[{i}].content[{j}]")),
                        format!(
                            "must be a part like {{\"type\": \"text\", \"text\": \"...\"}}, not {}",
                            describe(other)
                        ),
                    )),
                }
            }
        }
        other => problems.push((
            Some(format!("messages[{i}].content")),
            format!(
                "must be a string or a list of parts (null only beside tool_calls), not {}",
                describe(other)
            ),
        )),
    }
}

fn is_system(message: &Value) -> bool {
    message.get("role").and_then(Value::as_str) == Some("system")
}

fn part_text(part: &Value) -> Option<&str> {
    if part.get("type").and_then(Value::as_str) == Some("text") {
        part.get("text").and_then(Value::as_str)
    } else {
        None
    }
}

fn user(text: String) -> Value {
    json!({"role": "user", "content": text})
}

fn built(messages: Vec<Value>, image_tokens: u64) -> Built {
    let prompt_bytes = messages
        .iter()
        .map(|m| message_bytes(m, image_tokens))
        .fold(0, u64::saturating_add);
    let images = messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part_text(part).is_none() && is_image(part))
        .count() as u64;
    Built {
        count: messages.len() as u64,
        messages: Value::Array(messages),
        prompt_bytes,
        image_tokens: images.saturating_mul(image_tokens),
    }
}

/// The bytes of one message that become prompt tokens: its texts, the
/// model's bound for each image part (an image's URL says nothing of its
/// tokens: a base64 data URL is far larger, an http URL far smaller), the
/// compact JSON of other parts, and of anything beside role and content
/// (`tool_calls`, `name`, ...), which the model reads too. An over-count is
/// harmless (this bounds tokens from above); an under-count would not be.
fn message_bytes(message: &Value, image_tokens: u64) -> u64 {
    let Value::Object(message) = message else {
        return json_len(message);
    };
    message
        .iter()
        .map(|(key, value)| match (key.as_str(), value) {
            ("role", _) => 0,
            ("content", Value::String(text)) => text.len() as u64,
            ("content", Value::Array(parts)) => parts
                .iter()
                .map(|part| match part_text(part) {
                    Some(text) => text.len() as u64,
                    None if is_image(part) => image_tokens,
                    None => json_len(part),
                })
                .fold(0, u64::saturating_add),
            ("content", Value::Null) => 0,
            (_, other) => json_len(other),
        })
        .fold(0, u64::saturating_add)
}

fn is_image(part: &Value) -> bool {
    part.get("type").and_then(Value::as_str) == Some("image_url")
}

/// Length of a value's compact JSON, without building the string.
pub(super) fn json_len(value: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("writing JSON to a counter cannot fail");
    count.0
}
