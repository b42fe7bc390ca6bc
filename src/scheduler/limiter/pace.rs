//! What the limiter says of its pace: the pace a run used and where it came
//! from (for the stderr table and the log events), and the learned pace a
//! run keeps for the next one (and starts from).

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Gcra, Learned, Limiter, MAX_WINDOW, MIN_RATE_PER_S};

/// Where the pace a run used came from (the stderr table and log events name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaceSource {
    /// `--rpm` / `--tpm` (or the job file).
    Configured,
    /// Learned by an earlier run, kept in the state file.
    StateFile,
    /// The endpoint's `x-ratelimit-*` headers.
    RateHeaders,
    /// Learned from 429s in this run.
    RateLimits,
    /// Nothing held the run back but its concurrency.
    None,
}

impl PaceSource {
    pub fn describe(self) -> &'static str {
        match self {
            PaceSource::Configured => "configured",
            PaceSource::StateFile => "learned by an earlier run (state file)",
            PaceSource::RateHeaders => "from the endpoint's rate headers",
            PaceSource::RateLimits => "learned from 429s",
            PaceSource::None => "none (concurrency only)",
        }
    }
}

/// The pace a run used and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PaceReport {
    pub source: PaceSource,
    pub requests_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
}

impl Limiter {
    /// Starts from a pace an earlier run learned (ignored under a configured rate).
    pub fn seed(&self, rate_per_s: f64, window: Duration) {
        let mut s = self.lock();
        if s.configured != (0, 0) || !rate_per_s.is_finite() || rate_per_s <= 0.0 {
            return;
        }
        let now = Instant::now();
        let rate = rate_per_s.max(MIN_RATE_PER_S);
        // A pace is known: no need to wait for the first answer to find one.
        if let Some(h) = s.headers.as_mut() {
            h.answered();
        }
        s.learned = Some(Learned {
            rate_per_s: rate,
            measured: rate,
            schedule: Gcra::per_second(rate, now),
            last_raise: now,
            last_paced: None,
            window: window.clamp(Duration::from_secs(1), MAX_WINDOW),
            from_state: true,
            partial: false,
            last_step: None,
        });
    }

    /// The pace learned from limits (this run's 429s, or an earlier run's),
    /// worth keeping for the next run: requests per second and the window.
    /// That is the pace that held: the measure (95 % of what the limit
    /// allowed, or of a faster pace that held a whole window since), or the
    /// pace now when a 429 lowered it under that; never the pace probed
    /// above it and not proven yet.
    pub fn learned(&self) -> Option<(f64, Duration)> {
        let s = self.lock();
        if s.configured != (0, 0) {
            return None;
        }
        s.learned
            .as_ref()
            .map(|l| (l.rate_per_s.min(l.measured), l.window))
    }

    /// The pace this run used, and where it came from.
    pub fn report(&self) -> PaceReport {
        let s = self.lock();
        let per_minute = |n: u64| (n > 0).then_some(n as f64);
        if s.configured != (0, 0) {
            return PaceReport {
                source: PaceSource::Configured,
                requests_per_minute: per_minute(u64::from(s.configured.0)),
                tokens_per_minute: per_minute(s.configured.1),
            };
        }
        let learned = s
            .learned
            .as_ref()
            .map(|l| (l.rate_per_s * 60.0, l.from_state));
        let headers = s.headers.as_ref().filter(|h| h.active());
        match (headers, learned) {
            (Some(h), _) => PaceReport {
                source: PaceSource::RateHeaders,
                requests_per_minute: h.per_minute(),
                tokens_per_minute: None,
            },
            (None, Some((rate, from_state))) => PaceReport {
                source: if from_state {
                    PaceSource::StateFile
                } else {
                    PaceSource::RateLimits
                },
                requests_per_minute: Some(rate),
                tokens_per_minute: None,
            },
            (None, None) => PaceReport {
                source: PaceSource::None,
                requests_per_minute: None,
                tokens_per_minute: None,
            },
        }
    }
}
