//! The endpoint's own account of its rate limit: the `x-ratelimit-*` headers
//! (OpenAI, Groq, Together and most gateways in front of them).
//!
//! Read from every answer, a success or not, and handed on as plain figures:
//! the client decides nothing about pacing (the scheduler's limiter does).
//! A server's figures are untrusted: a value that does not parse, a negative
//! one, a remaining count above the announced limit, or an absurd one (more
//! than [`MAX_COUNT`], a reset further than [`MAX_RESET`]) is dropped, never
//! a reason to stall a run.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// More requests or tokens than any provider announces per window.
const MAX_COUNT: u64 = 1_000_000_000_000;
/// Longer than any window a provider counts over (Groq's daily limits included).
const MAX_RESET: Duration = Duration::from_secs(48 * 60 * 60);

/// One dimension of a limit (requests or tokens) as the server announced it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateWindow {
    /// `x-ratelimit-limit-*`: the window's whole budget.
    pub limit: Option<u64>,
    /// `x-ratelimit-remaining-*`: what is left of it.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset-*`: until the budget is whole again.
    pub reset: Option<Duration>,
}

impl RateWindow {
    fn read(headers: &HeaderMap, what: &str) -> RateWindow {
        let text = |kind: &str| {
            headers
                .get(format!("x-ratelimit-{kind}-{what}"))
                .and_then(|v| v.to_str().ok())
        };
        let limit = text("limit").and_then(parse_count);
        let mut remaining = text("remaining").and_then(parse_count);
        // More left than the whole budget: one of the two is wrong.
        if remaining.zip(limit).is_some_and(|(r, l)| r > l) {
            remaining = None;
        }
        RateWindow {
            limit,
            remaining,
            reset: text("reset").and_then(parse_reset),
        }
    }

    fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }

    /// Both figures pacing needs: what is left, and until when.
    pub fn budget(&self) -> Option<(u64, Duration)> {
        self.remaining.zip(self.reset)
    }
}

/// The `x-ratelimit-*` figures of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    pub requests: RateWindow,
    pub tokens: RateWindow,
}

/// The figures of an answer's headers; None when it carries none that parse.
pub fn rate_headers(headers: &HeaderMap) -> Option<RateHeaders> {
    // Most endpoints send none: one look at the names before any formatting.
    if !headers
        .keys()
        .any(|name| name.as_str().starts_with("x-ratelimit-"))
    {
        return None;
    }
    let found = RateHeaders {
        requests: RateWindow::read(headers, "requests"),
        tokens: RateWindow::read(headers, "tokens"),
    };
    (!found.requests.is_empty() || !found.tokens.is_empty()).then_some(found)
}

/// A whole, non-negative count within reason.
fn parse_count(value: &str) -> Option<u64> {
    let n: u64 = value.trim().parse().ok()?;
    (n <= MAX_COUNT).then_some(n)
}

/// A reset: a Go-style duration (`1s`, `6m0s`, `20ms`, `1m30.5s`, `1h2m`)
/// or plain seconds (`12`, `0.5`).
pub fn parse_reset(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let secs = match value.parse::<f64>() {
        Ok(secs) => secs,
        Err(_) => go_duration_secs(value)?,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_RESET)
}

/// `1h2m3.5s`, `20ms`, `150us`: a sequence of number-unit pairs, in seconds.
fn go_duration_secs(value: &str) -> Option<f64> {
    let mut rest = value;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn resets_in_every_form_providers_send() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("1s", Some(ms(1000))),
            ("6m0s", Some(ms(360_000))),
            ("20ms", Some(ms(20))),
            ("1m30.5s", Some(ms(90_500))),
            ("2m59.56s", Some(ms(179_560))),
            ("1h2m", Some(ms(3_720_000))),
            ("150us", Some(Duration::from_micros(150))),
            ("12", Some(ms(12_000))),
            ("0.5", Some(ms(500))),
            (" 7s ", Some(ms(7000))),
            ("0s", Some(Duration::ZERO)),
            ("", None),
            ("soon", None),
            ("-1s", None),
            ("-3", None),
            ("1x", None),
            ("s", None),
            ("1.2.3s", None),
            ("NaN", None),
            ("inf", None),
            ("1e300", None),
            ("999h", None),
            ("2024-01-01T00:00:00Z", None),
        ] {
            assert_eq!(parse_reset(text), expected, "{text:?}");
        }
    }

    #[test]
    fn header_table() {
        let w = |limit, remaining, reset: Option<u64>| RateWindow {
            limit,
            remaining,
            reset: reset.map(Duration::from_millis),
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<RateHeaders>);
        let cases: &[Case] = &[
            (&[], None),
            (&[("content-type", "application/json")], None),
            (
                &[
                    ("x-ratelimit-limit-requests", "60"),
                    ("x-ratelimit-remaining-requests", "59"),
                    ("x-ratelimit-reset-requests", "1s"),
                    ("x-ratelimit-limit-tokens", "150000"),
                    ("x-ratelimit-remaining-tokens", "149984"),
                    ("x-ratelimit-reset-tokens", "6m0s"),
                ],
                Some(RateHeaders {
                    requests: w(Some(60), Some(59), Some(1000)),
                    tokens: w(Some(150_000), Some(149_984), Some(360_000)),
                }),
            ),
            // Garbage, negative and absurd figures are dropped one by one.
            (
                &[
                    ("x-ratelimit-limit-requests", "lots"),
                    ("x-ratelimit-remaining-requests", "-4"),
                    ("x-ratelimit-reset-requests", "20ms"),
                    ("x-ratelimit-remaining-tokens", "99999999999999999999"),
                    ("x-ratelimit-reset-tokens", "-1s"),
                ],
                Some(RateHeaders {
                    requests: w(None, None, Some(20)),
                    tokens: w(None, None, None),
                }),
            ),
            // More left than the limit: the remaining figure is not believed.
            (
                &[
                    ("x-ratelimit-limit-requests", "10"),
                    ("x-ratelimit-remaining-requests", "11"),
                ],
                Some(RateHeaders {
                    requests: w(Some(10), None, None),
                    tokens: w(None, None, None),
                }),
            ),
            // Nothing usable at all.
            (&[("x-ratelimit-remaining-requests", "x")], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(rate_headers(&headers(pairs)), *expected, "{pairs:?}");
        }
    }

    #[test]
    fn budget_needs_both_figures() {
        let window = RateWindow {
            limit: Some(5),
            remaining: Some(3),
            reset: None,
        };
        assert_eq!(window.budget(), None);
        let window = RateWindow {
            reset: Some(Duration::from_secs(2)),
            ..window
        };
        assert_eq!(window.budget(), Some((3, Duration::from_secs(2))));
    }
}
