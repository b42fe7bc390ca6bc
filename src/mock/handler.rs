//! One request in, one reply out: routing, the key check, the enforced window
//! limit, random and directed faults, latency, then the planned reply.
//!
//! Order of checks on the completions route: a wrong key is a 401 before
//! anything else; then an unusable body (400); then the enforced limit (429,
//! immediate, as a gateway would); then the latency; then a random fault;
//! then a `[mock:fail=...]` fault; else the reply. Only requests that get as
//! far as the fault list count as an attempt of their body, so a limit or
//! random 429 never shifts which fault a retry receives. With `rate_headers`,
//! answers counted in the enforced window announce it as OpenAI does
//! (`x-ratelimit-limit/remaining/reset-requests`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Method, Request, Response};
use serde_json::Value;

use super::body::{self, MockBody, JSON};
use super::completion::{self, ReplyContext, StreamEnd};
use super::directives::Fault;
use super::echo::{self, Credentials};
use super::reply::{self, hash_bytes, mix, Plan};
use super::{faults, MockConfig, MockStats, ReceivedRequest, Replay};

const MODELS: &str = r#"{"object":"list","data":[{"id":"google/gemma-3-4b-it","object":"model","created":1741824000,"owned_by":"google"},{"id":"google/gemma-3-12b-it","object":"model","created":1741824000,"owned_by":"google"},{"id":"google/gemma-3-27b-it","object":"model","created":1741824000,"owned_by":"google"},{"id":"google/gemma-3-4b-it:free","object":"model","created":1741824000,"owned_by":"google"}]}"#;

/// Why the service gives hyper no reply: hyper then closes the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    #[error("mock fault: connection reset without an answer")]
    Reset,
    #[error("could not read the request body: {0}")]
    Body(#[from] hyper::Error),
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub config: MockConfig,
    pub stats: Arc<MockStats>,
    /// `Bearer <key>` when a key is required.
    expected_auth: Option<String>,
    /// Draw counter of the seeded random stream.
    draws: AtomicU64,
    /// Enforced limit: window index in the high 32 bits, requests in it in the low 32.
    window: AtomicU64,
    started: tokio::time::Instant,
    /// Reply ids are unique, as a provider's are: this server's start time
    /// and a serial number, so two runs against two servers (a report over
    /// both) never share one.
    reply_ids: (u64, AtomicU64),
    /// Attempts seen per body hash; touched only by requests with a fault list.
    attempts: Mutex<HashMap<u64, u32>>,
    pub recorded: Mutex<Vec<ReceivedRequest>>,
    /// The Batch API's files and batches.
    pub batch: super::batch::Store,
}

enum RandomFault {
    RateLimit,
    ServerError,
}

impl Shared {
    pub fn new(config: MockConfig) -> Shared {
        Shared {
            batch: super::batch::Store::new(
                config.batch_complete,
                config.batch_expire,
                config.usd_per_million,
            ),
            expected_auth: config
                .require_key
                .as_ref()
                .map(|key| format!("Bearer {key}")),
            config,
            stats: Arc::default(),
            draws: AtomicU64::new(0),
            window: AtomicU64::new(0),
            started: tokio::time::Instant::now(),
            reply_ids: (
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                AtomicU64::new(0),
            ),
            attempts: Mutex::default(),
            recorded: Mutex::default(),
        }
    }

    /// `chatcmpl-mock-<body hash>-<server start>-<serial>`.
    fn reply_id(&self, body_hash: u64) -> String {
        let (salt, serial) = &self.reply_ids;
        let n = serial.fetch_add(1, Relaxed);
        format!("chatcmpl-mock-{body_hash:016x}-{salt:x}-{n}")
    }

    fn random(&self) -> u64 {
        let draw = self.draws.fetch_add(1, Relaxed);
        mix(self.config.seed ^ mix(draw))
    }

    fn latency(&self) -> Duration {
        let jitter = self.config.jitter.as_micros() as u64;
        let extra = if jitter > 0 {
            self.random() % (jitter + 1)
        } else {
            0
        };
        self.config.latency + Duration::from_micros(extra)
    }

    fn random_fault(&self) -> Option<RandomFault> {
        let (rate_429, rate_500) = (self.config.rate_429, self.config.rate_500);
        if rate_429 <= 0.0 && rate_500 <= 0.0 {
            return None;
        }
        let draw = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
        if draw < rate_429 {
            Some(RandomFault::RateLimit)
        } else if draw < rate_429 + rate_500 {
            Some(RandomFault::ServerError)
        } else {
            None
        }
    }

    /// Counts the request in the current fixed window (None: no limit enforced).
    fn count_in_window(&self) -> Option<WindowCount> {
        let limit = self.config.limit_requests;
        if limit == 0 {
            return None;
        }
        let window = self.config.limit_window.as_nanos().max(1);
        let elapsed = self.started.elapsed().as_nanos();
        let full_index = elapsed / window;
        let index = (full_index as u64) & 0xffff_ffff;
        let mut current = self.window.load(Relaxed);
        let count = loop {
            let (seen, count) = (current >> 32, current & 0xffff_ffff);
            // A request that read the clock just before another moved the window on counts in the newer one.
            let next = if seen >= index {
                current + u64::from(count < 0xffff_ffff)
            } else {
                (index << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(current, next, Relaxed, Relaxed)
            {
                Ok(_) => break next & 0xffff_ffff,
                Err(actual) => current = actual,
            }
        };
        let left_ns = window * (full_index + 1) - elapsed;
        Some(WindowCount {
            count,
            limit,
            left_ns,
        })
    }

    /// The 1-based attempt number of this body.
    fn attempt(&self, body_hash: u64) -> usize {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = attempts.entry(body_hash).or_insert(0);
        *seen = seen.saturating_add(1);
        *seen as usize
    }

    fn record(&self, headers: &HeaderMap, bytes: &Bytes, parsed: Option<&Value>) {
        let body = parsed
            .cloned()
            .unwrap_or_else(|| Value::String(String::from_utf8_lossy(bytes).into_owned()));
        let headers = headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        recorded.push(ReceivedRequest { body, headers });
    }
}

/// The service: routes one request and counts the status of its reply.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ServiceError> {
    let method = request.method().clone();
    if request.version() == hyper::Version::HTTP_2 {
        shared.stats.count_http2();
    }
    let result = match (&method, request.uri().path()) {
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => {
            completions(&shared, request).await
        }
        (&Method::GET, "/v1/models" | "/models") => Ok(body::reply(200, JSON, MODELS)),
        (_, path) if super::batch::is_batch_path(path) => {
            let given = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
            match &shared.expected_auth {
                Some(expected) if given != Some(expected.as_bytes()) => Ok(faults::unauthorized()),
                _ => super::batch::route(&shared.batch, request).await,
            }
        }
        (_, path) => Ok(faults::invalid_request(
            404,
            &format!(
                "Unknown request URL: {method} {path}. The mock serves POST /v1/chat/completions and GET /v1/models."
            ),
        )),
    };
    if let Ok(response) = &result {
        shared.stats.count_status(response.status().as_u16());
    }
    result
}

async fn completions(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ServiceError> {
    let _in_flight = shared.stats.start_request();
    let (head, body) = request.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let parsed = serde_json::from_slice::<Value>(&bytes);
    if shared.config.record {
        shared.record(&head.headers, &bytes, parsed.as_ref().ok());
    }
    if let Some(expected) = &shared.expected_auth {
        let given = head
            .headers
            .get(AUTHORIZATION)
            .map(|value| value.as_bytes());
        if given != Some(expected.as_bytes()) {
            return Ok(faults::unauthorized());
        }
    }
    if let Some(replay) = &shared.config.replay {
        return Ok(replayed(replay, parsed.as_ref().ok()));
    }
    let mut plan = match parsed
        .as_ref()
        .map_err(|e| reply::BadRequest::NotJson(e.to_string()))
        .and_then(reply::plan)
    {
        Ok(plan) => plan,
        Err(bad) => return Ok(faults::invalid_request(400, &bad.to_string())),
    };
    let counted = shared.count_in_window();
    let announce = |mut response: Response<MockBody>| {
        if let Some(counted) = counted.filter(|_| shared.config.rate_headers) {
            counted.announce(&mut response);
        }
        response
    };
    if let Some(counted) = counted.filter(|c| c.count > c.limit) {
        shared.stats.count_limited();
        let wait_ms = (counted.left_ns.div_ceil(1_000_000)) as u64;
        return Ok(announce(faults::window_limited(wait_ms)));
    }
    let body_hash = hash_bytes(&bytes);
    let latency = shared.latency() + plan.directives.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match shared.random_fault() {
        Some(RandomFault::RateLimit) => return Ok(faults::rate_limited(None)),
        Some(RandomFault::ServerError) => return Ok(faults::server_error(body_hash)),
        None => {}
    }
    // Counted once for both: a fault list and a reply list share the attempt number.
    let attempt = (!plan.directives.fails.is_empty() || plan.directives.replies.len() > 1)
        .then(|| shared.attempt(body_hash));
    let fault = attempt.and_then(|n| plan.directives.fails.get(n - 1).copied());
    if let Some(n) = attempt {
        plan.reply_for_attempt(n);
    }
    let mut ctx = ReplyContext {
        id: shared.reply_id(body_hash),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        usd_per_million: shared.config.usd_per_million,
        provider: None,
        refusal: None,
    };
    if let Some(fault) = fault.filter(|f| f.is_echo()) {
        let creds = Credentials::of(&head.headers);
        return Ok(echo::fault_reply(fault, &creds, plan.stream));
    }
    if plan.directives.echo_auth {
        echo::into_reply(&mut plan, &mut ctx, &Credentials::of(&head.headers));
    }
    respond(shared, &plan, &ctx, fault, body_hash)
        .await
        .map(announce)
}

/// The recorded answer the request's `model` names, or a 404 listing the names there are.
fn replayed(replay: &Replay, body: Option<&Value>) -> Response<MockBody> {
    let model = body
        .and_then(|b| b.get("model"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    replay.answer(model).unwrap_or_else(|| {
        let names: Vec<&str> = replay.names().collect();
        faults::invalid_request(
            404,
            &format!(
                "no recorded answer named {model:?}; the request's model chooses one of: {}",
                names.join(", ")
            ),
        )
    })
}

/// One request counted in the enforced window.
#[derive(Debug, Clone, Copy)]
struct WindowCount {
    /// This request's place in its window (1-based).
    count: u64,
    limit: u64,
    /// Until the window ends.
    left_ns: u128,
}

impl WindowCount {
    /// OpenAI's `x-ratelimit-*` headers for requests (`--rate-headers`).
    fn announce(&self, response: &mut Response<MockBody>) {
        let remaining = self.limit.saturating_sub(self.count);
        let reset_ms = self.left_ns.div_ceil(1_000_000);
        body::set_header(
            response,
            "x-ratelimit-limit-requests",
            self.limit.to_string(),
        );
        body::set_header(
            response,
            "x-ratelimit-remaining-requests",
            remaining.to_string(),
        );
        body::set_header(
            response,
            "x-ratelimit-reset-requests",
            format!("{reset_ms}ms"),
        );
    }
}

async fn respond(
    shared: &Shared,
    plan: &Plan,
    ctx: &ReplyContext,
    fault: Option<Fault>,
    body_hash: u64,
) -> Result<Response<MockBody>, ServiceError> {
    let stats = &shared.stats;
    Ok(match fault {
        None => {
            stats.count_success();
            match plan.stream {
                true => completion::stream_reply(plan, ctx, StreamEnd::Complete),
                false => completion::json_reply(plan, ctx, false),
            }
        }
        Some(Fault::Reset) => {
            stats.count_reset();
            return Err(ServiceError::Reset);
        }
        Some(Fault::Hang) => {
            stats.count_hang();
            // Ends only when the server shuts down and drops the connection.
            return std::future::pending().await;
        }
        Some(Fault::Malformed) => faults::malformed(completion::json_body(plan, ctx, false)),
        Some(Fault::Empty) => completion::json_reply(plan, ctx, true),
        Some(Fault::Cut) => {
            stats.count_cut();
            match plan.stream {
                true => completion::stream_reply(plan, ctx, StreamEnd::Cut),
                false => body::cut_json(completion::json_body(plan, ctx, false)),
            }
        }
        Some(Fault::SseError) => match plan.stream {
            true => completion::stream_reply(plan, ctx, StreamEnd::ErrorEvent),
            false => faults::error_in_ok_body(),
        },
        Some(error) => faults::error_reply(error, body_hash, plan.directives.retry_after_ms),
    })
}
