//! The provider's Batch API over HTTP: upload a file, create, get, list and
//! cancel batches, read a result file line by line.
//!
//! Its own small reqwest client (the chat client is tuned for many small
//! requests in flight); the same key, headers and redaction: every message
//! a server sent passes the redactor before it is kept anywhere.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::Redactor;

/// The longest result line kept; a longer one is cut and fails to parse
/// (its request then gets an error line), so memory stays bounded.
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// One call to the Batch API failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// None: no answer (connection, timeout).
    pub status: Option<u16>,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Worth trying again: no answer, 408, 409, 429 or 5xx.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => matches!(s, 408 | 409 | 429 | 500..=599),
        }
    }
}

/// What `GET /batches/{id}` says of a batch.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct BatchInfo {
    pub id: String,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub request_counts: Option<Counts>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq)]
pub struct Counts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

impl BatchInfo {
    /// A batch that will change no more.
    pub fn is_settled(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }
}

pub struct Api {
    http: reqwest::Client,
    /// The endpoint URL less its `/chat/completions`.
    base: String,
    redactor: Redactor,
}

impl Api {
    /// `url` is the chat completions URL the job names.
    pub fn new(
        url: &str,
        key: Option<&str>,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Api, String> {
        let base = url
            .trim_end_matches('/')
            .strip_suffix("/chat/completions")
            .unwrap_or(url)
            .to_string();
        let mut map = HeaderMap::new();
        let mut secrets = Vec::new();
        if let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| "the API key cannot be sent in a header".to_string())?;
            value.set_sensitive(true);
            map.insert(AUTHORIZATION, value);
            secrets.push(key.to_string());
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            let mut header = HeaderValue::from_str(value.trim())
                .map_err(|_| format!("invalid value of header {name}"))?;
            let lower = name.as_str();
            if ["auth", "key", "token", "secret", "cookie"]
                .iter()
                .any(|w| lower.contains(w))
            {
                header.set_sensitive(true);
                secrets.push(value.trim().to_string());
            }
            map.insert(name, header);
        }
        let http = reqwest::Client::builder()
            .default_headers(map)
            .connect_timeout(timeout)
            .read_timeout(timeout)
            // No redirect: a header must never reach another origin.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("promptbatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Api {
            http,
            base,
            redactor: Redactor::new(secrets),
        })
    }

    fn error(&self, status: Option<u16>, text: &str, retry_after: Option<Duration>) -> ApiError {
        let redacted = self.redactor.redact(text);
        let message: String = crate::client::printable(&redacted)
            .chars()
            .take(400)
            .collect();
        ApiError {
            status,
            message,
            retry_after,
        }
    }

    fn unreached(&self, what: &str, e: &reqwest::Error) -> ApiError {
        let text = format!("{what}: no answer from {} ({e})", self.base);
        self.error(None, &text, None)
    }

    /// The JSON answer of a request, or why not.
    async fn json(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let response = request.send().await.map_err(|e| self.unreached(what, &e))?;
        let status = response.status().as_u16();
        // The chat client's reading: seconds or a date, at most an hour (a
        // bigger number overflowed the poll's backoff arithmetic).
        let retry_after =
            crate::client::retry_after::retry_after(response.headers(), chrono::Utc::now());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.unreached(what, &e))?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !(200..300).contains(&status) {
            let said = body
                .as_ref()
                .and_then(|b| b["error"]["message"].as_str().or(b["message"].as_str()))
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
                });
            return Err(self.error(
                Some(status),
                &format!("{what}: HTTP {status}: {said}"),
                retry_after,
            ));
        }
        body.ok_or_else(|| {
            self.error(
                Some(status),
                &format!("{what}: the answer is not JSON"),
                None,
            )
        })
    }

    /// `POST /files` (purpose batch), the file streamed from disk.
    pub async fn upload(&self, path: &Path, name: &str) -> Result<String, ApiError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.error(None, &format!("cannot read {}: {e}", path.display()), None))?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(file), len)
            .file_name(name.to_string())
            .mime_str("application/jsonl")
            .map_err(|e| self.error(None, &e.to_string(), None))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let url = format!("{}/files", self.base);
        let answer = self
            .json(
                "uploading the batch file",
                self.http.post(url).multipart(form),
            )
            .await?;
        answer["id"].as_str().map(str::to_owned).ok_or_else(|| {
            self.error(
                None,
                "uploading the batch file: the answer names no file id",
                None,
            )
        })
    }

    /// `POST /batches` over an uploaded file.
    pub async fn create(&self, file_id: &str, job: &str) -> Result<BatchInfo, ApiError> {
        let body = json!({
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"promptbatch_job": job},
        });
        let url = format!("{}/batches", self.base);
        let answer = self
            .json(
                "creating the batch",
                self.http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            )
            .await?;
        self.info("creating the batch", answer)
    }

    fn info(&self, what: &str, answer: Value) -> Result<BatchInfo, ApiError> {
        serde_json::from_value(answer).map_err(|e| {
            self.error(
                None,
                &format!("{what}: the answer is not a batch ({e})"),
                None,
            )
        })
    }

    /// `GET /batches/{id}`.
    pub async fn get(&self, id: &str) -> Result<BatchInfo, ApiError> {
        let url = format!("{}/batches/{id}", self.base);
        let answer = self.json("polling the batch", self.http.get(url)).await?;
        self.info("polling the batch", answer)
    }

    /// `POST /batches/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<BatchInfo, ApiError> {
        let url = format!("{}/batches/{id}/cancel", self.base);
        let answer = self
            .json("cancelling the batch", self.http.post(url))
            .await?;
        self.info("cancelling the batch", answer)
    }

    /// The batch made over `file_id`, among the most recent ones (`GET /batches?limit=100`).
    pub async fn find(&self, file_id: &str) -> Result<Option<BatchInfo>, ApiError> {
        let url = format!("{}/batches?limit=100", self.base);
        let answer = self.json("listing batches", self.http.get(url)).await?;
        let found = answer["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["input_file_id"] == file_id)
            .cloned();
        found.map(|b| self.info("listing batches", b)).transpose()
    }

    /// `GET /files/{id}/content`, read a line at a time (see [`Lines`]).
    pub async fn lines(&self, file_id: &str) -> Result<Lines, ApiError> {
        let what = "downloading the batch results";
        let url = format!("{}/files/{file_id}/content", self.base);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreached(what, &e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.error(Some(status), &format!("{what}: HTTP {status}"), None));
        }
        Ok(Lines {
            stream: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            ended: false,
        })
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A result file's lines as they arrive: memory holds one line (at most
/// [`MAX_LINE_BYTES`]; a longer one is cut there) and one network chunk.
pub struct Lines {
    stream: ByteStream,
    buffer: Vec<u8>,
    ended: bool,
}

impl Lines {
    /// The next non-blank line, None at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=at).collect();
                line.pop();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.ended {
                let line = std::mem::take(&mut self.buffer);
                return Ok(Some(line).filter(|l| !l.iter().all(u8::is_ascii_whitespace)));
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => {
                    // A line past the cap keeps its start and its end (the newline).
                    let room = MAX_LINE_BYTES.saturating_sub(self.buffer.len());
                    match chunk.iter().position(|b| *b == b'\n') {
                        _ if chunk.len() <= room => self.buffer.extend_from_slice(&chunk),
                        Some(at) => {
                            self.buffer.extend_from_slice(&chunk[..at.min(room)]);
                            self.buffer.extend_from_slice(&chunk[at..]);
                        }
                        None => self.buffer.extend_from_slice(&chunk[..room]),
                    }
                }
                Some(Err(e)) => {
                    return Err(ApiError {
                        status: None,
                        message: format!(
                            "downloading the batch results: the transfer broke off ({e})"
                        ),
                        retry_after: None,
                    })
                }
                None => self.ended = true,
            }
        }
    }
}
