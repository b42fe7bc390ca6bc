//! The limiter on tokio's paused clock: requests and tokens per minute,
//! learned window limits, pauses, and figures that must not panic.

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

/// The answers to a crowd of requests sent into an exhausted window; the
/// change of pace they made, if any.
fn bounce(limiter: &Limiter, n: usize, retry_after: Duration) -> Option<PaceChange> {
    let mut change = None;
    for _ in 0..n {
        change = change.or(limiter.on_rate_limited(Some(retry_after)));
    }
    change
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
    // Begun in a spent window: paused to its end, so the next is measured whole.
    bounce(&limiter, 24, Duration::from_secs(1));
    limiter.acquire(1).await;
    for _ in 0..10 {
        limiter.on_success();
    }
    bounce(&limiter, 24, Duration::from_secs(1));
    let first = limiter.learned_rate().expect("learned");
    // Requests paced by the learned rate.
    for _ in 0..30 {
        limiter.acquire(1).await;
    }
    for _ in 0..16 {
        limiter.on_success();
    }
    let probed = limiter.learned_rate().expect("learned");
    assert!(probed >= first);
    // A lone one at the learned pace steps it down a little, once a window,
    // without pausing anyone...
    limiter.on_rate_limited(Some(Duration::from_secs(1)));
    let stepped = limiter.learned_rate().expect("learned");
    assert_eq!(stepped, probed * STEP_DOWN);
    limiter.on_success();
    limiter.on_rate_limited(Some(Duration::from_secs(1)));
    assert_eq!(limiter.learned_rate(), Some(stepped), "once a window");
    let start = Instant::now();
    limiter.acquire(1).await;
    assert!(start.elapsed() < Duration::from_secs(1), "no pause");
    // ...a few in a row at the learned pace lower it to what the window
    // since the pause allowed: 17 successes from the pause's end until the
    // next pause ends.
    let span = limiter.lock().window_start.elapsed() + Duration::from_secs(1);
    bounce(&limiter, 6, Duration::from_secs(1));
    let lowered = limiter.learned_rate().expect("learned");
    let measure = 17.0 / span.as_secs_f64() * MARGIN;
    assert!((lowered - measure).abs() < 1e-9, "{lowered} vs {measure}");
    assert!(lowered < stepped / 2.0, "{lowered} vs {stepped}");
}

#[tokio::test(start_paused = true)]
async fn a_kept_pace_met_by_a_limit_mid_window_is_at_most_halved() {
    // The run began at an unknown point of the provider's window: what it
    // measures before the first pause is a part of a window, not a whole one.
    let limiter = Limiter::new(0, 0);
    limiter.seed(10.0, Duration::from_secs(1));
    for _ in 0..5 {
        limiter.acquire(1).await;
        limiter.on_success();
    }
    let change = bounce(&limiter, 6, Duration::from_secs(10)).expect("a limit");
    assert_eq!(change.why, PaceWhy::LimitedAgain { in_a_row: 6 });
    // The first of them stepped it down a little; the sixth halved that,
    // where 5 successes in 10 s would have been 0.5 a second.
    assert_eq!(
        limiter.learned_rate(),
        Some(10.0 * STEP_DOWN / 2.0),
        "halved, not measured"
    );
}

#[tokio::test(start_paused = true)]
async fn lone_429s_at_the_learned_pace_never_take_it_far_under_the_measure() {
    let limiter = Limiter::new(0, 0);
    limiter.seed(10.0, Duration::from_secs(1));
    for _ in 0..200 {
        limiter.acquire(1).await;
        limiter.on_success();
        // A 429 every few answers, for a long while.
        limiter.on_rate_limited(None);
        limiter.on_success();
        limiter.on_success();
    }
    let rate = limiter.learned_rate().expect("learned");
    assert!(rate >= 10.0 * STEP_FLOOR, "{rate}");
    assert!(rate < 10.0, "{rate}");
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
    // Once the first answer is in (the run waits for it: see `headers`).
    limiter.acquire(1).await;
    limiter.on_answer(1, None);
    let start = Instant::now();
    for _ in 0..1000 {
        limiter.acquire(1_000_000).await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn each_change_of_pace_is_reported_and_nothing_else() {
    let limiter = Limiter::new(0, 0);
    for _ in 0..100 {
        limiter.acquire(1).await;
        assert_eq!(limiter.on_success(), None, "no pace to change yet");
    }
    // After 100 successes, 5 429s in a row could be stray: no change.
    for _ in 0..5 {
        assert_eq!(limiter.on_rate_limited(Some(Duration::from_secs(1))), None);
    }
    let change = limiter
        .on_rate_limited(Some(Duration::from_secs(1)))
        .expect("the 6th in a row shows a limit");
    assert_eq!(change.why, PaceWhy::InARow { in_a_row: 6 });
    assert_eq!(change.previous_per_s, None);
    assert_eq!(change.pause, Duration::from_secs(1));
    let learned = change.rate_per_s.expect("a rate learned");
    assert!((learned - 95.0).abs() < 0.5, "{learned}");
    // The rest of that burst changes nothing more.
    assert_eq!(limiter.on_rate_limited(Some(Duration::from_secs(1))), None);
    // Paced, with no 429 for a window: raised, and said so once per window.
    let mut raises = Vec::new();
    for _ in 0..3 {
        for _ in 0..100 {
            limiter.acquire(1).await;
        }
        raises.extend(limiter.on_success());
    }
    assert!(!raises.is_empty());
    for raise in &raises {
        assert_eq!(raise.why, PaceWhy::NoLimit);
        assert_eq!(raise.pause, Duration::ZERO);
        let (now, before) = (
            raise.rate_per_s.expect("a rate"),
            raise.previous_per_s.expect("a rate"),
        );
        assert!(now > before, "{raise:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_pace_kept_is_the_one_that_held_not_one_probed_above_it() {
    let limiter = Limiter::new(0, 0);
    for _ in 0..20 {
        limiter.on_success();
    }
    bounce(&limiter, 16, Duration::from_secs(1));
    let (measured, _) = limiter.learned().expect("learned");
    assert!((measured - 19.0).abs() < 0.01, "{measured}");
    // Paced, no 429 for a few windows: probed up 1 % a window, kept as measured.
    for _ in 0..4 {
        for _ in 0..20 {
            limiter.acquire(1).await;
        }
        limiter.on_success();
    }
    let probed = limiter.learned_rate().expect("learned");
    assert!(probed > measured * 1.02, "{probed}");
    assert_eq!(limiter.learned().map(|(r, _)| r), Some(measured));
    // A faster pace than the limit measured held a whole window: the limit
    // was lifted, and what is kept follows (95 % of the pace that held).
    for _ in 0..20 {
        for _ in 0..25 {
            limiter.acquire(1).await;
        }
        limiter.on_success();
    }
    let (kept, _) = limiter.learned().expect("learned");
    let now = limiter.learned_rate().expect("learned");
    assert!(kept > measured * 1.05, "{kept} vs {measured}");
    assert!(kept < now, "{kept} vs {now}");
}

#[tokio::test(start_paused = true)]
async fn a_pace_measured_over_part_of_a_window_is_measured_again_at_its_first_429() {
    // A run begun 0.6 s into a window of 20 a second: 20 pass at once, and
    // the window ends 0.4 s later: 20 in 0.4 s looks like 50 a second.
    let limiter = Limiter::new(0, 0);
    for _ in 0..20 {
        limiter.acquire(1).await;
        limiter.on_success();
    }
    let change = bounce(&limiter, 16, Duration::from_millis(400)).expect("a limit");
    let first = change.rate_per_s.expect("a rate");
    assert!((first - 47.5).abs() < 0.1, "{first}");
    // The next window opens as the pause ends; 20 pass at that pace, the
    // 21st bounces, alone: measured again, over the whole window.
    limiter.acquire(1).await;
    let opened = Instant::now();
    limiter.on_success();
    for _ in 0..19 {
        limiter.acquire(1).await;
        limiter.on_success();
    }
    limiter.acquire(1).await;
    let left = Duration::from_secs(1) - opened.elapsed();
    let change = limiter.on_rate_limited(Some(left)).expect("measured again");
    assert_eq!(change.why, PaceWhy::PartWindow);
    let rate = change.rate_per_s.expect("a rate");
    assert!((rate - 19.0).abs() < 0.1, "{rate}");
    // Measured whole now: a lone 429 only steps it down.
    tokio::time::sleep(left).await;
    limiter.acquire(1).await;
    assert_eq!(limiter.on_rate_limited(Some(Duration::from_secs(1))), None);
}
