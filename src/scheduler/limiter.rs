//! The run-wide rate limiter: requests per minute, tokens per minute, and the
//! rate it learns from 429s.
//!
//! Every limit is a GCRA schedule (a "theoretical arrival time" advanced by
//! each request's weight), so requests are spread evenly instead of bursting
//! at the start of a minute: a provider that counts per second, per minute or
//! per sliding window sees the same even flow. A small burst allowance lets a
//! coarse timer keep up at high rates.
//!
//! 429s that show a limit — 24 of the last 32 answers, or a run of them in a
//! row longer than stray ones make (see `evidence`), or once a limit is known
//! and binding, 6 in a row — pause every
//! dispatch until the server's `Retry-After` and teach the limiter the
//! provider's rate: the requests that succeeded in the window that ended,
//! over the time until the next window opens. A window measured from the run's
//! start is only part of one (the run began at some point of it), so its rate may
//! be high: the first 429 at that pace (even a lone one) measures again over
//! a whole window (from the end of the pause the provider named to the next)
//! and replaces it. From then on requests are paced
//! just under it, and the pace is raised by 1 % per window (at least a
//! second) while no limit shows, so a lifted limit is found again. Stray 429s
//! among answers (an overloaded upstream, even a third of them) only make
//! their own requests wait: the run neither pauses nor crawls because of them.
//!
//! With no configured rate, the endpoint's `x-ratelimit-*` figures set a pace
//! before any 429 (see `headers`), and a pace learned by an earlier run (the
//! run's state file) may seed the learned one: a configured rate always wins
//! over both.
//!
//! No figure can make it panic: weights and pauses come from servers and
//! flags (a huge `--tpm`, a reported usage of 2^64, `Retry-After:
//! 99999999999`), so every duration is built with checked arithmetic and
//! capped, and the lock is taken even after a panic elsewhere poisoned it.

mod evidence;
mod headers;
mod pace;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::RateHeaders;
#[cfg(test)]
use evidence::LIMIT_EVIDENCE;
use evidence::{Evidence, Sign};
use headers::HeaderPace;
pub use pace::{PaceReport, PaceSource};

/// How far ahead of the schedule a request may go (absorbs timer granularity).
const BURST: Duration = Duration::from_millis(50);
/// Pause after a 429 that names no Retry-After.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// The learned rate sits this far under the rate that was measured.
const MARGIN: f64 = 0.95;
/// The learned rate grows by this factor per window without a limit showing.
const PROBE: f64 = 1.01;
/// Once a limit is known, this many 429s in a row show it again: paced
/// requests that overshoot it bounce one after another at each window's end.
const LIMIT_AGAIN: u32 = 6;
/// A 429 while the learned pace holds requests back: it is a little too
/// fast (a limit measured high, or kept from an earlier run): this much
/// slower, at most once a window, never under [`STEP_FLOOR`] of the measure,
/// and no probing up for [`STEP_QUIET`] windows (so the pace does not swing
/// across the limit, bouncing a request every other window).
const STEP_DOWN: f64 = 0.98;
const STEP_FLOOR: f64 = 0.85;
const STEP_QUIET: u32 = 20;
/// The longest window a provider is assumed to count over.
const MAX_WINDOW: Duration = Duration::from_secs(60);
/// Never slower than one request a minute.
const MIN_RATE_PER_S: f64 = 1.0 / 60.0;
/// The longest pause or schedule step honoured: a server asking for more
/// (or a weight that would take longer) is taken as asking for a day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A change of pace, told to the run's consumers (`-v` prints it): the
/// limiter only reports it, as it must never print.
#[derive(Debug, Clone, PartialEq)]
pub struct PaceChange {
    /// The learned pace now, in requests per second (None: none learned yet).
    pub rate_per_s: Option<f64>,
    /// The pace before the change (None: there was none).
    pub previous_per_s: Option<f64>,
    /// Every dispatch waits this long first (zero when the pace went up).
    pub pause: Duration,
    pub why: PaceWhy,
}

/// What changed the pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceWhy {
    /// This many of the last 32 answers were 429s: a limit shows.
    Limited { rate_limited: u32 },
    /// This many 429s in a row while the learned pace held requests back.
    LimitedAgain { in_a_row: u32 },
    /// This many 429s in a row, more than stray 429s at the share seen make.
    InARow { in_a_row: u32 },
    /// A 429 at a pace measured over part of a window: measured again.
    PartWindow,
    /// No limit showed for a window at the learned pace: raised a little.
    NoLimit,
}

/// `per_unit` × `weight`, capped at [`MAX_WAIT`] (never a panic).
fn weigh(per_unit: Duration, weight: u64) -> Duration {
    Duration::try_from_secs_f64(per_unit.as_secs_f64() * weight as f64)
        .map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
}

/// `at` + `by`, or `at` when that is past what a clock can hold.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or(at)
}

/// The time one unit takes at `rate_per_s` (at least [`MIN_RATE_PER_S`]).
fn per_unit(rate_per_s: f64) -> Duration {
    // NaN.max(x) is x; an infinite rate is no wait at all.
    Duration::try_from_secs_f64(1.0 / rate_per_s.max(MIN_RATE_PER_S)).unwrap_or(Duration::ZERO)
}

#[derive(Debug)]
struct Gcra {
    /// Time one unit of weight occupies.
    per_unit: Duration,
    tat: Instant,
}

impl Gcra {
    fn per_second(rate: f64, now: Instant) -> Gcra {
        Gcra {
            per_unit: per_unit(rate),
            tat: now,
        }
    }

    fn per_minute(per_minute: u64, now: Instant) -> Option<Gcra> {
        (per_minute > 0).then(|| Gcra::per_second(per_minute as f64 / 60.0, now))
    }

    /// How long until the next request fits the schedule.
    fn wait(&self, now: Instant) -> Duration {
        self.tat.saturating_duration_since(later(now, BURST))
    }

    fn take(&mut self, now: Instant, weight: u64) {
        self.tat = later(self.tat.max(now), weigh(self.per_unit, weight));
    }

    fn give_back(&mut self, weight: u64) {
        let cost = weigh(self.per_unit, weight);
        self.tat = self.tat.checked_sub(cost).unwrap_or(self.tat);
    }
}

/// The request rate learned from 429s.
#[derive(Debug)]
struct Learned {
    rate_per_s: f64,
    /// The rate last measured from a limit's window.
    measured: f64,
    schedule: Gcra,
    last_raise: Instant,
    /// When a request last waited for this pace.
    last_paced: Option<Instant>,
    /// How long the provider's window looked (first success to the next window), at least 1 s.
    window: Duration,
    /// Taken from the state file and not changed by a limit since.
    from_state: bool,
    /// Measured over part of a window only (the run began somewhere in
    /// it), so likely too fast: the next 429 at this pace measures again.
    partial: bool,
    /// When a 429 last stepped the pace down.
    last_step: Option<Instant>,
}

impl Learned {
    /// Whether this pace held a request back within the last window.
    fn binding(&self, now: Instant) -> bool {
        self.last_paced
            .is_some_and(|at| now.saturating_duration_since(at) <= self.window)
    }

    /// A 429 at this pace: a little slower (see [`STEP_DOWN`]).
    fn step_down(&mut self, now: Instant) {
        if self
            .last_step
            .is_some_and(|at| now.saturating_duration_since(at) < self.window)
        {
            return;
        }
        let floor = self.measured * STEP_FLOOR;
        if self.rate_per_s * STEP_DOWN >= floor {
            self.set_rate(self.rate_per_s * STEP_DOWN);
        }
        self.last_step = Some(now);
        self.last_raise = later(now, self.window.saturating_mul(STEP_QUIET));
    }

    fn set_rate(&mut self, rate_per_s: f64) {
        self.rate_per_s = rate_per_s.max(MIN_RATE_PER_S);
        self.schedule.per_unit = per_unit(self.rate_per_s);
    }
}

#[derive(Debug)]
struct State {
    requests: Option<Gcra>,
    tokens: Option<Gcra>,
    learned: Option<Learned>,
    cooldown_until: Instant,
    /// When the current window opened (the start, or the end of the last pause).
    window_start: Instant,
    /// Whether `window_start` is when the provider's window opened (the end
    /// of a pause it named), not the run's start or a point picked mid-window.
    window_whole: bool,
    /// Successes since `window_start`.
    successes: u64,
    /// The answers weighed for a limit.
    evidence: Evidence,
    /// The configured rates (0 = none): when either is set, nothing else paces.
    configured: (u32, u64),
    /// From the endpoint's rate headers; only without a configured rate.
    headers: Option<HeaderPace>,
    /// Attempts sent and not answered yet, and the tokens they booked.
    in_flight: (u64, u64),
}

impl State {
    /// An answer came: requests no longer wait for the first one's.
    fn answered(&mut self) {
        if let Some(h) = self.headers.as_mut() {
            h.answered();
        }
    }

    fn wait(&self, now: Instant) -> Duration {
        [
            self.cooldown_until.saturating_duration_since(now),
            self.requests
                .as_ref()
                .map_or(Duration::ZERO, |g| g.wait(now)),
            self.tokens.as_ref().map_or(Duration::ZERO, |g| g.wait(now)),
            self.learned
                .as_ref()
                .map_or(Duration::ZERO, |l| l.schedule.wait(now)),
            self.headers
                .as_ref()
                .map_or(Duration::ZERO, |h| h.wait(now)),
        ]
        .into_iter()
        .max()
        .unwrap_or(Duration::ZERO)
    }
}

/// Shared by the dispatcher and every retrying request.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
}

impl Limiter {
    pub fn new(requests_per_minute: u32, tokens_per_minute: u64) -> Limiter {
        Limiter::with_headers(requests_per_minute, tokens_per_minute, true)
    }

    /// A limiter of configured rates only: the job-wide limit over several
    /// endpoints, each of which paces itself from its own answers.
    pub fn configured(requests_per_minute: u32, tokens_per_minute: u64) -> Limiter {
        Limiter::with_headers(requests_per_minute, tokens_per_minute, false)
    }

    fn with_headers(requests_per_minute: u32, tokens_per_minute: u64, headers: bool) -> Limiter {
        let now = Instant::now();
        Limiter {
            state: Mutex::new(State {
                requests: Gcra::per_minute(u64::from(requests_per_minute), now),
                tokens: Gcra::per_minute(tokens_per_minute, now),
                learned: None,
                cooldown_until: now,
                window_start: now,
                window_whole: false,
                successes: 0,
                evidence: Evidence::default(),
                configured: (requests_per_minute, tokens_per_minute),
                headers: (headers && requests_per_minute == 0 && tokens_per_minute == 0)
                    .then(HeaderPace::default),
                in_flight: (0, 0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under the lock is whole before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until one request of `tokens` estimated tokens may be sent, and books it.
    pub async fn acquire(&self, tokens: u64) {
        loop {
            match self.try_acquire(tokens) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Books one request of `tokens` estimated tokens if it may be sent now;
    /// else how long until it may (another may book that time first).
    pub fn try_acquire(&self, tokens: u64) -> Result<(), Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        let wait = s.wait(now);
        if let Some(l) = s.learned.as_mut() {
            if !l.schedule.wait(now).is_zero() {
                l.last_paced = Some(now);
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        if let Some(g) = s.requests.as_mut() {
            g.take(now, 1);
        }
        if let Some(g) = s.tokens.as_mut() {
            g.take(now, tokens);
        }
        if let Some(l) = s.learned.as_mut() {
            l.schedule.take(now, 1);
        }
        if let Some(h) = s.headers.as_mut() {
            h.take(now, tokens);
        }
        s.in_flight.0 = s.in_flight.0.saturating_add(1);
        s.in_flight.1 = s.in_flight.1.saturating_add(tokens);
        Ok(())
    }

    /// How long until a request could be sent (zero: now); books nothing.
    pub fn ready_in(&self) -> Duration {
        self.lock().wait(Instant::now())
    }

    /// Returns tokens booked but not used (the reply was shorter than its cap).
    pub fn refund(&self, tokens: u64) {
        let mut s = self.lock();
        if let Some(g) = s.tokens.as_mut() {
            g.give_back(tokens);
        }
        if let Some(h) = s.headers.as_mut() {
            h.refund(tokens);
        }
    }

    /// An attempt booked with `tokens` was answered (or ended unanswered),
    /// with the endpoint's rate figures when it sent them.
    pub fn on_answer(&self, tokens: u64, figures: Option<&RateHeaders>) {
        let mut s = self.lock();
        let (requests, booked) = s.in_flight;
        s.in_flight = (requests.saturating_sub(1), booked.saturating_sub(tokens));
        let (others, others_tokens) = s.in_flight;
        if let Some(h) = s.headers.as_mut() {
            match figures {
                Some(figures) => h.update(figures, others, others_tokens, Instant::now()),
                None => h.answered(),
            }
        }
    }

    /// A 429: when it shows a limit, pause everyone until the server's time
    /// and learn the rate the limit allows; returns that change of pace.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) -> Option<PaceChange> {
        let mut s = self.lock();
        s.answered();
        let now = Instant::now();
        if now < s.cooldown_until {
            // An answer of the burst that was already measured: it is neither
            // new evidence nor a reason to pause everyone any longer.
            return None;
        }
        s.evidence.rate_limited();
        let pause = retry_after.unwrap_or(DEFAULT_COOLDOWN).min(MAX_WAIT);
        // Once a limit is known, a few 429s in a row show it again, but only
        // while its pace is what holds requests back (stray 429s at a lower
        // pace say nothing about it).
        let binding = s.learned.as_ref().is_some_and(|l| l.binding(now));
        let in_a_row = s.evidence.run();
        let again = binding && in_a_row >= LIMIT_AGAIN;
        let partial = binding && s.learned.as_ref().is_some_and(|l| l.partial);
        let why = match s.evidence.shows() {
            Some(Sign::Crowd(rate_limited)) => PaceWhy::Limited { rate_limited },
            _ if again => PaceWhy::LimitedAgain { in_a_row },
            _ if partial => PaceWhy::PartWindow,
            Some(Sign::Run(in_a_row)) => PaceWhy::InARow { in_a_row },
            None => {
                if let Some(l) = s.learned.as_mut().filter(|_| binding) {
                    l.step_down(now);
                }
                return None;
            }
        };
        let previous_per_s = s.learned.as_ref().map(|l| l.rate_per_s);
        let span = now
            .saturating_duration_since(s.window_start)
            .saturating_add(pause);
        let measured = (s.successes > 0 && !span.is_zero())
            .then(|| s.successes as f64 / span.as_secs_f64() * MARGIN);
        let resume_at = later(now, pause);
        let window = span.clamp(Duration::from_secs(1), MAX_WINDOW);
        let whole = s.window_whole;
        match (s.learned.as_mut(), measured) {
            // A known rate is lowered: to the measure when it spans a whole
            // window (from the end of the pause the provider named to the
            // next), else at most halved at a time (a run that began
            // mid-window measured a part of it, and too high).
            (Some(l), Some(m)) => {
                let floor = if whole { 0.0 } else { l.rate_per_s / 2.0 };
                l.set_rate(m.min(l.rate_per_s * MARGIN).max(floor));
                l.measured = m;
                l.last_raise = resume_at;
                l.window = window;
                l.from_state = false;
                l.partial = !whole;
            }
            (None, Some(m)) => {
                s.learned = Some(Learned {
                    rate_per_s: m.max(MIN_RATE_PER_S),
                    measured: m,
                    schedule: Gcra::per_second(m, resume_at),
                    last_raise: resume_at,
                    last_paced: None,
                    window,
                    from_state: false,
                    partial: !whole,
                    last_step: None,
                })
            }
            // Nothing succeeded since the last pause (a window already spent
            // when the run began): pause, and measure the next window instead.
            (_, None) => {}
        }
        s.cooldown_until = resume_at;
        s.window_start = resume_at;
        s.window_whole = true;
        s.successes = 0;
        s.evidence.explained();
        Some(PaceChange {
            rate_per_s: s.learned.as_ref().map(|l| l.rate_per_s),
            previous_per_s,
            pause,
            why,
        })
    }

    /// An answer that was not a 429; returns the change when it raised the pace.
    pub fn on_success(&self) -> Option<PaceChange> {
        let mut s = self.lock();
        s.answered();
        let now = Instant::now();
        if now < s.cooldown_until {
            // Admitted before the pause: it belongs to the window that ended.
            return None;
        }
        s.evidence.success();
        // Measure over recent time only: an hour at a slower pace says
        // nothing about the rate a limit allows now.
        if now.saturating_duration_since(s.window_start) > MAX_WINDOW * 2 {
            s.window_start = now;
            s.window_whole = false;
            s.successes = 0;
        }
        s.successes = s.successes.saturating_add(1);
        if let Some(l) = s.learned.as_mut() {
            // Probe upwards only while the learned pace is what holds requests
            // back, and never past twice what was measured.
            if now.saturating_duration_since(l.last_raise) >= l.window && l.binding(now) {
                let previous = l.rate_per_s;
                // A pace above the limit measured held a whole window: the
                // limit was lifted, and what is kept follows it.
                l.measured = l.measured.max(previous * MARGIN);
                l.set_rate((l.rate_per_s * PROBE).min(l.measured * 2.0));
                l.last_raise = now;
                if l.rate_per_s > previous {
                    return Some(PaceChange {
                        rate_per_s: Some(l.rate_per_s),
                        previous_per_s: Some(previous),
                        pause: Duration::ZERO,
                        why: PaceWhy::NoLimit,
                    });
                }
            }
        }
        None
    }

    /// The request rate learned from 429s, if any.
    #[cfg(test)]
    fn learned_rate(&self) -> Option<f64> {
        self.lock().learned.as_ref().map(|l| l.rate_per_s)
    }
}

#[cfg(test)]
mod simulated;
#[cfg(test)]
mod tests;
