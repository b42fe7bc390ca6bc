//! The limiter against simulated servers on tokio's paused clock: a fixed
//! window limit that sends no headers, and stray 429s, each met by a crowd of
//! requests that retry as the run does (honouring Retry-After).

use std::sync::{Arc, Mutex};

use futures::future::join_all;

use super::*;

/// What a simulated server answers.
#[derive(Clone, Copy)]
enum Server {
    /// At most `limit` requests per `window`; a 429 names the time to the
    /// window's end. `phase` is how far into a window the run begins.
    Window {
        limit: u64,
        window: Duration,
        phase: Duration,
    },
    /// A 429 with `Retry-After: 1` to this share of requests, at random.
    Stray { share: f64 },
}

/// A run of `rows` requests, `concurrency` at once, each answered after
/// `latency`; returns the 429s it met.
async fn run(limiter: Arc<Limiter>, server: Server, rows: u64, concurrency: u64) -> u64 {
    let start = Instant::now();
    let counts = Arc::new(Mutex::new((
        0u64,
        u64::MAX,
        0u64,
        fastrand::Rng::with_seed(3),
    )));
    let next_row = Arc::new(Mutex::new(0u64));
    let latency = Duration::from_millis(2);
    let slots = (0..concurrency).map(|_| {
        let (limiter, counts, next_row) = (limiter.clone(), counts.clone(), next_row.clone());
        async move {
            loop {
                {
                    let mut next = next_row.lock().expect("lock");
                    if *next >= rows {
                        return;
                    }
                    *next += 1;
                }
                // One row, retried until it passes.
                loop {
                    limiter.acquire(1).await;
                    tokio::time::sleep(latency).await;
                    let now = Instant::now();
                    let bounced = {
                        let mut c = counts.lock().expect("lock");
                        let (used, index, bounces, rng) = &mut *c;
                        let bounced = match server {
                            Server::Window {
                                limit,
                                window,
                                phase,
                            } => {
                                let at = now - start + phase;
                                let this = at.as_nanos() / window.as_nanos();
                                if u128::from(*index) != this {
                                    (*index, *used) = (this as u64, 0);
                                }
                                *used += 1;
                                let end = window * (this as u32 + 1);
                                (*used > limit).then(|| end - at)
                            }
                            Server::Stray { share } => {
                                (rng.f64() < share).then_some(Duration::from_secs(1))
                            }
                        };
                        *bounces += u64::from(bounced.is_some());
                        bounced
                    };
                    limiter.on_answer(1, None);
                    match bounced {
                        None => {
                            limiter.on_success();
                            break;
                        }
                        Some(retry_after) => {
                            limiter.on_rate_limited(Some(retry_after));
                            tokio::time::sleep(retry_after).await;
                        }
                    }
                }
            }
        }
    });
    join_all(slots).await;
    let bounces = counts.lock().expect("lock").2;
    bounces
}

/// 20 requests a second, a run beginning `phase_ms` into a window.
fn twenty_a_second(phase_ms: u64) -> Server {
    Server::Window {
        limit: 20,
        window: Duration::from_secs(1),
        phase: Duration::from_millis(phase_ms),
    }
}

#[tokio::test(start_paused = true)]
async fn a_short_run_learns_a_window_limit_and_the_next_run_keeps_under_it() {
    for (concurrency, phase) in [(8, 300), (16, 0), (16, 300), (16, 900), (64, 500)] {
        let server = twenty_a_second(phase);
        let first = Arc::new(Limiter::new(0, 0));
        let bounced = run(first.clone(), server, 150, concurrency).await;
        let (rate, window) = first.learned().expect("a pace learned");
        assert!((17.0..=20.0).contains(&rate), "{concurrency}: {rate}");
        // The crowd sent into the first window, a few of the second; then none.
        let most = concurrency + 8;
        assert!(bounced <= most, "{concurrency}: {bounced} of 150 bounced");

        let second = Arc::new(Limiter::new(0, 0));
        second.seed(rate, window);
        let bounced = run(second, twenty_a_second(phase + 400), 150, concurrency).await;
        assert!(bounced <= 1, "{concurrency}: {bounced} of 150 bounced");
    }
}

#[tokio::test(start_paused = true)]
async fn stray_429s_teach_no_pace() {
    // 5 % of answers 429 at random, each with Retry-After: 1, 64 at once.
    let limiter = Arc::new(Limiter::new(0, 0));
    let bounced = run(limiter.clone(), Server::Stray { share: 0.05 }, 20_000, 64).await;
    assert!(bounced > 500, "{bounced}");
    assert_eq!(limiter.learned(), None);
}
