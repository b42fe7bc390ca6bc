//! The run-wide rate limiter: requests per minute, tokens per minute, and the slow-down after a 429.
//!
//! Both limits are GCRA schedules (a "theoretical arrival time" advanced by
//! each request's weight), so requests are spread evenly over the minute
//! instead of bursting at its start: a provider that counts per second or per
//! sliding window sees the same even flow. A small burst allowance lets a
//! coarse timer keep up at high rates. A 429 pauses every dispatch until the
//! server's `Retry-After` and lowers the pace; the pace recovers slowly while
//! requests succeed.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead of the schedule a request may go (absorbs timer granularity).
const BURST: Duration = Duration::from_millis(50);
/// Pause after a 429 that names no Retry-After.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// Each 429 multiplies the pace by this; successes recover it.
const SLOWDOWN: f64 = 0.7;
const MIN_PACE: f64 = 0.05;
const RECOVERY_PER_SUCCESS: f64 = 0.01;

#[derive(Debug)]
struct Gcra {
    /// Time one unit of weight occupies at full pace.
    per_unit: Duration,
    tat: Instant,
}

impl Gcra {
    fn new(per_minute: u64, now: Instant) -> Option<Gcra> {
        (per_minute > 0).then(|| Gcra {
            per_unit: Duration::from_secs(60).div_f64(per_minute as f64),
            tat: now,
        })
    }

    /// How long until the next request fits the schedule.
    fn wait(&self, now: Instant) -> Duration {
        self.tat.saturating_duration_since(now + BURST)
    }

    fn take(&mut self, now: Instant, weight: u64, pace: f64) {
        let cost = self.per_unit.mul_f64(weight as f64 / pace);
        self.tat = self.tat.max(now) + cost;
    }

    fn give_back(&mut self, weight: u64, pace: f64) {
        let cost = self.per_unit.mul_f64(weight as f64 / pace);
        self.tat = self.tat.checked_sub(cost).unwrap_or(self.tat);
    }
}

#[derive(Debug)]
struct State {
    requests: Option<Gcra>,
    tokens: Option<Gcra>,
    cooldown_until: Instant,
    pace: f64,
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
                requests: Gcra::new(u64::from(requests_per_minute), now),
                tokens: Gcra::new(tokens_per_minute, now),
                cooldown_until: now,
                pace: 1.0,
            }),
        }
    }

    /// Waits until one request of `tokens` estimated tokens may be sent, and books it.
    pub async fn acquire(&self, tokens: u64) {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("limiter lock is never poisoned");
                let now = Instant::now();
                let pace = s.pace;
                let wait = [
                    s.cooldown_until.saturating_duration_since(now),
                    s.requests.as_ref().map_or(Duration::ZERO, |g| g.wait(now)),
                    s.tokens.as_ref().map_or(Duration::ZERO, |g| g.wait(now)),
                ]
                .into_iter()
                .max()
                .unwrap_or(Duration::ZERO);
                if wait.is_zero() {
                    if let Some(g) = s.requests.as_mut() {
                        g.take(now, 1, pace);
                    }
                    if let Some(g) = s.tokens.as_mut() {
                        g.take(now, tokens, pace);
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
        let mut s = self.state.lock().expect("limiter lock is never poisoned");
        let pace = s.pace;
        if let Some(g) = s.tokens.as_mut() {
            g.give_back(tokens, pace);
        }
    }

    /// A 429: pause everyone until the server's time, and slow the pace.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.state.lock().expect("limiter lock is never poisoned");
        let until = Instant::now() + retry_after.unwrap_or(DEFAULT_COOLDOWN);
        s.cooldown_until = s.cooldown_until.max(until);
        s.pace = (s.pace * SLOWDOWN).max(MIN_PACE);
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock().expect("limiter lock is never poisoned");
        if s.pace < 1.0 {
            s.pace = (s.pace + RECOVERY_PER_SUCCESS).min(1.0);
        }
    }

    /// The current pace, 1.0 = the configured limits (for progress and tests).
    pub fn pace(&self) -> f64 {
        self.state
            .lock()
            .expect("limiter lock is never poisoned")
            .pace
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

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_and_slows_the_pace() {
        let limiter = Limiter::new(0, 0);
        limiter.on_rate_limited(Some(Duration::from_secs(3)));
        assert!(limiter.pace() < 1.0);
        let start = Instant::now();
        limiter.acquire(1).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
        for _ in 0..100 {
            limiter.on_success();
        }
        assert_eq!(limiter.pace(), 1.0);
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
