//! Transport failures (connect, timeout, reset, cut body) turned into [`Failure`]s.
//!
//! The one question that matters besides the kind: could the provider have
//! received, and billed, the request? A failed connect could not; anything
//! later could, so it is `uncertain` and the budget counts it at its worst case.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use reqwest::Url;

use super::{ErrorKind, Failure};

/// Where in the attempt the transport failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending, or waiting for the response headers.
    Headers,
    /// Reading a whole (non-streamed) reply, under the total timeout.
    WholeBody,
    /// Reading a stream, under the per-read timeout that only data events reset.
    StreamRead,
}

/// Our own timeout fired: the request may have been sent, so this is uncertain.
pub fn timed_out(limit: Duration, phase: Phase) -> Failure {
    let limit = secs(limit);
    let message = match phase {
        Phase::Headers => {
            format!("no answer within {limit} (raise the timeout if the model is slow)")
        }
        Phase::WholeBody => {
            format!("no complete reply within {limit} (raise the timeout if the model is slow)")
        }
        Phase::StreamRead => format!(
            "the stream stalled: no data event arrived for {limit} (comments and keep-alives do not count)"
        ),
    };
    Failure {
        uncertain: true,
        ..Failure::new(ErrorKind::Timeout, None, message)
    }
}

/// The attempt's hard deadline (`max_attempt_secs`) passed: however the
/// server kept it alive (a trickle, an endless stream), the reply is unusable.
pub fn past_deadline(max_attempt: Duration, status: Option<u16>) -> Failure {
    let message = format!(
        "no complete reply within max_attempt_secs ({}), the hard deadline of one attempt",
        secs(max_attempt)
    );
    Failure {
        uncertain: true,
        ..Failure::new(ErrorKind::BadResponse, status, message)
    }
}

/// The reply (or one SSE line of it) outgrew `max_reply_bytes`: reading stops
/// there, so memory stays bounded whatever the server sends.
pub fn too_large(what: &str, cap: usize, status: u16) -> Failure {
    let message = format!(
        "{what} is larger than max_reply_bytes ({cap} bytes); reading stopped there \
         (raise [endpoint] max_reply_bytes if such replies are expected)"
    );
    Failure {
        uncertain: true,
        ..Failure::new(ErrorKind::BadResponse, Some(status), message)
    }
}

/// A reqwest error, classified by what reqwest and the io error beneath it say.
pub fn failure(err: &reqwest::Error, phase: Phase, url: &Url, limit: Duration) -> Failure {
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => url.as_str().to_string(),
    };
    let detail = detail(err);
    if err.is_connect() {
        // Nothing was sent: the provider cannot have billed it.
        if err.is_timeout() {
            let message = format!(
                "could not connect to {host} within {}",
                secs(limit.min(Duration::from_secs(30)))
            );
            return Failure::new(ErrorKind::Timeout, None, message);
        }
        let hint = match io_kind(err) {
            Some(io::ErrorKind::ConnectionRefused) => {
                "; is the server running and the endpoint URL right?"
            }
            _ if detail.contains("dns") => "; check the host name in the endpoint URL",
            _ => "",
        };
        return Failure::new(
            ErrorKind::Connection,
            None,
            format!("could not connect to {host}: {detail}{hint}"),
        );
    }
    if err.is_timeout() {
        return timed_out(limit, phase);
    }
    let what = match (io_kind(err), phase) {
        (Some(io::ErrorKind::ConnectionReset), Phase::Headers) => {
            "connection reset by the server after the request was sent"
        }
        (Some(io::ErrorKind::ConnectionReset), _) => {
            "connection reset by the server while the reply was being read"
        }
        (Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted), _) => {
            "the connection broke while the request was being sent"
        }
        _ if detail.contains("connection closed before message completed") => {
            "the server closed the connection without answering"
        }
        (_, Phase::Headers) => "the request failed after it was sent",
        (_, _) => "the reply broke off mid-way",
    };
    Failure {
        uncertain: true,
        ..Failure::new(ErrorKind::Connection, None, format!("{what} ({detail})"))
    }
}

/// The io error kind deepest in the chain, if any.
fn io_kind(err: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source = err.source();
    let mut kind = None;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            kind = Some(io.kind());
        }
        source = err.source();
    }
    kind
}

/// The causes under reqwest's own message (which names the URL and says
/// nothing else), without hyper's "client error (Connect)" wrappers.
fn detail(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !text.starts_with("client error (") && !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = err.source();
    }
    if parts.is_empty() {
        "no further detail".to_string()
    } else {
        parts.join(": ")
    }
}

/// `now + after`, or far in the future when that overflows (a timeout of
/// 10^19 seconds is a valid setting, and must not panic).
pub fn deadline(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// "120 s", "0.2 s".
pub fn secs(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_uncertain_and_name_the_limit() {
        let failure = timed_out(Duration::from_secs(120), Phase::Headers);
        assert_eq!(
            (failure.kind, failure.uncertain),
            (ErrorKind::Timeout, true)
        );
        assert!(
            failure.message.starts_with("no answer within 120 s"),
            "{}",
            failure.message
        );
        let failure = timed_out(Duration::from_millis(200), Phase::StreamRead);
        assert!(
            failure.message.contains("stalled") && failure.message.contains("0.2 s"),
            "{}",
            failure.message
        );
    }
}
