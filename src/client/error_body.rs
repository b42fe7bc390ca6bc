//! Error bodies, read leniently from every shape providers are known to send.
//!
//! OpenAI and OpenRouter `{"error":{"message","type","code"}}` (OpenRouter may
//! add `error.metadata.raw`, the upstream provider's own words), Ollama's
//! `{"error":"..."}`, the AI/ML API's `{"message","path","requestId","statusCode"}`
//! (message may be a list), vLLM's `{"object":"error","message","type","code"}`,
//! FastAPI's `{"detail": ...}`, and plain text or HTML from proxies. Whatever
//! arrives, the user gets one readable line, never a parse error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Number;

use super::raw_json::{compact, readable};
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
    // A lone surrogate or a number past a double would leave the whole
    // document unread, its message shown as raw JSON text with escapes.
    if let Some(info) = from_json(&readable(text)) {
        return info;
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

/// The fields of an error document, or of its `error` object (one type for
/// both: they share their names), kept as the server's text and read only
/// when used. Everything else, however big, is skipped unread: an error
/// padded with millions of `{}` costs no memory.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    pub error: Option<&'a RawValue>,
    pub message: Option<&'a RawValue>,
    /// `requestId`.
    pub request_id: Option<&'a RawValue>,
    /// `type`.
    pub kind: Option<&'a RawValue>,
    pub code: Option<&'a RawValue>,
    pub status: Option<&'a RawValue>,
    /// `statusCode`.
    pub status_code: Option<&'a RawValue>,
    /// FastAPI.
    pub detail: Option<&'a RawValue>,
    /// OpenRouter's `metadata.raw`.
    pub metadata: Option<&'a RawValue>,
    pub raw: Option<&'a RawValue>,
    /// A FastAPI validation error's.
    pub loc: Option<&'a RawValue>,
    pub msg: Option<&'a RawValue>,
}

/// Read by hand, not derived: a repeated key keeps its last value, as a
/// JSON tree would, rather than failing the whole document.
impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Read;
        impl<'de> Visitor<'de> for Read {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an error object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut read = Fields::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let field = match key.as_ref() {
                        "error" => &mut read.error,
                        "message" => &mut read.message,
                        "requestId" => &mut read.request_id,
                        "type" => &mut read.kind,
                        "code" => &mut read.code,
                        "status" => &mut read.status,
                        "statusCode" => &mut read.status_code,
                        "detail" => &mut read.detail,
                        "metadata" => &mut read.metadata,
                        "raw" => &mut read.raw,
                        "loc" => &mut read.loc,
                        "msg" => &mut read.msg,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *field = map.next_value()?;
                }
                Ok(read)
            }
        }
        deserializer.deserialize_map(Read)
    }
}

/// The fields of a JSON object; None for anything else.
pub fn fields_of(raw: &RawValue) -> Option<Fields<'_>> {
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// A JSON string, decoded; None for anything else.
pub fn as_string(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim_start();
    if !text.starts_with('"') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Calls `f` on each item of a JSON list, read one at a time.
fn for_each_item<'a>(raw: &'a RawValue, f: impl FnMut(&'a RawValue)) {
    struct Each<F>(F);
    impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for Each<F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<&'de RawValue>()? {
                (self.0)(item);
            }
            Ok(())
        }
    }
    if raw.get().trim_start().starts_with('[') {
        // Already read once as JSON: nothing here can fail.
        let _ = serde_json::Deserializer::from_str(raw.get()).deserialize_seq(Each(f));
    }
}

/// Items of a list joined by `separator`, whole items only, until the text
/// is past what any message keeps: the rest are skipped, never cut (a cut
/// here would come before redaction, see `truncate`).
fn join_items(
    raw: &RawValue,
    separator: &str,
    mut text: impl FnMut(&RawValue) -> String,
) -> String {
    let mut joined = String::new();
    let mut first = true;
    for_each_item(raw, |item| {
        if joined.len() > 4 * MESSAGE_CAP {
            return;
        }
        if !first {
            joined.push_str(separator);
        }
        first = false;
        joined.push_str(&text(item));
    });
    joined
}

/// Reads a JSON error document (also used for `error` objects in 2xx bodies
/// and streams); None when `text` is not JSON.
pub fn from_json(text: &str) -> Option<ErrorInfo> {
    let document: &RawValue = serde_json::from_str(text).ok()?;
    let info = match fields_of(document) {
        Some(map) => {
            let error_object = map.error.and_then(|e| fields_of(e).map(|f| (e, f)));
            if let Some((raw, error)) = error_object {
                from_error_object(raw, &error)
            } else if let Some(message) = map.message.filter(|m| !is_blank(m)) {
                // AI/ML API (NestJS): "message" says it all, "error" is only the status text.
                ErrorInfo {
                    message: with_request_id(text_of(message), map.request_id),
                    code: type_or_code(map.kind, map.code),
                }
            } else if let Some(error) = map.error.filter(|e| !is_blank(e)) {
                ErrorInfo {
                    message: text_of(error),
                    code: None,
                }
            } else {
                ErrorInfo {
                    message: match map.detail.filter(|d| !is_blank(d)) {
                        Some(detail) => fastapi_detail(detail),
                        None => compact(document.get()),
                    },
                    code: None,
                }
            }
        }
        None => ErrorInfo {
            message: as_string(document).unwrap_or_else(|| compact(document.get())),
            code: None,
        },
    };
    Some(ErrorInfo {
        message: truncate(&collapse_whitespace(&info.message), MESSAGE_CAP),
        code: info.code,
    })
}

/// `{"message","type","code","metadata":{"raw"}}` as OpenAI and OpenRouter send it.
fn from_error_object(raw: &RawValue, error: &Fields) -> ErrorInfo {
    let mut message = error.message.map(text_of).unwrap_or_default();
    if message.is_empty() {
        message = compact(raw.get());
    }
    let upstream = (error.metadata.and_then(fields_of))
        .and_then(|metadata| metadata.raw)
        .filter(|raw| !is_blank(raw));
    if let Some(upstream) = upstream {
        let upstream = truncate(&collapse_whitespace(&text_of(upstream)), RAW_CAP);
        message = format!("{message} (upstream: {upstream})");
    }
    ErrorInfo {
        message,
        code: type_or_code(error.kind, error.code),
    }
}

fn type_or_code(kind: Option<&RawValue>, code: Option<&RawValue>) -> Option<String> {
    let as_code = |raw: &RawValue| match as_string(raw) {
        Some(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        None => serde_json::from_str::<Number>(raw.get())
            .ok()
            .map(|n| n.to_string()),
    };
    kind.and_then(as_code).or_else(|| code.and_then(as_code))
}

fn with_request_id(message: String, request_id: Option<&RawValue>) -> String {
    match request_id.and_then(as_string) {
        Some(id) if !id.is_empty() => format!("{message} (request id {id})"),
        _ => message,
    }
}

/// FastAPI: a string, or validation errors `[{"loc": [...], "msg": "..."}]`.
fn fastapi_detail(detail: &RawValue) -> String {
    if !detail.get().trim_start().starts_with('[') {
        return text_of(detail);
    }
    join_items(detail, "; ", |item| {
        let fields = fields_of(item).unwrap_or_default();
        let loc = fields.loc.filter(|l| l.get().trim_start().starts_with('['));
        match (loc, fields.msg.and_then(as_string)) {
            (Some(loc), Some(msg)) => format!("{}: {msg}", join_items(loc, ".", text_of)),
            (_, Some(msg)) => msg,
            _ => text_of(item),
        }
    })
}

/// A string as is, a list of strings joined, anything else as compact JSON.
fn text_of(raw: &RawValue) -> String {
    let text = raw.get().trim_start();
    if text.starts_with('[') {
        join_items(raw, "; ", text_of)
    } else if text.starts_with("null") {
        String::new()
    } else {
        as_string(raw).unwrap_or_else(|| compact(text))
    }
}

fn is_blank(raw: &RawValue) -> bool {
    let text = raw.get().trim();
    text == "null"
        || (text.starts_with('[') && text[1..].trim() == "]")
        || as_string(raw).is_some_and(|s| s.trim().is_empty())
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
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
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
            // A repeated key keeps its last value; padding is skipped.
            (
                r#"{"error":{"message":"first","message":"last","code":429,"pad":[{},[]]},"pad":[{}]}"#,
                info("last", Some("429")),
            ),
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
    fn a_lone_surrogate_or_a_huge_number_leaves_the_document_readable() {
        let parsed = parse_error_body(
            br#"{"error":{"message":"bad \ud800 k\u0065y","type":"x","code":1e400}}"#,
        );
        assert_eq!(parsed, info("bad \u{FFFD} key", Some("x")));
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
