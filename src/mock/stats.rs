//! What the mock saw: request counts, concurrency, replies by status.
//!
//! Plain atomics, so counting costs the hot path no lock. Tests assert on
//! these (how many attempts, how much concurrency) instead of on timing.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Status codes counted individually; anything above is folded into nothing.
const STATUS_SLOTS: usize = 600;

#[derive(Debug)]
pub struct MockStats {
    connections: AtomicU64,
    requests: AtomicU64,
    http2: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    statuses: Box<[AtomicU64]>,
    resets: AtomicU64,
    hangs: AtomicU64,
    cuts: AtomicU64,
    limited: AtomicU64,
    successes: AtomicU64,
}

impl Default for MockStats {
    fn default() -> Self {
        MockStats {
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            http2: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            resets: AtomicU64::new(0),
            hangs: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            successes: AtomicU64::new(0),
        }
    }
}

impl MockStats {
    /// TCP connections accepted: with keep-alive, far fewer than requests.
    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    /// Requests received on the completions route, whatever their answer.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Requests received over HTTP/2, on any route.
    pub fn http2_requests(&self) -> u64 {
        self.http2.load(Relaxed)
    }

    pub(crate) fn count_http2(&self) {
        self.http2.fetch_add(1, Relaxed);
    }

    /// Completions requests being handled now (from arrival until the reply's head is ready).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// The most completions requests handled at once since the start.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Relaxed)
    }

    /// Replies sent with this status, on any route. Resets and hangs send none;
    /// a `cut` reply counts under the 200 whose head it sent.
    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses
            .get(usize::from(status))
            .map_or(0, |n| n.load(Relaxed))
    }

    /// Connections closed without an answer (`reset` faults).
    pub fn resets(&self) -> u64 {
        self.resets.load(Relaxed)
    }

    /// Requests never answered (`hang` faults).
    pub fn hangs(&self) -> u64 {
        self.hangs.load(Relaxed)
    }

    /// Replies whose body was cut short after the head (`cut` faults).
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Relaxed)
    }

    /// 429s sent by the enforced window limit.
    pub fn limited(&self) -> u64 {
        self.limited.load(Relaxed)
    }

    /// Complete, well-formed chat completions sent.
    pub fn successes(&self) -> u64 {
        self.successes.load(Relaxed)
    }

    /// Counts a completions request as arrived and in flight until the guard drops.
    pub(crate) fn start_request(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Relaxed);
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Relaxed);
        InFlight(self)
    }

    pub(crate) fn count_connection(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_status(&self, status: u16) {
        if let Some(n) = self.statuses.get(usize::from(status)) {
            n.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn count_reset(&self) {
        self.resets.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_hang(&self) {
        self.hangs.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_cut(&self) {
        self.cuts.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_limited(&self) {
        self.limited.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_success(&self) {
        self.successes.fetch_add(1, Relaxed);
    }
}

/// Decrements `in_flight` when a request's handling ends, however it ends.
pub(crate) struct InFlight<'a>(&'a MockStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// One line for a person: `requests 120, ok 100, 429 x15 (limited 5), 500 x5, max in flight 8`.
impl fmt::Display for MockStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "requests {}, ok {}", self.requests(), self.successes())?;
        for (status, count) in self.statuses.iter().enumerate() {
            let count = count.load(Relaxed);
            if count > 0 && status != 200 {
                write!(f, ", {status} x{count}")?;
                if status == 429 && self.limited() > 0 {
                    write!(f, " (limited {})", self.limited())?;
                }
            }
        }
        for (name, count) in [
            ("resets", self.resets()),
            ("hangs", self.hangs()),
            ("cuts", self.cuts()),
        ] {
            if count > 0 {
                write!(f, ", {name} {count}")?;
            }
        }
        write!(f, ", max in flight {}", self.max_in_flight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guard_tracks_the_peak() {
        let stats = MockStats::default();
        let a = stats.start_request();
        let b = stats.start_request();
        assert_eq!((stats.in_flight(), stats.max_in_flight()), (2, 2));
        drop(a);
        drop(b);
        let _c = stats.start_request();
        assert_eq!(
            (stats.requests(), stats.in_flight(), stats.max_in_flight()),
            (3, 1, 2)
        );
    }

    #[test]
    fn display_lists_only_what_happened() {
        let stats = MockStats::default();
        stats.count_status(200);
        stats.count_success();
        stats.count_status(429);
        stats.count_limited();
        stats.count_status(999);
        assert_eq!(stats.status_count(999), 0);
        assert_eq!(
            stats.to_string(),
            "requests 0, ok 1, 429 x1 (limited 1), max in flight 0"
        );
    }
}
