//! Stop signals: stop dispatching (budget, refusals, interrupt) and, after a
//! grace period, abandon the requests still in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::StopReason;
use crate::client::{ErrorKind, Failure};

#[derive(Debug)]
pub struct StopSignal {
    reason: Mutex<Option<StopReason>>,
    dispatching: CancellationToken,
    retries: CancellationToken,
    in_flight: CancellationToken,
    grace: Duration,
    /// A second interrupt came before the grace period ended.
    cut_short: AtomicBool,
}

impl StopSignal {
    /// `grace`: how long requests in flight may still finish after an interrupt.
    pub fn new(grace: Duration) -> StopSignal {
        StopSignal {
            reason: Mutex::new(None),
            dispatching: CancellationToken::new(),
            retries: CancellationToken::new(),
            in_flight: CancellationToken::new(),
            grace,
            cut_short: AtomicBool::new(false),
        }
    }

    /// Cancelled when no new request may be dispatched (any stop).
    pub fn dispatching(&self) -> CancellationToken {
        self.dispatching.clone()
    }

    /// Cancelled when requests in flight may not be retried either (an
    /// interrupt); after a budget or refusal stop they still finish.
    pub fn retries(&self) -> CancellationToken {
        self.retries.clone()
    }

    /// Stops dispatching without a reason of the contract's (the output
    /// cannot be written): requests in flight finish.
    pub fn halt(&self) {
        self.dispatching.cancel();
    }

    /// Cancelled when requests in flight are abandoned.
    pub fn in_flight(&self) -> CancellationToken {
        self.in_flight.clone()
    }

    /// Stops dispatching. When several reasons apply, the most urgent is kept:
    /// interrupted, then endpoint refused, then budget (the exit code's order).
    pub fn stop(&self, reason: StopReason) {
        let mut current = self.reason.lock().expect("stop lock is never poisoned");
        let rank = |r: StopReason| match r {
            StopReason::Interrupted => 3,
            StopReason::EndpointRefused => 2,
            StopReason::Budget => 1,
        };
        if current.is_none_or(|c| rank(reason) > rank(c)) {
            *current = Some(reason);
        }
        self.dispatching.cancel();
    }

    /// Ctrl-C or SIGTERM: the first stops dispatching and starts the grace
    /// period; a second abandons the requests in flight at once.
    /// Returns true for the second interrupt.
    pub fn interrupt(self: &std::sync::Arc<Self>) -> bool {
        if self.dispatching.is_cancelled() && self.reason() == Some(StopReason::Interrupted) {
            if !self.in_flight.is_cancelled() {
                self.cut_short.store(true, Ordering::Relaxed);
            }
            self.in_flight.cancel();
            return true;
        }
        self.stop(StopReason::Interrupted);
        self.retries.cancel();
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            this.in_flight.cancel();
        });
        false
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().expect("stop lock is never poisoned")
    }

    /// The failure recorded for a request abandoned at the end of the grace period.
    pub fn abandoned(&self) -> Failure {
        let message = if self.cut_short.load(Ordering::Relaxed) {
            "interrupted twice: abandoned without waiting for the answer; the provider may have billed it"
                .to_string()
        } else {
            format!(
                "interrupted: no answer within the {} s grace period; the provider may have billed it",
                self.grace.as_secs_f64()
            )
        };
        let mut f = Failure::new(ErrorKind::Timeout, None, message);
        f.uncertain = true;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_most_urgent_reason_wins() {
        let s = StopSignal::new(Duration::from_secs(1));
        s.stop(StopReason::Budget);
        s.stop(StopReason::EndpointRefused);
        s.stop(StopReason::Budget);
        assert_eq!(s.reason(), Some(StopReason::EndpointRefused));
        assert!(s.dispatching().is_cancelled());
        assert!(!s.in_flight().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn interrupt_abandons_in_flight_after_the_grace_period_or_a_second_signal() {
        let s = Arc::new(StopSignal::new(Duration::from_secs(5)));
        s.interrupt();
        assert_eq!(s.reason(), Some(StopReason::Interrupted));
        assert!(!s.in_flight().is_cancelled());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(s.in_flight().is_cancelled());

        assert!(s.abandoned().message.contains("grace period"));

        let s = Arc::new(StopSignal::new(Duration::from_secs(5)));
        assert!(!s.interrupt());
        assert!(s.interrupt());
        assert!(s.in_flight().is_cancelled());
        assert!(s.abandoned().message.contains("interrupted twice"));
    }
}
