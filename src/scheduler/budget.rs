//! The cost budget (`max_cost_usd`): dispatch stops before the recorded cost could pass it.
//!
//! Before each dispatch, recorded cost + the worst case of every request in
//! flight + the worst case of the next one must stay within the budget.
//! Attempts that may have been billed without an answer count at their worst case.

use std::sync::Mutex;

#[derive(Debug)]
struct Spent {
    recorded: f64,
    in_flight: f64,
}

#[derive(Debug)]
pub struct Budget {
    max_usd: f64,
    spent: Mutex<Spent>,
}

impl Budget {
    /// `recorded_usd`: what the output already holds (resumed lines count).
    pub fn new(max_usd: f64, recorded_usd: f64) -> Budget {
        Budget {
            max_usd,
            spent: Mutex::new(Spent {
                recorded: recorded_usd,
                in_flight: 0.0,
            }),
        }
    }

    /// Books a request's worst case if it fits; false means stop dispatching.
    pub fn try_reserve(&self, worst_usd: f64) -> bool {
        let mut s = self.spent.lock().expect("budget lock is never poisoned");
        if s.recorded + s.in_flight + worst_usd > self.max_usd {
            return false;
        }
        s.in_flight += worst_usd;
        true
    }

    /// A request ended: its reservation becomes what it cost, plus its uncertain attempts at worst case.
    pub fn settle(&self, worst_usd: f64, cost_usd: Option<f64>, uncertain_attempts: u32) {
        let mut s = self.spent.lock().expect("budget lock is never poisoned");
        s.in_flight = (s.in_flight - worst_usd).max(0.0);
        // An answer without a figure (no usage reported) may still have cost its worst case.
        s.recorded += cost_usd.unwrap_or(0.0) + worst_usd * f64::from(uncertain_attempts);
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
        assert!(b.try_reserve(0.5));
        // 0.25 recorded + 0.5 in flight + 0.5 next > 1.0
        assert!(!b.try_reserve(0.5));
        b.settle(0.5, Some(0.1), 0);
        assert!((b.recorded() - 0.35).abs() < 1e-12);
        assert!(b.try_reserve(0.5));
    }

    #[test]
    fn uncertain_attempts_count_at_worst_case() {
        let b = Budget::new(1.0, 0.0);
        assert!(b.try_reserve(0.3));
        b.settle(0.3, None, 2);
        assert!((b.recorded() - 0.6).abs() < 1e-12);
        assert!(!b.try_reserve(0.5));
    }

    #[test]
    fn a_resumed_output_at_the_budget_spends_nothing_more() {
        let b = Budget::new(1.0, 1.0);
        assert!(!b.try_reserve(1e-9));
    }
}
