//! The one dispatch loop: concurrency cap, rate limits, budget (with the pricing it weighs), retries, stop signals.
//!
//! Requests arrive on a channel (the scheduler knows nothing of files) and
//! leave as [`Event`]s on another: every request that was sent ends as exactly
//! one `Event::Done`, whatever happens.

mod attempts;
mod booking;
mod budget;
mod limiter;
pub mod pricing;
pub mod retry;
mod routes;
mod stop;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use booking::Booking;
pub use budget::Budget;
pub use limiter::{Limiter, PaceChange, PaceReport, PaceSource, PaceWhy};
pub use routes::{EndpointNote, Route, FAILING_TO_AVOID};
pub use stop::{shorten, StopSignal, IDENTICAL_TO_STOP, REFUSALS_TO_STOP, UNREACHABLE_TO_STOP};

use crate::client::{ErrorKind, Failure, RawJson, Reply};
use crate::job::{Job, Pricing, RetryConfig};
use crate::plan::structured::OutputCheck;
use crate::plan::Request;
use routes::{Picked, Routes};

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
    /// With `[[endpoints]]`: the name of the endpoint that gave the last answer.
    pub endpoint: Option<String>,
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
    /// With `[[endpoints]]`: the endpoint the failed attempt went to.
    pub endpoint: Option<String>,
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
    /// With `[[endpoints]]`: an endpoint was taken out of rotation, or is
    /// failing (a warning).
    Endpoint(EndpointNote),
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
    /// Where attempts go: one route, or one per `[[endpoints]]` entry.
    routes: Routes,
    retry: RetryConfig,
    pricing: Pricing,
    /// The job-wide limiter (`[limits]` rates); with one endpoint, its own.
    limiter: Arc<Limiter>,
    budget: Option<Arc<Budget>>,
    stop: Arc<StopSignal>,
    events: mpsc::Sender<Event>,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    concurrency: usize,
}

impl Scheduler {
    /// `recorded_cost_usd`: the cost already in the output (for the budget).
    /// `routes`: one unnamed route (a job of one endpoint: its limiter is
    /// the job's, of `[limits]` rates), or one named route per endpoint.
    pub fn new(
        job: &Job,
        routes: Vec<Route>,
        stop: Arc<StopSignal>,
        recorded_cost_usd: f64,
        events: mpsc::Sender<Event>,
    ) -> Scheduler {
        let limits = &job.limits;
        let budget = (limits.max_cost_usd > 0.0)
            .then(|| Arc::new(Budget::new(limits.max_cost_usd, recorded_cost_usd)));
        let routes = Routes::new(routes);
        let limiter = match (routes.several(), routes.routes.first()) {
            (false, Some(route)) => route.limiter.clone(),
            _ => Arc::new(Limiter::configured(
                limits.requests_per_minute,
                limits.tokens_per_minute,
            )),
        };
        Scheduler {
            shared: Arc::new(Shared {
                routes,
                retry: job.retry.clone(),
                pricing: job.pricing.clone(),
                limiter,
                budget,
                stop,
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

    /// Each endpoint's name (None for one endpoint), url and limiter.
    pub fn route_limiters(&self) -> Vec<(Option<String>, String, Arc<Limiter>)> {
        (self.shared.routes.routes.iter())
            .map(|r| (r.name.clone(), r.url.clone(), r.limiter.clone()))
            .collect()
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
            let mut route = Some(0);
            if shared.routes.several() {
                let picked = tokio::select! {
                    biased;
                    _ = dispatching.cancelled() => break,
                    picked = shared.routes.pick(&request.model, tokens, None) => picked,
                };
                route = match picked {
                    Picked::Route(i) => {
                        booking.reserved_at(shared.routes.routes[i].limiter.clone());
                        Some(i)
                    }
                    // Recorded as this request's failure, never sent.
                    Picked::Unserved => {
                        shared.limiter.on_answer(tokens, None);
                        None
                    }
                    Picked::AllOut(reason, detail) => {
                        shared.stop.stop_quoting(reason, detail);
                        break;
                    }
                };
            }
            let task = shared.clone();
            tokio::spawn(async move {
                // A bug that panics still ends as a line, and frees its booking.
                // Boxed: the attempt's state is kilobytes, which the task
                // would otherwise copy in when spawned and over when done.
                let execute = Box::pin(task.execute(&request, worst, tokens, &mut booking, route));
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
                    endpoint: ended.endpoint,
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
    /// With `[[endpoints]]`: the endpoint of the last attempt.
    endpoint: Option<String>,
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
            endpoint: None,
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
async fn checked(request: &Request, reply: &mut Reply) -> Option<Failure> {
    let check = request.output.as_ref()?;
    if reply.content.is_none() && reply.tool_calls.is_some() {
        return None;
    }
    let verdict = match check.is_large(reply.content.as_deref()) {
        false => check
            .check(reply.content.as_deref())
            .map(RawJson::compacted),
        true => large_check(Arc::clone(check), reply.content.clone()).await,
    };
    match verdict {
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

/// One schema check of a large reply at a time, on a blocking thread: its
/// tree is about 20 times the text, and building it must neither stall the
/// async workers nor happen for every large reply in flight at once.
async fn large_check(check: Arc<OutputCheck>, content: Option<String>) -> Result<RawJson, String> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let checked = tokio::task::spawn_blocking(move || {
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        check.check(content.as_deref()).map(RawJson::compacted)
    })
    .await;
    checked.unwrap_or_else(|e| Err(format!("the reply's JSON check failed: {e}")))
}
