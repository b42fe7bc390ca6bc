//! Error replies in the shapes real providers send them.
//!
//! Each body is copied from what OpenAI, OpenRouter, the AI/ML API, vLLM or a
//! load balancer actually answer, so the client's lenient error parsing is
//! tested against the real variety rather than one tidy format.

use bytes::Bytes;
use hyper::Response;
use serde_json::json;

use super::body::{self, MockBody, JSON};
use super::directives::Fault;

const RATE_LIMIT: &str = r#"{"error":{"message":"Rate limit reached for requests","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#;
const QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","code":"insufficient_quota"}}"#;
const INVALID_KEY: &str = r#"{"error":{"message":"Invalid API key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
const NO_CREDITS: &str = r#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits"}}"#;
const NO_MODEL: &str = r#"{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}"#;
const UNPROCESSABLE: &str = r#"{"object":"error","message":"This model's maximum context length is 8192 tokens. However, you requested 9000 tokens. Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":422}"#;
const HTML_503: &str = "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>\n";

/// The reply for an error fault. Faults that are not a plain error reply
/// (reset, hang, malformed, empty, cut, sse-error, echo-*) are the handler's; should
/// one arrive here it gets a 500 rather than a panic.
pub(crate) fn error_reply(
    fault: Fault,
    request_hash: u64,
    retry_after_ms: Option<u64>,
) -> Response<MockBody> {
    match fault {
        Fault::RateLimit => rate_limited(retry_after_ms),
        Fault::Quota => body::reply(429, JSON, QUOTA),
        Fault::Server500 => server_error(request_hash),
        Fault::BadGateway => body::reply(502, "text/plain", "Bad Gateway"),
        Fault::GatewayTimeout => body::reply(504, "text/plain", "Gateway Timeout"),
        Fault::Unavailable503Html => body::reply(503, "text/html", HTML_503),
        Fault::BadRequest400 => aiml_error(400, "Invalid payload provided", request_hash, true),
        Fault::Unprocessable422 => body::reply(422, JSON, UNPROCESSABLE),
        Fault::Unauthorized401 => unauthorized(),
        Fault::PaymentRequired402 => body::reply(402, JSON, NO_CREDITS),
        Fault::Forbidden403 => aiml_error(
            403,
            "You have insufficient credits to make this request. Top up your balance at https://aimlapi.com/app/billing",
            request_hash,
            false,
        ),
        Fault::NotFound404 => body::reply(404, JSON, NO_MODEL),
        Fault::Reset
        | Fault::Hang
        | Fault::Malformed
        | Fault::Empty
        | Fault::Cut
        | Fault::SseError
        | Fault::Echo401
        | Fault::Echo502
        | Fault::Echo200
        | Fault::EchoSse => server_error(request_hash),
    }
}

/// A 429 `rate_limit_error` with `Retry-After: 1`, or `retry-after-ms` when given.
pub(crate) fn rate_limited(retry_after_ms: Option<u64>) -> Response<MockBody> {
    let mut response = body::reply(429, JSON, RATE_LIMIT);
    match retry_after_ms {
        Some(ms) => body::set_header(&mut response, "retry-after-ms", ms.to_string()),
        None => body::set_header(&mut response, "retry-after", "1".to_string()),
    }
    response
}

/// The enforced window limit's 429: whole seconds and exact milliseconds until the window ends.
pub(crate) fn window_limited(retry_after_ms: u64) -> Response<MockBody> {
    let mut response = body::reply(429, JSON, RATE_LIMIT);
    let secs = retry_after_ms.div_ceil(1000).max(1);
    body::set_header(&mut response, "retry-after", secs.to_string());
    body::set_header(
        &mut response,
        "retry-after-ms",
        retry_after_ms.max(1).to_string(),
    );
    response
}

/// A 500 in the AI/ML API's shape.
pub(crate) fn server_error(request_hash: u64) -> Response<MockBody> {
    aiml_error(500, "Internal server error", request_hash, false)
}

pub(crate) fn unauthorized() -> Response<MockBody> {
    body::reply(401, JSON, INVALID_KEY)
}

/// `{"error": {...}}` with `type: invalid_request_error`, for requests the mock cannot use.
pub(crate) fn invalid_request(status: u16, message: &str) -> Response<MockBody> {
    let body =
        json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
    body::reply(status, JSON, body.to_string())
}

/// A 200 whose body is an error object, as OpenRouter sends when the upstream
/// fails after accepting the request (the non-streaming `sse-error`).
pub(crate) fn error_in_ok_body() -> Response<MockBody> {
    body::reply(
        200,
        JSON,
        r#"{"error":{"message":"Upstream provider error","type":"server_error","code":502}}"#,
    )
}

/// A 200 `application/json` reply with the first half of a JSON body.
pub(crate) fn malformed(full: Bytes) -> Response<MockBody> {
    body::reply(200, JSON, full.slice(..full.len() / 2))
}

/// `{"message","path","requestId","statusCode"}`; the AI/ML API sends 400's statusCode as a string.
fn aiml_error(
    status: u16,
    message: &str,
    request_hash: u64,
    code_as_string: bool,
) -> Response<MockBody> {
    let code = if code_as_string {
        json!(status.to_string())
    } else {
        json!(status)
    };
    let body = json!({
        "message": message,
        "path": "/v1/chat/completions",
        "requestId": request_id(request_hash),
        "statusCode": code,
    });
    body::reply(status, JSON, body.to_string())
}

/// A UUID-shaped id derived from the request, so it is stable across runs.
fn request_id(hash: u64) -> String {
    let more = super::reply::mix(hash);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xfff,
        more >> 52,
        more & 0xffff_ffff_ffff
    )
}
