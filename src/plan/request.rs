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

/// How [`Request::prompt_token_bound`] counts, in words (validate prints it).
pub const PROMPT_BOUND_METHOD: &str =
    "at most 1 token per UTF-8 byte of the messages + 8 per message";

/// Bytes of text per token in a typical count: about what the tokenizers of
/// current models (Gemma's, GPT's, Llama's) make of English. Text in other
/// scripts yields more tokens per byte, code fewer; for a bound, see above.
pub const BYTES_PER_TOKEN_ESTIMATE: u64 = 4;

/// Tokens per message for role markers in a typical count.
pub const TOKENS_PER_MESSAGE_ESTIMATE: u64 = 4;

/// How [`Request::prompt_token_estimate`] counts, in words (validate prints it).
pub const PROMPT_ESTIMATE_METHOD: &str =
    "UTF-8 bytes of the messages / 4, rounded up, + 4 per message, an image at [pricing] image_tokens";

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
    pub params: Arc<Map<String, Value>>,
    /// The row as read.
    pub input: Arc<Map<String, Value>>,
    /// `<job>:<id>:<set>` in the characters the AI/ML API keeps; the attempt number is appended per attempt.
    pub client_request_id_prefix: String,
    /// UTF-8 bytes of all message texts, plus what image parts count for.
    pub prompt_bytes: u64,
    /// Of `prompt_bytes`, what the image parts count for (`[pricing] image_tokens` each).
    pub image_tokens: u64,
    pub message_count: u64,
    /// The larger of `max_tokens` and `max_completion_tokens`, when either is set.
    pub max_output_tokens: Option<u64>,
    /// 1-based line of the input file where the row starts.
    pub line: u64,
    /// What the reply must be when JSON is asked for (`[output] json`, `response_format`).
    pub output: Option<Arc<crate::plan::structured::OutputCheck>>,
}

impl Request {
    /// The `X-Client-Request-Id` of one attempt (1-based).
    pub fn client_request_id(&self, attempt: u32) -> String {
        let mut id = String::with_capacity(self.client_request_id_prefix.len() + 4);
        id.push_str(&self.client_request_id_prefix);
        id.push(':');
        id.push_str(itoa::Buffer::new().format(attempt));
        id
    }

    /// An upper bound of the prompt's tokens: no tokenizer yields more tokens than bytes.
    pub fn prompt_token_bound(&self) -> u64 {
        self.prompt_bytes
            .saturating_add(TOKENS_PER_MESSAGE_ALLOWANCE.saturating_mul(self.message_count))
    }

    /// A typical count of the prompt's tokens, for an expected cost: the same
    /// bytes as [`Self::prompt_token_bound`], text at
    /// [`BYTES_PER_TOKEN_ESTIMATE`] bytes a token. No tokenizer to download,
    /// and never above the bound.
    pub fn prompt_token_estimate(&self) -> u64 {
        let text = self.prompt_bytes.saturating_sub(self.image_tokens);
        text.div_ceil(BYTES_PER_TOKEN_ESTIMATE)
            .saturating_add(self.image_tokens)
            .saturating_add(TOKENS_PER_MESSAGE_ESTIMATE.saturating_mul(self.message_count))
    }

    /// The most tokens the request can use: its prompt bound plus its output
    /// cap (what a tokens-per-minute limit reserves for it).
    pub fn token_bound(&self) -> u64 {
        self.prompt_token_bound()
            .saturating_add(self.max_output_tokens.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt_bytes: u64, image_tokens: u64, message_count: u64) -> Request {
        Request {
            key: "1/default".into(),
            id: "1".into(),
            param_set: Arc::from("default"),
            model: "m".into(),
            body: Bytes::new(),
            stream: false,
            sha256: String::new(),
            params: Arc::default(),
            input: Arc::default(),
            client_request_id_prefix: "j:1:default".into(),
            prompt_bytes,
            image_tokens,
            message_count,
            max_output_tokens: Some(100),
            line: 1,
            output: None,
        }
    }

    #[test]
    fn the_estimate_reads_text_at_four_bytes_a_token_and_images_at_their_bound() {
        // 9 bytes of text: 3 tokens; 2 messages: 8 more.
        assert_eq!(request(9, 0, 2).prompt_token_estimate(), 3 + 8);
        assert_eq!(request(9, 0, 2).prompt_token_bound(), 9 + 16);
        // An image is not text: its bound stays whole.
        assert_eq!(
            request(9 + 1024, 1024, 1).prompt_token_estimate(),
            3 + 1024 + 4
        );
        assert_eq!(request(0, 0, 1).prompt_token_estimate(), 4);
    }

    #[test]
    fn the_estimate_never_passes_the_bound() {
        for (bytes, images, messages) in [(0, 0, 0), (1, 0, 1), (5000, 0, 9), (2048, 2048, 1)] {
            let r = request(bytes, images, messages);
            assert!(
                r.prompt_token_estimate() <= r.prompt_token_bound(),
                "{bytes} {images} {messages}"
            );
        }
        let huge = request(u64::MAX, 0, u64::MAX);
        assert!(huge.prompt_token_estimate() <= huge.prompt_token_bound());
    }
}
