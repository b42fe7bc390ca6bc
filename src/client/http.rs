//! The HTTP side: the reqwest clients built once, and one attempt of one request.
//!
//! HTTP/2 multiplexes requests over one connection, but a server caps the
//! requests at once per connection (commonly 100 to 250), and hyper's pool
//! shares one HTTP/2 connection per host and queues past the cap rather than
//! opening another. So whenever HTTP/2 may be spoken, the requests are spread
//! round-robin over one client (one connection) per
//! 100 requests of the concurrency (`pool`).
//!
//! Timeouts are ours, not reqwest's total timeout, because streams need a
//! per-read timeout (a stalled stream fails, a long healthy one does not)
//! while whole replies get a total one; every attempt also has a hard
//! deadline (`max_attempt_secs`) and every reply a size cap (`max_reply_bytes`),
//! so no server can hold an attempt or its memory without end. Every reply and
//! failure passes through the [`Redactor`], so no secret leaks even when a
//! server echoes it.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{redirect, Response, Url};
use tokio::time::Instant;

use super::body::{self, within, Cut};
use super::classify;
use super::redact::Redactor;
use super::reply;
use super::sse::SseParser;
use super::stream::StreamAssembler;
use super::transport::{self, Phase};
use super::{ClientError, Endpoint, ErrorKind, Failure, HttpVersion, Reply};
use crate::plan::Request;

const USER_AGENT: &str = concat!("promptbatch/", env!("CARGO_PKG_VERSION"));
const X_CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");
/// Connecting never gets longer than this, whatever the reply timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The header timeout runs a hair past the connect timeout, so a connect
/// timeout is reported as one (nothing was sent) rather than as an uncertain timeout.
const CONNECT_MARGIN: Duration = Duration::from_millis(10);
/// Error bodies are read up to this size: enough for any message, not a whole HTML site.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// Same-origin 307/308 hops followed before the redirect is reported instead.
const MAX_REDIRECTS: usize = 3;
/// How much of a stream's start is kept, to quote when it held no completion chunk.
const STREAM_HEAD: usize = 4096;
/// After `[DONE]`, how long to wait for the body to end (so the connection is
/// reused) before accepting the reply anyway.
const AFTER_DONE_GRACE: Duration = Duration::from_secs(1);

/// Sends requests to one endpoint. Cheap to clone: all clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// One client (one pool) per HTTP/2 connection wanted; one for HTTP/1.1.
    http: Box<[reqwest::Client]>,
    /// The client the next request goes to.
    next: AtomicUsize,
    url: Url,
    timeout: Duration,
    /// `max_attempt_secs`.
    max_attempt: Duration,
    /// `max_reply_bytes`, as a length in memory.
    max_reply_bytes: usize,
    /// The variable holding the key, named in the 401 hint.
    key_env: String,
    redactor: Redactor,
    /// HTTP/2 by prior knowledge on http:// (`http = "2"`): a server that
    /// speaks only HTTP/1.1 fails each request with a frame or pipe error
    /// that names nothing a user can change, so such failures say what does.
    h2c: bool,
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

impl Inner {
    /// The client the next request goes to, round-robin.
    fn pick(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.http.len();
        &self.http[i]
    }
}

impl Client {
    /// Builds the client once: URL checked, default headers prepared (the
    /// key's marked sensitive). `pool_size` is the number of idle connections
    /// kept per host: pass the concurrency, or connections beyond it are closed
    /// after each request and reopened for the next.
    pub fn new(
        endpoint: &Endpoint,
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
        let http = pool::http_clients(endpoint, &headers, pool_size, USER_AGENT, redirect_policy)?;
        let h2c = endpoint.http == HttpVersion::Http2 && url.scheme() == "http";
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                next: AtomicUsize::new(0),
                url,
                timeout: endpoint.timeout,
                max_attempt: endpoint.max_attempt,
                max_reply_bytes: usize::try_from(endpoint.max_reply_bytes).unwrap_or(usize::MAX),
                key_env: endpoint.api_key_env.clone(),
                redactor: Redactor::new(secrets),
                h2c,
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
            .pick()
            .post(inner.url.clone())
            .header(X_CLIENT_REQUEST_ID, request_id)
            .body(req.body.clone());
        let started = Instant::now();
        let clock = Clock {
            started,
            // Whole replies: a total timeout, from the send.
            total: transport::deadline(started, inner.timeout.saturating_add(CONNECT_MARGIN)),
            deadline: transport::deadline(started, inner.max_attempt),
        };
        let mut response = within(builder.send(), clock.total, clock.deadline)
            .await
            .map_err(|cut| inner.cut_short(cut, Phase::Headers, None))?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        if !response.status().is_success() {
            let until = transport::deadline(Instant::now(), inner.timeout).min(clock.deadline);
            let cap = ERROR_BODY_CAP.min(inner.max_reply_bytes);
            let mut body = body::error_body(response, cap, until).await;
            if body.len() >= cap {
                inner.redactor.drop_cut_head(&mut body);
            }
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
                .read_stream(response, status, &headers, req, &clock)
                .await;
        }
        let body = self.read_whole(&mut response, status, &clock).await?;
        let latency_ms = millis(started.elapsed());
        // A server that streams although it was not asked to: read it as a stream.
        let reply = if body.trim_ascii_start().first().is_some_and(|b| *b != b'{') {
            let mut parser = SseParser::with_cap(inner.max_reply_bytes);
            let mut assembler = StreamAssembler::default();
            let mut events = Vec::new();
            parser.feed(&body, &mut events);
            parser.finish(&mut events);
            for event in events.drain(..) {
                assembler.push(&event, status)?;
                self.check_size(&parser, &assembler, status)?;
            }
            if !assembler.has_chunks() {
                // Not a stream after all (an HTML page, a proxy's text): the
                // JSON reader's failure says so and quotes how the body starts.
                return reply::parse_reply(&body, status, &headers, &req.model).map(|reply| {
                    Reply {
                        latency_ms,
                        ..reply
                    }
                });
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

    /// A whole (non-streamed) body: within the total timeout, the attempt's
    /// deadline and `max_reply_bytes`.
    async fn read_whole(
        &self,
        response: &mut Response,
        status: u16,
        clock: &Clock,
    ) -> Result<Vec<u8>, Failure> {
        let inner = &*self.inner;
        let cap = inner.max_reply_bytes;
        // Refused before a byte is read when the server says how long it is.
        let announced = response.content_length().unwrap_or(0);
        if usize::try_from(announced).map_or(true, |len| len > cap) {
            return Err(transport::too_large("the reply", cap, status));
        }
        let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        loop {
            let read = within(response.chunk(), clock.total, clock.deadline).await;
            match read.map_err(|cut| inner.cut_short(cut, Phase::WholeBody, Some(status)))? {
                Some(chunk) => {
                    if body::over_cap(body.len(), chunk.len(), cap) {
                        return Err(transport::too_large("the reply", cap, status));
                    }
                    body.extend_from_slice(&chunk);
                }
                None => return Ok(body),
            }
        }
    }

    /// One SSE line (or event) being read, or the reply assembled so far,
    /// has outgrown `max_reply_bytes`.
    fn check_size(
        &self,
        parser: &SseParser,
        assembler: &StreamAssembler,
        status: u16,
    ) -> Result<(), Failure> {
        let cap = self.inner.max_reply_bytes;
        if parser.overflowed() {
            return Err(transport::too_large("one line of the stream", cap, status));
        }
        if assembler.size() > cap {
            return Err(transport::too_large("the streamed reply", cap, status));
        }
        Ok(())
    }

    /// A 2xx to a streaming request: SSE with a per-read timeout that only
    /// data events reset, or a whole JSON reply when the server ignored `stream: true`.
    async fn read_stream(
        &self,
        mut response: Response,
        status: u16,
        headers: &HeaderMap,
        req: &Request,
        clock: &Clock,
    ) -> Result<Reply, Failure> {
        let inner = &*self.inner;
        let cap = inner.max_reply_bytes;
        let started = clock.started;
        // Decided by the first bytes, not the content type, which servers get
        // wrong both ways: a JSON reply starts with '{', SSE with a field or a comment.
        let mut is_sse: Option<bool> = None;
        let mut parser = SseParser::with_cap(cap);
        let mut assembler = StreamAssembler::default();
        let mut events = Vec::new();
        let mut whole = Vec::new();
        let mut ttft_ms = None;
        let mut last_byte = started.elapsed();
        // The per-read timer: comments, blank lines and keep-alive bytes do
        // not move it, so a server that only pings still times out.
        let mut stall = transport::deadline(Instant::now(), inner.timeout);
        let mut done_seen = false;
        // The first bytes, quoted when no completion chunk ever came.
        let mut head = Vec::new();
        loop {
            if assembler.is_done() && !done_seen {
                // After [DONE], wait only briefly for the body to end (so the
                // connection is reused); nothing that follows counts.
                done_seen = true;
                stall = stall.min(transport::deadline(Instant::now(), AFTER_DONE_GRACE));
            }
            let chunk: Bytes = match within(response.chunk(), stall, clock.deadline).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // The stream is over or whole: a server that lingers or drops the
                // connection after [DONE] or a finish reason does not spoil the
                // reply (and one cut short is reported as such by `finish`).
                Err(_) if assembler.is_done() || assembler.has_finish_reason() => break,
                Err(cut) => return Err(inner.cut_short(cut, Phase::StreamRead, Some(status))),
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
                if body::over_cap(whole.len(), chunk.len(), cap) {
                    return Err(transport::too_large("the reply", cap, status));
                }
                whole.extend_from_slice(&chunk);
                // A JSON reply is data throughout.
                stall = transport::deadline(Instant::now(), inner.timeout);
                continue;
            }
            if head.len() < STREAM_HEAD {
                head.extend_from_slice(&chunk[..chunk.len().min(STREAM_HEAD - head.len())]);
            }
            parser.feed(&chunk, &mut events);
            // The first content byte arrived with this chunk: the same clock as
            // latency, so time to first token never exceeds it.
            for event in events.drain(..) {
                // Once a choice carried its finish reason the reply is whole:
                // what follows (usage, [DONE]) gets one timeout at most, so a
                // server that keeps sending after it cannot hold the attempt
                // until max_attempt_secs.
                if !event.data.trim().is_empty()
                    && !assembler.is_done()
                    && !assembler.has_finish_reason()
                {
                    stall = transport::deadline(Instant::now(), inner.timeout);
                }
                if assembler.push(&event, status)? && ttft_ms.is_none() {
                    ttft_ms = Some(millis(last_byte));
                }
                self.check_size(&parser, &assembler, status)?;
            }
            self.check_size(&parser, &assembler, status)?;
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
            self.check_size(&parser, &assembler, status)?;
        }
        if !assembler.has_chunks() {
            // An HTML page or a proxy's text: say how it starts.
            if head.len() >= STREAM_HEAD {
                inner.redactor.drop_cut_head(&mut head);
            }
            return Err(Failure {
                uncertain: true,
                ..reply::bad_response(
                    status,
                    "the stream ended without any completion chunk",
                    &head,
                )
            });
        }
        let reply = assembler.finish(headers, &req.model, status)?;
        Ok(Reply {
            latency_ms,
            ttft_ms,
            ..reply
        })
    }
}

impl Inner {
    /// The failure of a step (the send, or a read) that a timer or the
    /// transport cut short; `status` once the reply's headers are in.
    fn cut_short(&self, cut: Cut, phase: Phase, status: Option<u16>) -> Failure {
        match cut {
            Cut::TimedOut => transport::timed_out(self.timeout, phase),
            Cut::PastDeadline => transport::past_deadline(self.max_attempt, status),
            Cut::Failed(err) => {
                let mut failure = transport::failure(&err, phase, &self.url, self.timeout);
                if self.h2c && failure.kind == ErrorKind::Connection && status.is_none() {
                    failure.message.push_str(H2C_HINT);
                }
                failure
            }
        }
    }
}

const H2C_HINT: &str = "; with [endpoint] http = \"2\" over http:// the request is sent \
    in HTTP/2 without asking, and a server that does not speak HTTP/2 fails this way: \
    set http = \"1.1\" (or \"auto\") for it";

/// The clocks of one attempt.
struct Clock {
    started: Instant,
    /// The total timeout of a whole (non-streamed) reply.
    total: Instant,
    /// `max_attempt_secs` after the send: no attempt outlives it, streams included.
    deadline: Instant,
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

/// Follows only 307/308 (which keep the method and body) to the endpoint's
/// own origin (scheme, host and port), a few hops at most. Anything else is
/// not followed but answered with the redirect itself, which `classify`
/// reports as an `invalid_request` naming the target: a 301/302/303 would
/// turn the POST into a GET and end in a confusing 404/405, and another
/// origin must never receive the key, the extra headers or the prompt.
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let origin = attempt.previous().first().map(Url::origin);
        let same_origin = origin.is_some_and(|origin| origin == attempt.url().origin());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.stop()
        } else if same_origin && matches!(attempt.status().as_u16(), 307 | 308) {
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

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

mod pool;
#[cfg(test)]
mod tests;
