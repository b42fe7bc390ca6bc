//! The mock's Batch API: files uploaded (multipart), batches created over
//! them, their life (validating -> in_progress -> finalizing -> completed
//! over `batch_complete`; expired past `batch_expire`; cancelled on demand),
//! and their output and error files, answered line by line with the same
//! simulated completion as the chat route (`[mock:fail=...]` lines land in
//! the error file).
//!
//! A batch's results are made once, when it settles, and kept as files.
//! Memory is bounded: past [`MAX_FILE_BYTES`] a file, or [`MAX_STORED_BYTES`]
//! or [`MAX_FILES`] in all, an upload is refused (413), as a provider's
//! limits would refuse it. A prompt holding `[mock-batch:late]` is one the
//! batch has not reached when it expires or is cancelled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::body::{self, MockBody, JSON};
use super::completion::{self, ReplyContext};
use super::faults;
use super::handler::ServiceError;
use super::reply::{self, hash_bytes};

/// The most one uploaded file may hold.
pub const MAX_FILE_BYTES: usize = 64 << 20;
/// The most all stored files (uploads and results) may hold together.
pub const MAX_STORED_BYTES: usize = 256 << 20;
/// The most files kept at once.
pub const MAX_FILES: usize = 10_000;
/// The marker of a line a batch has not reached when it ends early.
pub const LATE: &str = "[mock-batch:late]";

/// What the Batch API routes did, for tests.
#[derive(Debug, Default)]
pub struct BatchStats {
    files_uploaded: AtomicU64,
    batches_created: AtomicU64,
    results_downloaded: AtomicU64,
    batches_cancelled: AtomicU64,
    lines_uploaded: AtomicU64,
}

impl BatchStats {
    /// Files accepted by `POST /v1/files`.
    pub fn files_uploaded(&self) -> u64 {
        self.files_uploaded.load(Relaxed)
    }
    /// Batches made by `POST /v1/batches`.
    pub fn batches_created(&self) -> u64 {
        self.batches_created.load(Relaxed)
    }
    /// Output or error files read by `GET /v1/files/{id}/content`.
    pub fn results_downloaded(&self) -> u64 {
        self.results_downloaded.load(Relaxed)
    }
    /// Batches cancelled by `POST /v1/batches/{id}/cancel`.
    pub fn batches_cancelled(&self) -> u64 {
        self.batches_cancelled.load(Relaxed)
    }
    /// Request lines in every uploaded file.
    pub fn lines_uploaded(&self) -> u64 {
        self.lines_uploaded.load(Relaxed)
    }
}

struct Batch {
    id: String,
    input_file_id: String,
    created: Instant,
    created_at: u64,
    metadata: Value,
    /// Set once settled: its final status, output and error file ids, counts.
    settled: Option<Settled>,
}

struct Settled {
    status: &'static str,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    total: u64,
    completed: u64,
    failed: u64,
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, Bytes>,
    stored: usize,
    batches: BTreeMap<String, Batch>,
    serial: u64,
}

/// The Batch API's state of one server.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    complete: Duration,
    expire: Option<Duration>,
    usd_per_million: Option<f64>,
    pub stats: std::sync::Arc<BatchStats>,
}

impl Store {
    pub fn new(complete: Duration, expire: Option<Duration>, usd: Option<f64>) -> Store {
        Store {
            inner: Mutex::default(),
            complete,
            expire,
            usd_per_million: usd,
            stats: std::sync::Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a path is one of the Batch API's.
pub(crate) fn is_batch_path(path: &str) -> bool {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    path.starts_with("/files") || path.starts_with("/batches")
}

/// Routes one Batch API request.
pub(crate) async fn route(
    store: &Store,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ServiceError> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let path = path.strip_prefix("/v1").unwrap_or(&path).to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (&method, parts.as_slice()) {
        (&Method::POST, ["files"]) => {
            let content_type = request
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let Some(bytes) = capped_body(request.into_body()).await? else {
                return Ok(too_large());
            };
            upload(store, &content_type, &bytes)
        }
        (&Method::GET, ["files", id, "content"]) => content(store, id),
        (&Method::POST, ["batches"]) => {
            let Some(bytes) = capped_body(request.into_body()).await? else {
                return Ok(too_large());
            };
            create(store, &bytes)
        }
        (&Method::GET, ["batches"]) => list(store, &query),
        (&Method::GET, ["batches", id]) => {
            let known = store.lock().batches.contains_key(*id);
            match known {
                true => body::reply(200, JSON, batch_json(store, id)),
                false => faults::invalid_request(404, &format!("No batch found with id '{id}'.")),
            }
        }
        (&Method::POST, ["batches", id, "cancel"]) => cancel(store, id),
        _ => faults::invalid_request(404, &format!("Unknown request URL: {method} {path}.")),
    })
}

/// The body, or None past [`MAX_FILE_BYTES`] (read no further).
async fn capped_body(mut body: Incoming) -> Result<Option<Bytes>, ServiceError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if bytes.len() + data.len() > MAX_FILE_BYTES + 64 * 1024 {
                return Ok(None);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Some(bytes.into()))
}

fn too_large() -> Response<MockBody> {
    faults::invalid_request(413, "The file is larger than this server accepts.")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn upload(store: &Store, content_type: &str, bytes: &[u8]) -> Response<MockBody> {
    let Some(form) = multipart(content_type, bytes) else {
        return faults::invalid_request(
            400,
            "expected a multipart/form-data body with purpose and file",
        );
    };
    if form.purpose.as_deref() != Some("batch") {
        return faults::invalid_request(400, "purpose must be 'batch'");
    }
    let Some(file) = form.file else {
        return faults::invalid_request(400, "the form has no file");
    };
    let lines = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let mut inner = store.lock();
    if file.len() > MAX_FILE_BYTES
        || inner.stored + file.len() > MAX_STORED_BYTES
        || inner.files.len() >= MAX_FILES
    {
        return too_large();
    }
    inner.serial += 1;
    let id = format!("file-mock-{}", inner.serial);
    inner.stored += file.len();
    let size = file.len();
    inner.files.insert(id.clone(), Bytes::copy_from_slice(file));
    store.stats.files_uploaded.fetch_add(1, Relaxed);
    store.stats.lines_uploaded.fetch_add(lines as u64, Relaxed);
    let reply = json!({"id": id, "object": "file", "bytes": size, "created_at": now_secs(),
        "filename": form.filename.unwrap_or_default(), "purpose": "batch"});
    body::reply(200, JSON, reply.to_string())
}

fn content(store: &Store, id: &str) -> Response<MockBody> {
    match store.lock().files.get(id) {
        Some(file) => {
            store.stats.results_downloaded.fetch_add(1, Relaxed);
            body::reply(200, "application/jsonl", file.clone())
        }
        None => faults::invalid_request(404, &format!("No such File object: {id}")),
    }
}

fn create(store: &Store, bytes: &[u8]) -> Response<MockBody> {
    let Ok(asked) = serde_json::from_slice::<Value>(bytes) else {
        return faults::invalid_request(400, "the body is not JSON");
    };
    let input = asked["input_file_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if asked["endpoint"] != "/v1/chat/completions" || asked["completion_window"] != "24h" {
        return faults::invalid_request(
            400,
            "endpoint must be /v1/chat/completions and completion_window 24h",
        );
    }
    let mut inner = store.lock();
    if !inner.files.contains_key(&input) {
        return faults::invalid_request(400, &format!("No such File object: {input}"));
    }
    inner.serial += 1;
    let id = format!("batch_mock_{}", inner.serial);
    let batch = Batch {
        id: id.clone(),
        input_file_id: input,
        created: Instant::now(),
        created_at: now_secs(),
        metadata: asked.get("metadata").cloned().unwrap_or(Value::Null),
        settled: None,
    };
    inner.batches.insert(id.clone(), batch);
    drop(inner);
    store.stats.batches_created.fetch_add(1, Relaxed);
    body::reply(200, JSON, batch_json(store, &id))
}

fn list(store: &Store, query: &str) -> Response<MockBody> {
    let limit = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let ids: Vec<String> = store
        .lock()
        .batches
        .keys()
        .rev()
        .take(limit)
        .cloned()
        .collect();
    let data: Vec<Value> = ids
        .iter()
        .filter_map(|id| serde_json::from_str(&batch_json(store, id)).ok())
        .collect();
    let reply = json!({"object": "list", "data": data, "has_more": false});
    body::reply(200, JSON, reply.to_string())
}

fn cancel(store: &Store, id: &str) -> Response<MockBody> {
    let mut inner = store.lock();
    let Some(batch) = inner.batches.get(id) else {
        return faults::invalid_request(404, &format!("No batch found with id '{id}'."));
    };
    if batch.settled.is_none() {
        let done = batch.created.elapsed().as_secs_f64() / store.complete.as_secs_f64().max(1e-3);
        settle(store, &mut inner, id, "cancelled", done.min(1.0));
        store.stats.batches_cancelled.fetch_add(1, Relaxed);
    }
    drop(inner);
    body::reply(200, JSON, batch_json(store, id))
}

/// The batch object, settling the batch first when its time has come.
fn batch_json(store: &Store, id: &str) -> String {
    let mut inner = store.lock();
    let Some(batch) = inner.batches.get(id) else {
        return "{}".into();
    };
    let elapsed = batch.created.elapsed();
    let expired = store
        .expire
        .is_some_and(|e| elapsed >= e && elapsed < store.complete);
    if batch.settled.is_none() && expired {
        settle(store, &mut inner, id, "expired", 1.0);
    } else if batch.settled.is_none() && elapsed >= store.complete {
        settle(store, &mut inner, id, "completed", 1.0);
    }
    let Some(batch) = inner.batches.get(id) else {
        return "{}".into();
    };
    let phase = elapsed.as_secs_f64() / store.complete.as_secs_f64().max(1e-3);
    let (status, output, error, counts) = match &batch.settled {
        Some(s) => (
            s.status,
            s.output_file_id.clone(),
            s.error_file_id.clone(),
            (s.total, s.completed, s.failed),
        ),
        None if phase < 0.2 => ("validating", None, None, (0, 0, 0)),
        None if phase < 0.8 => ("in_progress", None, None, (0, 0, 0)),
        None => ("finalizing", None, None, (0, 0, 0)),
    };
    json!({"id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions",
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
        "output_file_id": output, "error_file_id": error, "created_at": batch.created_at,
        "metadata": batch.metadata,
        "request_counts": {"total": counts.0, "completed": counts.1, "failed": counts.2}})
    .to_string()
}

/// Ends a batch: each line answered (the first `reached` fraction, and never
/// a [`LATE`] one, unless the batch completed) into its output or error file.
fn settle(store: &Store, inner: &mut Inner, id: &str, status: &'static str, reached: f64) {
    let Some(input_id) = inner.batches.get(id).map(|b| b.input_file_id.clone()) else {
        return;
    };
    let input = inner.files.get(&input_id).cloned().unwrap_or_default();
    let lines: Vec<&[u8]> = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let total = lines.len();
    let reached_n = ((total as f64) * reached).floor() as usize;
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    let (mut completed, mut failed) = (0u64, 0u64);
    for (i, line) in lines.iter().enumerate() {
        let value: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let custom_id = value["custom_id"].clone();
        inner.serial += 1;
        let line_id = format!("batch_req_mock_{}", inner.serial);
        let late = String::from_utf8_lossy(line).contains(LATE);
        let finished = status == "completed" || (i < reached_n && !late);
        if !finished {
            let code = if status == "expired" {
                "batch_expired"
            } else {
                "batch_cancelled"
            };
            let message =
                format!("This request could not be executed before the batch was {status}.");
            errors.push(
                json!({"id": line_id, "custom_id": custom_id, "response": null,
                "error": {"code": code, "message": message}}),
            );
            failed += 1;
            continue;
        }
        let (status_code, body) = answer(store, &value["body"], inner.serial);
        let line = json!({"id": line_id, "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": format!("req_mock_{}", inner.serial), "body": body},
            "error": null});
        if status_code == 200 {
            completed += 1;
            output.push(line);
        } else {
            failed += 1;
            errors.push(line);
        }
    }
    let mut keep = |lines: Vec<Value>| -> Option<String> {
        if lines.is_empty() {
            return None;
        }
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        inner.serial += 1;
        let id = format!("file-mock-{}", inner.serial);
        inner.stored += text.len();
        inner.files.insert(id.clone(), Bytes::from(text));
        Some(id)
    };
    let output_file_id = keep(output);
    let error_file_id = keep(errors);
    if let Some(batch) = inner.batches.get_mut(id) {
        batch.settled = Some(Settled {
            status,
            output_file_id,
            error_file_id,
            total: total as u64,
            completed,
            failed,
        });
    }
}

/// One request line's answer, as the chat route would give its first attempt.
fn answer(store: &Store, body: &Value, serial: u64) -> (u16, Value) {
    let mut plan = match reply::plan(body) {
        Ok(plan) => plan,
        Err(bad) => {
            let error =
                json!({"error": {"message": bad.to_string(), "type": "invalid_request_error"}});
            return (400, error);
        }
    };
    let hash = hash_bytes(body.to_string().as_bytes());
    if let Some(fault) = plan.directives.fails.first().copied() {
        let status = faults::error_reply(fault, hash, None).status().as_u16();
        if status >= 400 {
            let kind = if status >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            };
            let message = format!("mock fault: the request failed with {status}");
            return (status, json!({"error": {"message": message, "type": kind}}));
        }
    }
    plan.reply_for_attempt(1);
    let ctx = ReplyContext {
        id: format!("chatcmpl-mock-batch-{serial}"),
        created: now_secs(),
        usd_per_million: store.usd_per_million,
        provider: None,
        refusal: None,
    };
    let bytes = completion::json_body(&plan, &ctx, false);
    (200, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The fields of a multipart/form-data body the files route reads.
struct Form<'a> {
    purpose: Option<String>,
    filename: Option<String>,
    file: Option<&'a [u8]>,
}

/// A minimal multipart/form-data reader: parts split at the boundary, each
/// part's name from its Content-Disposition.
fn multipart<'a>(content_type: &str, body: &'a [u8]) -> Option<Form<'a>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut form = Form {
        purpose: None,
        filename: None,
        file: None,
    };
    let mut rest = body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest_part = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let head_end = find(rest_part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest_part[..head_end]).to_string();
        let content_start = &rest_part[head_end + 4..];
        let end = find(content_start, format!("\r\n{delimiter}").as_bytes())?;
        let content = &content_start[..end];
        let name = field(&head, "name");
        match name.as_deref() {
            Some("purpose") => {
                form.purpose = Some(String::from_utf8_lossy(content).trim().to_string())
            }
            Some("file") => {
                form.filename = field(&head, "filename");
                form.file = Some(content);
            }
            _ => {}
        }
        rest = &content_start[end + 2..];
    }
    Some(form)
}

/// `name="value"` from a part's head.
fn field(head: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = head
        .match_indices(&key)
        .find(|(i, _)| *i == 0 || matches!(head.as_bytes()[i - 1], b' ' | b';'))?
        .0
        + key.len();
    let end = head[start..].find('"')?;
    Some(head[start..start + end].to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_reads_purpose_and_file() {
        let body = b"--XY\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n\r\n--XY--\r\n";
        let form = multipart("multipart/form-data; boundary=XY", body).expect("a form");
        assert_eq!(form.purpose.as_deref(), Some("batch"));
        assert_eq!(form.filename.as_deref(), Some("a.jsonl"));
        assert_eq!(form.file, Some(&b"{\"a\":1}\n"[..]));
    }

    #[test]
    fn paths_of_the_batch_api_are_told_apart() {
        assert!(is_batch_path("/v1/files"));
        assert!(is_batch_path("/v1/batches/b1/cancel"));
        assert!(!is_batch_path("/v1/chat/completions"));
    }
}
