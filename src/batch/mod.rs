//! Batch mode (`[endpoint] mode = "batch"`, `--batch-api`): the job sent
//! through the provider's Batch API instead of request by request.
//!
//! Takes the place of the scheduler: the same requests in, the same
//! `Event::Done` out (one per request a settled batch answered or failed),
//! so the sink, summary and exit codes are chat mode's. In order: batches
//! an earlier run left in `<output>.batches.json` are resolved (a file
//! uploaded without a batch is looked for before one is created) and
//! polled; then the requests no batch holds are written to files of at most
//! `max_lines` requests and [`MAX_FILE_BYTES`], each uploaded, recorded,
//! created and recorded again; then every batch is polled with backoff
//! (1 s growing to 60 s, jittered, Retry-After honoured) until it settles,
//! the wait (`batch_wait_secs`) ends, or the run is interrupted — batches
//! left in flight stay in the file for the next run, nothing is cancelled.
//! Requests are kept in memory until their batch settles (a request held
//! by a batch needs its row's fields for its line).

pub mod api;
pub mod results;
pub mod state;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::job::Pricing;
use crate::plan::Request;
use crate::printer;
use crate::scheduler::{Event, Outcome, StopReason, StopSignal};
use api::{Api, ApiError, BatchInfo};
use state::{Entry, State};

/// The most requests one batch file holds (OpenAI's limit).
pub const MAX_LINES: usize = 50_000;
/// The most bytes one batch file holds (OpenAI's limit).
pub const MAX_FILE_BYTES: u64 = 200 * 1000 * 1000;
const FIRST_POLL: Duration = Duration::from_secs(1);
const LONGEST_POLL: Duration = Duration::from_secs(60);
/// Tries of one call that fails for a transient reason before the run gives up on it.
const CALL_TRIES: u32 = 5;

/// What a batch-mode run needs.
pub struct BatchRun {
    pub api: Api,
    pub job: String,
    /// At batch prices (`Pricing::for_batches`).
    pub pricing: Pricing,
    /// `max_cost_usd` (0: none) and what the output already records.
    pub budget: f64,
    pub recorded_usd: f64,
    pub state_path: PathBuf,
    pub state: State,
    /// Where a batch file is written before its upload.
    pub upload_path: PathBuf,
    pub max_lines: usize,
    pub wait: Option<Duration>,
    /// `--cancel-batches`: cancel those in flight, record them, submit nothing.
    pub cancel: bool,
    pub stop: Arc<StopSignal>,
    pub events: mpsc::Sender<Event>,
    /// Settled batches whose lines this run handed over (kept listed as
    /// [`state::RECORDED`] until the run's end prunes them).
    pub recorded: Vec<Entry>,
    /// What the lines this run recorded charge the budget.
    pub charged: f64,
}

/// A batch whose requests this run may record.
struct Live {
    entry: Entry,
}

impl BatchRun {
    /// Runs the batches to the end (or the wait's); returns why it stopped early.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Vec<Request>>) -> Option<StopReason> {
        // Every request to send, by key (the producer's order kept).
        let mut order = Vec::new();
        let mut pending: HashMap<String, Request> = HashMap::new();
        while let Some(batch) = requests.recv().await {
            for req in batch {
                order.push(req.key.clone());
                pending.insert(req.key.clone(), req);
            }
        }
        drop(requests);
        // A batch recorded by a run killed before it pruned the file, none of
        // whose requests still needs a line: nothing to ask the server (which
        // may have forgotten it by now, or would send its whole output again).
        let (done, left): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.state.batches)
            .into_iter()
            .partition(|e| {
                e.status == state::RECORDED
                    && !(e.requests.iter())
                        .any(|(key, sha)| pending.get(key).is_some_and(|r| &r.sha256 == sha))
            });
        self.recorded = done;
        let mut live: Vec<Live> = left.into_iter().map(|entry| Live { entry }).collect();
        self.state.batches = live.iter().map(|l| l.entry.clone()).collect();
        if let Err(stop) = self.resolve(&mut live).await {
            return Some(stop);
        }
        if self.cancel {
            for l in &live {
                if let Some(id) = &l.entry.batch_id {
                    match self.call(|| self.api.cancel(id)).await {
                        Ok(info) => say_status(&info),
                        Err(e) => {
                            printer::warning(format_args!("could not cancel batch {id}: {e}"))
                        }
                    }
                }
            }
        } else {
            // Batches an earlier run left that have settled are recorded
            // before anything new is submitted.
            if let Err(stop) = self.poll(&mut live, &mut pending).await {
                return Some(stop);
            }
            // Keys a batch in flight holds as they are now (an edited request is sent anew).
            let held: std::collections::HashSet<&String> = (live.iter())
                .flat_map(|l| l.entry.requests.iter())
                .filter(|(key, sha)| pending.get(key).is_some_and(|r| &r.sha256 == sha))
                .map(|(key, _)| key)
                .collect();
            let to_submit: Vec<String> = (order.into_iter())
                .filter(|k| pending.contains_key(k) && !held.contains(k))
                .collect();
            if let Err(stop) = self.submit(&to_submit, &pending, &mut live).await {
                self.settle_all(&mut live, &mut pending).await;
                return Some(stop);
            }
        }
        self.settle_all(&mut live, &mut pending).await
    }

    /// Batches recorded without a batch id: found among the endpoint's, or created now.
    async fn resolve(&mut self, live: &mut [Live]) -> Result<(), StopReason> {
        for i in 0..live.len() {
            if live[i].entry.batch_id.is_some() {
                continue;
            }
            let file = live[i].entry.input_file_id.clone();
            let found = self
                .call(|| self.api.find(&file))
                .await
                .map_err(|e| self.refused(&e))?;
            let info = match found {
                Some(info) => info,
                None if self.cancel => continue,
                None => self
                    .call(|| self.api.create(&file, &self.job))
                    .await
                    .map_err(|e| self.refused(&e))?,
            };
            live[i].entry.batch_id = Some(info.id.clone());
            live[i].entry.status = info.status.clone();
            self.save(live);
        }
        Ok(())
    }

    /// Files of the requests no batch holds, each uploaded and made a batch.
    async fn submit(
        &mut self,
        keys: &[String],
        pending: &HashMap<String, Request>,
        live: &mut Vec<Live>,
    ) -> Result<(), StopReason> {
        let mut start = 0;
        while start < keys.len() {
            if self.stop.dispatching().is_cancelled() {
                return Err(self.stop.reason().unwrap_or(StopReason::Interrupted));
            }
            let (end, worst) = self.write_file(keys, start, pending).map_err(|e| {
                printer::error(format_args!(
                    "cannot write the batch file {}: {e}",
                    self.upload_path.display()
                ));
                StopReason::OutputFailed
            })?;
            if self.budget > 0.0 {
                let held: f64 = live.iter().map(|l| l.entry.worst_case_usd).sum();
                if self.recorded_usd + self.charged + held + worst > self.budget {
                    self.stop.stop(StopReason::Budget);
                    return Err(StopReason::Budget);
                }
            }
            let name = format!("{}.jsonl", self.job);
            let uploaded = self
                .call(|| self.api.upload(&self.upload_path, &name))
                .await;
            let _ = std::fs::remove_file(&self.upload_path);
            let file = uploaded.map_err(|e| self.refused(&e))?;
            let requests = keys[start..end]
                .iter()
                .filter_map(|k| pending.get(k).map(|r| (k.clone(), r.sha256.clone())))
                .collect();
            live.push(Live {
                entry: Entry {
                    input_file_id: file.clone(),
                    batch_id: None,
                    status: "uploaded".into(),
                    created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    worst_case_usd: worst,
                    requests,
                },
            });
            // Recorded before the batch is made: a run killed now leaves the
            // file id, and the next one finds its batch instead of making another.
            self.save(live);
            let info = self
                .call(|| self.create_once(&file))
                .await
                .map_err(|e| self.refused(&e))?;
            if let Some(last) = live.last_mut() {
                last.entry.batch_id = Some(info.id.clone());
                last.entry.status = info.status.clone();
            }
            self.save(live);
            say_status(&info);
            start = end;
        }
        Ok(())
    }

    /// Creates the batch of `file` unless an earlier try already did (an answer lost on the way).
    async fn create_once(&self, file: &str) -> Result<BatchInfo, ApiError> {
        match self.api.find(file).await? {
            Some(info) => Ok(info),
            None => self.api.create(file, &self.job).await,
        }
    }

    /// Writes requests from `keys[start..]` to the upload file, up to the
    /// caps; returns where it stopped and the file's worst case.
    fn write_file(
        &self,
        keys: &[String],
        start: usize,
        pending: &HashMap<String, Request>,
    ) -> std::io::Result<(usize, f64)> {
        let _ = std::fs::remove_file(&self.upload_path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = std::io::BufWriter::new(options.open(&self.upload_path)?);
        let (mut bytes, mut worst, mut end) = (0u64, 0.0, start);
        while end < keys.len() && end - start < self.max_lines.max(1) {
            let Some(req) = pending.get(&keys[end]) else {
                end += 1;
                continue;
            };
            let line = results::request_line(req);
            if end > start && bytes + line.len() as u64 > MAX_FILE_BYTES {
                break;
            }
            out.write_all(&line)?;
            bytes += line.len() as u64;
            worst += self.pricing.worst_case(req).unwrap_or(0.0);
            end += 1;
        }
        out.flush()?;
        Ok((end, worst))
    }

    /// Polls every batch until each settles (recording its results), the
    /// wait ends, or the run is stopped.
    async fn settle_all(
        &mut self,
        live: &mut Vec<Live>,
        pending: &mut HashMap<String, Request>,
    ) -> Option<StopReason> {
        let deadline = self.wait.map(|w| tokio::time::Instant::now() + w);
        let mut delay = FIRST_POLL;
        let dispatching = self.stop.dispatching();
        let mut stopped = None;
        loop {
            match self.poll(live, pending).await {
                // The server's Retry-After, when it asked for a longer wait.
                Ok(asked) => delay = delay.max(asked.unwrap_or_default()),
                Err(stop) => {
                    stopped = Some(stop);
                    break;
                }
            }
            if live.is_empty() || stopped.is_some() {
                break;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() + delay > d) {
                printer::notice(format_args!(
                    "{} still in flight; the next run with this output collects their results (see {})",
                    printer::count(live.len() as u64, "batch"),
                    self.state_path.display()
                ));
                break;
            }
            let jitter = Duration::from_millis(fastrand::u64(0..=delay.as_millis() as u64 / 4));
            tokio::select! {
                _ = dispatching.cancelled() => {
                    stopped = Some(self.stop.reason().unwrap_or(StopReason::Interrupted));
                    break;
                }
                _ = tokio::time::sleep(delay + jitter) => {}
            }
            delay = (delay.mul_f64(1.5)).min(LONGEST_POLL);
        }
        stopped
    }

    /// One look at every batch: settled ones recorded (and listed as
    /// recorded), changed statuses said and kept. Some(why) when the API
    /// refuses; a transient failure waits for the next look.
    async fn poll(
        &mut self,
        live: &mut Vec<Live>,
        pending: &mut HashMap<String, Request>,
    ) -> Result<Option<Duration>, StopReason> {
        let mut wait = None;
        let mut i = 0;
        while i < live.len() {
            let Some(id) = live[i].entry.batch_id.clone() else {
                // Never made (cancelled before its batch): its requests go next run.
                live.remove(i);
                self.save(live);
                continue;
            };
            match self.api.get(&id).await {
                Ok(info) if info.is_settled() => {
                    say_status(&info);
                    match self.record(&info, &live[i].entry, pending).await {
                        Ok(()) => {
                            let mut entry = live.remove(i).entry;
                            entry.status = state::RECORDED.into();
                            self.recorded.push(entry);
                            self.save(live);
                            continue;
                        }
                        // Said, and read again at the next look.
                        Err(e) if e.is_transient() => {
                            printer::warning(format_args!("batch {id}: {e}; trying again"));
                            wait = wait.max(e.retry_after);
                        }
                        // A result file that cannot be read (gone, refused) stays
                        // unread however long the run polls: it stops, the batch
                        // kept for the next run.
                        Err(e) => return Err(self.refused(&e)),
                    }
                }
                Ok(info) => {
                    if info.status != live[i].entry.status {
                        say_status(&info);
                        live[i].entry.status = info.status.clone();
                        self.save(live);
                    }
                }
                Err(e) if e.is_transient() => wait = wait.max(e.retry_after),
                Err(mut e) => {
                    if e.status == Some(404) {
                        // Said how to get out: every rerun would stop here the same way.
                        e.message = format!(
                            "{}; batch {id} stays listed in {}: if it is gone for good, move that file aside and the next run sends its requests again",
                            e.message,
                            self.state_path.display()
                        );
                    }
                    return Err(self.refused(&e));
                }
            }
            i += 1;
        }
        Ok(wait)
    }

    /// Downloads a settled batch's output and error files: one line per
    /// request it holds that this run still has to record.
    async fn record(
        &mut self,
        info: &BatchInfo,
        entry: &Entry,
        pending: &mut HashMap<String, Request>,
    ) -> Result<(), ApiError> {
        let ours: HashMap<&str, &str> = (entry.requests.iter())
            .map(|(k, s)| (k.as_str(), s.as_str()))
            .collect();
        // Requests of this batch still to record: once none is left the rest
        // of a result file is not read (a file that never ends ends there).
        let mut left = (ours.iter())
            .filter(|(k, s)| pending.get(**k).is_some_and(|r| r.sha256 == **s))
            .count();
        for file in [&info.output_file_id, &info.error_file_id]
            .into_iter()
            .flatten()
        {
            if left == 0 {
                break;
            }
            // A download that breaks off is read again from the start: lines
            // already recorded find their request gone and are skipped.
            let mut tries = 0;
            loop {
                match (self.read_results(file, &ours, pending, &info.id, &mut left)).await {
                    Ok(()) => break,
                    Err(e) if e.is_transient() && tries + 1 < CALL_TRIES => {
                        tries += 1;
                        tokio::time::sleep(e.retry_after.unwrap_or(Duration::from_secs(1))).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for (key, _) in &entry.requests {
            if let Some(req) = take(pending, &ours, key) {
                let failure = results::unanswered(&info.status, &info.id);
                self.done(req, Err(failure), &info.id).await;
            }
        }
        Ok(())
    }

    async fn read_results(
        &mut self,
        file: &str,
        ours: &HashMap<&str, &str>,
        pending: &mut HashMap<String, Request>,
        batch: &str,
        left: &mut usize,
    ) -> Result<(), ApiError> {
        let mut lines = self.api.lines(file).await?;
        while *left > 0 {
            let Some(line) = lines.next().await? else {
                break;
            };
            let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let Some(req) = results::custom_id(&value).and_then(|key| take(pending, ours, key))
            else {
                continue;
            };
            let result = results::outcome(&value, &req.model);
            *left -= 1;
            self.done(req, result, batch).await;
        }
        Ok(())
    }

    async fn done(
        &mut self,
        req: Request,
        result: Result<crate::client::Reply, crate::client::Failure>,
        batch: &str,
    ) {
        let now = Utc::now();
        let charge = (self.budget > 0.0).then(|| match &result {
            Ok(reply) => self
                .pricing
                .budget_cost(&req.model, reply)
                .unwrap_or_else(|| self.pricing.worst_case(&req).unwrap_or(0.0)),
            Err(_) => 0.0,
        });
        self.charged += charge.unwrap_or(0.0);
        let outcome = Outcome {
            request: req,
            result,
            attempts: 1,
            uncertain_attempts: 0,
            started_at: None,
            finished_at: Some(now),
            budget_charge_usd: charge,
            endpoint: None,
            batch_id: Some(batch.to_string()),
        };
        let _ = self.events.send(Event::Done(Box::new(outcome))).await;
    }

    /// Saves the batches in flight; a failure is said, and the run goes on
    /// (the batches still settle; only a rerun's view of them is at risk).
    fn save(&self, live: &[Live]) {
        let state = State {
            batches: (self.recorded.iter().cloned())
                .chain(live.iter().map(|l| l.entry.clone()))
                .collect(),
        };
        if let Err(e) = state::save(&self.state_path, &state) {
            printer::error(format_args!("cannot keep the batches in flight: {e}"));
        }
    }

    /// A call, tried again on transient failures with a growing wait.
    async fn call<T, F, Fut>(&self, mut once: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut wait = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            match once().await {
                Err(e) if e.is_transient() && tries + 1 < CALL_TRIES => {
                    tries += 1;
                    tokio::time::sleep(e.retry_after.unwrap_or(wait)).await;
                    wait = (wait * 2).min(LONGEST_POLL);
                }
                other => return other,
            }
        }
    }

    /// A call that cannot succeed: said, and the run stops (exit 4).
    fn refused(&self, e: &ApiError) -> StopReason {
        printer::error(format_args!("batch API: {e}"));
        let reason = match e.status {
            None => StopReason::EndpointUnreachable,
            Some(_) => StopReason::EndpointRefused,
        };
        self.stop.stop_because(reason, Some(e.message.clone()));
        reason
    }
}

/// The request of `key` if this batch holds it as it is now (same hash) and it still needs a line.
fn take(
    pending: &mut HashMap<String, Request>,
    ours: &HashMap<&str, &str>,
    key: &str,
) -> Option<Request> {
    let sha = ours.get(key)?;
    match pending.get(key) {
        Some(req) if req.sha256 == *sha => pending.remove(key),
        _ => None,
    }
}

/// A batch's status and counts: a log line, or a JSON `batch` event.
fn say_status(info: &BatchInfo) {
    let counts = info.request_counts.unwrap_or_default();
    printer::event(
        printer::Level::Info,
        "batch",
        format_args!(
            "batch {}: {} ({} of {} completed, {} failed)",
            info.id, info.status, counts.completed, counts.total, counts.failed
        ),
        match json!({"batch_id": info.id, "status": info.status,
            "request_counts": {"total": counts.total, "completed": counts.completed, "failed": counts.failed}})
        {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    );
}
