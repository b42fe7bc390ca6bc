//! `[output] batch_output`: the output again, in the OpenAI Batch API's output
//! format, so results load with code written for a provider's batch API.
//!
//! The JSONL output stays the one source of truth: the batch file is made
//! from it, whole, at the end of every run (one line per key of the job, its
//! latest, in output order) and replaces the old one atomically (a temp file
//! beside it, then a rename, which replaces a symlink at that path rather
//! than writing through it). A crash between the two leaves the old batch
//! file, and the next run makes it again from the output, so the two always
//! agree once a run has ended.
//!
//! A line, as OpenAI documents it:
//! `{"id":"batch_req_…","custom_id":…,"response":{"status_code":200,
//! "request_id":…,"body":{chat completion}},"error":null}`; a request the
//! server answered with an HTTP error keeps that status and an error body;
//! one with no HTTP answer (timeout, connection, a reply that could not be
//! used) has `"response": null` and `"error": {"code", "message"}`.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::lines::{Lines, Torn};
use crate::keys::{KeyId, KeyMap};

/// What names a request in the batch file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomId {
    /// The row id: a job with one parameter set (a batch input's `custom_id` comes back as it was).
    Id,
    /// The key `<id>/<param set>`: with several sets, an id alone is not unique.
    Key,
}

/// Writes the batch output of `output` to `dest`; `keep(key)`: whether a key
/// is one of the job's. Returns how many lines it wrote.
pub fn write_batch_output(
    output: &Path,
    dest: &Path,
    custom_id: CustomId,
    keep: impl Fn(&str) -> bool,
) -> std::io::Result<u64> {
    // First pass: the latest line of each key (the output is compacted to one
    // line per key after a clean run, but not after a failed write).
    let mut latest: KeyMap<u64> = KeyMap::default();
    each_record(output, |number, record| {
        if let Some(key) = record
            .get("key")
            .and_then(Value::as_str)
            .filter(|k| keep(k))
        {
            latest.insert(KeyId::of(key), number);
        }
    })?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let temp = super::temp_beside(dest)?;
    let mut out = std::io::BufWriter::new(temp);
    let mut written = 0u64;
    let mut failed = None;
    each_record(output, |number, record| {
        let Some(key) = record.get("key").and_then(Value::as_str) else {
            return;
        };
        if failed.is_some() || latest.get(&KeyId::of(key)) != Some(&number) {
            return;
        }
        let line = batch_line(&record, custom_id);
        let result = serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match result {
            Ok(()) => written += 1,
            Err(e) => failed = Some(e),
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let temp = out.into_inner().map_err(|e| e.into_error())?;
    temp.as_file().sync_all()?;
    temp.persist(dest).map_err(|e| e.error)?;
    Ok(written)
}

/// Calls `each(line number, record)` for every record line of `output`
/// (blank lines, a torn last line and lines that do not parse are passed over:
/// the resume scan has judged them already).
fn each_record(
    output: &Path,
    mut each: impl FnMut(u64, Map<String, Value>),
) -> std::io::Result<()> {
    let Some(mut lines) = Lines::open(output, Torn::HoldBack)? else {
        return Ok(());
    };
    while let Some(line) = lines.next_line()? {
        if line.long || line.is_blank() {
            continue;
        }
        if let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(line.text) {
            each(line.number, record);
        }
    }
    Ok(())
}

/// One output record as a Batch API output line.
pub fn batch_line(r: &Map<String, Value>, custom_id: CustomId) -> Value {
    let text = |field: &str| r.get(field).and_then(Value::as_str).unwrap_or_default();
    let key = text("key");
    let custom = match custom_id {
        CustomId::Id => text("id"),
        CustomId::Key => key,
    };
    // Stable for one answer, different for the next answer of the same key.
    let mut sha = Sha256::new();
    sha.update(key.as_bytes());
    sha.update([0]);
    sha.update(text("response_id").as_bytes());
    sha.update([0]);
    sha.update(text("finished_at").as_bytes());
    let digest = sha.finalize();
    let id: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let request_id = r.get("client_request_id").cloned().unwrap_or(Value::Null);
    let (response, error) = match (text("status"), r.get("error")) {
        ("ok", _) => {
            let body = completion(r);
            (
                json!({"status_code": 200, "request_id": request_id, "body": body}),
                Value::Null,
            )
        }
        (_, Some(Value::Object(e))) => {
            let kind = e.get("kind").cloned().unwrap_or(Value::Null);
            let message = e.get("message").cloned().unwrap_or(Value::Null);
            match e
                .get("status")
                .and_then(Value::as_u64)
                .filter(|s| *s >= 400)
            {
                Some(status) => (
                    json!({"status_code": status, "request_id": request_id,
                        "body": {"error": {"message": message, "type": kind, "param": null, "code": null}}}),
                    Value::Null,
                ),
                None => (Value::Null, json!({"code": kind, "message": message})),
            }
        }
        _ => (
            Value::Null,
            json!({"code": "bad_response", "message": "the output line has no error"}),
        ),
    };
    json!({
        "id": format!("batch_req_{id}"),
        "custom_id": custom,
        "response": response,
        "error": error,
    })
}

/// The chat completion object of an `ok` record.
fn completion(r: &Map<String, Value>) -> Value {
    let field = |name: &str| r.get(name).cloned().unwrap_or(Value::Null);
    let model = r
        .get("response_model")
        .filter(|m| m.is_string())
        .cloned()
        .unwrap_or_else(|| field("model"));
    let created = r
        .get("finished_at")
        .and_then(Value::as_str)
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map_or(Value::Null, |at| at.timestamp().into());
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), field("content"));
    if let Some(calls) = r.get("tool_calls").filter(|c| !c.is_null()) {
        message.insert("tool_calls".into(), calls.clone());
    }
    message.insert("refusal".into(), field("refusal"));
    json!({
        "id": field("response_id"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": field("finish_reason"),
        }],
        "usage": usage(r.get("usage")),
    })
}

/// The record's usage in OpenAI's shape: cached and reasoning tokens back under their details.
fn usage(usage: Option<&Value>) -> Value {
    let Some(Value::Object(u)) = usage else {
        return Value::Null;
    };
    let mut out = Map::new();
    for name in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        out.insert(name.into(), u.get(name).cloned().unwrap_or(Value::Null));
    }
    if let Some(cached) = u.get("cached_tokens").filter(|v| !v.is_null()) {
        out.insert(
            "prompt_tokens_details".into(),
            json!({"cached_tokens": cached}),
        );
    }
    if let Some(reasoning) = u.get("reasoning_tokens").filter(|v| !v.is_null()) {
        out.insert(
            "completion_tokens_details".into(),
            json!({"reasoning_tokens": reasoning}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn an_ok_record_is_a_chat_completion_with_its_usage_details() {
        let r = record(
            json!({"key": "request-1/default", "id": "request-1", "status": "ok",
            "model": "m", "response_model": "m-2024", "content": "Hello.", "finish_reason": "stop",
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
                "cached_tokens": 4, "reasoning_tokens": 2},
            "client_request_id": "t:request-1:default:1", "response_id": "chatcmpl-1",
            "finished_at": "2026-11-24T10:00:00.935Z", "error": null}),
        );
        let line = batch_line(&r, CustomId::Id);
        assert_eq!(line["custom_id"], "request-1");
        assert!(line["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("batch_req_"));
        assert_eq!(line["error"], Value::Null);
        let response = &line["response"];
        assert_eq!(response["status_code"], 200);
        assert_eq!(response["request_id"], "t:request-1:default:1");
        let body = &response["body"];
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "m-2024");
        assert_eq!(body["created"], 1_795_514_400);
        assert_eq!(body["choices"][0]["message"]["content"], "Hello.");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["choices"][0]["logprobs"], Value::Null);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            2
        );
        assert_eq!(
            batch_line(&r, CustomId::Key)["custom_id"],
            "request-1/default"
        );
    }

    #[test]
    fn an_http_error_keeps_its_status_and_no_answer_is_a_null_response() {
        let http = record(json!({"key": "a/x", "id": "a", "status": "error",
            "error": {"kind": "invalid_request", "status": 400, "message": "bad model"}}));
        let line = batch_line(&http, CustomId::Id);
        assert_eq!(line["response"]["status_code"], 400);
        assert_eq!(line["response"]["body"]["error"]["message"], "bad model");
        assert_eq!(line["response"]["body"]["error"]["type"], "invalid_request");
        assert_eq!(line["error"], Value::Null);
        let none = record(json!({"key": "a/x", "id": "a", "status": "error",
            "error": {"kind": "timeout", "status": null, "message": "no answer in 5 s"}}));
        let line = batch_line(&none, CustomId::Id);
        assert_eq!(line["response"], Value::Null);
        assert_eq!(
            line["error"],
            json!({"code": "timeout", "message": "no answer in 5 s"})
        );
    }

    #[test]
    fn the_file_has_the_latest_line_of_each_kept_key_in_output_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        let line = |key: &str, status: &str| {
            let error = match status {
                "ok" => Value::Null,
                _ => json!({"kind": "server", "status": 500, "message": "oops"}),
            };
            format!(
                "{}\n",
                json!({"key": key, "id": key, "status": status, "error": error})
            )
        };
        let text = [
            line("a", "error"),
            line("b", "ok"),
            line("gone", "ok"),
            line("a", "ok"),
        ]
        .concat();
        std::fs::write(&output, format!("{text}{{\"key\":\"torn")).expect("write");
        let dest = dir.path().join("sub/batch.jsonl");
        let n = write_batch_output(&output, &dest, CustomId::Id, |k| k != "gone").expect("written");
        assert_eq!(n, 2);
        let text = std::fs::read_to_string(&dest).expect("read");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let ids: Vec<_> = lines.iter().map(|l| l["custom_id"].clone()).collect();
        assert_eq!(ids, [json!("b"), json!("a")]);
        assert_eq!(lines[1]["response"]["status_code"], 200);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_path_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        std::fs::write(&output, "{\"key\":\"a\",\"id\":\"a\",\"status\":\"ok\"}\n").expect("write");
        let precious = dir.path().join("precious.txt");
        std::fs::write(&precious, "keep me").expect("write");
        let dest = dir.path().join("batch.jsonl");
        std::os::unix::fs::symlink(&precious, &dest).expect("symlink");
        write_batch_output(&output, &dest, CustomId::Id, |_| true).expect("written");
        assert_eq!(std::fs::read_to_string(&precious).expect("read"), "keep me");
        assert!(std::fs::read_to_string(&dest)
            .expect("read")
            .contains("batch_req_"));
    }
}
