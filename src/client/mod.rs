//! The HTTP client: one attempt of one request, streaming or not.
//!
//! Knows nothing of retries, progress or files: `send` turns a [`Request`]
//! into a [`Reply`] or a classified [`Failure`] that the scheduler decides on.
//! Its settings are its own [`Endpoint`], which the run builds from the job.

use std::time::Duration;

mod body;
mod classify;
mod error_body;
mod http;
mod lenient;
mod rate_headers;
mod raw_json;
mod redact;
mod reply;
pub(crate) mod retry_after;
mod sse;
mod stream;
mod transport;
mod wire;

pub use classify::status_kind;
pub(crate) use error_body::printable;
pub use http::Client;
pub use rate_headers::{RateHeaders, RateWindow};
pub use raw_json::RawJson;
pub use redact::Redactor;
pub use reply::parse_reply;
pub use sse::{SseEvent, SseParser};
pub use wire::is_amount;

use serde::{Deserialize, Serialize};

/// The error kinds of the output record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    RateLimited,
    Server,
    Timeout,
    Connection,
    InvalidRequest,
    Auth,
    NotFound,
    BadResponse,
    BadOutput,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not_found",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::BadOutput => "bad_output",
        }
    }
}

/// Token usage as the provider reported it; never recounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

/// A successful attempt (any 2xx with a parseable completion).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// The reply's text; None only when the reply is nothing but tool calls.
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The provider's own figure in USD (AI/ML API header/body, OpenRouter usage.cost).
    pub provider_cost_usd: Option<f64>,
    pub response_id: Option<String>,
    /// OpenRouter's `provider`.
    pub provider: Option<String>,
    /// The model the server named, when it differs from the one requested.
    pub response_model: Option<String>,
    /// As the server sent them, compacted: passed through, never read.
    pub tool_calls: Option<RawJson>,
    /// The model's refusal text (OpenAI `message.refusal`), when it gave one.
    pub refusal: Option<String>,
    /// The content parsed as JSON, when JSON was asked for (set by the
    /// scheduler's check of the reply, never by the client), as compact
    /// text: a tree would cost about 20 times a reply's size.
    pub json: Option<RawJson>,
    /// Send to last byte.
    pub latency_ms: f64,
    /// First content byte; streaming only.
    pub ttft_ms: Option<f64>,
    /// The endpoint's `x-ratelimit-*` figures, for the scheduler's pacing.
    pub rate_limits: Option<RateHeaders>,
}

/// A failed attempt, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    /// Human-readable, from the error body when there is one; never contains the key.
    pub message: String,
    /// From `retry-after-ms` or `Retry-After` (seconds or HTTP date).
    pub retry_after: Option<Duration>,
    /// From `x-should-retry: true|false`.
    pub should_retry: Option<bool>,
    /// The error's `type` or `code` when given (e.g. `insufficient_quota`).
    pub error_code: Option<String>,
    /// The request was fully sent and no answer came (timeout, reset): the provider may have billed it.
    pub uncertain: bool,
    /// The account or key is refused (bad key, out of credits or quota): no
    /// further request can succeed until the user acts.
    pub refused: bool,
    /// The endpoint's `x-ratelimit-*` figures, for the scheduler's pacing
    /// (boxed: failures travel in `Result`s, and most carry none).
    pub rate_limits: Option<Box<RateHeaders>>,
}

impl Failure {
    pub fn new(kind: ErrorKind, status: Option<u16>, message: impl Into<String>) -> Self {
        Failure {
            kind,
            status,
            message: message.into(),
            retry_after: None,
            should_retry: None,
            error_code: None,
            uncertain: false,
            refused: false,
            rate_limits: None,
        }
    }
}

/// Where and how to send: the client's own settings, built by the run from the
/// job's `[endpoint]` (so the client knows nothing of job files).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    /// The variable holding the key, named in the hint of a 401 ("" = none).
    pub api_key_env: String,
    /// Connect and idle-read timeout (`timeout_secs`).
    pub timeout: Duration,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// The most one reply (or one SSE line) may hold (`max_reply_bytes`).
    pub max_reply_bytes: u64,
    /// The hard deadline of one attempt, streams included (`max_attempt_secs`).
    pub max_attempt: Duration,
    /// `http`: "auto", "1.1" or "2".
    pub http: HttpVersion,
}

/// `[endpoint] http`: the HTTP the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/2 when an https:// server offers it (ALPN), else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only, one connection per request in flight.
    Http1,
    /// HTTP/2 only: by prior knowledge on http:// (h2c), by ALPN on https://.
    Http2,
}

/// Building the client failed (bad header, bad URL): a job error, reported before anything is sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("invalid endpoint URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Build(String),
}
