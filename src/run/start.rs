//! The `start` event: what a run is about to do, where it writes, and the
//! pace it starts at, said once the check pass is done.

use serde_json::json;

use super::describe;
use super::rates;
use super::routes;
use super::scan::Scan;
use super::state::StateFile;
use crate::job::Job;
use crate::printer;
use crate::scheduler::PaceSource;

/// The `start` event: what the run is about to do, and where it writes.
pub(super) fn say_start(job: &Job, scan: &Scan, checked_s: f64, state: &StateFile) {
    let seeded = state.seeded();
    printer::event(
        printer::Level::Info,
        "start",
        format_args!(
            "{} checked in {checked_s:.1} s: {}{}, {} already done, {} to send; writing {}{}{}",
            printer::count(scan.rows, "row"),
            printer::count(scan.requests(), "request"),
            describe::start_words(job, scan),
            scan.resumed,
            scan.to_send(),
            job.output.path.display(),
            seeded.map_or(String::new(), |l| format!(
                "; starting at {:.1} requests/min, the pace an earlier run learned",
                l.requests_per_minute
            )),
            routes::start_words(job),
        ),
        figures(json!({
            "job": job.name,
            "output": job.output.path.display().to_string(),
            "summary_path": job.output.summary.display().to_string(),
            "rows": scan.rows,
            "requests": scan.requests(),
            "resumed": scan.resumed,
            "to_send": scan.to_send(),
            "checked_s": checked_s,
            "concurrency": job.limits.concurrency,
            // "K/N" when the job is split (null otherwise); the limits here are the shard's.
            "shard": job.shard.is_split().then(|| job.shard.to_string()),
            "shard_rows": scan.shard_rows,
            "per_shard": job.limits.per_shard,
            // null: no configured rate, the run paces itself from the endpoint's answers.
            "pace": start_pace(job, seeded),
            "max_cost_usd": (job.limits.max_cost_usd > 0.0).then_some(job.limits.max_cost_usd),
            // null for a job of one endpoint.
            "endpoints": routes::start_list(job, &state.paces()),
        })),
    );
}

/// The pace a run starts at: configured, learned by an earlier run, or none
/// yet (then it paces itself from the endpoint's answers).
fn start_pace(job: &Job, seeded: Option<&rates::Learned>) -> serde_json::Value {
    let limit = |n: u64| (n > 0).then_some(n);
    let rpm = limit(u64::from(job.limits.requests_per_minute));
    let tpm = limit(job.limits.tokens_per_minute);
    let (source, rpm) = match (rpm.or(tpm), seeded) {
        (Some(_), _) => (PaceSource::Configured, json!(rpm)),
        (None, Some(learned)) => (PaceSource::StateFile, json!(learned.requests_per_minute)),
        (None, None) => (PaceSource::None, json!(null)),
    };
    json!({
        "source": source,
        "requests_per_minute": rpm,
        "tokens_per_minute": tpm,
        "learned_at": seeded.filter(|_| source == PaceSource::StateFile).map(|l| l.learned_at.to_rfc3339()),
    })
}

/// The fields of a JSON event, from a `json!` object.
pub(super) fn figures(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}
