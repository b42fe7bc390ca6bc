//! The HTTP side: one reqwest client built once, and one attempt of one request.
//!
//! Timeouts are ours, not reqwest's total timeout, because streams need a
//! per-read timeout (a stalled stream fails, a long healthy one does not)
//! while whole replies get a total one. Every reply and failure passes through
//! the [`Redactor`], so no secret leaks even when a server echoes it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{redirect, Response, Url};
use tokio::time::timeout;

use super::classify;
use super::redact::Redactor;
use super::reply;
use super::sse::SseParser;
use super::stream::StreamAssembler;
use super::transport::{self, Phase};
use super::{ClientError, ErrorKind, Failure, Reply};
use crate::job::EndpointConfig;
use crate::request::Request;

const USER_AGENT: &str = concat!("promptbatch/", env!("CARGO_PKG_VERSION"));
const X_CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");
/// Connecting never gets longer than this, whatever the reply timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The header timeout runs a hair past the connect timeout, so a connect
/// timeout is reported as one (nothing was sent) rather than as an uncertain timeout.
const CONNECT_MARGIN: Duration = Duration::from_millis(10);
/// Error bodies are read up to this size: enough for any message, not a whole HTML site.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// After `[DONE]`, how long to wait for the body to end (so the connection is
/// reused) before accepting the reply anyway.
const AFTER_DONE_GRACE: Duration = Duration::from_secs(1);

/// Sends requests to one endpoint. Cheap to clone: all clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: Url,
    timeout: Duration,
    /// The variable holding the key, named in the 401 hint.
    key_env: String,
    redactor: Redactor,
}

impl fmt::Debug for Client {
    // By hand: only what helps to debug, nothing of the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url.as_str())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client once: URL checked, default headers prepared (the
    /// key's marked sensitive). `pool_size` is the number of idle connections
    /// kept per host: pass the concurrency, or connections beyond it are closed
    /// after each request and reopened for the next.
    pub fn new(
        endpoint: &EndpointConfig,
        api_key: Option<&str>,
        pool_size: usize,
    ) -> Result<Client, ClientError> {
        let url = parse_url(&endpoint.url)?;
        let mut secrets = Vec::new();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = api_key.map(str::trim).filter(|key| !key.is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ClientError::Header {
                name: "Authorization".to_string(),
                reason: "the API key contains a character a header cannot carry (a line break or a non-ASCII character?)"
                    .to_string(),
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
            secrets.push(key.to_string());
        }
        for (name, value) in &endpoint.headers {
            let header_error = |reason: String| ClientError::Header {
                name: name.clone(),
                reason,
            };
            let header_name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                header_error("not a valid header name (letters, digits and -_ only)".to_string())
            })?;
            let mut header_value = HeaderValue::from_str(value.trim()).map_err(|_| {
                header_error("the value contains a character a header cannot carry (a line break or a non-ASCII character?)".to_string())
            })?;
            if is_secret_header(&header_name) {
                header_value.set_sensitive(true);
                secrets.push(value.trim().to_string());
            }
            headers.insert(header_name, header_value);
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .pool_max_idle_per_host(pool_size)
            .tcp_nodelay(true)
            .connect_timeout(endpoint.timeout.min(MAX_CONNECT_TIMEOUT))
            .redirect(redirect_policy())
            .build()
            .map_err(|err| ClientError::Build(err.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                url,
                timeout: endpoint.timeout,
                key_env: endpoint.api_key_env.clone(),
                redactor: Redactor::new(secrets),
            }),
        })
    }

    /// One attempt (1-based) of one request: a reply, or a classified failure.
    /// Nothing a server sent leaves here unredacted: text cut short inside the
    /// attempt is redacted before the cut (see `redact`), the rest here.
    pub async fn send(&self, req: &Request, attempt: u32) -> Result<Reply, Failure> {
        let redactor = &self.inner.redactor;
        match redactor.scope(self.attempt(req, attempt)).await {
            Ok(reply) => Ok(redactor.reply(reply)),
            Err(failure) => Err(redactor.failure(failure)),
        }
    }

    async fn attempt(&self, req: &Request, attempt: u32) -> Result<Reply, Failure> {
        let inner = &*self.inner;
        let request_id = HeaderValue::try_from(req.client_request_id(attempt)).map_err(|_| {
            let message = format!(
                "the client request id of {} is not a valid header value",
                req.key
            );
            Failure::new(ErrorKind::InvalidRequest, None, message)
        })?;
        let builder = inner
            .http
            .post(inner.url.clone())
            .header(X_CLIENT_REQUEST_ID, request_id)
            .body(req.body.clone());
        let header_timeout = inner.timeout + CONNECT_MARGIN;
        let started = Instant::now();
        let mut response = match timeout(header_timeout, builder.send()).await {
            Err(_) => return Err(transport::timed_out(inner.timeout, Phase::Headers)),
            Ok(Err(err)) => {
                return Err(transport::failure(
                    &err,
                    Phase::Headers,
                    &inner.url,
                    inner.timeout,
                ))
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        if !response.status().is_success() {
            let body = read_error_body(response, inner.timeout).await;
            return Err(classify::http_failure(
                status,
                &headers,
                &body,
                &inner.key_env,
                Utc::now(),
            ));
        }
        if req.stream {
            return self
                .read_stream(response, status, &headers, req, started)
                .await;
        }
        let remaining = header_timeout.saturating_sub(started.elapsed());
        let body = match timeout(remaining, response.bytes()).await {
            Err(_) => return Err(transport::timed_out(inner.timeout, Phase::WholeBody)),
            Ok(Err(err)) => {
                return Err(transport::failure(
                    &err,
                    Phase::WholeBody,
                    &inner.url,
                    inner.timeout,
                ))
            }
            Ok(Ok(body)) => body,
        };
        let latency_ms = millis(started.elapsed());
        // A server that streams although it was not asked to: read it as a stream.
        let reply = if body.trim_ascii_start().first().is_some_and(|b| *b != b'{') {
            let mut parser = SseParser::default();
            let mut assembler = StreamAssembler::default();
            let mut events = Vec::new();
            parser.feed(&body, &mut events);
            parser.finish(&mut events);
            for event in events.drain(..) {
                assembler.push(&event, status)?;
            }
            assembler.finish(&headers, &req.model, status)?
        } else {
            reply::parse_reply(&body, status, &headers, &req.model)?
        };
        Ok(Reply {
            latency_ms,
            ..reply
        })
    }

    /// A 2xx to a streaming request: SSE with a per-read timeout, or a whole
    /// JSON reply when the server ignored `stream: true`.
    async fn read_stream(
        &self,
        mut response: Response,
        status: u16,
        headers: &HeaderMap,
        req: &Request,
        started: Instant,
    ) -> Result<Reply, Failure> {
        let inner = &*self.inner;
        // Decided by the first bytes, not the content type, which servers get
        // wrong both ways: a JSON reply starts with '{', SSE with a field or a comment.
        let mut is_sse: Option<bool> = None;
        let mut parser = SseParser::default();
        let mut assembler = StreamAssembler::default();
        let mut events = Vec::new();
        let mut whole = Vec::new();
        let mut ttft_ms = None;
        let mut last_byte = started.elapsed();
        loop {
            let read_timeout = if assembler.is_done() {
                inner.timeout.min(AFTER_DONE_GRACE)
            } else {
                inner.timeout
            };
            let chunk: Bytes = match timeout(read_timeout, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break,
                // Everything needed has arrived: a server that lingers or drops the
                // connection after [DONE] or a finish reason does not spoil the reply.
                _ if assembler.is_complete() => break,
                Err(_) => return Err(transport::timed_out(inner.timeout, Phase::StreamRead)),
                Ok(Err(err)) => {
                    return Err(transport::failure(
                        &err,
                        Phase::StreamRead,
                        &inner.url,
                        inner.timeout,
                    ))
                }
            };
            if chunk.is_empty() {
                continue;
            }
            last_byte = started.elapsed();
            if is_sse.is_none() {
                match chunk.trim_ascii_start().first() {
                    // Leading whitespace means nothing in either form.
                    None => continue,
                    Some(first) => is_sse = Some(*first != b'{'),
                }
            }
            if is_sse == Some(false) {
                whole.extend_from_slice(&chunk);
                continue;
            }
            parser.feed(&chunk, &mut events);
            // The first content byte arrived with this chunk: the same clock as
            // latency, so time to first token never exceeds it.
            for event in events.drain(..) {
                if assembler.push(&event, status)? && ttft_ms.is_none() {
                    ttft_ms = Some(millis(last_byte));
                }
            }
        }
        let latency_ms = millis(last_byte);
        if is_sse != Some(true) {
            let reply = reply::parse_reply(&whole, status, headers, &req.model)?;
            return Ok(Reply {
                latency_ms,
                ..reply
            });
        }
        parser.finish(&mut events);
        for event in events.drain(..) {
            if assembler.push(&event, status)? && ttft_ms.is_none() {
                ttft_ms = Some(millis(last_byte));
            }
        }
        let reply = assembler.finish(headers, &req.model, status)?;
        Ok(Reply {
            latency_ms,
            ttft_ms,
            ..reply
        })
    }
}

fn parse_url(url: &str) -> Result<Url, ClientError> {
    let url_error = |reason: String| ClientError::Url {
        url: url.to_string(),
        reason,
    };
    let parsed = Url::parse(url.trim()).map_err(|err| {
        url_error(format!(
            "{err}; write it in full, e.g. https://api.example.com/v1/chat/completions"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(url_error(format!(
            "the scheme is {:?}; use http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(url_error("the URL has no host".to_string()));
    }
    Ok(parsed)
}

/// Follows only 307/308, which keep the method and body: a 301/302/303 would
/// turn the POST into a GET and end in a confusing 404/405, so it is reported instead.
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if matches!(attempt.status().as_u16(), 307 | 308) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Extra headers that carry credentials (Azure's `api-key`, `x-api-key`, ...).
fn is_secret_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    ["auth", "key", "token", "secret", "cookie"]
        .iter()
        .any(|word| name.contains(word))
}

/// The body of an error response, capped; whatever could be read in time.
async fn read_error_body(mut response: Response, limit: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_CAP {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
