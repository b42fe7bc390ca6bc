//! Error bodies, read leniently from every shape providers are known to send.
//!
//! OpenAI and OpenRouter `{"error":{"message","type","code"}}` (OpenRouter may
//! add `error.metadata.raw`, the upstream provider's own words), Ollama's
//! `{"error":"..."}`, the AI/ML API's `{"message","path","requestId","statusCode"}`
//! (message may be a list), vLLM's `{"object":"error","message","type","code"}`,
//! FastAPI's `{"detail": ...}`, and plain text or HTML from proxies. Whatever
//! arrives, the user gets one readable line, never a parse error.

use std::borrow::Cow;

use serde_json::Value;

use super::redact;

/// Longest message kept from a body: enough for any real explanation, short
/// enough that a 50 kB HTML error page does not flood the output file.
pub const MESSAGE_CAP: usize = 500;
/// Longest excerpt of OpenRouter's `metadata.raw`.
const RAW_CAP: usize = 200;

/// What an error body says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// One line, capped; empty when the body said nothing.
    pub message: String,
    /// `error.type` when given, else `error.code` as a string.
    pub code: Option<String>,
}

/// Reads any error body; never fails.
pub fn parse_error_body(body: &[u8]) -> ErrorInfo {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return ErrorInfo::default();
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return from_json(&value);
    }
    let message = if looks_like_html(text) {
        html_text(text)
    } else {
        collapse_whitespace(text)
    };
    ErrorInfo {
        message: truncate(&message, MESSAGE_CAP),
        code: None,
    }
}

/// Reads a JSON error document (also used for `error` objects in 2xx bodies and streams).
pub fn from_json(value: &Value) -> ErrorInfo {
    let info = match value {
        Value::Object(map) => match (map.get("error"), map.get("message")) {
            (Some(error @ Value::Object(_)), _) => from_error_object(error),
            // AI/ML API (NestJS): "message" says it all, "error" is only the status text.
            (_, Some(message)) if !is_blank(message) => ErrorInfo {
                message: with_request_id(text_of(message), map.get("requestId")),
                code: type_or_code(map.get("type"), map.get("code")),
            },
            (Some(error), _) if !is_blank(error) => ErrorInfo {
                message: text_of(error),
                code: None,
            },
            _ => match map.get("detail") {
                Some(detail) if !is_blank(detail) => ErrorInfo {
                    message: fastapi_detail(detail),
                    code: None,
                },
                _ => ErrorInfo {
                    message: value.to_string(),
                    code: None,
                },
            },
        },
        Value::String(text) => ErrorInfo {
            message: text.clone(),
            code: None,
        },
        other => ErrorInfo {
            message: other.to_string(),
            code: None,
        },
    };
    ErrorInfo {
        message: truncate(&collapse_whitespace(&info.message), MESSAGE_CAP),
        code: info.code,
    }
}

/// `{"message","type","code","metadata":{"raw"}}` as OpenAI and OpenRouter send it.
fn from_error_object(error: &Value) -> ErrorInfo {
    let mut message = error.get("message").map(text_of).unwrap_or_default();
    if message.is_empty() {
        message = error.to_string();
    }
    if let Some(raw) = error.pointer("/metadata/raw").filter(|raw| !is_blank(raw)) {
        let raw = truncate(&collapse_whitespace(&text_of(raw)), RAW_CAP);
        message = format!("{message} (upstream: {raw})");
    }
    ErrorInfo {
        message,
        code: type_or_code(error.get("type"), error.get("code")),
    }
}

fn type_or_code(kind: Option<&Value>, code: Option<&Value>) -> Option<String> {
    let as_code = |value: &Value| match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    kind.and_then(as_code).or_else(|| code.and_then(as_code))
}

fn with_request_id(message: String, request_id: Option<&Value>) -> String {
    match request_id.and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("{message} (request id {id})"),
        _ => message,
    }
}

/// FastAPI: a string, or validation errors `[{"loc": [...], "msg": "..."}]`.
fn fastapi_detail(detail: &Value) -> String {
    let Value::Array(items) = detail else {
        return text_of(detail);
    };
    let parts: Vec<String> = items
        .iter()
        .map(
            |item| match (item.get("loc"), item.get("msg").and_then(Value::as_str)) {
                (Some(Value::Array(loc)), Some(msg)) => {
                    let loc: Vec<String> = loc.iter().map(text_of).collect();
                    format!("{}: {msg}", loc.join("."))
                }
                (_, Some(msg)) => msg.to_string(),
                _ => text_of(item),
            },
        )
        .collect();
    parts.join("; ")
}

/// A string as is, a list of strings joined, anything else as compact JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn looks_like_html(text: &str) -> bool {
    let head = text
        .get(..text.len().min(512))
        .unwrap_or(text)
        .to_ascii_lowercase();
    head.starts_with('<')
        && (head.contains("<html")
            || head.contains("<!doctype")
            || head.contains("<head")
            || head.contains("<body")
            || head.contains("<title"))
}

/// The `<title>` of an HTML page when it has one, else its text without tags.
fn html_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    if let Some(start) = lower.find("<title") {
        if let Some(open_end) = lower[start..].find('>') {
            let from = start + open_end + 1;
            if let Some(len) = lower[from..].find("</title") {
                let title = collapse_whitespace(&html[from..from + len]);
                if !title.is_empty() {
                    return title;
                }
            }
        }
    }
    let mut text = String::with_capacity(html.len().min(4096));
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    collapse_whitespace(&text)
}

pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `cap` characters, with "…" when something was cut.
///
/// Secrets are removed first: a key cut in two would leave its head where no
/// later redaction can recognise it (see `redact`).
///
/// Control characters go too (see [`printable`]): this is the one place
/// every message quoting a server passes through.
pub fn truncate(text: &str, cap: usize) -> String {
    // Only what can be kept, plus room for a secret straddling the cut, is
    // redacted: a 16 MiB body quoted in 200 characters costs no 16 MiB scan.
    let scope = match text.char_indices().nth(cap) {
        Some((cut, _)) => {
            let mut end = text.len().min(cut.saturating_add(REDACT_MARGIN));
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            end
        }
        None => text.len(),
    };
    let redacted = redact::redact_current(&text[..scope]);
    let shown = printable(&redacted);
    match shown.char_indices().nth(cap) {
        Some((cut, _)) => format!("{}…", &shown[..cut]),
        None if scope < text.len() => format!("{shown}…"),
        None => shown.into_owned(),
    }
}

/// Bytes past a cut still redacted before it: longer than any secret
/// (a JWT bearer token runs to a few kB).
const REDACT_MARGIN: usize = 64 * 1024;

/// A server's text made safe to print: messages end up on the user's
/// terminal (the stderr table quotes the last error), where an ANSI escape,
/// a BEL or a backspace would act (retitle the window, hide or fake text)
/// rather than be read. Whitespace controls become spaces, others U+FFFD.
fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let shown = text
        .chars()
        .map(|c| match c {
            _ if !c.is_control() => c,
            _ if c.is_whitespace() => ' ',
            _ => char::REPLACEMENT_CHARACTER,
        })
        .collect();
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(message: &str, code: Option<&str>) -> ErrorInfo {
        ErrorInfo {
            message: message.to_string(),
            code: code.map(str::to_string),
        }
    }

    #[test]
    fn every_known_shape() {
        let table: &[(&str, ErrorInfo)] = &[
            (
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
                info("You exceeded your current quota", Some("insufficient_quota")),
            ),
            (
                r#"{"error":{"message":"Rate limit exceeded","code":429}}"#,
                info("Rate limit exceeded", Some("429")),
            ),
            (
                r#"{"error":{"message":"Provider returned error","code":502,"metadata":{"raw":"upstream   overloaded","provider_name":"X"}}}"#,
                info("Provider returned error (upstream: upstream overloaded)", Some("502")),
            ),
            (
                r#"{"error":{"message":"bad","type":null,"code":"model_not_found"}}"#,
                info("bad", Some("model_not_found")),
            ),
            (r#"{"error":"model 'x' not found"}"#, info("model 'x' not found", None)),
            (
                r#"{"message":"Invalid model","path":"/v1/chat/completions","requestId":"abc-1","statusCode":"400"}"#,
                info("Invalid model (request id abc-1)", None),
            ),
            (
                r#"{"statusCode":400,"message":["max_tokens must be positive","model must be a string"],"error":"Bad Request"}"#,
                info("max_tokens must be positive; model must be a string", None),
            ),
            (
                r#"{"object":"error","message":"This model's maximum context length is 8192 tokens.","type":"BadRequestError","param":null,"code":400}"#,
                info("This model's maximum context length is 8192 tokens.", Some("BadRequestError")),
            ),
            (r#"{"detail":"Not Found"}"#, info("Not Found", None)),
            (
                r#"{"detail":[{"loc":["body","messages"],"msg":"field required","type":"missing"}]}"#,
                info("body.messages: field required", None),
            ),
            (r#"{"weird":true}"#, info(r#"{"weird":true}"#, None)),
            (r#""just a string""#, info("just a string", None)),
            ("upstream connect error\n or disconnect", info("upstream connect error or disconnect", None)),
            (
                "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503</h1></center></body></html>",
                info("503 Service Temporarily Unavailable", None),
            ),
            (
                "<!DOCTYPE html><html><body><h1>Bad   gateway</h1>\n<p>try later</p></body></html>",
                info("Bad gateway try later", None),
            ),
            ("", info("", None)),
            ("  \n ", info("", None)),
        ];
        for (body, expected) in table {
            assert_eq!(&parse_error_body(body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn long_messages_are_capped_at_a_char_boundary() {
        let body = "é".repeat(2000);
        let message = parse_error_body(body.as_bytes()).message;
        assert_eq!(message.chars().count(), MESSAGE_CAP + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn control_characters_never_reach_a_message() {
        let body =
            r#"{"error":{"message":"bad \u001b[2J\u001b]52;c;ZXZpbA==\u0007 \b\u009b1m key"}}"#;
        let message = parse_error_body(body.as_bytes()).message;
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert_eq!(
            message,
            "bad \u{FFFD}[2J\u{FFFD}]52;c;ZXZpbA==\u{FFFD} \u{FFFD}\u{FFFD}1m key"
        );
        let text = parse_error_body(b"plain \x1b[31mred\x1b[0m").message;
        assert_eq!(text, "plain \u{FFFD}[31mred\u{FFFD}[0m");
    }

    #[test]
    fn invalid_utf8_does_not_fail() {
        let info = parse_error_body(b"bad \xff gateway");
        assert!(info.message.starts_with("bad "), "{}", info.message);
        assert!(info.message.ends_with(" gateway"), "{}", info.message);
    }
}
