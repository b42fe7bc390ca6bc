//! The attempts of one request: sending, judging each failure, retrying
//! (on another endpoint when the job has several), and the streaks that say
//! no further request can succeed at an endpoint.

use std::time::Duration;

use chrono::Utc;

use super::booking::Booking;
use super::retry::{decide, Backoff, Verdict};
use super::routes::Picked;
use super::stop::{self, Streaks};
use super::{
    checked, limiter, pricing, Ended, Event, RetryNote, Shared, StopReason, REFUSALS_TO_STOP,
};
use crate::client::{ErrorKind, Failure};
use crate::plan::Request;

impl Shared {
    /// The attempts of one request, the first at `route` (None: no endpoint
    /// serves its model, so it fails unsent).
    pub(super) async fn execute(
        &self,
        request: &Request,
        worst: f64,
        tokens: u64,
        booking: &mut Booking,
        route: Option<usize>,
    ) -> Ended {
        let started_at = Utc::now();
        let Some(mut route) = route else {
            let message = format!(
                "no endpoint of the job serves the model {:?}; add it to an endpoint's models",
                request.model
            );
            return Ended {
                result: Err(Failure::new(ErrorKind::InvalidRequest, None, message)),
                attempts: 0,
                uncertain: 0,
                started_at,
                finished_at: Utc::now(),
                panicked_charge: None,
                bad_output_charge: 0.0,
                endpoint: None,
            };
        };
        let several = self.routes.several();
        let mut attempts = 0u32;
        // Attempts an endpoint refused (its key or account, not the request)
        // before the request went elsewhere: not counted against max_attempts.
        let mut refused_elsewhere = 0u32;
        let mut uncertain = 0u32;
        // Answered attempts whose reply was not the JSON asked for, and what they cost.
        let mut bad_outputs = 0u32;
        let mut bad_output_charge = 0.0f64;
        let mut backoff = Backoff::new(&self.retry);
        let retries = self.stop.retries();
        let in_flight = self.stop.in_flight();
        let result = loop {
            attempts = attempts.saturating_add(1);
            let at = &self.routes.routes[route];
            let sent = tokio::select! {
                biased;
                _ = in_flight.cancelled() => Err(self.stop.abandoned()),
                result = at.client.send(request, attempts) => result,
            };
            let figures = match &sent {
                Ok(reply) => reply.rate_limits.as_ref(),
                Err(failure) => failure.rate_limits.as_deref(),
            };
            at.limiter.on_answer(tokens, figures);
            if several {
                self.limiter.on_answer(tokens, None);
            }
            let (failure, bad_output) = match sent {
                Ok(mut reply) => {
                    self.streak(&request.model, route, |s| s.on_attempt(None), None)
                        .await;
                    self.routes.succeeded(route);
                    if let Some(change) = at.limiter.on_success() {
                        let _ = self.events.send(Event::Pace(change)).await;
                    }
                    match reply.usage {
                        Some(usage) => booking.tokens_answered(Some(usage.total_tokens)),
                        // No usage reported: what was reserved counts as used.
                        None => booking.tokens_spent(),
                    }
                    // The endpoint answered: a reply that is not the JSON asked
                    // for says nothing of the endpoint, so it ends no streak.
                    self.streak(&request.model, route, |s| s.on_end(None), None)
                        .await;
                    match checked(request, &mut reply).await {
                        None => break Ok(reply),
                        Some(failure) => {
                            bad_outputs = bad_outputs.saturating_add(1);
                            // Answered, so billed: its cost, or the worst case when unknown.
                            let cost = self.pricing.budget_cost(&request.model, &reply);
                            bad_output_charge = pricing::add_usd(
                                bad_output_charge,
                                cost.filter(|c| crate::client::is_amount(*c))
                                    .unwrap_or(worst),
                            );
                            (failure, true)
                        }
                    }
                }
                Err(failure) => (failure, false),
            };
            if bad_output {
                // Its own allowance: see `RetryConfig::bad_output_attempts`.
                if bad_outputs >= self.retry.bad_output_attempts
                    || failure.should_retry == Some(false)
                    || retries.is_cancelled()
                {
                    break Err(failure);
                }
            }
            let verdict = match bad_output {
                true => Verdict::Retry,
                false => {
                    if failure.uncertain {
                        uncertain = uncertain.saturating_add(1);
                        booking.tokens_spent();
                    } else {
                        // Answered with an error: no tokens were used.
                        booking.tokens_answered(None);
                    }
                    let verdict = decide(&failure);
                    self.streak(
                        &request.model,
                        route,
                        |s| s.on_attempt(Some((&failure, verdict))),
                        Some(&failure),
                    )
                    .await;
                    if verdict != Verdict::Refused
                        && (failure.status == Some(429) || failure.kind == ErrorKind::RateLimited)
                    {
                        // A quota 429 is a refusal, not a pace to slow down to.
                        if let Some(change) = at.limiter.on_rate_limited(failure.retry_after) {
                            let _ = self.events.send(Event::Pace(change)).await;
                        }
                    }
                    verdict
                }
            };
            // Another endpoint serving the model may take the next attempt.
            let elsewhere = several && self.routes.other_serving(&request.model, route);
            if several && verdict == Verdict::Retry && !bad_output {
                if let Some(note) = self.routes.failed(route) {
                    let _ = self.events.send(Event::Endpoint(note)).await;
                }
            }
            // Bounded: an account that refuses only now and then (its streak
            // broken by successes) must not bounce one request forever.
            let bounces = self
                .routes
                .routes
                .len()
                .saturating_mul(REFUSALS_TO_STOP as usize);
            let refused_here =
                elsewhere && verdict == Verdict::Refused && (refused_elsewhere as usize) < bounces;
            if refused_here {
                refused_elsewhere = refused_elsewhere.saturating_add(1);
            }
            let counted = attempts
                .saturating_sub(refused_elsewhere)
                .saturating_sub(bad_outputs);
            if !bad_output
                && ((verdict != Verdict::Retry && !refused_here)
                    || counted >= self.retry.max_attempts
                    || retries.is_cancelled())
            {
                break Err(failure);
            }
            // A retry after an attempt that may have been billed (or was, with
            // a reply that was no use) needs room of its own.
            if failure.uncertain || bad_output {
                if let Some(budget) = &self.budget {
                    let booked_more = tokio::select! {
                        biased;
                        _ = retries.cancelled() => false,
                        booked_more = budget.reserve_more(worst) => booked_more,
                    };
                    if !booked_more {
                        if retries.is_cancelled() {
                            break Err(failure);
                        }
                        self.stop.stop(StopReason::Budget);
                        // The denied attempt was never sent: it is charged nothing.
                        let mut failure = failure;
                        failure.message.push_str(
                            "; not retried: max_cost_usd leaves no room for another attempt",
                        );
                        break Err(failure);
                    }
                    booking.booked_more(worst);
                }
            }
            let mut delay = if refused_here {
                // The endpoint's account refused, not the request: straight on.
                Duration::ZERO
            } else if elsewhere {
                // The next attempt goes elsewhere: the failed endpoint's
                // Retry-After is its own, not the next one's.
                let mut general = failure.clone();
                general.retry_after = None;
                backoff.next_delay(&general, fastrand::f64())
            } else {
                backoff.next_delay(&failure, fastrand::f64())
            };
            if stop::unreachable(&failure) {
                delay = delay.min(stop::UNREACHABLE_MAX_BACKOFF);
            }
            let note = RetryNote {
                key: request.key.clone(),
                attempt: attempts,
                max_attempts: self.retry.max_attempts,
                kind: failure.kind,
                status: failure.status,
                uncertain: failure.uncertain,
                wait: delay,
                // The server's word set the wait when the wait is what it asked.
                retry_after: failure
                    .retry_after
                    .filter(|asked| (*asked).min(limiter::MAX_WAIT) == delay),
                endpoint: at.name.clone(),
            };
            let _ = self.events.send(Event::RetryPlanned(Box::new(note))).await;
            let resumed = tokio::select! {
                biased;
                _ = retries.cancelled() => None,
                next = async {
                    tokio::time::sleep(delay).await;
                    self.limiter.acquire(tokens).await;
                    booking.reserved_tokens(tokens);
                    if !several {
                        return Picked::Route(route);
                    }
                    let picked = self.routes.pick(&request.model, tokens, Some(route)).await;
                    if let Picked::Route(i) = picked {
                        booking.reserved_at(self.routes.routes[i].limiter.clone());
                    }
                    picked
                } => Some(next),
            };
            match resumed {
                Some(Picked::Route(next)) => route = next,
                Some(Picked::AllOut(reason, detail)) => {
                    self.limiter.on_answer(tokens, None);
                    self.stop.stop_quoting(reason, detail);
                    break Err(failure);
                }
                Some(Picked::Unserved) | None => {
                    if several {
                        self.limiter.on_answer(tokens, None);
                    }
                    break Err(failure);
                }
            }
            // Told only now: a retry cut short by a stop never happened.
            let _ = self
                .events
                .send(Event::Retrying { kind: failure.kind })
                .await;
            // That send may have waited; an interrupt meanwhile still stops the retry.
            if retries.is_cancelled() {
                // Booked with the limiter, never sent.
                self.routes.routes[route].limiter.on_answer(tokens, None);
                if several {
                    self.limiter.on_answer(tokens, None);
                }
                break Err(failure);
            }
        };
        // A reply that is not the JSON asked for breaks no streak (said above).
        if let Some(failure) = result
            .as_ref()
            .err()
            .filter(|f| f.kind != ErrorKind::BadOutput)
        {
            let verdict = decide(failure);
            self.streak(
                &request.model,
                route,
                |s| s.on_end(Some((failure, verdict))),
                Some(failure),
            )
            .await;
        }
        Ended {
            result,
            attempts,
            uncertain,
            started_at,
            finished_at: Utc::now(),
            panicked_charge: None,
            bad_output_charge,
            endpoint: self.routes.routes[route].name.clone(),
        }
    }

    /// Updates `route`'s streaks. One that says no further request can
    /// succeed there stops dispatch, quoting the failure's message; with
    /// several endpoints it takes that one out of rotation instead (the run
    /// stops once no endpoint serving a model is left: see `Routes::pick`).
    async fn streak(
        &self,
        model: &str,
        route: usize,
        update: impl FnOnce(&mut Streaks) -> Option<StopReason>,
        failure: Option<&Failure>,
    ) {
        let stop = update(&mut self.routes.routes[route].streaks());
        let Some(reason) = stop else { return };
        let detail = failure.map(|f| match f.status {
            Some(status) => format!("HTTP {status}: {}", f.message),
            None => f.message.clone(),
        });
        if !self.routes.several() {
            self.stop.stop_because(reason, detail);
            return;
        }
        if let Some(note) = self.routes.take_out(route, reason, detail) {
            let _ = self.events.send(Event::Endpoint(note)).await;
        }
        // No endpoint left for this model: the run stops now, as a job of
        // one endpoint does (the last request of the input included).
        if let Some(Picked::AllOut(reason, detail)) = self.routes.none_left(model) {
            self.stop.stop_quoting(reason, detail);
        }
    }
}
