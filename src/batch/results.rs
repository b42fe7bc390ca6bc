//! Lines of a batch: the request line sent for a request, and a line of an
//! output or error file read back as that request's reply or failure.
//!
//! The shapes are OpenAI's Batch API's (the same the `[output] batch_output`
//! writer and the openai-batch reader use): request lines
//! `{"custom_id","method","url","body"}`, result lines
//! `{"id","custom_id","response":{"status_code","request_id","body"},"error"}`.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::client::{parse_reply, status_kind, ErrorKind, Failure, Reply};
use crate::plan::Request;

/// The request line of `req`: its body as chat mode sends it, streaming off
/// (a batch answers whole), `custom_id` its key.
pub fn request_line(req: &Request) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if let Some(map) = body.as_object_mut() {
        map.remove("stream");
        map.remove("stream_options");
    }
    let mut line = serde_json::to_vec(&json!({
        "custom_id": req.key,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// The custom_id of a result line, if it has one.
pub fn custom_id(line: &Value) -> Option<&str> {
    line["custom_id"].as_str()
}

/// A result line as the reply or failure of its request (`model`: the one requested).
pub fn outcome(line: &Value, model: &str) -> Result<Reply, Failure> {
    let response = &line["response"];
    if let Some(status) = response["status_code"].as_u64() {
        let status = u16::try_from(status).unwrap_or(500);
        let body = &response["body"];
        if (200..300).contains(&status) {
            let bytes = serde_json::to_vec(body).unwrap_or_default();
            return parse_reply(&bytes, status, &HeaderMap::new(), model);
        }
        let message = body["error"]["message"]
            .as_str()
            .or(body["message"].as_str())
            .map_or_else(
                || format!("the batch answered HTTP {status}"),
                str::to_owned,
            );
        let mut failure = Failure::new(status_kind(status), Some(status), message);
        failure.error_code = body["error"]["code"].as_str().map(str::to_owned);
        return Err(failure);
    }
    let error = &line["error"];
    let code = error["code"].as_str().unwrap_or_default();
    let message = error["message"].as_str().map_or_else(
        || format!("the batch gave no answer ({code})"),
        str::to_owned,
    );
    Err(Failure::new(kind_of_code(code), None, message))
}

/// An error line without a response, by its code.
fn kind_of_code(code: &str) -> ErrorKind {
    match code {
        "batch_expired" => ErrorKind::Timeout,
        c if c.contains("invalid") || c.contains("missing") || c.contains("too_large") => {
            ErrorKind::InvalidRequest
        }
        _ => ErrorKind::Server,
    }
}

/// The failure of a request its batch settled without answering.
pub fn unanswered(status: &str, batch_id: &str) -> Failure {
    let kind = match status {
        "expired" => ErrorKind::Timeout,
        _ => ErrorKind::Server,
    };
    let message = format!(
        "batch {batch_id} ended {status} without a result for this request; a rerun sends it again"
    );
    Failure::new(kind, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_become_replies_and_failures() {
        let ok: Value = serde_json::from_str(r#"{"id":"r1","custom_id":"a/default","response":{"status_code":200,"request_id":"q","body":{"id":"chatcmpl-1","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}},"error":null}"#).expect("json");
        let reply = outcome(&ok, "m").expect("ok");
        assert_eq!(reply.content.as_deref(), Some("hi"));
        assert_eq!(reply.usage.map(|u| u.total_tokens), Some(4));
        assert_eq!(custom_id(&ok), Some("a/default"));

        let failed: Value = serde_json::from_str(r#"{"id":"r2","custom_id":"b","response":{"status_code":500,"body":{"error":{"message":"boom"}}},"error":null}"#).expect("json");
        let failure = outcome(&failed, "m").expect_err("failed");
        assert_eq!(
            (failure.kind, failure.status),
            (ErrorKind::Server, Some(500))
        );
        assert_eq!(failure.message, "boom");

        let expired: Value = serde_json::from_str(r#"{"id":"r3","custom_id":"c","response":null,"error":{"code":"batch_expired","message":"late"}}"#).expect("json");
        assert_eq!(
            outcome(&expired, "m").expect_err("expired").kind,
            ErrorKind::Timeout
        );
        let bad: Value = serde_json::from_str(
            r#"{"custom_id":"d","response":{"status_code":400,"body":{"error":{"message":"no"}}}}"#,
        )
        .expect("json");
        assert_eq!(
            outcome(&bad, "m").expect_err("bad").kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn unanswered_requests_fail_by_their_batch_status() {
        assert_eq!(unanswered("expired", "b").kind, ErrorKind::Timeout);
        assert_eq!(unanswered("cancelled", "b").kind, ErrorKind::Server);
    }
}
