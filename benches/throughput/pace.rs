//! How a run paces itself under an enforced limit, from the mock's counters
//! sampled every few milliseconds: whether a second scheduled run starts at
//! the pace the first one learned (what the mock answered in the first second
//! after the first request arrived, read against the pace the first run left
//! in the state file), and the share of the limit a run holds once under way.
//!
//! Pure but for the sampling loop, so the reading is tested without timing.

use std::time::Duration;

use serde_json::Value;

/// The mock's counters at one moment, counted from the run's start.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Duration,
    pub requests: u64,
    pub limited: u64,
}

/// What the server answered in the run's first second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FirstSecond {
    /// Requests answered other than with a 429.
    pub ok: u64,
    pub limited: u64,
}

/// The first second after the first request arrived, from samples in time
/// order: it starts at the last sample that saw no request (the first one
/// arrived after it) and ends at the last sample within one second of that,
/// so it is at most one second long and short by at most one sampling step.
pub fn first_second(samples: &[Sample]) -> Option<FirstSecond> {
    let first = samples.iter().position(|s| s.requests > 0)?;
    let start = match first {
        0 => Duration::ZERO,
        i => samples[i - 1].at,
    };
    let end = samples
        .iter()
        .take_while(|s| s.at <= start + Duration::from_secs(1))
        .last()?;
    Some(FirstSecond {
        ok: end.requests - end.limited,
        limited: end.limited,
    })
}

/// The pace held once the run is under way, as a share of `limit_per_s`:
/// requests answered (not 429) over whole seconds from one second after the
/// first request to the last answer, so a window-limited server's first
/// window and the run's ragged end (the fenceposts that put a short run's
/// average above the limit) do not count.
pub fn sustained_share(samples: &[Sample], limit_per_s: f64) -> Option<f64> {
    let first = samples.iter().position(|s| s.requests > 0)?;
    let start = match first {
        0 => Duration::ZERO,
        i => samples[i - 1].at,
    } + Duration::from_secs(1);
    let answered = |s: &Sample| s.requests - s.limited;
    let total = answered(samples.last()?);
    let end = samples.iter().find(|s| answered(s) == total)?.at;
    let seconds = end.checked_sub(start)?.as_secs();
    if seconds == 0 {
        return None;
    }
    let at = |t: Duration| {
        samples
            .iter()
            .take_while(|s| s.at <= t)
            .last()
            .map(answered)
    };
    let counted = at(start + Duration::from_secs(seconds))? - at(start)?;
    Some(100.0 * counted as f64 / (seconds as f64 * limit_per_s))
}

/// The requests per second a state file (`rates.json`) holds: its first
/// entry's, the only one in a benchmark's own state folder.
pub fn learned_per_s(state: &Value) -> Option<f64> {
    state["entries"]
        .as_object()?
        .values()
        .find_map(|e| e["requests_per_minute"].as_f64())
        .map(|rpm| rpm / 60.0)
}

/// Samples the counters `read` gives every `step` until `done` is set.
pub async fn sample(
    read: impl Fn() -> (u64, u64),
    step: Duration,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Sample> {
    let start = std::time::Instant::now();
    let mut samples = Vec::new();
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let (requests, limited) = read();
        samples.push(Sample {
            at: start.elapsed(),
            requests,
            limited,
        });
        tokio::time::sleep(step).await;
    }
    samples
}
