//! `promptbatch run` and `validate`: the pipeline wired end to end.
//!
//! job -> input scan -> producer thread (rows -> requests) -> scheduler ->
//! events -> collector (sink, tally, progress) -> compaction -> summary.
//! Every line for people goes through `crate::printer`.

mod beside;
mod cached;
mod collector;
mod describe;
mod error;
mod estimate;
mod finish;
mod over_rate;
mod producer;
mod rates;
mod routes;
pub mod scan;
mod signals;
mod start;
mod state;
mod verbose;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::cache;
use crate::cli::{JobArgs, ProgressArg, RunArgs};
use crate::client::Client;
use crate::input::{self, Spooled};
use crate::job::Job;
use crate::mock::{MockConfig, MockServer};
use crate::printer;
use crate::progress::Progress;
use crate::report;
use crate::scheduler::{Scheduler, StopSignal};
use crate::sink::{self, OutputLock, ResumeState, Writer};
use beside::scan_beside_output;
use collector::Collector;
pub use error::{Finished, RunError, StartError};
use finish::{finish, Ended};
use scan::{scan, Scan};
use signals::watch_signals;
use start::say_start;
use state::StateFile;

/// How long requests in flight may still finish after Ctrl-C or SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// Loads the job; `started` (the run's start) is what `{date}` and `{datetime}` say.
fn load(args: &JobArgs, started: DateTime<Utc>) -> Result<Job, StartError> {
    let cwd = std::env::current_dir().map_err(StartError::WorkingDir)?;
    let mut job = Job::load(args, &cwd, started)?;
    if job.endpoint.mode == crate::job::EndpointMode::Batch {
        // Records, estimates and the budget all count at batch prices.
        job.pricing = job.pricing.for_batches();
    }
    Ok(job)
}

/// Loads the job; `--simulate` swaps the endpoint (each of several) for the built-in mock.
async fn prepare(
    args: &JobArgs,
    started: DateTime<Utc>,
) -> Result<(Job, Vec<MockServer>), StartError> {
    let mut job = load(args, started)?;
    if !job.simulate {
        return Ok((job, Vec::new()));
    }
    // Realistic enough to watch: some latency, and a cost figure the way the
    // AI/ML API reports it (a nominal simulated price, not a real one).
    let config = MockConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(30),
        usd_per_million: Some(crate::mock::DEFAULT_USD_PER_MILLION),
        ..MockConfig::default()
    };
    if !job.endpoints.is_empty() {
        let mocks = routes::simulate(&mut job, &config).await?;
        return Ok((job, mocks));
    }
    let mock = MockServer::start(config)
        .await
        .map_err(StartError::Simulate)?;
    job.endpoint.url = mock.url();
    Ok((job, vec![mock]))
}

/// The API key from the variable the job names; None for "" or `--simulate`
/// (and for a job of several endpoints, whose keys [`routes::keys`] reads).
fn api_key(job: &Job) -> Result<Option<String>, StartError> {
    let name = &job.endpoint.api_key_env;
    if job.simulate || name.is_empty() || !job.endpoints.is_empty() {
        return Ok(None);
    }
    match std::env::var(name) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_string())),
        _ => Err(StartError::KeyUnset { name: name.clone() }),
    }
}

/// Scans the input on a blocking thread (it reads files), judged against
/// `resume` (the output as read before).
/// `resume` is handed back without its table of keys (the scan let it go).
async fn scan_input(
    job: &Job,
    file: &Spooled,
    mut resume: ResumeState,
    allow_empty: bool,
) -> Result<(Scan, ResumeState), StartError> {
    let (job, file) = (job.clone(), file.file.clone());
    let display = file.display.clone();
    let (scan, resume) = tokio::task::spawn_blocking(move || {
        let scan = scan(&job, &file, &mut resume);
        (scan, resume)
    })
    .await
    .map_err(StartError::Check)?;
    checked(scan, resume, display, allow_empty)
}

/// The scan, unless the input has problems (all said at once) or no rows.
/// An input without rows is refused unless `allow_empty`: a cron job fed an
/// empty export should be noticed, not pass as a success.
fn checked(
    scan: Scan,
    resume: ResumeState,
    input: String,
    allow_empty: bool,
) -> Result<(Scan, ResumeState), StartError> {
    if scan.problem_count > 0 {
        return Err(StartError::InputProblems {
            shown: scan.problems,
            count: scan.problem_count,
        });
    }
    if scan.rows == 0 && !allow_empty {
        return Err(StartError::EmptyInput { input });
    }
    Ok((scan, resume))
}

/// Whether `output` was made with `{shard}` (it holds this shard's `K-of-N`).
fn shard_in(output: &std::path::Path, job: &Job) -> bool {
    output.to_string_lossy().contains(&job.shard.placeholder())
}

/// `promptbatch validate`: every check a run makes before sending, and the estimate on stdout.
pub async fn validate(args: &JobArgs) -> Result<(), StartError> {
    // Nothing is sent, so a simulated endpoint is not started either.
    let job = load(args, Utc::now())?;
    let file = input::resolve(&job.input.source)?;
    let resume = sink::read(&job.output.path, false)?;
    let (mut scan, resume) = scan_input(&job, &file, resume, args.allow_empty).await?;
    routes::check_models(&job, scan.models.iter().map(String::as_str))?;
    let cached = cached::count_hits(&job, &file, &mut scan).await?;
    let mut priced = scan.estimate.price(&job.pricing, &resume.completions);
    // Sets in the job's order, as people wrote them (models by name within each).
    priced
        .sets
        .sort_by_key(|row| job.param_sets.iter().position(|s| s.name == row.param_set));
    let mut warnings = Vec::new();
    if let Some(pid) = sink::holder(&job.output.path) {
        warnings.push(format!(
            "{} is being written by another promptbatch run (process {pid}); a run started now is refused until that one ends",
            job.output.path.display()
        ));
    }
    let budget = job.limits.max_cost_usd;
    let worst = priced.to_send.worst_case_usd.unwrap_or(0.0);
    if budget > 0.0 && resume.recorded_cost_usd + worst > budget {
        warnings.push(format!(
            "budget {}: the output records {} and the requests to send may cost up to {}; the run stops (exit 3) before passing the budget, and a rerun with a higher one resumes",
            report::table::usd(budget),
            report::table::usd(resume.recorded_cost_usd),
            report::table::usd(worst),
        ));
    }
    for warning in &warnings {
        printer::warning(warning);
    }
    let validated = describe::Validated {
        job: &job,
        input: &file.file.display,
        scan: &scan,
        priced: &priced,
        recorded_usd: resume.recorded_cost_usd,
        warnings: &warnings,
        cached,
    };
    let text = if args.json {
        format!("{}\n", describe::json(&validated))
    } else {
        describe::text(&validated)
    };
    printer::out(&text).map_err(StartError::Stdout)?;
    // A run would stop here too: a preflight that passes must mean the run
    // can start. The paths are checked as a run checks them before sending
    // (a file can be made where each goes), leaving nothing behind.
    report::check_summary_path(&job.output.path).map_err(|error| {
        StartError::Output(sink::SinkError::Io {
            path: job.output.path.clone(),
            error,
        })
    })?;
    report::check_summary_path(&job.output.summary).map_err(|source| StartError::SummaryPath {
        path: job.output.summary.clone(),
        source,
    })?;
    check_batch_path(&job)?;
    api_key(&job)?;
    routes::keys(&job)?;
    Ok(())
}

/// `[output] batch_output` can be written where it goes (checked like the summary path).
fn check_batch_path(job: &Job) -> Result<(), StartError> {
    match &job.output.batch {
        Some(path) => report::check_summary_path(path).map_err(|source| StartError::BatchPath {
            path: path.clone(),
            source,
        }),
        None => Ok(()),
    }
}

/// `promptbatch run`: `Ok` once every request is judged, else why not.
pub async fn run(args: &RunArgs) -> Result<Finished, RunError> {
    let started = Utc::now();
    let (job, _mock) = prepare(&args.job, started).await?;
    let key = api_key(&job)?;
    let keys = routes::keys(&job)?;
    let file = input::resolve(&job.input.source).map_err(StartError::from)?;
    // Nothing is written before every check has passed and the lock is held:
    // a run refused for bad input leaves no lock file, and --fresh no backup.
    let output = &job.output.path;
    let checked = producer::stamp(file.file.path());
    let allow_empty = args.job.allow_empty;
    let (mut scan, mut resume, prefold) =
        scan_beside_output(&job, &file, args.fresh, allow_empty).await?;
    // Kept only if every line of the output is read back: nothing to send,
    // and no line of a key the job lacks.
    let mut prefold = prefold.filter(|_| scan.to_send() == 0 && scan.other_keys(&resume) == 0);
    routes::check_models(&job, scan.models.iter().map(String::as_str))?;
    let endpoint_routes = match job.endpoints.is_empty() {
        true => {
            let endpoint = routes::client_endpoint(&job.endpoint);
            let client = Client::new(&endpoint, key.as_deref(), job.limits.concurrency)
                .map_err(StartError::from)?;
            routes::single(&job, client)
        }
        false => routes::several(&job, &keys)?,
    };
    // The last checks that can fail before sending: the output opens for
    // appending and the summary can be written where it goes.
    report::check_summary_path(&job.output.summary).map_err(|source| StartError::SummaryPath {
        path: job.output.summary.clone(),
        source,
    })?;
    check_batch_path(&job)?;
    let batching = job.endpoint.mode == crate::job::EndpointMode::Batch || args.cancel_batches;
    let batch_state = match batching {
        true => Some(
            crate::batch::state::load(&crate::batch::state::path(output))
                .map_err(|e| StartError::Batches(e.to_string()))?,
        ),
        false => None,
    };
    let batch_api = match batching {
        true => Some(
            crate::batch::api::Api::new(
                &job.endpoint.url,
                key.as_deref(),
                &job.endpoint.headers,
                job.endpoint.timeout,
            )
            .map_err(StartError::Batches)?,
        ),
        false => None,
    };
    let _lock = OutputLock::acquire(output).map_err(|e| match e {
        sink::SinkError::Locked { .. } if job.shard.is_split() && !shard_in(output, &job) => {
            StartError::ShardsShareOutput {
                source: e,
                shard: job.shard.to_string(),
            }
        }
        e => StartError::from(e),
    })?;
    if !args.fresh && !resume.unchanged(output) {
        // Another run wrote the output before this one took the lock.
        prefold = None;
        let again = sink::read(output, false).map_err(StartError::from)?;
        (scan, resume) = scan_input(&job, &file, again, allow_empty).await?;
    }
    // Made (or checked to be ours) before --fresh moves anything aside.
    let cache = match &job.cache {
        Some(config) => Some(cached::open(&job, config).map_err(StartError::from)?),
        None => None,
    };
    let bak = sink::take_over(output, &resume, args.fresh).map_err(StartError::from)?;
    // Opened before anything is sent: an output that cannot be written is exit 2.
    let writer = Writer::append(output).map_err(StartError::from)?;
    if let Some((line, bytes)) = resume.cut {
        // Said even with --quiet: the file changed.
        printer::notice(format_args!(
            "{}: cut off an incomplete last line (line {line}, {}) left by an earlier run that was stopped mid-write",
            output.display(),
            printer::count(bytes, "byte")
        ));
    }
    let state = StateFile::open(&job, args);
    let mut progress_notes = Vec::new();
    if let Some(bak) = bak {
        progress_notes.push(format!(
            "--fresh: moved the old output to {}",
            bak.display()
        ));
    }

    if !args.quiet {
        // Several keys of one url are warned about once.
        let mut urls: Vec<&str> = std::iter::once(job.endpoint.url.as_str())
            .chain(job.endpoints.iter().map(|e| e.config.url.as_str()))
            .collect();
        urls.sort_unstable();
        urls.dedup();
        for warning in urls.into_iter().filter_map(crate::job::endpoint_warning) {
            printer::warning(warning);
        }
        for note in &progress_notes {
            printer::notice(note);
        }
        if let Some(warning) = cache.as_ref().and_then(|_| cached::sampling_warning(&job)) {
            printer::warning(warning);
        }
        // JSON logs always open with it: a shipper keys the run on its figures.
        if args.progress != ProgressArg::Off || printer::format() == printer::LogFormat::Json {
            let secs = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
            say_start(&job, &scan, secs, &state);
        }
    }
    let mut progress = Progress::new(args.progress, args.quiet, scan.to_send());
    let stop = Arc::new(StopSignal::new(GRACE));
    let writer = collector::spawn_writer(writer, &stop).map_err(|error| {
        StartError::from(sink::SinkError::Io {
            path: output.to_path_buf(),
            error,
        })
    })?;
    let signals = tokio::spawn(watch_signals(stop.clone(), args.quiet));
    let (request_tx, request_rx) = mpsc::channel(producer::QUEUED_BATCHES);
    let (event_tx, mut event_rx) = mpsc::channel(4096);
    let send = std::mem::take(&mut scan.send);
    let to_send = scan.to_send();
    let (cache_writer, answerer) = cached::split(cache, &event_tx);
    let out = producer::Out {
        requests: request_tx,
        cache: answerer,
    };
    let producer = producer::spawn(&job, &file, checked, scan.rows, send, to_send, out);
    let scheduler = Scheduler::new(
        &job,
        endpoint_routes,
        stop.clone(),
        resume.recorded_cost_usd,
        event_tx,
    );
    let limiter = scheduler.limiter();
    let scheduler_routes = scheduler.route_limiters();
    let route_limiters: Vec<_> = (scheduler_routes.iter())
        .map(|(_, _, limiter)| limiter.clone())
        .collect();
    for (entry, limiter) in state.entries.iter().zip(&route_limiters) {
        if let Some(seeded) = &entry.seeded {
            limiter.seed(seeded.per_second(), seeded.window());
        }
    }
    let dispatch = match (batch_api, batch_state) {
        (Some(api), Some(state)) => {
            let batch = crate::batch::BatchRun {
                api,
                job: job.name.clone(),
                pricing: job.pricing.clone(),
                budget: job.limits.max_cost_usd,
                recorded_usd: resume.recorded_cost_usd,
                state_path: crate::batch::state::path(output),
                // Re-read after the lock: another run may have changed it.
                state: crate::batch::state::load(&crate::batch::state::path(output))
                    .unwrap_or(state),
                upload_path: batch_upload_path(output),
                max_lines: batch_max_lines(),
                wait: job.endpoint.batch_wait,
                cancel: args.cancel_batches,
                stop: stop.clone(),
                events: scheduler.events(),
                recorded: Vec::new(),
                charged: 0.0,
            };
            drop(scheduler);
            tokio::spawn(batch.run(request_rx))
        }
        _ => tokio::spawn(scheduler.run(request_rx)),
    };

    let mut collector = Collector::new(&job, writer, &mut progress, &mut scan.keys, stop.clone())
        .verbose(args.verbose && !args.quiet)
        .cache(cache_writer.as_ref().and_then(cache::Writer::handle));
    let busy_from = Utc::now();
    loop {
        let next = match collector.flush_due() {
            Some(due) => match tokio::time::timeout_at(due, event_rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    collector.flush().await;
                    continue;
                }
            },
            None => event_rx.recv().await,
        };
        let Some(event) = next else { break };
        collector.collect(event).await;
        // Drain what is already waiting, then hand the lines over once they
        // are due: every ended request reaches the file promptly, a burst in
        // one write.
        while let Ok(event) = event_rx.try_recv() {
            collector.collect(event).await;
        }
        collector.flush_if_due().await;
    }
    let busy_to = Utc::now();
    let collected = collector.finish();
    if batching && collected.failed.is_none() && collected.lost == 0 {
        // Every line of the settled batches is in the file: they can go.
        if let Err(e) = crate::batch::state::prune(&crate::batch::state::path(output)) {
            printer::error(e);
        }
    }
    // Requests were sent: from here on nothing is exit 2.
    // The signal's reason, not the scheduler's: the collector may stop the
    // run after the scheduler returned (the output found gone at the end).
    let _ = dispatch.await;
    let stopped = stop.reason();
    signals.abort();
    // The producer ends once the scheduler drops its receiver.
    let produced = producer.await.unwrap_or_else(|e| Err(e.into()));
    // Every reply handed over is written before the run ends.
    if let Some(writer) = cache_writer {
        cached::say_end(&writer.finish(), args.quiet);
    }
    progress.finish();
    let ended = Ended {
        started,
        busy: (busy_to - busy_from).to_std().unwrap_or_default(),
        stopped,
        stopped_because: stop.detail(),
        pace: limiter.report(),
        endpoint_paces: (scheduler_routes.iter())
            .filter_map(|(name, _, limiter)| Some((name.clone()?, limiter.report())))
            .collect(),
        prefolded: prefold,
    };
    if scan.to_send() > 0 {
        let learned = route_limiters.iter().map(|l| l.learned()).collect();
        state.keep(learned, args.quiet);
    }
    finish(&job, args, &resume, &scan, collected, ended, produced)
}

/// Where batch mode writes a batch file before uploading it.
fn batch_upload_path(output: &std::path::Path) -> std::path::PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".batch-upload.tmp");
    name.into()
}

/// Requests per batch file: the Batch API's 50,000, or fewer when
/// `PROMPTBATCH_BATCH_MAX_REQUESTS` says so (tests split files at a few lines).
fn batch_max_lines() -> usize {
    std::env::var("PROMPTBATCH_BATCH_MAX_REQUESTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map_or(crate::batch::MAX_LINES, |n| n.min(crate::batch::MAX_LINES))
}
