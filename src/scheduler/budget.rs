//! The cost budget (`max_cost_usd`): dispatch stops before the recorded cost could pass it.
//!
//! Before each dispatch, recorded cost + the worst case of every request in
//! flight + the worst case of the next one must stay within the budget.
//! Attempts that may have been billed without an answer count at their worst case.
//!
//! Every amount that comes in is checked ([`add_usd`]): a NaN, infinite or
//! negative figure is never added, sums never become infinite, and the lock
//! is taken even after a panic elsewhere poisoned it (the figures under it
//! are always whole: each update is a few assignments that cannot panic).

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::scheduler::pricing::{add_usd, is_amount};

/// The share of the budget kept back against rounding: sums of floating-point
/// amounts (this run's, the resume scan's over every line) can round below the
/// exact total of the figures the output records, by at most one part in 2^53
/// per addition. Keeping one part in a billion back covers millions of lines,
/// so the exact sum of what the file records never passes `max_cost_usd`.
const ROUNDING_SLACK: f64 = 1e-9;

#[derive(Debug)]
struct Spent {
    recorded: f64,
    in_flight: f64,
    requests_in_flight: u64,
    /// Requests in flight that are themselves waiting for room.
    waiting: u64,
}

#[derive(Debug)]
pub struct Budget {
    max_usd: f64,
    spent: Mutex<Spent>,
    settled: Notify,
}

/// Marks one waiter while it waits; a waiter cancelled mid-wait unmarks itself.
struct Waiting<'a> {
    budget: &'a Budget,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.waiting = s.waiting.saturating_sub(1);
    }
}

impl Budget {
    /// `recorded_usd`: what the output already holds (resumed lines count).
    pub fn new(max_usd: f64, recorded_usd: f64) -> Budget {
        Budget {
            max_usd,
            spent: Mutex::new(Spent {
                recorded: add_usd(0.0, recorded_usd),
                in_flight: 0.0,
                requests_in_flight: 0,
                waiting: 0,
            }),
            settled: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Spent> {
        self.spent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Books without waiting: Ok when booked, else whether waiting could help
    /// (a request in flight that is not itself waiting may settle below its
    /// worst case and make room). `in_flight_caller`: a request already in
    /// flight books more for itself (a retry), which is not someone to wait for.
    /// An in-flight caller that will wait is marked waiting under the same
    /// lock, so no other caller can see it as someone able to make room.
    fn try_book(&self, worst_usd: f64, in_flight_caller: bool) -> Result<(), bool> {
        let mut s = self.lock();
        // A worst case that is not an amount cannot be shown to fit.
        let fits = is_amount(worst_usd)
            && s.recorded + s.in_flight + worst_usd <= self.max_usd * (1.0 - ROUNDING_SLACK);
        if fits {
            s.in_flight = add_usd(s.in_flight, worst_usd);
            if !in_flight_caller {
                s.requests_in_flight = s.requests_in_flight.saturating_add(1);
            }
            return Ok(());
        }
        let me = u64::from(in_flight_caller);
        let others_can_settle = s.requests_in_flight > s.waiting + me;
        if others_can_settle && in_flight_caller {
            s.waiting = s.waiting.saturating_add(1);
        }
        Err(others_can_settle)
    }

    #[cfg(test)]
    fn reserve(&self, worst_usd: f64) -> Result<(), bool> {
        self.try_book(worst_usd, false)
    }

    /// Books `worst_usd`, waiting while requests in flight could still make
    /// room. False means the budget is spent: a run that stops here has spent
    /// all a rerun with the same budget could, so the rerun sends nothing.
    async fn book(&self, worst_usd: f64, in_flight_caller: bool) -> bool {
        loop {
            // Created before the check, so a settle in between is not missed.
            let settled = self.settled.notified();
            match self.try_book(worst_usd, in_flight_caller) {
                Ok(()) => return true,
                Err(false) => return false,
                Err(true) => {
                    // Only requests in flight count as waiting: the dispatcher
                    // waiting for room is no request that could settle.
                    let _waiting = in_flight_caller.then(|| Waiting { budget: self });
                    settled.await;
                }
            }
        }
    }

    /// Books a new request's worst case (see [`Budget::book`]).
    pub async fn reserve_when_possible(&self, worst_usd: f64) -> bool {
        self.book(worst_usd, false).await
    }

    /// Books one more worst case for a request in flight: the retry of an
    /// attempt that may have been billed needs room of its own.
    pub async fn reserve_more(&self, worst_usd: f64) -> bool {
        self.book(worst_usd, true).await
    }

    /// A request ended as a line: what it booked is released and what it may
    /// have cost ([`charge`]) is recorded. A charge that is not an amount
    /// (NaN, infinite, negative) counts as everything the request booked.
    /// Returns the charge recorded.
    pub fn settle(&self, booked_usd: f64, charge_usd: f64) -> f64 {
        let charge = if is_amount(charge_usd) {
            charge_usd
        } else {
            add_usd(0.0, booked_usd)
        };
        {
            let mut s = self.lock();
            Self::unbook(&mut s, booked_usd);
            s.recorded = add_usd(s.recorded, charge);
        }
        self.settled.notify_waiters();
        charge
    }

    /// A request ended without a line (its task failed): what it booked is
    /// released and nothing is recorded.
    pub fn release(&self, booked_usd: f64) {
        Self::unbook(&mut self.lock(), booked_usd);
        self.settled.notify_waiters();
    }

    fn unbook(s: &mut Spent, booked_usd: f64) {
        let booked = add_usd(0.0, booked_usd);
        s.in_flight = (s.in_flight - booked).max(0.0);
        s.requests_in_flight = s.requests_in_flight.saturating_sub(1);
        if s.requests_in_flight == 0 {
            // Nothing left in flight: no rounding residue either.
            s.in_flight = 0.0;
        }
    }

    #[cfg(test)]
    pub(super) fn recorded(&self) -> f64 {
        self.lock().recorded
    }

    /// The worst cases booked and the requests they belong to.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> (f64, u64) {
        let s = self.lock();
        (s.in_flight, s.requests_in_flight)
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
    // A cost that is no amount (NaN, infinite, negative) is no figure.
    let cost_usd = cost_usd.filter(|c| is_amount(*c));
    let answer = if answered {
        cost_usd.unwrap_or(worst_usd)
    } else {
        0.0
    };
    let lost = if worst_usd.is_finite() {
        (worst_usd * f64::from(uncertain_attempts)).min(f64::MAX)
    } else {
        0.0
    };
    add_usd(answer, lost)
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

    #[tokio::test]
    async fn a_retry_after_an_uncertain_attempt_books_room_of_its_own() {
        let b = Budget::new(1.0, 0.0);
        assert!(b.reserve(0.4).is_ok());
        assert!(b.reserve_more(0.4).await);
        // Alone in flight, nobody can make room: give up at once.
        assert!(
            !b.reserve_more(0.4).await,
            "a third worst case does not fit"
        );
        b.settle(0.8, charge(true, Some(0.1), 0.4, 1));
        assert!((b.recorded() - 0.5).abs() < 1e-12);
    }

    #[tokio::test]
    async fn requests_that_all_wait_for_room_give_up_instead_of_deadlocking() {
        let b = std::sync::Arc::new(Budget::new(1.2, 0.0));
        assert!(b.reserve(0.5).is_ok());
        assert!(b.reserve(0.5).is_ok());
        // The first retry waits for the other request to settle...
        let first = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_more(0.5).await })
        };
        tokio::task::yield_now().await;
        assert!(!first.is_finished());
        // ...which wants room too: nobody is left to make any, so it gives up.
        assert!(!b.reserve_more(0.5).await);
        b.settle(0.5, 0.1);
        assert!(first.await.expect("join"), "room once the other settled");
    }

    #[tokio::test]
    async fn the_dispatcher_waiting_is_no_reason_for_a_retry_to_give_up() {
        let b = std::sync::Arc::new(Budget::new(1.0, 0.0));
        assert!(b.reserve(0.4).is_ok());
        assert!(b.reserve(0.4).is_ok());
        // The dispatcher waits to book a larger request.
        let dispatcher = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_when_possible(0.9).await })
        };
        tokio::task::yield_now().await;
        // The other request in flight may still settle cheaply: the retry waits.
        let retry = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_more(0.4).await })
        };
        tokio::task::yield_now().await;
        assert!(!retry.is_finished());
        b.settle(0.4, 0.05);
        assert!(retry.await.expect("join"));
        dispatcher.abort();
    }

    #[test]
    fn figures_that_are_not_amounts_never_reach_the_sums() {
        let b = Budget::new(1.0, f64::NAN);
        assert_eq!(b.recorded(), 0.0);
        for worst in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(b.reserve(worst), Err(false), "{worst}");
        }
        assert!(b.reserve(0.25).is_ok());
        // A charge that is no amount counts as what was booked.
        assert_eq!(b.settle(0.25, f64::NAN), 0.25);
        assert!(b.reserve(0.25).is_ok());
        assert_eq!(b.settle(0.25, f64::INFINITY), 0.25);
        assert_eq!(b.in_flight(), (0.0, 0));
        assert!((b.recorded() - 0.5).abs() < 1e-12);
        assert_eq!(charge(true, Some(f64::NAN), 0.3, 0), 0.3);
        assert_eq!(
            charge(true, Some(-1.0), 0.3, u32::MAX),
            f64::from(u32::MAX) * 0.3 + 0.3
        );
        assert_eq!(charge(false, None, f64::MAX, 2), f64::MAX);
    }

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let b = std::sync::Arc::new(Budget::new(1.0, 0.0));
        let poisoner = b.clone();
        let _ = std::thread::spawn(move || {
            let _held = poisoner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(b.spent.is_poisoned());
        assert!(b.reserve(0.5).is_ok());
        b.settle(0.5, 0.1);
        assert!((b.recorded() - 0.1).abs() < 1e-12);
    }

    #[tokio::test]
    async fn a_cancelled_wait_is_not_counted_as_waiting() {
        let b = std::sync::Arc::new(Budget::new(1.0, 0.0));
        assert!(b.reserve(0.6).is_ok());
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_when_possible(0.6).await })
        };
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(b.lock().waiting, 0);
        let retry = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve_more(0.6).await })
        };
        assert!(b.reserve(0.0).is_ok());
        tokio::task::yield_now().await;
        assert_eq!(b.lock().waiting, 1);
        retry.abort();
        let _ = retry.await;
        assert_eq!(b.lock().waiting, 0);
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
    fn rounded_sums_never_let_the_exact_total_pass_the_budget() {
        // A budget equal to the rounded sum of 11 charges: their exact sum is
        // larger, so the 11th must not fit.
        let w = 7.34e-5;
        let max = (0..11).fold(0.0, |sum, _| sum + w);
        let b = Budget::new(max, 0.0);
        for i in 0..11 {
            if b.reserve(w).is_err() {
                assert_eq!(i, 10, "only the last one is refused");
                return;
            }
            b.settle(w, w);
        }
        panic!("11 charges of {w} fitted in {max}, whose exact sum is smaller");
    }

    #[test]
    fn a_resumed_output_at_the_budget_spends_nothing_more() {
        let b = Budget::new(1.0, 1.0);
        assert!(b.reserve(1e-9).is_err());
    }
}
