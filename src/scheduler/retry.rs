//! Retry policy: which failures are retried, and how long to wait before the next attempt.
//!
//! `decide` is a pure function of one failure so the whole classification is a
//! table test. Delays come from backon's exponential backoff with full jitter
//! on top, and never undercut what the server asked for (`Retry-After`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::client::{ErrorKind, Failure};
use crate::job::RetryConfig;

use super::limiter::MAX_WAIT;

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
    if f.refused {
        return Verdict::Refused;
    }
    if matches!(f.status, Some(400..=404 | 422)) {
        return Verdict::Final;
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
    /// What a server asks for is honoured up to [`MAX_WAIT`] (a day).
    pub fn next_delay(&mut self, failure: &Failure, unit_random: f64) -> Duration {
        let step = self.inner.next().unwrap_or(self.max);
        // NaN clamps to NaN, and mul_f64 panics on it.
        let unit = if unit_random.is_nan() {
            1.0
        } else {
            unit_random.clamp(0.0, 1.0)
        };
        let jittered = Duration::try_from_secs_f64(step.as_secs_f64() * unit).unwrap_or(step);
        match failure.retry_after {
            Some(asked) => jittered.max(asked.min(MAX_WAIT)),
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

    /// kind, status, refused (by the client), x-should-retry, expected verdict
    type Case = (ErrorKind, Option<u16>, bool, Option<bool>, Verdict);

    #[test]
    fn classification_table() {
        use ErrorKind::*;
        use Verdict::*;
        let cases: &[Case] = &[
            (RateLimited, Some(429), false, None, Retry),
            // A quota 429 (the client marks it refused) is not a rate limit.
            (RateLimited, Some(429), true, None, Refused),
            (Server, Some(500), false, None, Retry),
            (Server, Some(502), false, None, Retry),
            (Server, Some(503), false, None, Retry),
            (Server, Some(504), false, None, Retry),
            (Timeout, Some(408), false, None, Retry),
            (Server, Some(409), false, None, Retry),
            (InvalidRequest, Some(400), false, None, Final),
            (InvalidRequest, Some(422), false, None, Final),
            (NotFound, Some(404), false, None, Final),
            (Auth, Some(401), true, None, Refused),
            (Auth, Some(402), true, None, Refused),
            (Auth, Some(403), true, None, Refused),
            // A 403 that is not about the account (a moderation flag): this request only.
            (Auth, Some(403), false, None, Final),
            (InvalidRequest, Some(413), false, None, Final),
            (Timeout, None, false, None, Retry),
            (Connection, None, false, None, Retry),
            (BadResponse, Some(200), false, None, Retry),
            (Server, Some(200), false, None, Retry),
            // x-should-retry decides where the status alone does not.
            (Server, Some(500), false, Some(false), Final),
            (InvalidRequest, Some(418), false, Some(true), Retry),
            // ... but never turns a refusal or a bad request into a retry.
            (Auth, Some(401), true, Some(true), Refused),
            (InvalidRequest, Some(400), false, Some(true), Final),
        ];
        for (kind, status, refused, should, expected) in cases {
            let mut f = failure(*kind, *status);
            f.refused = *refused;
            f.should_retry = *should;
            assert_eq!(
                decide(&f),
                *expected,
                "{kind:?} {status:?} {refused} {should:?}"
            );
        }
    }

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            bad_output_attempts: 1,
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
    fn extreme_figures_give_a_delay_and_never_a_panic() {
        let huge = RetryConfig {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(u64::MAX),
            max_backoff: Duration::MAX,
            bad_output_attempts: 100,
        };
        for config in [config(), huge] {
            let mut b = Backoff::new(&config);
            for retry_after in [
                None,
                Some(Duration::ZERO),
                Some(Duration::from_secs(99_999_999_999)),
                Some(Duration::MAX),
            ] {
                let mut f = failure(ErrorKind::RateLimited, Some(429));
                f.retry_after = retry_after;
                for unit in [f64::NAN, f64::INFINITY, -1.0, 0.0, 0.5, 1.0, 2.0] {
                    let delay = b.next_delay(&f, unit);
                    if retry_after.is_some_and(|a| a > MAX_WAIT) {
                        assert!(delay >= MAX_WAIT, "{delay:?}");
                    }
                }
            }
        }
        let mut f = failure(ErrorKind::RateLimited, Some(429));
        f.retry_after = Some(Duration::from_secs(99_999_999_999));
        assert_eq!(
            Backoff::new(&config()).next_delay(&f, 0.0),
            MAX_WAIT,
            "a server's pause is honoured up to a day"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(&config());
        let mut f = failure(ErrorKind::RateLimited, Some(429));
        f.retry_after = Some(Duration::from_secs(7));
        assert_eq!(b.next_delay(&f, 1.0), Duration::from_secs(7));
    }
}
