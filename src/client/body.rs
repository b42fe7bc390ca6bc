//! Reading a response body within bounds: every read has a deadline and no
//! more than a cap is ever kept.
//!
//! Whatever a server sends (an endless body, a trickle, a gigabyte), an
//! attempt ends in time and holds at most its cap in memory: nothing here
//! collects a body without counting it (no `bytes()` or `text()`).

use std::future::Future;

use reqwest::Response;
use tokio::time::{timeout_at, Instant};

/// Why a bounded step (the send, or one read) did not finish.
#[derive(Debug)]
pub enum Cut {
    /// The caller's own timer (`until`) ran out first.
    TimedOut,
    /// The attempt's hard deadline ran out first.
    PastDeadline,
    Failed(reqwest::Error),
}

/// `step` (sending, or one read), before `until` and before the attempt's
/// `deadline`: every timer of an attempt is matched here.
pub async fn within<T>(
    step: impl Future<Output = reqwest::Result<T>>,
    until: Instant,
    deadline: Instant,
) -> Result<T, Cut> {
    match timeout_at(until.min(deadline), step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Cut::Failed(err)),
        Err(_) if deadline <= until => Err(Cut::PastDeadline),
        Err(_) => Err(Cut::TimedOut),
    }
}

/// The first `cap` bytes of an error response, as many as arrive before
/// `until`. The rest is never read: the connection is dropped, not drained,
/// so an endless error page costs nothing.
pub async fn error_body(mut response: Response, cap: usize, until: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        let Ok(Some(chunk)) = within(response.chunk(), until, until).await else {
            break;
        };
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
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
