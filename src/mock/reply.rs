//! The deterministic reply to a request body: content, finish reason, usage.
//!
//! Everything here is a pure function of the request, so a test can compute
//! with [`expected_reply`] exactly what the server sent and compare records
//! field by field. The content echoes the last user message, then adds filler
//! words picked by a hash of the messages, so reply lengths vary per prompt.
//! One whitespace-separated word counts as one completion token.

use serde_json::{json, Value};

use super::directives::{self, CostMode, DirectiveError, Directives};
use super::json_reply;
use super::MockConfig;

/// USD per 1M tokens used by `[mock:cost=...]` when no price is configured.
pub const DEFAULT_USD_PER_MILLION: f64 = 0.10;

/// Words of the last user message echoed at most; longer texts end in "...".
const ECHO_WORDS: usize = 16;

const FILLER: &[&str] = &[
    "alpha", "bright", "cloud", "delta", "echo", "field", "garden", "harbor", "island", "jungle",
    "kernel", "lantern", "meadow", "night", "ocean", "pebble", "quiet", "river", "stone", "timber",
    "umbra", "valley", "willow", "xenon", "yonder", "zephyr", "amber", "breeze", "canyon", "dawn",
    "ember", "forest", "glacier", "horizon", "ivory", "jade", "kettle", "lumen", "marble",
    "nectar", "orbit", "prairie", "quartz", "ripple", "summit", "tundra", "upland", "vortex",
    "wander", "yarrow", "zenith", "anchor", "beacon", "cobalt", "drift", "eddy", "fable",
    "granite", "hollow", "inlet", "juniper", "knoll", "lagoon", "mist",
];

/// The reply the mock gives to a request body when no fault applies.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedReply {
    /// The assistant's text; empty when the reply is a tool call (the wire then carries `content: null`).
    pub content: String,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The model the reply names: the requested one unless `[mock:model=NAME]`.
    pub model: String,
    /// `message.tool_calls` of a `[mock:tools]` reply.
    pub tool_calls: Option<Value>,
    /// Whether `usage` is sent: not with `[mock:no-usage]`, nor in a stream without `include_usage`.
    pub usage_reported: bool,
    /// The cost report asked for by `[mock:cost=...]`.
    pub cost_mode: Option<CostMode>,
}

impl ExpectedReply {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// The USD this reply reports under `config`, if it reports any: the configured
    /// `usd_per_million` header, or a `[mock:cost=...]` report (an OpenRouter
    /// `usage.cost` only when usage is sent).
    pub fn cost_usd(&self, config: &MockConfig) -> Option<f64> {
        let reported = config.usd_per_million.is_some()
            || match self.cost_mode {
                Some(CostMode::OpenRouter) => self.usage_reported,
                Some(_) => true,
                None => false,
            };
        reported.then(|| self.usd_at(config.usd_per_million.unwrap_or(DEFAULT_USD_PER_MILLION)))
    }

    pub(crate) fn usd_at(&self, usd_per_million: f64) -> f64 {
        self.total_tokens() as f64 * usd_per_million / 1e6
    }
}

/// A request the mock understood: its reply and what the prompt asked for.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub reply: ExpectedReply,
    pub directives: Directives,
    pub stream: bool,
    pub include_usage: bool,
}

/// The reply the mock gives for `body` when no fault applies, so tests can compare records exactly.
///
/// A body the server would reject with a 400 (no `messages` array, a bad
/// directive) yields the reply to an empty conversation.
pub fn expected_reply(body: &Value) -> ExpectedReply {
    match plan(body) {
        Ok(plan) => plan.reply,
        Err(_) => {
            plan(&json!({"messages": [{"role": "user", "content": ""}]}))
                .expect("an empty conversation is a valid request")
                .reply
        }
    }
}

/// Why the mock answers a request 400.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("the request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the request body needs a non-empty `messages` array")]
    NoMessages,
    #[error(transparent)]
    Directive(#[from] DirectiveError),
}

/// Works out the reply to a parsed request body, or why it is a bad request.
pub(crate) fn plan(body: &Value) -> Result<Plan, BadRequest> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(BadRequest::NoMessages)?;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(message_text)
        .unwrap_or_default();
    let (directives, echo) = directives::parse(&last_user)?;

    let mut hash = Fnv::new();
    hash.write(b"[");
    messages
        .iter()
        .for_each(|message| hash_value(&mut hash, message));
    hash.write(b"]");
    let h = hash.finish();
    let prompt_bytes: usize = messages.iter().map(message_text_len).sum();
    let prompt_tokens = prompt_bytes.div_ceil(4) as u64 + 4 * messages.len() as u64;

    let (content, finish_reason, tool_calls) = if let Some(first) = directives.replies.first() {
        (first.clone(), "stop", None)
    } else if directives.tools {
        (
            String::new(),
            "tool_calls",
            Some(tool_calls(body, &echo, h)),
        )
    } else if let Some(json) = json_reply::for_request(body, &short(&echo)) {
        (json, "stop", None)
    } else {
        let (content, finish) = cut(body, compose(&echo, h));
        (content, finish, None)
    };
    let completion_tokens = match &tool_calls {
        Some(calls) => {
            let arguments = calls[0]["function"]["arguments"].as_str().unwrap_or("");
            arguments.len().div_ceil(4) as u64 + 5
        }
        None => content.split_whitespace().count() as u64,
    };

    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let model = match &directives.model {
        Some(model) => model.clone(),
        None => body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model")
            .to_string(),
    };
    let reply = ExpectedReply {
        content,
        finish_reason,
        prompt_tokens,
        completion_tokens,
        model,
        tool_calls,
        usage_reported: !directives.no_usage && (!stream || include_usage),
        cost_mode: directives.cost,
    };
    Ok(Plan {
        reply,
        directives,
        stream,
        include_usage,
    })
}

impl Plan {
    /// The reply of the `attempt`th (1-based) attempt of this body under
    /// `[mock:reply=...]`: the Nth text, or the last once they run out.
    pub(crate) fn reply_for_attempt(&mut self, attempt: usize) {
        let replies = &self.directives.replies;
        let Some(text) = replies.get(attempt.min(replies.len()).saturating_sub(1)) else {
            return;
        };
        self.reply.completion_tokens = text.split_whitespace().count() as u64;
        self.reply.content = text.clone();
    }
}

/// The first [`ECHO_WORDS`] words of the echo.
fn short(echo: &str) -> String {
    echo.split_whitespace()
        .take(ECHO_WORDS)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of a message: string content, or its text parts joined by newlines.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

fn message_text_len(message: &Value) -> usize {
    match message.get("content") {
        Some(Value::String(text)) => text.len(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(str::len)
            .sum(),
        _ => 0,
    }
}

/// "You said: <echo>." then filler words, 8..=60 words in all.
fn compose(echo: &str, h: u64) -> String {
    let mut out = String::with_capacity(echo.len().min(200) + 400);
    let mut words = echo.split_whitespace();
    let mut prefix_words = 2;
    if echo.is_empty() {
        out.push_str("You said nothing.");
        prefix_words = 3;
    } else {
        out.push_str("You said:");
        for word in words.by_ref().take(ECHO_WORDS) {
            out.push(' ');
            out.push_str(word);
            prefix_words += 1;
        }
        if words.next().is_some() {
            out.push_str("...");
        } else if !out.ends_with(|c: char| c.is_ascii_punctuation()) {
            out.push('.');
        }
    }
    let target = 8 + (h % 53) as usize;
    let filler = target.saturating_sub(prefix_words).max(3);
    for i in 0..filler {
        out.push(' ');
        out.push_str(FILLER[(mix(h ^ (i as u64 + 1)) % FILLER.len() as u64) as usize]);
    }
    out.push('.');
    out
}

/// Applies `max_tokens`/`max_completion_tokens` (the smaller) and `stop`.
fn cut(body: &Value, mut content: String) -> (String, &'static str) {
    let mut finish = "stop";
    let limit = ["max_tokens", "max_completion_tokens"]
        .iter()
        .filter_map(|key| body.get(*key).and_then(Value::as_u64))
        .min();
    if let Some(limit) = limit {
        if content.split_whitespace().count() as u64 > limit {
            let end = match limit.checked_sub(1) {
                None => 0,
                Some(last) => {
                    let word = content
                        .split_whitespace()
                        .nth(last as usize)
                        .expect("the content has more words than the limit");
                    word.as_ptr() as usize - content.as_ptr() as usize + word.len()
                }
            };
            content.truncate(end);
            finish = "length";
        }
    }
    let stops: Vec<&str> = match body.get("stop") {
        Some(Value::String(stop)) => vec![stop.as_str()],
        Some(Value::Array(stops)) => stops.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(at) = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| content.find(s))
        .min()
    {
        content.truncate(at);
        finish = "stop";
    }
    (content, finish)
}

fn tool_calls(body: &Value, echo: &str, h: u64) -> Value {
    let name = body
        .pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .unwrap_or("mock_tool");
    json!([{
        "id": format!("call_mock_{:08x}", h as u32),
        "type": "function",
        "function": {"name": name, "arguments": json!({"text": echo}).to_string()},
    }])
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        mix(self.0)
    }
}

pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

/// Hashes a JSON value with object keys in sorted order, so the reply does not
/// depend on how the client ordered its keys.
fn hash_value(h: &mut Fnv, value: &Value) {
    match value {
        Value::Null => h.write(b"n"),
        Value::Bool(b) => h.write(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.write(b"#");
            h.write(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.write(b"\"");
            h.write(s.as_bytes());
            h.write(b"\"");
        }
        Value::Array(items) => {
            h.write(b"[");
            items.iter().for_each(|item| hash_value(h, item));
            h.write(b"]");
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            h.write(b"{");
            for key in keys {
                h.write(key.as_bytes());
                h.write(b":");
                hash_value(h, &map[key]);
            }
            h.write(b"}");
        }
    }
}

/// The splitmix64 finalizer: spreads every input bit over the output.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
