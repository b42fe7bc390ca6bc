//! `promptbatch run` and `validate`: the pipeline wired end to end.
//!
//! job -> input scan -> producer thread (rows -> requests) -> scheduler ->
//! events -> collector (sink, tally, progress) -> compaction -> summary.

mod collector;
mod producer;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::cli::{JobArgs, ProgressArg, RunArgs};
use crate::client::Client;
use crate::input::{self, Spooled};
use crate::job::Job;
use crate::mock::{MockConfig, MockServer};
use crate::progress::Progress;
use crate::report::{self, RequestCounts, RunFacts};
use crate::scan::{scan, Scan};
use crate::scheduler::{Scheduler, StopReason, StopSignal};
use crate::sink::{self, OutputLock, ResumeState, Writer};
use crate::ExitStatus;
use collector::{Collected, Collector};

/// How long requests in flight may still finish after Ctrl-C or SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// A reason the run could not start: printed as is, exit 2, nothing sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> anyhow::Error {
    Invalid(msg.into()).into()
}

fn load(args: &JobArgs) -> anyhow::Result<Job> {
    let cwd = std::env::current_dir()?;
    let today = Utc::now().format("%Y-%m-%d").to_string();
    Job::load(args, &cwd, &today).map_err(|e| invalid(e.to_string()))
}

/// Loads the job; `--simulate` swaps the endpoint for the built-in mock.
async fn prepare(args: &JobArgs) -> anyhow::Result<(Job, Option<MockServer>)> {
    let mut job = load(args)?;
    let mock = if job.simulate {
        // Realistic enough to watch: some latency, and a cost figure the way the
        // AI/ML API reports it (a nominal simulated price, not a real one).
        let mock = MockServer::start(MockConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(30),
            usd_per_million: Some(crate::mock::DEFAULT_USD_PER_MILLION),
            ..MockConfig::default()
        })
        .await?;
        job.endpoint.url = mock.url();
        Some(mock)
    } else {
        None
    };
    Ok((job, mock))
}

/// The API key from the variable the job names; None for "" or `--simulate`.
fn api_key(job: &Job) -> anyhow::Result<Option<String>> {
    let name = &job.endpoint.api_key_env;
    if job.simulate || name.is_empty() {
        return Ok(None);
    }
    match std::env::var(name) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_string())),
        _ => Err(invalid(format!(
            "the API key variable {name} is not set (or empty): export {name}=... (or set [endpoint] api_key_env / --api-key-env, \
             \"\" for servers without a key, or try the job with --simulate)"
        ))),
    }
}

/// Scans the input on a blocking thread (it reads files).
/// An input without rows is refused unless `allow_empty`: a cron job fed an
/// empty export should be noticed, not pass as a success.
async fn scan_input(
    job: &Job,
    file: &Spooled,
    resume: &Arc<ResumeState>,
    allow_empty: bool,
) -> anyhow::Result<Scan> {
    let (job, file, resume) = (job.clone(), file.file.clone(), resume.clone());
    let display = file.display.clone();
    let scan = tokio::task::spawn_blocking(move || scan(&job, &file, &resume)).await?;
    if scan.problem_count > 0 {
        return Err(invalid(scan.problem_report().trim_end().to_string()));
    }
    if scan.rows == 0 && !allow_empty {
        return Err(invalid(format!(
            "{display} has no rows; nothing was sent (pass --allow-empty to accept an empty input and exit 0)"
        )));
    }
    Ok(scan)
}

pub async fn validate(args: &JobArgs) -> anyhow::Result<ExitStatus> {
    // Nothing is sent, so a simulated endpoint is not started either.
    let job = load(args)?;
    let file = input::resolve(&job.input.source).map_err(|e| invalid(e.to_string()))?;
    let resume = Arc::new(sink::read(&job.output.path, false).map_err(|e| invalid(e.to_string()))?);
    let scan = scan_input(&job, &file, &resume, args.allow_empty).await?;
    print!("{}", crate::scan::describe(&job, &file.file.display, &scan));
    if let Some(pid) = sink::holder(&job.output.path) {
        eprintln!(
            "promptbatch: warning: {} is being written by another promptbatch run (process {pid}); a run started now is refused until that one ends",
            job.output.path.display()
        );
    }
    // A run would stop here too: a preflight that passes must mean the run can start.
    api_key(&job)?;
    Ok(ExitStatus::Success)
}

pub async fn run(args: &RunArgs) -> anyhow::Result<ExitStatus> {
    let started = Utc::now();
    let (job, _mock) = prepare(&args.job).await?;
    let key = api_key(&job)?;
    let file = input::resolve(&job.input.source).map_err(|e| invalid(e.to_string()))?;
    // Nothing is written before every check has passed and the lock is held:
    // a run refused for bad input leaves no lock file, and --fresh no backup.
    let output = &job.output.path;
    let mut resume = Arc::new(sink::read(output, args.fresh).map_err(|e| invalid(e.to_string()))?);
    let checked = producer::stamp(file.file.path());
    let allow_empty = args.job.allow_empty;
    let mut scan = scan_input(&job, &file, &resume, allow_empty).await?;
    let endpoint = crate::client::Endpoint {
        url: job.endpoint.url.clone(),
        api_key_env: job.endpoint.api_key_env.clone(),
        timeout: job.endpoint.timeout,
        headers: job.endpoint.headers.clone(),
        max_reply_bytes: job.endpoint.max_reply_bytes,
        max_attempt: job.endpoint.max_attempt,
    };
    let client = Client::new(&endpoint, key.as_deref(), job.limits.concurrency)
        .map_err(|e| invalid(e.to_string()))?;
    // The last checks that can fail before sending: the output opens for
    // appending and the summary can be written where it goes.
    report::check_summary_path(&job.output.summary).map_err(|e| {
        invalid(format!(
            "the summary cannot be written to {}: {e}; choose another --summary",
            job.output.summary.display()
        ))
    })?;
    let _lock = OutputLock::acquire(output).map_err(|e| invalid(e.to_string()))?;
    if !args.fresh && !resume.unchanged(output) {
        // Another run wrote the output before this one took the lock.
        resume = Arc::new(sink::read(output, false).map_err(|e| invalid(e.to_string()))?);
        scan = scan_input(&job, &file, &resume, allow_empty).await?;
    }
    let bak = sink::take_over(output, &resume, args.fresh).map_err(|e| invalid(e.to_string()))?;
    // Opened before anything is sent: an output that cannot be written is exit 2.
    let writer = Writer::append(output).map_err(|e| invalid(e.to_string()))?;
    if let Some((line, bytes)) = resume.cut {
        // Said even with --quiet: the file changed.
        eprintln!(
            "promptbatch: {}: cut off an incomplete last line (line {line}, {bytes} bytes) left by an earlier run that was stopped mid-write",
            output.display()
        );
    }
    let mut progress_notes = Vec::new();
    if let Some(bak) = bak {
        progress_notes.push(format!(
            "--fresh: moved the old output to {}",
            bak.display()
        ));
    }

    if !args.quiet {
        if !job
            .endpoint
            .url
            .trim_end_matches('/')
            .ends_with("/chat/completions")
        {
            eprintln!(
                "promptbatch: warning: the endpoint {} does not end in /chat/completions; OpenAI-compatible servers answer at .../v1/chat/completions",
                job.endpoint.url
            );
        }
        for note in &progress_notes {
            eprintln!("promptbatch: {note}");
        }
        if args.progress != ProgressArg::Off {
            eprintln!(
                "promptbatch: {} rows checked in {:.1} s: {} requests, {} already done, {} to send",
                scan.rows,
                (Utc::now() - started).num_milliseconds() as f64 / 1000.0,
                scan.requests(),
                scan.resumed,
                scan.to_send()
            );
        }
    }
    let mut progress = Progress::new(args.progress, args.quiet, scan.to_send());
    let stop = Arc::new(StopSignal::new(GRACE));
    let signals = tokio::spawn(watch_signals(stop.clone(), args.quiet));
    let (request_tx, request_rx) = mpsc::channel(1024);
    let (event_tx, mut event_rx) = mpsc::channel(4096);
    let producer = producer::spawn(&job, &file, checked, scan.rows, &resume, request_tx);
    let scheduler = Scheduler::new(
        &job,
        client,
        stop.clone(),
        resume.recorded_cost_usd,
        event_tx,
    );
    let dispatch = tokio::spawn(scheduler.run(request_rx));

    let mut collector = Collector::new(
        &job,
        writer,
        &mut progress,
        &resume,
        &mut scan.keys,
        stop.clone(),
    );
    let busy_from = Utc::now();
    while let Some(event) = event_rx.recv().await {
        collector.collect(event);
        // Drain what is already waiting, then write once: every ended request
        // reaches the file promptly without a system call per line.
        while let Ok(event) = event_rx.try_recv() {
            collector.collect(event);
        }
        collector.flush();
    }
    let busy_to = Utc::now();
    let collected = collector.finish();
    // Requests were sent: from here on nothing is exit 2.
    // The signal's reason, not the scheduler's: the collector may stop the
    // run after the scheduler returned (the output found gone at the end).
    let _ = dispatch.await;
    let stopped = stop.reason();
    signals.abort();
    // The producer ends once the scheduler drops its receiver.
    let produced = producer
        .await
        .unwrap_or_else(|e| Err(format!("internal error: the input reader failed: {e}")));
    progress.finish();
    let ended = Ended {
        started,
        busy: (busy_to - busy_from).to_std().unwrap_or_default(),
        stopped,
        stopped_because: stop.detail(),
    };
    Ok(finish(
        &job, args, &resume, &scan, collected, ended, produced,
    ))
}

/// How the sending part of a run ended.
struct Ended {
    started: chrono::DateTime<Utc>,
    busy: Duration,
    stopped: Option<StopReason>,
    stopped_because: Option<String>,
}

/// After the last request: compaction, the summary, the report on stderr, the exit status.
/// Requests were sent, so every failure here is exit 5 (or worse), never 2.
fn finish(
    job: &Job,
    args: &RunArgs,
    resume: &ResumeState,
    scan: &Scan,
    collected: Collected,
    ended: Ended,
    produced: Result<(), String>,
) -> ExitStatus {
    let output = job.output.path.display();
    let summary_path = job.output.summary.display();
    let mut local: Vec<String> = Vec::new();
    if let Some(failed) = &collected.failed {
        local.push(if collected.lost > 0 {
            format!(
                "writing the output failed: {failed}; {} answered requests have no line (they may have been billed), and the rest were not sent; fix the cause (disk space?) and rerun to resume",
                collected.lost
            )
        } else {
            format!(
                "writing the output failed: {failed}; every answered request got its line on a second attempt, the rest were not sent; fix the cause (disk space?) and rerun to resume"
            )
        });
    }
    let Collected {
        written: mut tally,
        sent,
        superseded,
        ..
    } = collected;

    // Compaction rereads the whole file: only worth it when a key has two
    // lines, and not on a disk that just failed a write (the next run does it).
    let mut compacted = true;
    if superseded > 0 || resume.lines > resume.latest.len() as u64 {
        compacted = false;
        if collected.failed.is_none() {
            match sink::compact(&job.output.path) {
                Ok(_) => compacted = true,
                Err(e) => local.push(format!(
                    "compacting the output failed: {e}; every line is in it, and the next run compacts it"
                )),
            }
        }
    }
    // The job's keys whose line is from an earlier run: their figures are in the file.
    let kept_from_before = |seen: &crate::scan::Seen| seen.ok.is_none() && seen.prior.is_some();
    if scan.keys.values().any(kept_from_before) {
        let dedupe = !compacted && resume.lines > resume.latest.len() as u64;
        let keep = |id| scan.keys.get(&id).is_some_and(kept_from_before);
        if let Err(e) = report::fold_output(&job.output.path, &mut tally, keep, dedupe) {
            local.push(format!(
                "reading {output} back for the summary failed: {e}; the summary counts only this run's lines"
            ));
        }
    }
    let other_keys = resume
        .latest
        .keys()
        .filter(|id| !scan.keys.contains_key(id))
        .count() as u64;
    let counts = count_requests(scan);
    let facts = RunFacts {
        job: job.name.clone(),
        started: ended.started,
        finished: Utc::now(),
        busy: ended.busy,
        requests: counts,
        stopped: ended.stopped,
        stopped_because: ended.stopped_because,
        other_keys_in_output: other_keys,
    };
    let summary = tally.summary(&sent, facts);
    if let Err(e) = report::write_summary(&job.output.summary, &summary) {
        local.push(format!(
            "writing the summary to {summary_path} failed: {e}; the output holds every line written, and a rerun writes the summary again"
        ));
    }
    if !args.quiet {
        eprint!("{}", report::table::render(&summary));
        eprintln!("  output       {output}\n  summary      {summary_path}");
        if other_keys > 0 {
            eprintln!(
                "promptbatch: {output} also holds {other_keys} lines of keys this job no longer has (rows removed, --limit, or another input written to it); they are kept, and not counted above"
            );
        }
    }
    let mut status = exit_status(summary.stopped, &summary.requests);
    if !local.is_empty() {
        status = status.worst(ExitStatus::OutputFailed);
    }
    if let Err(problem) = &produced {
        eprintln!("error: {problem}");
        status = status.worst(ExitStatus::Failed);
    }
    if !local.is_empty() {
        // One line, even with --quiet: a cron log shows why at a glance.
        eprintln!("error: {}", local.join("; also: "));
    } else if args.quiet && status != ExitStatus::Success && produced.is_ok() {
        let (output, summary_path) = (output.to_string(), summary_path.to_string());
        eprintln!(
            "promptbatch: {}",
            quiet_line(&summary, &output, &summary_path)
        );
    }
    status
}

/// The one line a `--quiet` run that exits non-zero prints: why, and where to look.
fn quiet_line(s: &report::Summary, output: &str, summary: &str) -> String {
    let r = &s.requests;
    let because = s
        .stopped_because
        .as_deref()
        .map(|m| format!(" (last error: {m})"))
        .unwrap_or_default();
    match s.stopped {
        Some(reason) => format!(
            "stopped: {}{because}; {} of {} requests not sent, {} failed; see {output} and {summary}",
            report::table::stop_reason(reason),
            r.not_sent,
            r.total,
            r.failed
        ),
        None => format!(
            "{} of {} requests failed{}; each failure is a line in {output} (summary {summary}); rerun to retry them",
            r.failed,
            r.total,
            if r.not_sent > 0 {
                format!(", {} not sent", r.not_sent)
            } else {
                String::new()
            }
        ),
    }
}

/// Counts over the job's keys as the output stands after the run.
fn count_requests(scan: &Scan) -> RequestCounts {
    let mut counts = RequestCounts {
        resumed: scan.resumed,
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

fn exit_status(stopped: Option<StopReason>, counts: &RequestCounts) -> ExitStatus {
    let judged = if counts.failed > 0 || counts.not_sent > 0 {
        ExitStatus::Failed
    } else {
        ExitStatus::Success
    };
    let stop = match stopped {
        Some(StopReason::Interrupted) => ExitStatus::Interrupted,
        Some(StopReason::OutputFailed) => ExitStatus::OutputFailed,
        Some(StopReason::EndpointRefused | StopReason::EndpointUnreachable) => ExitStatus::Refused,
        Some(StopReason::Budget) => ExitStatus::Budget,
        None => ExitStatus::Success,
    };
    stop.worst(judged)
}

async fn watch_signals(stop: Arc<StopSignal>, quiet: bool) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        #[cfg(unix)]
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        let second = stop.interrupt();
        if quiet {
            continue;
        }
        if second {
            eprintln!(
                "promptbatch: stopping at once: requests in flight are recorded as abandoned"
            );
        } else {
            eprintln!(
                "promptbatch: stopping: nothing new is sent; requests in flight get {} s (press Ctrl-C again to stop at once)",
                GRACE.as_secs()
            );
        }
    }
}
