//! After the last request: compaction, the summary, what is said about the
//! run (the table, or one JSON end event), and how it ended.
//!
//! Requests were sent, so every failure here is exit 5 (or worse), never 2.

use std::time::Duration;

use chrono::Utc;

use super::collector::Collected;
use super::error::{Finished, RunError};
use super::producer::ProducerError;
use super::scan::{Scan, Seen};
use super::start::figures;
use crate::cli::RunArgs;
use crate::exit::ExitStatus;
use crate::job::Job;
use crate::keys::KeyId;
use crate::printer::{self, Level, LogFormat};
use crate::report::{self, RequestCounts, RunFacts, Summary, Tally};
use crate::scheduler::{PaceReport, StopReason};
use crate::sink::{self, ResumeState, SinkError};

/// How the sending part of a run ended.
pub(super) struct Ended {
    pub started: chrono::DateTime<Utc>,
    pub busy: Duration,
    pub stopped: Option<StopReason>,
    pub stopped_because: Option<String>,
    /// The pace the run used and where it came from.
    pub pace: PaceReport,
    /// With `[[endpoints]]`: each endpoint's pace, by name.
    pub endpoint_paces: Vec<(String, PaceReport)>,
    /// Every line of the output folded beside the check pass, when the run
    /// found nothing to send and no key the job lacks (read in the resume
    /// scan's own pass: `report::ReadBack`).
    pub prefolded: Option<Tally>,
}

/// A local failure after requests were sent: each is said, and makes the run exit 5.
#[derive(Debug, thiserror::Error)]
enum LocalFailure {
    #[error(
        "writing the output failed: {failed}; {} {} no line (they may have been billed), and the rest were not sent; fix the cause (disk space?) and rerun to resume",
        printer::count(*lost, "answered request"),
        if *lost == 1 { "has" } else { "have" }
    )]
    WriteLost { failed: SinkError, lost: u64 },
    #[error(
        "writing the output failed: {0}; every answered request got its line on a second attempt, the rest were not sent; fix the cause (disk space?) and rerun to resume"
    )]
    Write(SinkError),
    #[error(
        "compacting the output failed: {0}; every line is in it, and the next run compacts it"
    )]
    Compact(SinkError),
    #[error(
        "reading {output} back for the summary failed: {error}; the summary counts only this run's lines"
    )]
    ReadBack {
        output: String,
        error: std::io::Error,
    },
    #[error(
        "writing the summary to {path} failed: {error}; the output holds every line written, and a rerun writes the summary again"
    )]
    Summary { path: String, error: std::io::Error },
    #[error(
        "writing the batch output {path} failed: {error}; the output holds every line, and the next run writes it again"
    )]
    BatchOutput { path: String, error: std::io::Error },
    #[error("printing the summary on standard output (--json) failed: {error}; it is in {path}")]
    Stdout { path: String, error: std::io::Error },
}

pub(super) fn finish(
    job: &Job,
    args: &RunArgs,
    resume: &ResumeState,
    scan: &Scan,
    collected: Collected,
    ended: Ended,
    produced: Result<(), ProducerError>,
) -> Result<Finished, RunError> {
    let output = job.output.path.display().to_string();
    let summary_path = job.output.summary.display().to_string();
    let Collected {
        written: mut tally,
        sent,
        superseded,
        failed,
        lost,
        gone,
    } = collected;
    let write_failed = failed.is_some();
    let mut local: Vec<LocalFailure> = Vec::new();
    if let Some(failed) = failed {
        local.push(if lost > 0 {
            LocalFailure::WriteLost { failed, lost }
        } else {
            LocalFailure::Write(failed)
        });
    }

    // Compaction rereads the whole file: only worth it when a key has two
    // lines, and not on a disk that just failed a write (the next run does it).
    let mut compacted = true;
    if superseded > 0 || resume.lines > resume.keys {
        compacted = false;
        if !write_failed {
            match sink::compact(&job.output.path) {
                Ok(_) => compacted = true,
                Err(e) => local.push(LocalFailure::Compact(e)),
            }
        }
    }
    // The job's keys whose line is from an earlier run: their figures are in the file.
    let kept_from_before = |seen: &Seen| seen.ok.is_none() && seen.prior.is_some();
    // Read already, when every line is one of those and this run wrote none.
    let nothing_written = tally.ok == 0 && tally.failed == 0;
    if gone {
        // Nothing to read back: the output is not the file this run wrote.
    } else if let (Some(all), true) = (ended.prefolded, nothing_written) {
        tally = all;
    } else if scan.keys.values().any(kept_from_before) {
        let dedupe = !compacted && resume.lines > resume.keys;
        let keep = |id| scan.keys.get(&id).is_some_and(kept_from_before);
        if let Err(error) = report::fold_output(&job.output.path, &mut tally, keep, dedupe) {
            local.push(LocalFailure::ReadBack {
                output: output.clone(),
                error,
            });
        }
    }
    if let (Some(dest), false) = (&job.output.batch, gone) {
        // Made again whole from the output, so it matches it whatever happened before.
        let custom_id = match job.param_sets.len() {
            1 => sink::CustomId::Id,
            _ => sink::CustomId::Key,
        };
        let keep = |key: &str| scan.keys.contains_key(&KeyId::of(key));
        if let Err(error) = sink::write_batch_output(&job.output.path, dest, custom_id, keep) {
            local.push(LocalFailure::BatchOutput {
                path: dest.display().to_string(),
                error,
            });
        }
    }
    let other_keys = if gone { 0 } else { scan.other_keys(resume) };
    let facts = RunFacts {
        job: job.name.clone(),
        started: ended.started,
        finished: Utc::now(),
        busy: ended.busy,
        requests: count_requests(scan, gone),
        stopped: ended.stopped,
        stopped_because: ended.stopped_because,
        other_keys_in_output: other_keys,
    };
    let mut summary = tally.summary(&sent, facts);
    summary.pace = Some(ended.pace);
    summary.endpoint_paces = ended.endpoint_paces;
    if let Err(error) = report::write_summary(&job.output.summary, &summary) {
        local.push(LocalFailure::Summary {
            path: summary_path.clone(),
            error,
        });
    }
    // Whatever the exit code: a script reads how the run ended from it.
    if args.job.json {
        if let Err(error) = print_summary(&summary) {
            local.push(LocalFailure::Stdout {
                path: summary_path.clone(),
                error,
            });
        }
    }
    if !args.quiet {
        let color = printer::color();
        printer::text(&format!(
            "{}  {}{output}\n  {}{summary_path}",
            report::table::render_styled(&summary, color),
            printer::heading("output       ", color),
            printer::heading("summary      ", color)
        ));
        if other_keys > 0 {
            let why = match job.shard.is_split() {
                // Most likely the other shards' rows: this shard has only its own.
                true => "other shards' rows (put {shard} in the output path to give each shard its own), rows removed, or --limit",
                false => "rows removed, --limit, or another input written to it",
            };
            printer::notice(format_args!(
                "{output} also holds {} of keys this job no longer has ({why}); they are kept, and not counted above",
                printer::count(other_keys, "line")
            ));
        }
    }
    let mut ending = judge(summary.stopped, &summary.requests);
    if !local.is_empty() {
        ending = Err(worst(ending, RunError::OutputFailed));
    }
    if let Err(problem) = &produced {
        printer::error(problem);
        if ending.is_ok() {
            ending = Ok(Finished::SomeFailed);
        }
    }
    let status = ending
        .as_ref()
        .map_or_else(RunError::exit_status, |f| f.exit_status());
    if !local.is_empty() {
        // One line, even with --quiet: a cron log shows why at a glance.
        let lines: Vec<String> = local.iter().map(ToString::to_string).collect();
        printer::error(lines.join("; also: "));
    }
    let line = quiet_line(&summary, &output, &summary_path);
    match printer::format() {
        // The table said the figures; with --quiet, one line says why a run did not succeed.
        LogFormat::Text => {
            if args.quiet && status != ExitStatus::Success && local.is_empty() && produced.is_ok() {
                printer::notice(line);
            }
        }
        // One end event carries the figures, for log shippers.
        LogFormat::Json => {
            if !args.quiet || status != ExitStatus::Success {
                end_event(&summary, status, &output, &summary_path, line);
            }
        }
    }
    ending
}

/// `run --json`: the summary on stdout, as the summary file has it.
fn print_summary(summary: &Summary) -> std::io::Result<()> {
    printer::out(&report::summary_json(summary)?)
}

/// The `end` event: the summary's figures, the exit code, where to look.
fn end_event(summary: &Summary, status: ExitStatus, output: &str, path: &str, line: String) {
    let (level, message) = match status {
        ExitStatus::Success => (
            Level::Info,
            format!(
                "{} ok; see {output} (summary {path})",
                printer::count(summary.requests.total, "request")
            ),
        ),
        ExitStatus::OutputFailed => (Level::Error, line),
        _ => (Level::Warn, line),
    };
    let mut fields = figures(serde_json::to_value(summary).unwrap_or_default());
    fields.insert("exit_code".into(), status.code().into());
    fields.insert("output".into(), output.into());
    fields.insert("summary_path".into(), path.into());
    if let Some(pace) = &summary.pace {
        fields.insert(
            "pace".into(),
            serde_json::to_value(pace).unwrap_or_default(),
        );
    }
    if !summary.endpoint_paces.is_empty() {
        let paces: serde_json::Map<String, serde_json::Value> = (summary.endpoint_paces.iter())
            .map(|(name, pace)| (name.clone(), serde_json::to_value(pace).unwrap_or_default()))
            .collect();
        fields.insert("endpoint_paces".into(), paces.into());
    }
    printer::event(level, "end", message, fields);
}

/// The one line a `--quiet` run that exits non-zero prints: why, and where to look.
fn quiet_line(s: &Summary, output: &str, summary: &str) -> String {
    let r = &s.requests;
    let because = s
        .stopped_because
        .as_deref()
        .map(|m| format!(" (last error: {m})"))
        .unwrap_or_default();
    match s.stopped {
        Some(reason) => format!(
            "stopped: {}{because}; {} of {} not sent, {} failed; see {output} and {summary}",
            report::table::stop_reason(reason),
            r.not_sent,
            printer::count(r.total, "request"),
            r.failed
        ),
        None => format!(
            "{} of {} failed{}; each failure is a line in {output} (summary {summary}); rerun to retry them",
            r.failed,
            printer::count(r.total, "request"),
            if r.not_sent > 0 {
                format!(", {} not sent", r.not_sent)
            } else {
                String::new()
            }
        ),
    }
}

/// Counts over the job's keys as the output stands after the run
/// (`gone`: removed or replaced during it, so none of its lines counts).
fn count_requests(scan: &Scan, gone: bool) -> RequestCounts {
    let mut counts = RequestCounts {
        resumed: if gone { 0 } else { scan.resumed },
        ..RequestCounts::default()
    };
    for seen in scan.keys.values() {
        // A key edited since its line and not sent in this run is not sent.
        let ok = seen.ok.or(seen.prior);
        match ok {
            Some(true) => counts.ok += 1,
            Some(false) => counts.failed += 1,
            None => counts.not_sent += 1,
        }
    }
    counts.total = counts.ok + counts.failed + counts.not_sent;
    counts
}

/// How the run ended by its stop reason and its requests: a stop outranks failed requests.
fn judge(stopped: Option<StopReason>, counts: &RequestCounts) -> Result<Finished, RunError> {
    match stopped {
        Some(StopReason::Interrupted) => Err(RunError::Interrupted),
        Some(StopReason::OutputFailed) => Err(RunError::OutputFailed),
        Some(StopReason::EndpointRefused | StopReason::EndpointUnreachable) => {
            Err(RunError::Refused)
        }
        Some(StopReason::Budget) => Err(RunError::Budget),
        None if counts.failed > 0 || counts.not_sent > 0 => Ok(Finished::SomeFailed),
        None => Ok(Finished::AllOk),
    }
}

/// `ending`, or `failure` when the contract puts it first.
fn worst(ending: Result<Finished, RunError>, failure: RunError) -> RunError {
    match ending {
        Ok(_) => failure,
        Err(e) => e.worst(failure),
    }
}
