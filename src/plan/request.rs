//! One request as it travels from the planner through the scheduler to the client.
//!
//! Built once per row and parameter set; the body bytes are rebuilt for no
//! attempt, so every retry sends exactly what was hashed.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

/// Allowance of tokens per message for role markers and separators, used in
/// the upper bound of a prompt's tokens (budget and tokens-per-minute limits).
pub const TOKENS_PER_MESSAGE_ALLOWANCE: u64 = 8;

#[derive(Debug, Clone)]
pub struct Request {
    /// `<id>/<param set>`, unique across the job.
    pub key: String,
    pub id: String,
    pub param_set: Arc<str>,
    /// The requested model, after merging.
    pub model: String,
    /// The exact JSON body sent on every attempt (includes `stream`/`stream_options`).
    pub body: Bytes,
    pub stream: bool,
    /// SHA-256 (hex) of the canonical body without `stream` and `stream_options`.
    pub sha256: String,
    /// The chat parameters sent, after merging, without `model` and `messages`.
    pub params: Map<String, Value>,
    /// The row as read.
    pub input: Arc<Map<String, Value>>,
    /// `<job>:<id>:<set>` in the characters the AI/ML API keeps; the attempt number is appended per attempt.
    pub client_request_id_prefix: String,
    /// UTF-8 bytes of all message texts.
    pub prompt_bytes: u64,
    pub message_count: u64,
    /// The larger of `max_tokens` and `max_completion_tokens`, when either is set.
    pub max_output_tokens: Option<u64>,
    /// 1-based line of the input file where the row starts.
    pub line: u64,
}

impl Request {
    /// The `X-Client-Request-Id` of one attempt (1-based).
    pub fn client_request_id(&self, attempt: u32) -> String {
        format!("{}:{}", self.client_request_id_prefix, attempt)
    }

    /// An upper bound of the prompt's tokens: no tokenizer yields more tokens than bytes.
    pub fn prompt_token_bound(&self) -> u64 {
        self.prompt_bytes
            .saturating_add(TOKENS_PER_MESSAGE_ALLOWANCE.saturating_mul(self.message_count))
    }

    /// The most tokens the request can use: its prompt bound plus its output
    /// cap (what a tokens-per-minute limit reserves for it).
    pub fn token_bound(&self) -> u64 {
        self.prompt_token_bound()
            .saturating_add(self.max_output_tokens.unwrap_or(0))
    }
}
