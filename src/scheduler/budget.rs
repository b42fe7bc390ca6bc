//! The cost budget (`max_cost_usd`): dispatch stops before the recorded cost could pass it.
//!
//! Before each dispatch, recorded cost + the worst case of every request in
//! flight + the worst case of the next one must stay within the budget.
//! Attempts that may have been billed without an answer count at their worst case.

use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug)]
struct Spent {
    recorded: f64,
    in_flight: f64,
    requests_in_flight: u64,
}

#[derive(Debug)]
pub struct Budget {
    max_usd: f64,
    spent: Mutex<Spent>,
    settled: Notify,
}

impl Budget {
    /// `recorded_usd`: what the output already holds (resumed lines count).
    pub fn new(max_usd: f64, recorded_usd: f64) -> Budget {
        Budget {
            max_usd,
            spent: Mutex::new(Spent {
                recorded: recorded_usd,
                in_flight: 0.0,
                requests_in_flight: 0,
            }),
            settled: Notify::new(),
        }
    }

    /// Ok when booked; Err(true) when it may fit once requests in flight have
    /// settled (they usually cost less than their worst case), Err(false) when
    /// it cannot fit at all.
    fn reserve(&self, worst_usd: f64) -> Result<(), bool> {
        let mut s = self.spent.lock().expect("budget lock is never poisoned");
        if s.recorded + s.in_flight + worst_usd > self.max_usd {
            return Err(s.requests_in_flight > 0);
        }
        s.in_flight += worst_usd;
        s.requests_in_flight += 1;
        Ok(())
    }

    /// Books a request's worst case, waiting for requests in flight to settle
    /// while that could make room. False means the budget is spent: a run that
    /// stops here has spent all a rerun with the same budget could, so the
    /// rerun sends nothing.
    pub async fn reserve_when_possible(&self, worst_usd: f64) -> bool {
        loop {
            let settled = self.settled.notified();
            match self.reserve(worst_usd) {
                Ok(()) => return true,
                Err(false) => return false,
                Err(true) => settled.await,
            }
        }
    }

    /// Books one more worst case for a request, without waiting: the retry of
    /// an attempt that may have been billed needs room of its own.
    pub fn reserve_more(&self, worst_usd: f64) -> bool {
        let mut s = self.spent.lock().expect("budget lock is never poisoned");
        if s.recorded + s.in_flight + worst_usd > self.max_usd {
            return false;
        }
        s.in_flight += worst_usd;
        true
    }

    /// A request ended: what it booked is released and what it may have cost
    /// ([`charge`]) is recorded.
    pub fn settle(&self, booked_usd: f64, charge_usd: f64) {
        {
            let mut s = self.spent.lock().expect("budget lock is never poisoned");
            s.in_flight = (s.in_flight - booked_usd).max(0.0);
            s.requests_in_flight = s.requests_in_flight.saturating_sub(1);
            s.recorded += charge_usd;
        }
        self.settled.notify_waiters();
    }

    #[cfg(test)]
    fn recorded(&self) -> f64 {
        self.spent
            .lock()
            .expect("budget lock is never poisoned")
            .recorded
    }
}

/// What a request counts against the budget: its cost, or its worst case when
/// it was answered without a figure (no usage reported), plus its worst case
/// for every attempt that may have been billed without an answer.
pub fn charge(
    answered: bool,
    cost_usd: Option<f64>,
    worst_usd: f64,
    uncertain_attempts: u32,
) -> f64 {
    let answer = if answered {
        cost_usd.unwrap_or(worst_usd)
    } else {
        0.0
    };
    answer + worst_usd * f64::from(uncertain_attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_until_settled() {
        let b = Budget::new(1.0, 0.25);
        assert!(b.reserve(0.5).is_ok());
        // 0.25 recorded + 0.5 in flight + 0.5 next > 1.0
        assert!(b.reserve(0.5).is_err());
        b.settle(0.5, charge(true, Some(0.1), 0.5, 0));
        assert!((b.recorded() - 0.35).abs() < 1e-12);
        assert!(b.reserve(0.5).is_ok());
    }

    #[test]
    fn uncertain_attempts_count_at_worst_case() {
        let b = Budget::new(1.0, 0.0);
        assert!(b.reserve(0.3).is_ok());
        // Two attempts lost without an answer, then a failure: 2 worst cases.
        b.settle(0.3, charge(false, None, 0.3, 2));
        assert!((b.recorded() - 0.6).abs() < 1e-12);
        assert!(b.reserve(0.5).is_err());
    }

    #[test]
    fn an_answer_without_a_figure_counts_at_its_worst_case() {
        assert_eq!(charge(true, None, 0.3, 0), 0.3);
        assert_eq!(charge(true, Some(0.1), 0.3, 1), 0.1 + 0.3);
        assert_eq!(charge(false, None, 0.3, 0), 0.0);
    }

    #[test]
    fn a_retry_after_an_uncertain_attempt_books_room_of_its_own() {
        let b = Budget::new(1.0, 0.0);
        assert!(b.reserve(0.4).is_ok());
        assert!(b.reserve_more(0.4));
        assert!(!b.reserve_more(0.4), "a third worst case does not fit");
        b.settle(0.8, charge(true, Some(0.1), 0.4, 1));
        assert!((b.recorded() - 0.5).abs() < 1e-12);
    }

    #[tokio::test]
    async fn a_request_that_fits_once_others_settle_waits_for_them() {
        let b = std::sync::Arc::new(Budget::new(1.0, 0.0));
        assert!(b.reserve(0.6).is_ok());
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_when_possible(0.6).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // The first request cost far less than its worst case: the second fits.
        b.settle(0.6, 0.1);
        assert!(waiting.await.expect("join"));
        // Nothing in flight and no room: give up at once.
        b.settle(0.6, 0.6);
        assert!(!b.reserve_when_possible(0.6).await);
    }

    #[test]
    fn a_resumed_output_at_the_budget_spends_nothing_more() {
        let b = Budget::new(1.0, 1.0);
        assert!(b.reserve(1e-9).is_err());
    }
}
