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

    /// A request ended: its reservation becomes what it cost, plus its uncertain attempts at worst case.
    pub fn settle(&self, worst_usd: f64, cost_usd: Option<f64>, uncertain_attempts: u32) {
        {
            let mut s = self.spent.lock().expect("budget lock is never poisoned");
            s.in_flight = (s.in_flight - worst_usd).max(0.0);
            s.requests_in_flight = s.requests_in_flight.saturating_sub(1);
            s.recorded += cost_usd.unwrap_or(0.0) + worst_usd * f64::from(uncertain_attempts);
        }
        self.settled.notify_waiters();
    }

    /// An answered request without a known cost counts at its worst case.
    pub fn worst_if_unknown(cost_usd: Option<f64>, worst_usd: f64) -> f64 {
        cost_usd.unwrap_or(worst_usd)
    }

    pub fn recorded(&self) -> f64 {
        self.spent
            .lock()
            .expect("budget lock is never poisoned")
            .recorded
    }
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
        b.settle(0.5, Some(0.1), 0);
        assert!((b.recorded() - 0.35).abs() < 1e-12);
        assert!(b.reserve(0.5).is_ok());
    }

    #[test]
    fn uncertain_attempts_count_at_worst_case() {
        let b = Budget::new(1.0, 0.0);
        assert!(b.reserve(0.3).is_ok());
        b.settle(0.3, None, 2);
        assert!((b.recorded() - 0.6).abs() < 1e-12);
        assert!(b.reserve(0.5).is_err());
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
        b.settle(0.6, Some(0.1), 0);
        assert!(waiting.await.expect("join"));
        // Nothing in flight and no room: give up at once.
        b.settle(0.6, Some(0.6), 0);
        assert!(!b.reserve_when_possible(0.6).await);
    }

    #[test]
    fn a_resumed_output_at_the_budget_spends_nothing_more() {
        let b = Budget::new(1.0, 1.0);
        assert!(b.reserve(1e-9).is_err());
    }
}
