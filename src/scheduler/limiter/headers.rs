//! Pacing from the endpoint's `x-ratelimit-*` figures, before any 429.
//!
//! Each answer says what is left of the provider's budget and how long until
//! it is whole again; the pace is that remainder spread evenly over that time
//! (a GCRA schedule, like a configured rate), a little under it. This one rule
//! fits the limits providers keep: in a fixed window it spends the window's
//! budget evenly up to its end; in a token bucket (OpenAI), where the reset is
//! the time to refill, it settles where the refill matches the pace, half the
//! bucket kept in hand.
//!
//! Answers come back while other requests are in flight: those may already
//! have spent part of the remainder an answer names, so they are taken off it.
//! Nothing left means no request until the reset; then the pace is the whole
//! budget over the longest reset seen (the window), until the next answer.
//!
//! Until the first answer the limit is unknown, and a crowd of `concurrency`
//! requests could pass a small one at once: the first request goes alone,
//! and the rest follow its answer (or [`FIRST_ANSWER_WAIT`], for an endpoint
//! slow to answer).

use std::time::Duration;

use tokio::time::Instant;

use super::{later, per_unit, Gcra};
use crate::client::{RateHeaders, RateWindow};

/// The pace sits this far under the remainder over the time to the reset,
/// and in-flight requests are taken off first: a run bounces (nearly) never.
const HEADROOM: f64 = 0.97;
/// The longest the second request waits for the first one's answer.
pub(super) const FIRST_ANSWER_WAIT: Duration = Duration::from_millis(250);
/// How often a request waiting for the first answer looks again.
const FIRST_ANSWER_POLL: Duration = Duration::from_millis(2);

/// Where the run stands with its first request.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum First {
    #[default]
    NotSent,
    /// Sent; the others wait for its answer until then.
    Waiting(Instant),
    Answered,
}

/// One dimension (requests or tokens) paced from its headers.
#[derive(Debug)]
struct Dimension {
    schedule: Gcra,
    /// Units per second now.
    rate_per_s: f64,
    /// The longest reset announced: the provider's window, as far as seen.
    window: Duration,
    /// The window's whole budget, when announced.
    limit: Option<u64>,
}

impl Dimension {
    /// Takes an answer's figures; `in_flight` units were sent and not answered.
    fn update(&mut self, figures: &RateWindow, in_flight: f64, now: Instant, hold: &mut Instant) {
        let Some((remaining, reset)) = figures.budget() else {
            return;
        };
        self.window = self.window.max(reset);
        if figures.limit.is_some() {
            self.limit = figures.limit;
        }
        // A window at its very end says nothing about the pace: the next answer will.
        if reset.is_zero() {
            return;
        }
        let left = remaining as f64 - in_flight;
        if left < 1.0 {
            // Spent: nothing goes until the reset, then the whole window's pace.
            *hold = (*hold).max(later(now, reset));
            if let Some(limit) = self.limit {
                self.set_rate(limit as f64 * HEADROOM / self.window.as_secs_f64(), now);
            }
            return;
        }
        self.set_rate(left * HEADROOM / reset.as_secs_f64(), now);
    }

    fn set_rate(&mut self, rate_per_s: f64, now: Instant) {
        if !rate_per_s.is_finite() || rate_per_s <= 0.0 {
            return;
        }
        self.rate_per_s = rate_per_s;
        self.schedule.per_unit = per_unit(rate_per_s);
        // A schedule booked far ahead at a slower pace would hold a faster one back.
        let next = later(now, self.schedule.per_unit);
        if self.schedule.tat > next {
            self.schedule.tat = next;
        }
    }
}

/// Requests and tokens, each paced once its headers have been seen.
#[derive(Debug, Default)]
pub(super) struct HeaderPace {
    requests: Option<Dimension>,
    tokens: Option<Dimension>,
    /// Nothing is left of a budget: no dispatch before then.
    hold_until: Option<Instant>,
    /// Answers that carried figures, and when the first and the last came:
    /// the pace the run held (what is reported).
    answers: u64,
    span: Option<(Instant, Instant)>,
    first: First,
}

impl HeaderPace {
    /// Takes one answer's figures. `requests_in_flight` and `tokens_in_flight`
    /// are what other requests, sent and not answered yet, may already spend.
    pub fn update(
        &mut self,
        figures: &RateHeaders,
        requests_in_flight: u64,
        tokens_in_flight: u64,
        now: Instant,
    ) {
        self.answered();
        if figures.requests.budget().is_some() || figures.tokens.budget().is_some() {
            self.answers = self.answers.saturating_add(1);
            self.span = Some((self.span.map_or(now, |(first, _)| first), now));
        }
        let mut hold = self.hold_until.unwrap_or(now);
        for (slot, window, in_flight) in [
            (&mut self.requests, &figures.requests, requests_in_flight),
            (&mut self.tokens, &figures.tokens, tokens_in_flight),
        ] {
            if window.budget().is_none() {
                continue;
            }
            let dimension = slot.get_or_insert_with(|| Dimension {
                schedule: Gcra::per_second(f64::INFINITY, now),
                rate_per_s: f64::INFINITY,
                window: Duration::ZERO,
                limit: None,
            });
            dimension.update(window, in_flight as f64, now, &mut hold);
        }
        self.hold_until = (hold > now).then_some(hold);
    }

    /// Any answer (with figures or not): the first request's wait is over.
    pub fn answered(&mut self) {
        self.first = First::Answered;
    }

    /// How long until a request of `tokens` may go.
    pub fn wait(&self, now: Instant) -> Duration {
        let mut hold = self
            .hold_until
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        if let First::Waiting(until) = self.first {
            hold = hold.max(until.saturating_duration_since(now).min(FIRST_ANSWER_POLL));
        }
        [&self.requests, &self.tokens]
            .into_iter()
            .flatten()
            .map(|d| d.schedule.wait(now))
            .fold(hold, Duration::max)
    }

    pub fn take(&mut self, now: Instant, tokens: u64) {
        if self.first == First::NotSent {
            self.first = First::Waiting(later(now, FIRST_ANSWER_WAIT));
        }
        if let Some(d) = self.requests.as_mut() {
            d.schedule.take(now, 1);
        }
        if let Some(d) = self.tokens.as_mut() {
            d.schedule.take(now, tokens);
        }
    }

    pub fn refund(&mut self, tokens: u64) {
        if let Some(d) = self.tokens.as_mut() {
            d.schedule.give_back(tokens);
        }
    }

    /// Whether any answer carried figures to pace from.
    pub fn active(&self) -> bool {
        self.requests.is_some() || self.tokens.is_some()
    }

    /// The pace held, in requests per minute: the answers that carried
    /// figures over the time they span (the latest pace for a short run).
    pub fn per_minute(&self) -> Option<f64> {
        let measured = self.span.and_then(|(first, last)| {
            let secs = last.saturating_duration_since(first).as_secs_f64();
            (self.answers > 1 && secs > 0.0).then(|| (self.answers - 1) as f64 / secs)
        });
        measured
            .or_else(|| self.requests.as_ref().map(|d| d.rate_per_s))
            .map(|r| r * 60.0)
            .filter(|r| r.is_finite())
    }
}

#[cfg(test)]
mod tests;
