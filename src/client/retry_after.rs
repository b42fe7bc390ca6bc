//! The server's own retry hints: `retry-after-ms`, `Retry-After` and `x-should-retry`.
//!
//! Parsed from every non-2xx response, since a 503 or a 529 may carry them as
//! well as a 429. Pure functions of the headers and "now", so the HTTP-date
//! form can be tested without a clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

/// Longer waits than this are taken as a misconfigured server, not as advice:
/// the scheduler's own backoff still applies.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait the server asks for: `retry-after-ms` (float milliseconds, as
/// OpenAI sends it) first, else `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("retry-after-ms")
        .and_then(parse_millis)
        .or_else(|| header("retry-after").and_then(|v| parse_retry_after(v, now)))
}

/// `x-should-retry: true|false`, the server's explicit verdict.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get("x-should-retry")?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `retry-after-ms`: a float number of milliseconds.
pub fn parse_millis(value: &str) -> Option<Duration> {
    let ms: f64 = value.trim().parse().ok()?;
    duration_from_secs(ms / 1000.0)
}

/// `Retry-After`: seconds (integer or float) or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return duration_from_secs(secs);
    }
    // HTTP dates are the RFC 2822 subset with "GMT"; chrono reads both.
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&Utc) - now;
    // A date in the past means "now": the server's clock may simply be ahead.
    let wait = wait.to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Negative and non-finite values are garbage, not advice; huge ones are capped.
fn duration_from_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_forms() {
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Headers, Option<Duration>)] = &[
            (
                &[("retry-after-ms", "1500")],
                Some(Duration::from_millis(1500)),
            ),
            (
                &[("retry-after-ms", "12.5")],
                Some(Duration::from_micros(12_500)),
            ),
            // retry-after-ms wins over Retry-After.
            (
                &[("retry-after-ms", "250"), ("retry-after", "30")],
                Some(Duration::from_millis(250)),
            ),
            // A garbage retry-after-ms falls back to Retry-After.
            (
                &[("retry-after-ms", "soon"), ("retry-after", "3")],
                Some(Duration::from_secs(3)),
            ),
            (&[("retry-after", "20")], Some(Duration::from_secs(20))),
            (
                &[("retry-after", " 0.5 ")],
                Some(Duration::from_millis(500)),
            ),
            (&[("retry-after", "0")], Some(Duration::ZERO)),
            (
                &[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")],
                Some(Duration::from_secs(30)),
            ),
            // A past date means now.
            (
                &[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")],
                Some(Duration::ZERO),
            ),
            (&[("retry-after", "-5")], None),
            (&[("retry-after", "NaN")], None),
            (&[("retry-after", "inf")], None),
            (&[("retry-after", "tomorrow")], None),
            (&[("retry-after", "")], None),
            (&[("retry-after", "999999999")], Some(MAX_RETRY_AFTER)),
            (&[("retry-after-ms", "-1")], None),
            (&[], None),
        ];
        for (pairs, expected) in table {
            assert_eq!(retry_after(&headers(pairs), now()), *expected, "{pairs:?}");
        }
    }

    #[test]
    fn should_retry_values() {
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "False")])),
            Some(false)
        );
        assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
        assert_eq!(should_retry(&headers(&[])), None);
    }
}
