//! The run-wide rate limiter: requests per minute, tokens per minute, and the
//! rate it learns from 429s.
//!
//! Every limit is a GCRA schedule (a "theoretical arrival time" advanced by
//! each request's weight), so requests are spread evenly instead of bursting
//! at the start of a minute: a provider that counts per second, per minute or
//! per sliding window sees the same even flow. A small burst allowance lets a
//! coarse timer keep up at high rates.
//!
//! 429s that show a limit — at least 24 of the last 32 answers, or once a
//! limit is known, 6 in a row — pause every
//! dispatch until the server's `Retry-After` and teach the limiter the
//! provider's rate: the requests that succeeded in the window that ended,
//! over the time until the next window opens. From then on requests are paced
//! just under it, and the pace is raised by 1 % per window (at least a
//! second) while no limit shows, so a lifted limit is found again. Stray 429s
//! among answers (an overloaded upstream, even a third of them) only make
//! their own requests wait: the run neither pauses nor crawls because of them.
//!
//! No figure can make it panic: weights and pauses come from servers and
//! flags (a huge `--tpm`, a reported usage of 2^64, `Retry-After:
//! 99999999999`), so every duration is built with checked arithmetic and
//! capped, and the lock is taken even after a panic elsewhere poisoned it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead of the schedule a request may go (absorbs timer granularity).
const BURST: Duration = Duration::from_millis(50);
/// Pause after a 429 that names no Retry-After.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// The learned rate sits this far under the rate that was measured.
const MARGIN: f64 = 0.95;
/// The learned rate grows by this factor per window without a limit showing.
const PROBE: f64 = 1.01;
/// How many of the last 32 answers must be 429s to show a limit. Stray 429s
/// reach it with a chance near one in a million even when a third of the
/// answers are 429s; a crowd sent into an exhausted window reaches it at once.
const LIMIT_EVIDENCE: u32 = 24;
/// Once a limit is known, this many 429s in a row show it again: paced
/// requests that overshoot it bounce one after another at each window's end.
const LIMIT_AGAIN: u32 = 6;
/// The longest window a provider is assumed to count over.
const MAX_WINDOW: Duration = Duration::from_secs(60);
/// Never slower than one request a minute.
const MIN_RATE_PER_S: f64 = 1.0 / 60.0;
/// The longest pause or schedule step honoured: a server asking for more
/// (or a weight that would take longer) is taken as asking for a day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

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
}

impl Learned {
    /// Whether this pace held a request back within the last window.
    fn binding(&self, now: Instant) -> bool {
        self.last_paced
            .is_some_and(|at| now.saturating_duration_since(at) <= self.window)
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
    /// Successes since `window_start`.
    successes: u64,
    /// The last answers, newest in the lowest bit: 1 for a 429.
    recent: u32,
    /// 429s in a row.
    run: u32,
}

impl State {
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
        let now = Instant::now();
        Limiter {
            state: Mutex::new(State {
                requests: Gcra::per_minute(u64::from(requests_per_minute), now),
                tokens: Gcra::per_minute(tokens_per_minute, now),
                learned: None,
                cooldown_until: now,
                window_start: now,
                successes: 0,
                recent: 0,
                run: 0,
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
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let wait = s.wait(now);
                if let Some(l) = s.learned.as_mut() {
                    if !l.schedule.wait(now).is_zero() {
                        l.last_paced = Some(now);
                    }
                }
                if wait.is_zero() {
                    if let Some(g) = s.requests.as_mut() {
                        g.take(now, 1);
                    }
                    if let Some(g) = s.tokens.as_mut() {
                        g.take(now, tokens);
                    }
                    if let Some(l) = s.learned.as_mut() {
                        l.schedule.take(now, 1);
                    }
                    return;
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Returns tokens booked but not used (the reply was shorter than its cap).
    pub fn refund(&self, tokens: u64) {
        if let Some(g) = self.lock().tokens.as_mut() {
            g.give_back(tokens);
        }
    }

    /// A 429: when it shows a limit, pause everyone until the server's time
    /// and learn the rate the limit allows.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.lock();
        let now = Instant::now();
        if now < s.cooldown_until {
            // An answer of the burst that was already measured: it is neither
            // new evidence nor a reason to pause everyone any longer.
            return;
        }
        s.recent = (s.recent << 1) | 1;
        s.run = s.run.saturating_add(1);
        let pause = retry_after.unwrap_or(DEFAULT_COOLDOWN).min(MAX_WAIT);
        // Once a limit is known, a few 429s in a row show it again, but only
        // while its pace is what holds requests back (stray 429s at a lower
        // pace say nothing about it).
        let binding = s.learned.as_ref().is_some_and(|l| l.binding(now));
        let again = binding && s.run >= LIMIT_AGAIN;
        if s.recent.count_ones() < LIMIT_EVIDENCE && !again {
            return;
        }
        let span = now
            .saturating_duration_since(s.window_start)
            .saturating_add(pause);
        let measured = (s.successes > 0 && !span.is_zero())
            .then(|| s.successes as f64 / span.as_secs_f64() * MARGIN);
        let resume_at = later(now, pause);
        let window = span.clamp(Duration::from_secs(1), MAX_WINDOW);
        match (s.learned.as_mut(), measured) {
            // A known rate is lowered, but at most halved at a time.
            (Some(l), Some(m)) => {
                l.set_rate(m.min(l.rate_per_s * MARGIN).max(l.rate_per_s / 2.0));
                l.measured = m;
                l.last_raise = resume_at;
                l.window = window;
            }
            (None, Some(m)) => {
                s.learned = Some(Learned {
                    rate_per_s: m.max(MIN_RATE_PER_S),
                    measured: m,
                    schedule: Gcra::per_second(m, resume_at),
                    last_raise: resume_at,
                    last_paced: None,
                    window,
                })
            }
            // Nothing succeeded since the last pause (a window already spent
            // when the run began): pause, and measure the next window instead.
            (_, None) => {}
        }
        s.cooldown_until = resume_at;
        s.window_start = resume_at;
        s.successes = 0;
        s.recent = 0;
        s.run = 0;
    }

    pub fn on_success(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if now < s.cooldown_until {
            // Admitted before the pause: it belongs to the window that ended.
            return;
        }
        s.recent <<= 1;
        s.run = 0;
        // Measure over recent time only: an hour at a slower pace says
        // nothing about the rate a limit allows now.
        if now.saturating_duration_since(s.window_start) > MAX_WINDOW * 2 {
            s.window_start = now;
            s.successes = 0;
        }
        s.successes = s.successes.saturating_add(1);
        if let Some(l) = s.learned.as_mut() {
            // Probe upwards only while the learned pace is what holds requests
            // back, and never past twice what was measured.
            if now.saturating_duration_since(l.last_raise) >= l.window && l.binding(now) {
                l.set_rate((l.rate_per_s * PROBE).min(l.measured * 2.0));
                l.last_raise = now;
            }
        }
    }

    /// The request rate learned from 429s, if any.
    #[cfg(test)]
    fn learned_rate(&self) -> Option<f64> {
        self.lock().learned.as_ref().map(|l| l.rate_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_are_spread_evenly() {
        let limiter = Limiter::new(600, 0); // one every 100 ms
        let start = Instant::now();
        for _ in 0..11 {
            limiter.acquire(1).await;
        }
        let elapsed = start.elapsed();
        // 11 requests: the first at once, then 100 ms apart, less the burst allowance.
        assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(1000), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_weigh_each_request() {
        let limiter = Limiter::new(0, 60_000); // 1000 tokens per second
        let start = Instant::now();
        limiter.acquire(500).await;
        limiter.acquire(500).await;
        limiter.acquire(500).await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(1000), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn refunds_let_the_next_request_go_sooner() {
        let limiter = Limiter::new(0, 60_000);
        limiter.acquire(1000).await;
        limiter.refund(900);
        let start = Instant::now();
        limiter.acquire(100).await;
        assert!(
            start.elapsed() <= Duration::from_millis(60),
            "{:?}",
            start.elapsed()
        );
    }

    /// The answers to a crowd of requests sent into an exhausted window.
    fn bounce(limiter: &Limiter, n: usize, retry_after: Duration) {
        for _ in 0..n {
            limiter.on_rate_limited(Some(retry_after));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_of_a_window_limit_is_learned_from_its_429s() {
        // A provider allowing 100 requests per 1 s window: 100 pass at once,
        // then the requests in flight come back 429 until the window opens.
        let limiter = Limiter::new(0, 0);
        for _ in 0..100 {
            limiter.acquire(1).await;
            limiter.on_success();
        }
        bounce(&limiter, 24, Duration::from_secs(1));
        let rate = limiter.learned_rate().expect("learned");
        assert!((rate - 95.0).abs() < 0.5, "{rate}");
        // Everyone waits for the window; from then on at most ~95 pass per second.
        let start = Instant::now();
        for _ in 0..96 {
            limiter.acquire(1).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
        // While no 429 comes and the pace holds requests back, it is probed upwards...
        for _ in 0..3 {
            for _ in 0..100 {
                limiter.acquire(1).await;
            }
            limiter.on_success();
        }
        let probed = limiter.learned_rate().expect("learned");
        assert!(probed > rate * 1.02, "{probed}");
        // ...but not while something else (the concurrency cap) is the limit.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            limiter.on_success();
        }
        assert_eq!(limiter.learned_rate(), Some(probed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_minute_window_is_learned_per_minute() {
        // 60 requests a minute, all spent in the first second: the next window is 59 s away.
        let limiter = Limiter::new(0, 0);
        for _ in 0..60 {
            limiter.on_success();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        bounce(&limiter, 24, Duration::from_secs(59));
        let rate = limiter.learned_rate().expect("learned");
        assert!((rate - 0.95).abs() < 0.01, "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_met_again_at_the_learned_rate_lowers_it() {
        let limiter = Limiter::new(0, 0);
        for _ in 0..10 {
            limiter.on_success();
        }
        bounce(&limiter, 24, Duration::from_secs(1));
        let first = limiter.learned_rate().expect("learned");
        // Requests paced by the learned rate.
        for _ in 0..30 {
            limiter.acquire(1).await;
        }
        // A stray one among answers changes nothing (probing may raise it)...
        for _ in 0..16 {
            limiter.on_success();
        }
        limiter.on_rate_limited(Some(Duration::from_secs(1)));
        let probed = limiter.learned_rate().expect("learned");
        assert!(probed >= first);
        // ...a few in a row at the learned pace do, halving it at most.
        bounce(&limiter, 6, Duration::from_secs(1));
        let lowered = limiter.learned_rate().expect("learned");
        assert!(
            lowered < probed && lowered >= probed / 2.0,
            "{lowered} vs {probed}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_third_of_answers_429_at_random_never_slows_the_run() {
        let limiter = Limiter::new(0, 0);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            if rng.f64() < 1.0 / 3.0 {
                limiter.on_rate_limited(Some(Duration::from_secs(1)));
            } else {
                limiter.on_success();
            }
        }
        assert_eq!(limiter.learned_rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_met_before_any_success_pauses_without_learning_a_crawl() {
        // A rerun starting in a window already spent: 429s first, no successes.
        let limiter = Limiter::new(0, 0);
        bounce(&limiter, 24, Duration::from_secs(30));
        assert_eq!(limiter.learned_rate(), None);
        let start = Instant::now();
        limiter.acquire(1).await;
        assert!(start.elapsed() >= Duration::from_secs(30));
        // The next window is measured instead.
        for _ in 0..50 {
            limiter.acquire(1).await;
            limiter.on_success();
        }
        bounce(&limiter, 24, Duration::from_secs(1));
        let rate = limiter.learned_rate().expect("learned");
        assert!(rate > 40.0, "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn stray_429s_below_a_known_limit_do_not_lower_it() {
        let limiter = Limiter::new(0, 0);
        for _ in 0..100 {
            limiter.on_success();
        }
        bounce(&limiter, 24, Duration::from_secs(1));
        let known = limiter.learned_rate().expect("learned");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Well below the pace (the requests come slower), a third come back 429.
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..5_000 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            limiter.acquire(1).await;
            if rng.f64() < 1.0 / 3.0 {
                limiter.on_rate_limited(Some(Duration::from_secs(1)));
            } else {
                limiter.on_success();
            }
        }
        assert_eq!(limiter.learned_rate(), Some(known));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stray_429_neither_pauses_nor_teaches() {
        // An overloaded upstream turns away the odd request: the run must not crawl.
        let limiter = Limiter::new(0, 0);
        for round in 0..50 {
            for _ in 0..19 {
                limiter.on_success();
            }
            limiter.on_rate_limited(Some(Duration::from_secs(1)));
            assert_eq!(limiter.learned_rate(), None, "round {round}");
        }
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire(1).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_figures_never_panic() {
        let weights = [0, 1, 1 << 31, 1 << 53, u64::MAX / 2, u64::MAX];
        let pauses = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_secs(99_999_999_999)),
            Some(Duration::MAX),
        ];
        for (rpm, tpm) in [
            (u32::MAX, u64::MAX),
            (1, 1),
            (0, i64::MAX as u64),
            (u32::MAX, 0),
        ] {
            let limiter = Limiter::new(rpm, tpm);
            for &weight in &weights {
                // A wait of up to a day passes at once in paused time.
                limiter.acquire(weight).await;
                limiter.refund(weight);
                limiter.refund(u64::MAX);
                limiter.on_success();
            }
            for pause in pauses {
                for _ in 0..LIMIT_EVIDENCE {
                    limiter.on_rate_limited(pause);
                }
                limiter.acquire(1).await;
                limiter.on_success();
            }
        }
        assert!(weigh(Duration::from_secs(60), u64::MAX) == MAX_WAIT);
        assert_eq!(per_unit(f64::NAN), Duration::from_secs(60));
        assert_eq!(per_unit(f64::INFINITY), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_pauses_a_day_at_most() {
        let limiter = Limiter::new(0, 0);
        limiter.on_success();
        for _ in 0..LIMIT_EVIDENCE {
            limiter.on_rate_limited(Some(Duration::from_secs(99_999_999_999)));
        }
        let start = Instant::now();
        limiter.acquire(1).await;
        assert_eq!(start.elapsed(), MAX_WAIT);
    }

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let limiter = std::sync::Arc::new(Limiter::new(0, 60));
        let poisoner = limiter.clone();
        let _ = std::thread::spawn(move || {
            let _held = poisoner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(limiter.state.is_poisoned());
        limiter.refund(5);
        limiter.on_success();
        limiter.on_rate_limited(None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limits_never_wait() {
        let limiter = Limiter::new(0, 0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire(1_000_000).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
