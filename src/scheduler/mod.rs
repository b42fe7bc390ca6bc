//! The one dispatch loop: concurrency cap, rate limits, budget (with the pricing it weighs), retries, stop signals.
//!
//! Requests arrive on a channel (the scheduler knows nothing of files) and
//! leave as [`Event`]s on another: every request that was sent ends as exactly
//! one `Event::Done`, whatever happens.

mod booking;
mod budget;
mod limiter;
pub mod pricing;
pub mod retry;
mod stop;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use booking::Booking;
pub use budget::Budget;
pub use limiter::{Limiter, PaceChange, PaceReport, PaceSource, PaceWhy};
pub use stop::{shorten, StopSignal, IDENTICAL_TO_STOP, REFUSALS_TO_STOP, UNREACHABLE_TO_STOP};

use crate::client::{Client, ErrorKind, Failure, Reply};
use crate::job::{Job, Pricing, RetryConfig};
use crate::plan::Request;
use retry::{decide, Backoff, Verdict};
use stop::Streaks;

/// How one request ended.
#[derive(Debug)]
pub struct Outcome {
    pub request: Request,
    pub result: Result<Reply, Failure>,
    pub attempts: u32,
    pub uncertain_attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// With a budget: what the request counts against it (see `budget::charge`).
    pub budget_charge_usd: Option<f64>,
    /// Batch mode: the provider batch that answered it.
    pub batch_id: Option<String>,
}

/// An attempt failed and the request will be tried again after `wait`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryNote {
    pub key: String,
    /// The attempt that failed (1-based), and how many the request may make.
    pub attempt: u32,
    pub max_attempts: u32,
    pub kind: ErrorKind,
    pub status: Option<u16>,
    /// Sent and not answered: the provider may have billed it.
    pub uncertain: bool,
    /// The wait before the next attempt (the rate limiter may add to it).
    pub wait: Duration,
    /// What the server asked for, when that set the wait.
    pub retry_after: Option<Duration>,
}

/// What the core tells its consumers (sink, summary, progress).
#[derive(Debug)]
pub enum Event {
    /// An attempt failed; the next one comes after the wait (told before it, for `-v`).
    RetryPlanned(Box<RetryNote>),
    /// The wait is over and the request is tried again.
    Retrying { kind: ErrorKind },
    /// The pace learned from 429s changed (for `-v`).
    Pace(PaceChange),
    /// A request ended; it becomes one output line.
    Done(Box<Outcome>),
    /// A request answered from the response cache, never sent (told by the
    /// planner, not the dispatch loop); it becomes one output line too.
    Cached(Box<crate::cache::Hit>),
}

/// Why a run stopped before every request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Budget,
    /// Refusals (key, credits, quota), or the same error on request after request.
    EndpointRefused,
    /// No attempt could reach the endpoint (connection refused, DNS, TLS).
    EndpointUnreachable,
    /// The output could not be written (disk full): nothing more is sent.
    OutputFailed,
    Interrupted,
}

struct Shared {
    client: Client,
    retry: RetryConfig,
    pricing: Pricing,
    limiter: Arc<Limiter>,
    budget: Option<Arc<Budget>>,
    stop: Arc<StopSignal>,
    streaks: Mutex<Streaks>,
    events: mpsc::Sender<Event>,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    concurrency: usize,
}

impl Scheduler {
    /// `recorded_cost_usd`: the cost already in the output (for the budget).
    pub fn new(
        job: &Job,
        client: Client,
        stop: Arc<StopSignal>,
        recorded_cost_usd: f64,
        events: mpsc::Sender<Event>,
    ) -> Scheduler {
        let limits = &job.limits;
        let budget = (limits.max_cost_usd > 0.0)
            .then(|| Arc::new(Budget::new(limits.max_cost_usd, recorded_cost_usd)));
        Scheduler {
            shared: Arc::new(Shared {
                client,
                retry: job.retry.clone(),
                pricing: job.pricing.clone(),
                limiter: Arc::new(Limiter::new(
                    limits.requests_per_minute,
                    limits.tokens_per_minute,
                )),
                budget,
                stop,
                streaks: Mutex::new(Streaks::default()),
                events,
            }),
            concurrency: limits.concurrency.max(1),
        }
    }

    /// Where ended requests go (batch mode sends its own there instead).
    pub fn events(&self) -> mpsc::Sender<Event> {
        self.shared.events.clone()
    }

    /// The run's rate limiter: seeded before the run, asked for its pace after.
    pub fn limiter(&self) -> Arc<Limiter> {
        self.shared.limiter.clone()
    }

    /// Dispatches every request from `requests` (batches, in order) until it
    /// closes or a stop signal comes, then waits for the requests in flight.
    /// Returns why it stopped early.
    pub async fn run(self, mut requests: mpsc::Receiver<Vec<Request>>) -> Option<StopReason> {
        let shared = self.shared;
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let dispatching = shared.stop.dispatching();
        let mut batch = Vec::new().into_iter();
        loop {
            let permit = tokio::select! {
                biased;
                _ = dispatching.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let request = match batch.next() {
                Some(request) => request,
                None => {
                    let next = tokio::select! {
                        biased;
                        _ = dispatching.cancelled() => break,
                        next = requests.recv() => next,
                    };
                    batch = next.unwrap_or_default().into_iter();
                    match batch.next() {
                        Some(request) => request,
                        None => break,
                    }
                }
            };
            let worst = shared.pricing.worst_case(&request).unwrap_or(0.0);
            if let Some(budget) = &shared.budget {
                let booked = tokio::select! {
                    biased;
                    _ = dispatching.cancelled() => break,
                    booked = budget.reserve_when_possible(worst) => booked,
                };
                if !booked {
                    shared.stop.stop(StopReason::Budget);
                    break;
                }
            }
            // From here on whatever the request holds is released when this
            // guard drops, however its task ends.
            let mut booking = Booking::new(
                shared.budget.clone(),
                shared.limiter.clone(),
                worst,
                0,
                Some(permit),
            );
            let tokens = token_estimate(&request);
            tokio::select! {
                biased;
                _ = dispatching.cancelled() => break,
                _ = shared.limiter.acquire(tokens) => booking.reserved_tokens(tokens),
            }
            let task = shared.clone();
            tokio::spawn(async move {
                // A bug that panics still ends as a line, and frees its booking.
                // Boxed: the attempt's state is kilobytes, which the task
                // would otherwise copy in when spawned and over when done.
                let execute = Box::pin(task.execute(&request, worst, tokens, &mut booking));
                let ended = AssertUnwindSafe(execute)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Ended::panicked(booking.booked_usd()));
                let budget_charge_usd =
                    booking.settle(ended.charge(&task.pricing, &request, worst));
                let outcome = Outcome {
                    request,
                    result: ended.result,
                    attempts: ended.attempts,
                    uncertain_attempts: ended.uncertain,
                    started_at: Some(ended.started_at),
                    finished_at: Some(ended.finished_at),
                    budget_charge_usd,
                    batch_id: None,
                };
                // A closed channel means the collector is gone; nothing left to tell.
                let _ = task.events.send(Event::Done(Box::new(outcome))).await;
                // The slot frees only now: all slots back = every line told.
                drop(booking);
            });
        }
        // Every task holds a slot until its outcome is sent: all slots back = all done.
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
        shared.stop.reason()
    }
}

/// Tokens a request can use at most: its prompt bound plus its output cap.
fn token_estimate(request: &Request) -> u64 {
    request.token_bound()
}

/// How the attempts of one request went.
struct Ended {
    result: Result<Reply, Failure>,
    attempts: u32,
    uncertain: u32,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    /// A panicked task: everything it had booked (every attempt may have
    /// been billed), instead of a charge worked out from its attempts.
    panicked_charge: Option<f64>,
    /// What the answered attempts whose reply was not the JSON asked for cost
    /// (their cost, or their worst case when unknown): billed, and no line keeps them.
    bad_output_charge: f64,
}

impl Ended {
    fn panicked(booked_usd: f64) -> Ended {
        let now = Utc::now();
        let mut failure = Failure::new(
            ErrorKind::BadResponse,
            None,
            "internal error: the request's task panicked; please report this",
        );
        // Whether it was sent is unknown: assume it may have been billed.
        failure.uncertain = true;
        Ended {
            result: Err(failure),
            attempts: 1,
            uncertain: 1,
            started_at: now,
            finished_at: now,
            panicked_charge: Some(booked_usd),
            bad_output_charge: 0.0,
        }
    }

    /// What the request counts against the budget.
    /// A retry the budget denied was never sent: it adds nothing.
    fn charge(&self, pricing: &Pricing, request: &Request, worst: f64) -> f64 {
        if let Some(charge) = self.panicked_charge {
            return charge;
        }
        let charge = match &self.result {
            Ok(reply) => budget::charge(
                true,
                pricing.budget_cost(&request.model, reply),
                worst,
                self.uncertain,
            ),
            Err(_) => budget::charge(false, None, worst, self.uncertain),
        };
        pricing::add_usd(charge, self.bad_output_charge)
    }
}

/// The check of a reply that was asked for JSON (`[output] json`,
/// `response_format`): its `json` filled in, or the `bad_output` failure.
///
/// A reply of nothing but tool calls has no content to parse: it stays a
/// success, its calls kept. A reply cut by `max_tokens` that does not parse
/// is a `bad_output` never retried (`should_retry: false`): the contract
/// never retries a `length` reply, and the same cap would cut the next one.
fn checked(request: &Request, reply: &mut Reply) -> Option<Failure> {
    let check = request.output.as_ref()?;
    if reply.content.is_none() && reply.tool_calls.is_some() {
        return None;
    }
    match check.check(reply.content.as_deref()) {
        Ok(json) => {
            reply.json = Some(json);
            None
        }
        Err(mut message) => {
            let cut = reply.finish_reason.as_deref() == Some("length");
            if cut {
                message.push_str(
                    "; the reply was cut by max_tokens (finish_reason length): raise max_tokens",
                );
            }
            let mut failure = Failure::new(ErrorKind::BadOutput, None, message);
            failure.should_retry = cut.then_some(false);
            Some(failure)
        }
    }
}

impl Shared {
    async fn execute(
        &self,
        request: &Request,
        worst: f64,
        tokens: u64,
        booking: &mut Booking,
    ) -> Ended {
        let started_at = Utc::now();
        let mut attempts = 0u32;
        let mut uncertain = 0u32;
        // Answered attempts whose reply was not the JSON asked for, and what they cost.
        let mut bad_outputs = 0u32;
        let mut bad_output_charge = 0.0f64;
        let mut backoff = Backoff::new(&self.retry);
        let retries = self.stop.retries();
        let in_flight = self.stop.in_flight();
        let result = loop {
            attempts = attempts.saturating_add(1);
            let sent = tokio::select! {
                biased;
                _ = in_flight.cancelled() => Err(self.stop.abandoned()),
                result = self.client.send(request, attempts) => result,
            };
            let figures = match &sent {
                Ok(reply) => reply.rate_limits.as_ref(),
                Err(failure) => failure.rate_limits.as_deref(),
            };
            self.limiter.on_answer(tokens, figures);
            let (failure, bad_output) = match sent {
                Ok(mut reply) => {
                    self.streak(|s| s.on_attempt(None), None);
                    if let Some(change) = self.limiter.on_success() {
                        let _ = self.events.send(Event::Pace(change)).await;
                    }
                    match reply.usage {
                        Some(usage) => booking.tokens_answered(Some(usage.total_tokens)),
                        // No usage reported: what was reserved counts as used.
                        None => booking.tokens_spent(),
                    }
                    // The endpoint answered: a reply that is not the JSON asked
                    // for says nothing of the endpoint, so it ends no streak.
                    self.streak(|s| s.on_end(None), None);
                    match checked(request, &mut reply) {
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
            let give_up = match bad_output {
                // Its own allowance: see `RetryConfig::bad_output_attempts`.
                true => {
                    bad_outputs >= self.retry.bad_output_attempts
                        || failure.should_retry == Some(false)
                }
                false => {
                    if failure.uncertain {
                        uncertain = uncertain.saturating_add(1);
                        booking.tokens_spent();
                    } else {
                        // Answered with an error: no tokens were used.
                        booking.tokens_answered(None);
                    }
                    let verdict = decide(&failure);
                    self.streak(|s| s.on_attempt(Some((&failure, verdict))), Some(&failure));
                    if verdict != Verdict::Refused
                        && (failure.status == Some(429) || failure.kind == ErrorKind::RateLimited)
                    {
                        // A quota 429 is a refusal, not a pace to slow down to.
                        if let Some(change) = self.limiter.on_rate_limited(failure.retry_after) {
                            let _ = self.events.send(Event::Pace(change)).await;
                        }
                    }
                    verdict != Verdict::Retry
                        || attempts.saturating_sub(bad_outputs) >= self.retry.max_attempts
                }
            };
            if give_up || retries.is_cancelled() {
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
            let mut delay = backoff.next_delay(&failure, fastrand::f64());
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
            };
            let _ = self.events.send(Event::RetryPlanned(Box::new(note))).await;
            let resumed = tokio::select! {
                biased;
                _ = retries.cancelled() => false,
                _ = async {
                    tokio::time::sleep(delay).await;
                    self.limiter.acquire(tokens).await;
                    booking.reserved_tokens(tokens);
                } => true,
            };
            if !resumed {
                break Err(failure);
            }
            // Told only now: a retry cut short by a stop never happened.
            let _ = self
                .events
                .send(Event::Retrying { kind: failure.kind })
                .await;
            // That send may have waited; an interrupt meanwhile still stops the retry.
            if retries.is_cancelled() {
                // Booked with the limiter, never sent.
                self.limiter.on_answer(tokens, None);
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
            self.streak(|s| s.on_end(Some((failure, verdict))), Some(failure));
        }
        Ended {
            result,
            attempts,
            uncertain,
            bad_output_charge,
            started_at,
            finished_at: Utc::now(),
            panicked_charge: None,
        }
    }

    /// Updates the streaks; one that says no further request can succeed stops
    /// dispatch, quoting the failure's message.
    fn streak(
        &self,
        update: impl FnOnce(&mut Streaks) -> Option<StopReason>,
        failure: Option<&Failure>,
    ) {
        let stop = update(&mut self.streaks.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(reason) = stop {
            let detail = failure.map(|f| match f.status {
                Some(status) => format!("HTTP {status}: {}", f.message),
                None => f.message.clone(),
            });
            self.stop.stop_because(reason, detail);
        }
    }
}
