//! Where each attempt goes when a job has several endpoints (`[[endpoints]]`):
//! each endpoint's client, limiter and streaks, the weighted choice among
//! those that serve a request's model and can send now, and the endpoints
//! taken out of rotation.
//!
//! A job of one endpoint has one route, and the dispatch loop never asks it
//! to choose: the single-endpoint run stays exactly what it was.
//!
//! The choice is smooth weighted round-robin (nginx's): each pick adds every
//! candidate's weight to its credit, takes the candidate with the most, and
//! charges it the candidates' total. Over any run of picks among the same
//! candidates the split follows the weights exactly, evenly interleaved.
//! Endpoints whose limiter holds them back are not candidates; when none
//! can send, the choice waits for the earliest.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::stop::{shorten, Streaks};
use super::{Limiter, StopReason};
use crate::client::Client;

/// Requests in a row failing with retryable errors after which an endpoint
/// is warned about and tried only when the others are busy.
pub const FAILING_TO_AVOID: u32 = 20;
/// How often an endpoint avoided for failing is tried once anyway (while
/// the others could take every request), so one that recovered is found.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);
/// The longest a choice sleeps before looking again: a refund or an
/// answer elsewhere may free an endpoint before its limiter's estimate.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// One endpoint requests can go to.
pub struct Route {
    /// None for a job of one endpoint (its records carry no `endpoint`).
    pub name: Option<String>,
    /// The url, for the state file and for people.
    pub url: String,
    pub client: Client,
    pub limiter: Arc<Limiter>,
    pub weight: u32,
    /// The model ids it serves; None = every model.
    pub models: Option<Vec<String>>,
    pub streaks: Mutex<Streaks>,
}

impl Route {
    fn serves(&self, model: &str) -> bool {
        (self.models.as_ref()).is_none_or(|models| models.iter().any(|m| m == model))
    }

    pub fn streaks(&self) -> MutexGuard<'_, Streaks> {
        self.streaks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What changed about an endpoint, for the run's consumers to warn about.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointNote {
    /// Taken out of rotation: it refuses everything, or cannot be reached.
    Out {
        name: String,
        reason: StopReason,
        /// Its last (redacted, shortened) error.
        detail: Option<String>,
    },
    /// This many requests in a row failed there with retryable errors: it
    /// is tried only when the others are busy.
    Failing { name: String, in_a_row: u32 },
}

/// The choice for one attempt.
#[derive(Debug, PartialEq)]
pub enum Picked {
    /// Send to this route: its limiter has booked the attempt.
    Route(usize),
    /// No endpoint of the job serves the model at all.
    Unserved,
    /// Every endpoint serving the model is out; why (the first one's
    /// reason) and each one's last error.
    AllOut(StopReason, String),
}

#[derive(Debug)]
struct State {
    /// Smooth weighted round-robin credit.
    credit: Vec<i64>,
    /// Out of rotation, why, and the error that took it out.
    out: Vec<Option<(StopReason, Option<String>)>>,
    /// Retryable failures in a row.
    failing: Vec<u32>,
    /// When each failing endpoint was last tried anyway (see [`PROBE_EVERY`]).
    probed: Vec<Instant>,
}

pub struct Routes {
    pub routes: Vec<Route>,
    state: Mutex<State>,
}

impl Routes {
    pub fn new(routes: Vec<Route>) -> Routes {
        let n = routes.len();
        Routes {
            routes,
            state: Mutex::new(State {
                credit: vec![0; n],
                out: vec![None; n],
                failing: vec![0; n],
                probed: vec![Instant::now(); n],
            }),
        }
    }

    /// Whether the job has `[[endpoints]]` (every route named).
    pub fn several(&self) -> bool {
        self.routes.first().is_some_and(|r| r.name.is_some())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an endpoint other than `not` serves `model` and is in rotation.
    pub fn other_serving(&self, model: &str, not: usize) -> bool {
        let s = self.lock();
        (0..self.routes.len())
            .any(|i| i != not && s.out[i].is_none() && self.routes[i].serves(model))
    }

    /// Waits for an endpoint serving `model` that can send now and books the
    /// attempt with its limiter; `avoid` (the endpoint that just failed) is
    /// chosen only when no other serves the model.
    pub async fn pick(&self, model: &str, tokens: u64, avoid: Option<usize>) -> Picked {
        loop {
            match self.try_pick(model, tokens, avoid) {
                Ok(picked) => return picked,
                Err(wait) => {
                    tokio::time::sleep(wait.clamp(Duration::from_millis(1), LOOK_AGAIN)).await
                }
            }
        }
    }

    /// One look: the choice, or how long until one may be possible.
    fn try_pick(&self, model: &str, tokens: u64, avoid: Option<usize>) -> Result<Picked, Duration> {
        let mut s = self.lock();
        let serving: Vec<usize> = (0..self.routes.len())
            .filter(|&i| self.routes[i].serves(model))
            .collect();
        if serving.is_empty() {
            return Ok(Picked::Unserved);
        }
        let live: Vec<usize> = (serving.iter().copied())
            .filter(|&i| s.out[i].is_none())
            .collect();
        if live.is_empty() {
            return Ok(self.all_out(&s, model, &serving));
        }
        let elsewhere: Vec<usize> = match avoid {
            Some(a) if live.len() > 1 => live.iter().copied().filter(|&i| i != a).collect(),
            _ => live,
        };
        let (healthy, failing): (Vec<usize>, Vec<usize>) = elsewhere
            .iter()
            .partition(|&&i| s.failing[i] < FAILING_TO_AVOID);
        let mut earliest = LOOK_AGAIN;
        let now = Instant::now();
        let due = (failing.iter().copied())
            .find(|&i| now.saturating_duration_since(s.probed[i]) >= PROBE_EVERY);
        if let Some(i) = due {
            if self.routes[i].limiter.try_acquire(tokens).is_ok() {
                s.probed[i] = now;
                return Ok(Picked::Route(i));
            }
        }
        for tier in [healthy, failing] {
            let ready: Vec<usize> = tier
                .iter()
                .copied()
                .filter(|&i| {
                    let wait = self.routes[i].limiter.ready_in();
                    earliest = earliest.min(wait);
                    wait.is_zero()
                })
                .collect();
            if let Some(i) = smooth_pick(&mut s.credit, &ready, |i| self.routes[i].weight) {
                match self.routes[i].limiter.try_acquire(tokens) {
                    Ok(()) => return Ok(Picked::Route(i)),
                    Err(wait) => earliest = earliest.min(wait),
                }
            }
        }
        Err(earliest)
    }

    /// [`Picked::AllOut`] for `model`, whose endpoints are `serving`, all out.
    fn all_out(&self, s: &State, model: &str, serving: &[usize]) -> Picked {
        let reason = (serving.iter())
            .find_map(|&i| s.out[i].as_ref().map(|(r, _)| *r))
            .unwrap_or(StopReason::EndpointRefused);
        let quoted: Vec<String> = serving
            .iter()
            .map(|&i| {
                let name = self.routes[i].name.as_deref().unwrap_or("endpoint");
                match s.out[i].as_ref().and_then(|(_, d)| d.as_deref()) {
                    Some(detail) => format!("{name}: {}", shorten(detail)),
                    None => name.to_string(),
                }
            })
            .collect();
        let detail = format!(
            "every endpoint serving {model} is out of rotation: {}",
            quoted.join("; ")
        );
        Picked::AllOut(reason, detail)
    }

    /// [`Picked::AllOut`] when every endpoint serving `model` is out.
    pub fn none_left(&self, model: &str) -> Option<Picked> {
        let s = self.lock();
        let serving: Vec<usize> = (0..self.routes.len())
            .filter(|&i| self.routes[i].serves(model))
            .collect();
        let out = !serving.is_empty() && serving.iter().all(|&i| s.out[i].is_some());
        out.then(|| self.all_out(&s, model, &serving))
    }

    /// An attempt at `route` succeeded.
    pub fn succeeded(&self, route: usize) {
        self.lock().failing[route] = 0;
    }

    /// An attempt at `route` failed with a retryable error: the note when
    /// that makes [`FAILING_TO_AVOID`] in a row.
    pub fn failed(&self, route: usize) -> Option<EndpointNote> {
        let mut s = self.lock();
        // Out of rotation already (its warning said so): "tried only when the
        // others are busy" would contradict it. Requests in flight when it
        // was taken out still fail there.
        if s.out[route].is_some() {
            return None;
        }
        s.failing[route] = s.failing[route].saturating_add(1);
        if s.failing[route] == FAILING_TO_AVOID {
            s.probed[route] = Instant::now();
        }
        let name = self.routes[route].name.clone()?;
        (s.failing[route] == FAILING_TO_AVOID).then_some(EndpointNote::Failing {
            name,
            in_a_row: FAILING_TO_AVOID,
        })
    }

    /// Takes `route` out of rotation; the note the first time.
    pub fn take_out(
        &self,
        route: usize,
        reason: StopReason,
        detail: Option<String>,
    ) -> Option<EndpointNote> {
        let mut s = self.lock();
        if s.out[route].is_some() {
            return None;
        }
        s.out[route] = Some((reason, detail.clone()));
        Some(EndpointNote::Out {
            name: self.routes[route].name.clone()?,
            reason,
            detail: detail.map(|d| shorten(&d)),
        })
    }
}

/// Smooth weighted round-robin over `candidates` (indices into `credit`).
fn smooth_pick(
    credit: &mut [i64],
    candidates: &[usize],
    weight: impl Fn(usize) -> u32,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for &i in candidates {
        let w = i64::from(weight(i));
        total = total.saturating_add(w);
        credit[i] = credit[i].saturating_add(w);
        if best.is_none_or(|b| credit[i] > credit[b]) {
            best = Some(i);
        }
    }
    let best = best?;
    credit[best] = credit[best].saturating_sub(total);
    Some(best)
}

#[cfg(test)]
mod tests;
