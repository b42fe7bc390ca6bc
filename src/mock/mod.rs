//! The built-in simulated chat-completions endpoint.
//!
//! A real HTTP server on loopback speaking the OpenAI chat-completions API,
//! used by `promptbatch run --simulate`, `promptbatch mock-server`, the
//! integration tests and the benchmarks. Replies are deterministic functions
//! of the prompt ([`expected_reply`]); faults are chosen per request by
//! `[mock:...]` directives in the last user message (see `directives.rs`) or
//! at random by configured rates; an enforced window limit answers 429.
//!
//! It shares no code with `crate::client` on purpose: a bug there must not be
//! mirrored here, or the tests would agree with it.
//!
//! Latency (configured, jitter, `[mock:latency=MS]`) is spent before the
//! reply's head is sent, so in a stream it is the time to the first chunk;
//! `[mock:chunk-ms=MS]` spaces the chunks of a stream.

mod batch;
mod body;
mod completion;
mod directives;
mod echo;
mod faults;
mod handler;
mod json_reply;
mod replay;
mod reply;
mod server;
mod stats;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use batch::{BatchStats, LATE as BATCH_LATE};
pub use directives::{help as directives_help, CostMode};
pub use replay::{Replay, ReplayError};
pub use reply::{expected_reply, ExpectedReply, DEFAULT_USD_PER_MILLION};
pub use server::{MockServer, H2_STREAMS};
pub use stats::MockStats;

use crate::cli::MockArgs;
use crate::printer;

/// How the mock behaves; the default is an immediate, faultless server on a free port.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    /// 0 = any free port; the mock always binds 127.0.0.1.
    pub port: u16,
    /// Base latency of every completions reply, spent before its head.
    pub latency: Duration,
    /// Extra latency, uniform in 0..=jitter.
    pub jitter: Duration,
    /// Fraction of requests answered 429 with `Retry-After: 1` (random, seeded).
    pub rate_429: f64,
    /// Fraction of requests answered 500.
    pub rate_500: f64,
    /// At most this many requests per window, 429 beyond (0 = no limit).
    pub limit_requests: u64,
    pub limit_window: Duration,
    /// Announce the enforced limit in OpenAI's `x-ratelimit-*-requests` headers.
    pub rate_headers: bool,
    /// When set, every success carries `x-aimlapi-usd-spent` = total tokens x price / 1e6.
    pub usd_per_million: Option<f64>,
    /// When set, a missing or wrong `Authorization: Bearer <key>` gets a 401.
    pub require_key: Option<String>,
    /// Keep every completions request (body and headers) for [`MockServer::received`].
    pub record: bool,
    /// Seed of the random jitter and random faults.
    pub seed: u64,
    /// Recorded answers served verbatim, chosen by the request's `model` (see `replay.rs`).
    pub replay: Option<std::sync::Arc<Replay>>,
    /// Batch API: how long a batch takes from creation to `completed`.
    pub batch_complete: Duration,
    /// Batch API: a batch not completed this long after creation expires.
    pub batch_expire: Option<Duration>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            port: 0,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_429: 0.0,
            rate_500: 0.0,
            limit_requests: 0,
            limit_window: Duration::from_secs(60),
            rate_headers: false,
            usd_per_million: None,
            require_key: None,
            record: false,
            seed: 0x5eed,
            replay: None,
            batch_complete: Duration::from_millis(1_000),
            batch_expire: None,
        }
    }
}

impl MockConfig {
    /// The configuration `promptbatch mock-server` flags describe.
    pub fn from_args(args: &MockArgs) -> MockConfig {
        MockConfig {
            port: args.port,
            latency: Duration::from_millis(args.latency_ms),
            jitter: Duration::from_millis(args.jitter_ms),
            rate_429: args.rate_429,
            rate_500: args.rate_500,
            limit_requests: args.limit_requests,
            limit_window: Duration::from_millis(args.limit_window_ms),
            rate_headers: args.rate_headers,
            usd_per_million: args.usd_per_million,
            require_key: args.require_key.clone(),
            batch_complete: Duration::from_millis(args.batch_complete_ms),
            batch_expire: (args.batch_expire_ms > 0)
                .then(|| Duration::from_millis(args.batch_expire_ms)),
            ..MockConfig::default()
        }
    }

    /// Rejects settings the server cannot honour, naming the flag to fix.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for (flag, rate) in [("--rate-429", self.rate_429), ("--rate-500", self.rate_500)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::Rate { flag, rate });
            }
        }
        if self.rate_429 + self.rate_500 > 1.0 {
            return Err(ConfigError::Rates);
        }
        if self.limit_requests > 0 && self.limit_window.is_zero() {
            return Err(ConfigError::Window);
        }
        if let Some(price) = self.usd_per_million {
            if !price.is_finite() || price < 0.0 {
                return Err(ConfigError::Price(price));
            }
        }
        Ok(())
    }
}

/// A setting the mock cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} must be a fraction between 0 and 1, got {rate}")]
    Rate { flag: &'static str, rate: f64 },
    #[error("--rate-429 and --rate-500 together must not exceed 1")]
    Rates,
    #[error("--limit-window-ms must be at least 1 when --limit-requests is set")]
    Window,
    #[error("--usd-per-million must be a price of 0 or more, got {0}")]
    Price(f64),
}

/// Why `promptbatch mock-server` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error(
        "could not start the mock server on 127.0.0.1:{port}; pick a free port with --port (0 = any): {source}"
    )]
    Start { port: u16, source: std::io::Error },
    #[error("--replay: {0}")]
    Replay(#[from] ReplayError),
    #[error("could not listen for Ctrl-C or SIGTERM: {0}")]
    Signal(std::io::Error),
}

/// One completions request as the mock received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// The parsed body; a body that is not JSON is kept as a string.
    pub body: serde_json::Value,
    /// Header names are lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `promptbatch mock-server`: serve until Ctrl-C (or SIGTERM), then print what was served.
pub async fn serve(args: &MockArgs) -> Result<(), MockError> {
    let mut config = MockConfig::from_args(args);
    if let Some(dir) = &args.replay {
        let replay = Replay::load(dir)?;
        printer::notice(format_args!(
            "replaying {} (the request's model chooses one): {}",
            dir.display(),
            replay.names().collect::<Vec<_>>().join(", ")
        ));
        config.replay = Some(std::sync::Arc::new(replay));
    }
    let server = MockServer::start(config)
        .await
        .map_err(|source| MockError::Start {
            port: args.port,
            source,
        })?;
    printer::notice(format_args!("mock server listening on {}", server.url()));
    wait_for_stop_signal().await.map_err(MockError::Signal)?;
    printer::notice(format_args!("mock server stopped: {}", server.stats()));
    server.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
