//! What one request holds while it is in flight — its budget reservations,
//! its tokens-per-minute reservation and its concurrency slot — released by
//! `Drop`, so a task that ends any way at all (a panic included) gives back
//! everything it booked.
//!
//! The normal end settles the budget with the request's charge first
//! ([`Booking::settle`]); whatever is still held when the guard drops is
//! released without a charge: a task that never became a line charged nothing
//! the output records.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::{Budget, Limiter};
use crate::scheduler::pricing::add_usd;

pub struct Booking {
    budget: Option<Arc<Budget>>,
    limiter: Arc<Limiter>,
    /// With several endpoints: the limiter of the endpoint the attempt
    /// under way goes to, which reserved its tokens too.
    route: Option<Arc<Limiter>>,
    /// The budget's worst cases booked for this request and not yet settled.
    booked_usd: f64,
    /// Tokens reserved with the limiter for the attempt under way, not yet settled.
    tokens: u64,
    /// Held until the guard drops: a slot frees only once everything else has.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Booking {
    /// A request whose first worst case `booked_usd` the budget has booked
    /// (when there is a budget) and whose `tokens` the limiter has reserved.
    pub fn new(
        budget: Option<Arc<Budget>>,
        limiter: Arc<Limiter>,
        booked_usd: f64,
        tokens: u64,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Booking {
        Booking {
            budget,
            limiter,
            route: None,
            booked_usd,
            tokens,
            _slot: slot,
        }
    }

    /// One more worst case booked for a retry.
    pub fn booked_more(&mut self, usd: f64) {
        self.booked_usd = add_usd(self.booked_usd, usd);
    }

    pub fn booked_usd(&self) -> f64 {
        self.booked_usd
    }

    /// The limiter reserved `tokens` for the next attempt.
    pub fn reserved_tokens(&mut self, tokens: u64) {
        self.tokens = tokens;
    }

    /// The endpoint `route` (of several) reserved the attempt's tokens too.
    pub fn reserved_at(&mut self, route: Arc<Limiter>) {
        self.route = Some(route);
    }

    /// Gives `tokens` back to the job's limiter and the endpoint's.
    fn refund(&self, tokens: u64) {
        self.limiter.refund(tokens);
        if let Some(route) = &self.route {
            route.refund(tokens);
        }
    }

    /// The attempt was answered: the tokens it did not use (`used` when
    /// reported, none when it failed with an answer) go back to the limiter.
    pub fn tokens_answered(&mut self, used: Option<u64>) {
        let unused = self.tokens.saturating_sub(used.unwrap_or(0));
        self.tokens = 0;
        self.refund(unused);
    }

    /// The attempt may have been billed without an answer: its tokens count as used.
    pub fn tokens_spent(&mut self) {
        self.tokens = 0;
    }

    /// The request ended as a line: what it booked is released and `charge_usd`
    /// recorded. Returns the charge (None without a budget).
    pub fn settle(&mut self, charge_usd: f64) -> Option<f64> {
        let budget = self.budget.take()?;
        let booked = std::mem::take(&mut self.booked_usd);
        Some(budget.settle(booked, charge_usd))
    }
}

impl Drop for Booking {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.release(self.booked_usd);
        }
        if self.tokens > 0 {
            let tokens = std::mem::take(&mut self.tokens);
            self.refund(tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::AssertUnwindSafe;
    use tokio::sync::Semaphore;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_gives_back_everything_it_booked() {
        let budget = Arc::new(Budget::new(1.0, 0.0));
        let limiter = Arc::new(Limiter::new(0, 60_000)); // 1,000 tokens per second
        let slots = Arc::new(Semaphore::new(1));
        assert!(budget.reserve_when_possible(0.3).await);
        limiter.acquire(30_000).await; // half a minute of tokens
        let slot = slots.clone().try_acquire_owned().expect("a free slot");
        let mut booking = Booking::new(
            Some(budget.clone()),
            limiter.clone(),
            0.3,
            30_000,
            Some(slot),
        );
        // A retry after an uncertain attempt booked room of its own...
        assert!(budget.reserve_more(0.3).await);
        booking.booked_more(0.3);
        // ...and then the task panicked.
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(move || {
            let _held = booking;
            panic!("a bug");
        }));
        assert!(panicked.is_err());
        assert_eq!(budget.in_flight(), (0.0, 0), "both worst cases released");
        assert_eq!(slots.available_permits(), 1, "the slot is free");
        // The tokens came back: the next request does not wait half a minute.
        let start = tokio::time::Instant::now();
        limiter.acquire(1_000).await;
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // All but the rounding slack fits again: nothing is left counted in flight.
        assert!(budget.reserve_when_possible(0.999).await);
    }

    #[tokio::test]
    async fn a_settled_booking_records_its_charge_and_releases_the_rest() {
        let budget = Arc::new(Budget::new(1.0, 0.0));
        let limiter = Arc::new(Limiter::new(0, 0));
        assert!(budget.reserve_when_possible(0.4).await);
        let mut booking = Booking::new(Some(budget.clone()), limiter, 0.4, 0, None);
        assert!(budget.reserve_more(0.4).await);
        booking.booked_more(0.4);
        assert_eq!(booking.settle(0.5), Some(0.5));
        drop(booking);
        assert_eq!(budget.in_flight(), (0.0, 0));
        assert!((budget.recorded() - 0.5).abs() < 1e-12);
    }
}
