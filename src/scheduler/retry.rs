//! Retry policy: which failures are retried, and how long to wait before the next attempt.
//!
//! `decide` is a pure function of one failure so the whole classification is a
//! table test. Delays come from backon's exponential backoff with full jitter
//! on top, and never undercut what the server asked for (`Retry-After`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::client::{ErrorKind, Failure};
use crate::job::RetryConfig;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after a delay (if attempts remain).
    Retry,
    /// Record the failure; this request cannot succeed as it is.
    Final,
    /// Record the failure; no further request can succeed (bad key, out of credits).
    Refused,
}

/// The classification of DESIGN.md's reliability rules.
pub fn decide(f: &Failure) -> Verdict {
    let quota = f
        .error_code
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("insufficient_quota"));
    if let Some(status) = f.status {
        match status {
            401..=403 => return Verdict::Refused,
            429 if quota => return Verdict::Refused,
            400 | 404 | 422 => return Verdict::Final,
            _ => {}
        }
    }
    // The server's own word beats our guess for everything else.
    if let Some(should) = f.should_retry {
        return if should {
            Verdict::Retry
        } else {
            Verdict::Final
        };
    }
    match f.status {
        Some(408 | 409 | 429) => Verdict::Retry,
        Some(s) if (500..600).contains(&s) => Verdict::Retry,
        Some(s) if (200..300).contains(&s) => Verdict::Retry,
        Some(_) => Verdict::Final,
        None => match f.kind {
            ErrorKind::Timeout
            | ErrorKind::Connection
            | ErrorKind::BadResponse
            | ErrorKind::Server
            | ErrorKind::RateLimited => Verdict::Retry,
            ErrorKind::InvalidRequest
            | ErrorKind::Auth
            | ErrorKind::NotFound
            | ErrorKind::BadOutput => Verdict::Final,
        },
    }
}

/// The delays between the attempts of one request.
pub struct Backoff {
    inner: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Backoff {
        let inner = ExponentialBuilder::default()
            .with_min_delay(config.initial_backoff)
            .with_max_delay(config.max_backoff)
            .with_factor(2.0)
            .without_max_times()
            .build();
        Backoff {
            inner,
            max: config.max_backoff,
        }
    }

    /// The wait before the next attempt: full jitter over the exponential step
    /// (so a crowd of retries spreads out), but at least what the server asked for.
    pub fn next_delay(&mut self, failure: &Failure, unit_random: f64) -> Duration {
        let step = self.inner.next().unwrap_or(self.max);
        let jittered = step.mul_f64(unit_random.clamp(0.0, 1.0));
        match failure.retry_after {
            Some(asked) => jittered.max(asked),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: ErrorKind, status: Option<u16>) -> Failure {
        Failure::new(kind, status, "x")
    }

    /// kind, status, error code, x-should-retry, expected verdict
    type Case = (
        ErrorKind,
        Option<u16>,
        Option<&'static str>,
        Option<bool>,
        Verdict,
    );

    #[test]
    fn classification_table() {
        use ErrorKind::*;
        use Verdict::*;
        let cases: &[Case] = &[
            (RateLimited, Some(429), None, None, Retry),
            (
                RateLimited,
                Some(429),
                Some("rate_limit_exceeded"),
                None,
                Retry,
            ),
            (
                RateLimited,
                Some(429),
                Some("insufficient_quota"),
                None,
                Refused,
            ),
            (Server, Some(500), None, None, Retry),
            (Server, Some(502), None, None, Retry),
            (Server, Some(503), None, None, Retry),
            (Server, Some(504), None, None, Retry),
            (Timeout, Some(408), None, None, Retry),
            (Server, Some(409), None, None, Retry),
            (InvalidRequest, Some(400), None, None, Final),
            (InvalidRequest, Some(422), None, None, Final),
            (NotFound, Some(404), None, None, Final),
            (Auth, Some(401), None, None, Refused),
            (Auth, Some(402), None, None, Refused),
            (Auth, Some(403), None, None, Refused),
            (InvalidRequest, Some(413), None, None, Final),
            (Timeout, None, None, None, Retry),
            (Connection, None, None, None, Retry),
            (BadResponse, Some(200), None, None, Retry),
            (Server, Some(200), None, None, Retry),
            // x-should-retry decides where the status alone does not.
            (Server, Some(500), None, Some(false), Final),
            (InvalidRequest, Some(418), None, Some(true), Retry),
            // ... but never turns a refusal or a bad request into a retry.
            (Auth, Some(401), None, Some(true), Refused),
            (InvalidRequest, Some(400), None, Some(true), Final),
        ];
        for (kind, status, code, should, expected) in cases {
            let mut f = failure(*kind, *status);
            f.error_code = code.map(str::to_string);
            f.should_retry = *should;
            assert_eq!(
                decide(&f),
                *expected,
                "{kind:?} {status:?} {code:?} {should:?}"
            );
        }
    }

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
        }
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let mut b = Backoff::new(&config());
        let f = failure(ErrorKind::Server, Some(500));
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay(&f, 1.0).as_millis()).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_step() {
        let mut b = Backoff::new(&config());
        let f = failure(ErrorKind::Server, Some(500));
        assert_eq!(b.next_delay(&f, 0.0), Duration::ZERO);
        assert_eq!(b.next_delay(&f, 0.5), Duration::from_millis(500));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(&config());
        let mut f = failure(ErrorKind::RateLimited, Some(429));
        f.retry_after = Some(Duration::from_secs(7));
        assert_eq!(b.next_delay(&f, 1.0), Duration::from_secs(7));
    }
}
