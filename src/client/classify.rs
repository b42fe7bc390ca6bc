//! Turning an HTTP status, an error body or an in-band error object into a [`Failure`].
//!
//! Pure functions, tested over tables, so the retry policy upstream can trust
//! the kinds: what is retried and what stops a run is decided from them.

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use super::error_body::{self, truncate, ErrorInfo};
use super::{rate_headers, retry_after};
use super::{ErrorKind, Failure};

/// Longest redirect target quoted in a message: a URL worth fixing fits.
const LOCATION_CAP: usize = 300;

/// The kind of a non-2xx status.
pub fn status_kind(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::RateLimited,
        408 => ErrorKind::Timeout,
        409 | 500..=599 => ErrorKind::Server,
        401..=403 => ErrorKind::Auth,
        404 => ErrorKind::NotFound,
        // A redirect we did not follow (see `http`): the URL needs fixing, retrying will not help.
        300..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Server,
    }
}

/// A non-2xx response, with the server's message and retry hints.
///
/// `key_env` names the variable holding the API key, for the 401 hint.
pub fn http_failure(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    key_env: &str,
    now: DateTime<Utc>,
) -> Failure {
    let ErrorInfo { message, code } = error_body::parse_error_body(body);
    let refused = is_refusal(status, &message, code.as_deref());
    let mut message = if message.is_empty() {
        format!("HTTP {status}{} with an empty body", reason_suffix(status))
    } else {
        message
    };
    if (300..400).contains(&status) {
        // A Location is the server's text like any other: capped (after
        // redaction, see `truncate`), or a 300 kB one fills every record.
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || "another URL".to_string(),
                |to| truncate(to, LOCATION_CAP),
            );
        message = format!("the endpoint redirects to {location} (HTTP {status}): set the endpoint URL to the final address");
    } else if let Some(hint) = hint(status, key_env) {
        message = format!("{message} ({hint})");
    }
    Failure {
        retry_after: retry_after::retry_after(headers, now),
        should_retry: retry_after::should_retry(headers),
        rate_limits: rate_headers::rate_headers(headers).map(Box::new),
        error_code: code,
        refused,
        // A gateway that timed out (504, Cloudflare's 524) had passed the
        // request on: the provider behind it may have run and billed it.
        uncertain: matches!(status, 504 | 524),
        ..Failure::new(status_kind(status), Some(status), message)
    }
}

/// Whether an answer refuses the account rather than the request: 401, 402,
/// a quota 429, and a 403 whose own words are about credits, quota or the key
/// (OpenRouter also answers 403 to a prompt its moderation flags: that one
/// request fails, the run goes on).
fn is_refusal(status: u16, message: &str, code: Option<&str>) -> bool {
    let text = format!("{} {}", message, code.unwrap_or("")).to_ascii_lowercase();
    let about_account = [
        "credit",
        "quota",
        "balance",
        "billing",
        "payment",
        "insufficient",
        "funds",
        "api key",
        "api_key",
        "apikey",
        "subscription",
    ]
    .iter()
    .any(|word| text.contains(word));
    match status {
        401 | 402 => true,
        403 => about_account,
        429 => code.is_some_and(|c| c.eq_ignore_ascii_case("insufficient_quota")),
        _ => false,
    }
}

/// What to do next, for statuses where the user (not the server) must act.
fn hint(status: u16, key_env: &str) -> Option<String> {
    Some(match status {
        401 if key_env.is_empty() => {
            "the endpoint wants an API key: set endpoint.api_key_env to the variable holding it"
                .to_string()
        }
        401 => format!("check the API key in ${key_env}"),
        402 => "the account is out of credits: top it up".to_string(),
        403 => {
            "the key may lack access to this model, or the account is out of credits".to_string()
        }
        404 => "check the endpoint URL and the model name".to_string(),
        _ => return None,
    })
}

fn reason_suffix(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|reason| format!(" {reason}"))
        .unwrap_or_default()
}

/// An `error` object inside a 2xx body or a stream: classified by its own
/// code or status the same way an HTTP status is (a code-400 error in a 200
/// is an `invalid_request`, never retried; a 429 or 5xx is retried), and
/// reported with that code as its status. Without one, rate limits and server
/// errors named by type stay retryable; anything else is a response we cannot use.
pub fn in_band_failure(document: &str, status: u16, uncertain: bool) -> Failure {
    let top = serde_json::from_str::<&RawValue>(document)
        .ok()
        .and_then(error_body::fields_of);
    let error = (top.as_ref())
        .and_then(|top| top.error)
        .and_then(error_body::fields_of)
        .or(top)
        .unwrap_or_default();
    let own_status = [error.code, error.status, error.status_code]
        .into_iter()
        .flatten()
        .find_map(http_status);
    let words = [error.kind, error.code]
        .into_iter()
        .flatten()
        .filter_map(error_body::as_string)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let ErrorInfo { message, code } = error_body::from_json(document)
        .unwrap_or_else(|| error_body::parse_error_body(document.as_bytes()));
    let refused = own_status.is_some_and(|own| is_refusal(own, &message, code.as_deref()));
    let (kind, reported) = match own_status {
        Some(own) => (status_kind(own), own),
        None if words.contains("rate_limit") || words.contains("rate limit") => {
            (ErrorKind::RateLimited, status)
        }
        None if words.contains("server_error") || words.contains("overloaded") => {
            (ErrorKind::Server, status)
        }
        None => (ErrorKind::BadResponse, status),
    };
    Failure {
        error_code: code,
        uncertain,
        refused,
        ..Failure::new(
            kind,
            Some(reported),
            format!("the server answered {status} but sent an error: {message}"),
        )
    }
}

/// An error status given as a number or a numeric string; anything outside
/// 400..=599 (a provider's own error numbering) is not a status.
fn http_status(value: &RawValue) -> Option<u16> {
    let number: u64 = match error_body::as_string(value) {
        Some(s) => s.trim().parse().ok()?,
        None => serde_json::from_str::<serde_json::Number>(value.get())
            .ok()?
            .as_u64()?,
    };
    u16::try_from(number)
        .ok()
        .filter(|status| (400..=599).contains(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    #[test]
    fn status_kinds() {
        use ErrorKind::*;
        let table = [
            (429, RateLimited),
            (408, Timeout),
            (409, Server),
            (500, Server),
            (502, Server),
            (503, Server),
            (529, Server),
            (401, Auth),
            (402, Auth),
            (403, Auth),
            (404, NotFound),
            (400, InvalidRequest),
            (413, InvalidRequest),
            (422, InvalidRequest),
            (301, InvalidRequest),
        ];
        for (status, kind) in table {
            assert_eq!(status_kind(status), kind, "{status}");
        }
    }

    #[test]
    fn refusals_are_about_the_account_not_the_request() {
        let cases = [
            (401, "Invalid API key", None, true),
            (402, "Insufficient credits", None, true),
            (403, "Insufficient balance, please top up", None, true),
            (403, "Your request was flagged by moderation", None, false),
            (
                429,
                "You exceeded your current quota",
                Some("insufficient_quota"),
                true,
            ),
            (
                429,
                "Rate limit reached",
                Some("rate_limit_exceeded"),
                false,
            ),
            (500, "quota service down", None, false),
        ];
        for (status, message, code, refused) in cases {
            assert_eq!(
                is_refusal(status, message, code),
                refused,
                "{status} {message}"
            );
        }
    }

    #[test]
    fn http_failure_carries_code_and_hints() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        headers.insert("x-should-retry", HeaderValue::from_static("false"));
        let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}"#;
        let failure = http_failure(429, &headers, body, "KEY", Utc::now());
        assert_eq!(failure.kind, ErrorKind::RateLimited);
        assert_eq!(failure.status, Some(429));
        assert_eq!(failure.error_code.as_deref(), Some("insufficient_quota"));
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(failure.should_retry, Some(false));
        assert!(!failure.uncertain);

        for (status, uncertain) in [
            (500, false),
            (502, false),
            (503, false),
            (504, true),
            (524, true),
        ] {
            let failure = http_failure(status, &HeaderMap::new(), b"", "KEY", Utc::now());
            assert_eq!(failure.uncertain, uncertain, "HTTP {status}");
        }

        let failure = http_failure(401, &HeaderMap::new(), b"", "MY_KEY", Utc::now());
        assert_eq!(failure.kind, ErrorKind::Auth);
        assert_eq!(
            failure.message,
            "HTTP 401 Unauthorized with an empty body (check the API key in $MY_KEY)"
        );

        let mut headers = HeaderMap::new();
        headers.insert(
            "location",
            HeaderValue::from_static("https://example.com/v1/chat/completions"),
        );
        let failure = http_failure(301, &headers, b"moved", "K", Utc::now());
        assert!(failure
            .message
            .contains("redirects to https://example.com/v1/chat/completions"));

        // A target of 100 kB is quoted in part.
        let long = format!("https://example.com/{}", "a".repeat(100_000));
        let mut headers = HeaderMap::new();
        headers.insert("location", HeaderValue::from_str(&long).unwrap());
        let failure = http_failure(302, &headers, b"", "K", Utc::now());
        assert!(
            failure.message.len() < 500,
            "{} bytes",
            failure.message.len()
        );
        assert!(failure
            .message
            .contains("redirects to https://example.com/aaa"));
    }

    #[test]
    fn in_band_errors() {
        let cases = [
            (
                r#"{"error":{"message":"slow down","code":429}}"#,
                ErrorKind::RateLimited,
            ),
            (
                r#"{"error":{"message":"busy","code":"503"}}"#,
                ErrorKind::Server,
            ),
            (
                r#"{"error":{"message":"x","type":"server_error"}}"#,
                ErrorKind::Server,
            ),
            (
                r#"{"error":{"message":"x","type":"rate_limit_exceeded"}}"#,
                ErrorKind::RateLimited,
            ),
            (
                r#"{"error":{"message":"x","code":400}}"#,
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"message":"Invalid model","statusCode":"422"}"#,
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"error":{"message":"x","code":1001}}"#,
                ErrorKind::BadResponse,
            ),
            (r#"{"error":"plain"}"#, ErrorKind::BadResponse),
        ];
        for (body, kind) in cases {
            let failure = in_band_failure(body, 200, true);
            assert_eq!(failure.kind, kind, "{body}");
            assert!(failure.uncertain);
        }
        // The error's own code stands in for the status, so the retry policy
        // treats it as it would that HTTP status.
        let statuses = [
            (r#"{"error":{"message":"x","code":400}}"#, 400),
            (r#"{"error":{"message":"x","code":"503"}}"#, 503),
            (r#"{"error":{"message":"x","type":"server_error"}}"#, 200),
            (r#"{"error":{"message":"x","code":1001}}"#, 200),
        ];
        for (body, status) in statuses {
            assert_eq!(
                in_band_failure(body, 200, false).status,
                Some(status),
                "{body}"
            );
        }
        let value = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":429}}"#;
        assert!(in_band_failure(value, 200, false).refused);
    }
}
