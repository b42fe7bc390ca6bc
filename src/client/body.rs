//! Reading a response body within bounds: every read has a deadline and no
//! more than a cap is ever kept.
//!
//! Whatever a server sends (an endless body, a trickle, a gigabyte), an
//! attempt ends in time and holds at most its cap in memory: nothing here
//! collects a body without counting it (no `bytes()` or `text()`).

use bytes::Bytes;
use reqwest::Response;
use tokio::time::{timeout_at, Instant};

/// What one read gave.
#[derive(Debug)]
pub enum Read {
    Chunk(Bytes),
    /// The body ended.
    End,
    /// The caller's own timer (`until`) ran out first.
    TimedOut,
    /// The attempt's hard deadline ran out first.
    PastDeadline,
    Failed(reqwest::Error),
}

/// The next chunk of the body, before `until` and before the attempt's `deadline`.
pub async fn next(response: &mut Response, until: Instant, deadline: Instant) -> Read {
    let limit = until.min(deadline);
    match timeout_at(limit, response.chunk()).await {
        Ok(Ok(Some(chunk))) => Read::Chunk(chunk),
        Ok(Ok(None)) => Read::End,
        Ok(Err(err)) => Read::Failed(err),
        Err(_) if deadline <= until => Read::PastDeadline,
        Err(_) => Read::TimedOut,
    }
}

/// The first `cap` bytes of an error response, as many as arrive before
/// `until`. The rest is never read: the connection is dropped, not drained,
/// so an endless error page costs nothing.
pub async fn error_body(mut response: Response, cap: usize, until: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match next(&mut response, until, until).await {
            Read::Chunk(chunk) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    body
}

/// Whether `have + more` bytes would pass `cap`.
pub fn over_cap(have: usize, more: usize, cap: usize) -> bool {
    have.saturating_add(more) > cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_inclusive_and_never_overflows() {
        assert!(!over_cap(10, 6, 16));
        assert!(over_cap(10, 7, 16));
        assert!(over_cap(usize::MAX, 1, usize::MAX - 1));
    }
}
