//! Pacing from rate headers on tokio's paused clock: simulated providers
//! (a fixed window, a token bucket) answer with `x-ratelimit-*` figures, and
//! the limiter must reach nearly all of their limit without a single bounce.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::super::{Limiter, PaceSource};
use crate::client::{RateHeaders, RateWindow};

/// A provider's limit as it counts requests and what it announces.
trait Provider: Send {
    /// Counts a request arriving now: its answer's figures, or None for a 429.
    fn arrive(&mut self, now: Instant) -> Option<RateHeaders>;
}

fn requests(limit: u64, remaining: u64, reset: Duration) -> RateHeaders {
    RateHeaders {
        requests: RateWindow {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(reset),
        },
        tokens: RateWindow::default(),
    }
}

/// `limit` requests per fixed `window`, counted from `start`.
struct FixedWindow {
    limit: u64,
    window: Duration,
    start: Instant,
    index: u128,
    count: u64,
}

impl Provider for FixedWindow {
    fn arrive(&mut self, now: Instant) -> Option<RateHeaders> {
        let elapsed = now.duration_since(self.start).as_nanos();
        let index = elapsed / self.window.as_nanos();
        if index != self.index {
            self.index = index;
            self.count = 0;
        }
        self.count += 1;
        let left = (index + 1) * self.window.as_nanos() - elapsed;
        let reset = Duration::from_nanos(left as u64);
        (self.count <= self.limit).then(|| requests(self.limit, self.limit - self.count, reset))
    }
}

/// OpenAI's kind: a bucket of `limit` refilled at `per_s`; the reset is the time to fill it.
struct Bucket {
    limit: f64,
    per_s: f64,
    level: f64,
    at: Instant,
}

impl Provider for Bucket {
    fn arrive(&mut self, now: Instant) -> Option<RateHeaders> {
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_s;
        self.level = (self.level + refill).min(self.limit);
        self.at = now;
        if self.level < 1.0 {
            return None;
        }
        self.level -= 1.0;
        let reset = Duration::from_secs_f64((self.limit - self.level) / self.per_s);
        Some(requests(self.limit as u64, self.level as u64, reset))
    }
}

/// Runs `workers` request loops for `span` against `provider`, each answer
/// `latency` after its arrival; returns the send times and the bounces.
async fn drive(
    provider: impl Provider + 'static,
    workers: usize,
    latency: Duration,
    span: Duration,
) -> (Vec<Duration>, usize) {
    let limiter = Arc::new(Limiter::new(0, 0));
    let provider = Arc::new(Mutex::new(provider));
    let start = Instant::now();
    let log = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (limiter, provider, log) = (limiter.clone(), provider.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < span {
                limiter.acquire(1).await;
                let now = Instant::now();
                let answer = provider.lock().unwrap().arrive(now);
                {
                    let mut log = log.lock().unwrap();
                    log.0.push(now.duration_since(start));
                    log.1 += usize::from(answer.is_none());
                }
                tokio::time::sleep(latency).await;
                limiter.on_answer(1, answer.as_ref());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(limiter.report().source, PaceSource::RateHeaders);
    Arc::try_unwrap(log).unwrap().into_inner().unwrap()
}

/// The most sends in any `window` of time.
fn busiest(sends: &[Duration], window: Duration) -> usize {
    let mut sorted = sends.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while *at - sorted[first] >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

#[tokio::test(start_paused = true)]
async fn sixty_per_ten_seconds_is_met_and_never_passed() {
    let span = Duration::from_secs(100);
    for (workers, latency) in [(1, Duration::ZERO), (8, Duration::from_millis(200))] {
        let provider = FixedWindow {
            limit: 60,
            window: Duration::from_secs(10),
            start: Instant::now(),
            index: 0,
            count: 0,
        };
        let (sends, bounced) = drive(provider, workers, latency, span).await;
        assert_eq!(bounced, 0, "{workers} workers");
        let most = busiest(&sends, Duration::from_secs(10));
        assert!(most <= 60, "{most} sent within 10 s ({workers} workers)");
        // 100 s of a 60-per-10-s limit is 600 requests.
        assert!(
            sends.len() >= 570,
            "{} sent ({workers} workers)",
            sends.len()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_is_paced_at_its_refill() {
    let span = Duration::from_secs(100);
    for (workers, latency) in [(1, Duration::ZERO), (8, Duration::from_millis(200))] {
        let provider = Bucket {
            limit: 60.0,
            per_s: 6.0,
            level: 60.0,
            at: Instant::now(),
        };
        let (sends, bounced) = drive(provider, workers, latency, span).await;
        assert!(
            bounced <= sends.len() / 100,
            "{bounced} of {} bounced",
            sends.len()
        );
        // The refill over 100 s, and what the bucket held at the start.
        assert!(
            sends.len() >= 570,
            "{} sent ({workers} workers)",
            sends.len()
        );
        assert!(
            sends.len() <= 660,
            "{} sent ({workers} workers)",
            sends.len()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_holds_every_request_until_the_reset() {
    let limiter = Limiter::new(0, 0);
    limiter.acquire(1).await;
    limiter.on_answer(1, Some(&requests(10, 0, Duration::from_secs(3))));
    let start = Instant::now();
    limiter.acquire(1).await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(2950), "{waited:?}");
    assert!(waited <= Duration::from_secs(3), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_configured_rate_wins_over_headers() {
    let limiter = Limiter::new(6000, 0); // one every 10 ms
    limiter.acquire(1).await;
    limiter.on_answer(1, Some(&requests(10, 0, Duration::from_secs(30))));
    let start = Instant::now();
    limiter.acquire(1).await;
    assert!(start.elapsed() <= Duration::from_millis(10));
    assert_eq!(limiter.report().source, PaceSource::Configured);
}

#[tokio::test(start_paused = true)]
async fn figures_without_a_reset_or_a_remainder_pace_nothing() {
    let limiter = Limiter::new(0, 0);
    let half = RateHeaders {
        requests: RateWindow {
            limit: Some(10),
            remaining: Some(0),
            reset: None,
        },
        tokens: RateWindow {
            limit: None,
            remaining: None,
            reset: Some(Duration::from_secs(60)),
        },
    };
    for _ in 0..100 {
        limiter.acquire(1).await;
        limiter.on_answer(1, Some(&half));
    }
    let start = Instant::now();
    limiter.acquire(1).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.report().source, PaceSource::None);
}

#[tokio::test(start_paused = true)]
async fn the_first_request_goes_alone_until_its_answer() {
    let limiter = Arc::new(Limiter::new(0, 0));
    limiter.acquire(1).await;
    let start = Instant::now();
    let second = tokio::spawn({
        let limiter = limiter.clone();
        async move {
            limiter.acquire(1).await;
            start.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !second.is_finished(),
        "the second waits for the first answer"
    );
    limiter.on_answer(1, None);
    let waited = second.await.unwrap();
    assert!(waited >= Duration::from_millis(30), "{waited:?}");
    assert!(waited <= Duration::from_millis(40), "{waited:?}");
    // Then nothing holds the run back (no figures came).
    let start = Instant::now();
    for _ in 0..100 {
        limiter.acquire(1).await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);

    // An endpoint slow to answer holds the second request a moment only.
    let limiter = Limiter::new(0, 0);
    limiter.acquire(1).await;
    let start = Instant::now();
    limiter.acquire(1).await;
    let waited = start.elapsed();
    assert!(
        waited <= super::FIRST_ANSWER_WAIT + Duration::from_millis(5),
        "{waited:?}"
    );
    assert!(
        waited >= super::FIRST_ANSWER_WAIT - Duration::from_millis(5),
        "{waited:?}"
    );

    // Neither a configured rate nor a pace kept from an earlier run waits for it.
    for limiter in [Limiter::new(600_000, 0), {
        let l = Limiter::new(0, 0);
        l.seed(1000.0, Duration::from_secs(1));
        l
    }] {
        limiter.acquire(1).await;
        let start = Instant::now();
        limiter.acquire(1).await;
        assert!(
            start.elapsed() <= Duration::from_millis(1),
            "{:?}",
            start.elapsed()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_budget_is_spread_by_each_request_s_weight() {
    // 1000 tokens left of the window, 10 s to its reset; requests of 100 tokens.
    let limiter = Limiter::new(0, 0);
    let tokens = |remaining: u64, reset: Duration| RateHeaders {
        requests: RateWindow::default(),
        tokens: RateWindow {
            limit: Some(1000),
            remaining: Some(remaining),
            reset: Some(reset),
        },
    };
    let start = Instant::now();
    let mut left = 1000u64;
    let mut sent = 0;
    // Bounded: without pacing, time would not move at all.
    while start.elapsed() < Duration::from_secs(10) && sent < 100 {
        limiter.acquire(100).await;
        if start.elapsed() >= Duration::from_secs(10) {
            break;
        }
        sent += 1;
        left = left.saturating_sub(100);
        let reset = Duration::from_secs(10) - start.elapsed();
        limiter.on_answer(100, Some(&tokens(left, reset)));
    }
    assert!(
        sent <= 10,
        "{sent} requests of 100 tokens in a 1000-token window"
    );
    assert!(sent >= 9, "{sent}");
}
