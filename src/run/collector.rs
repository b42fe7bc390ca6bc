//! The collector: consumes the scheduler's events, one output line, tally and
//! progress update per ended request.
//!
//! Lines are batched and handed to the writer thread, which appends them off
//! the runtime's thread; a record counts for the job (its key done, its
//! figures in the job's tally) only once the thread says its line is in the
//! file. A failure to write (disk full) stops dispatch (`output_failed`) but
//! drops nothing: the requests in flight are waited for, their lines kept in
//! memory (only those that ended after the failure: dispatch has stopped, so
//! they are bounded by the concurrency and the event queue), and appended in
//! one more attempt at the end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::scan::Seen;
use crate::job::Job;
use crate::keys::{KeyId, KeyTable};
use crate::progress::Progress;
use crate::report::{KeptFigures, Tally};
use crate::scheduler::{Event, StopReason, StopSignal};
use crate::sink::{Record, SinkError, Status, Writer, WriterThread};

/// Handed to the writer thread once this many bytes of lines are waiting,
/// even mid-burst.
const BATCH_BYTES: usize = 256 * 1024;

/// How long a line may wait to be handed to the writer thread while more
/// keep coming: a burst becomes one write instead of a wake-up of the
/// thread per few lines, and a line still reaches the file within a few
/// milliseconds of its request's end.
const FLUSH_AFTER: Duration = Duration::from_millis(1);

/// Bytes of lines that may wait for the writer thread (a slow disk) before
/// the collector waits, and with it, once the event queue is full, dispatch.
pub(super) const QUEUE_BYTES: u32 = 4 * 1024 * 1024;

/// Starts the writer thread for `writer`; a failed write stops dispatch.
pub(super) fn spawn_writer(
    writer: Writer,
    stop: &Arc<StopSignal>,
) -> std::io::Result<WriterThread<Writer>> {
    let stop = stop.clone();
    WriterThread::spawn(writer, QUEUE_BYTES, move || {
        stop.stop(StopReason::OutputFailed);
    })
}

pub(super) struct Collector<'a> {
    job: &'a Job,
    /// Taken by `finish` (or, unwinding from a panic, by `drop`).
    writer: Option<WriterThread<Writer>>,
    /// Over the lines this run put in the file (the job's scope).
    written: Tally,
    /// Over every request this run sent (`this_run`), lines or not.
    sent: Tally,
    progress: &'a mut Progress,
    /// The job's keys; each request sent in this run notes how it ended.
    keys: &'a mut KeyTable<Seen>,
    stop: Arc<StopSignal>,
    /// `-v`: a line per retry and per change of pace.
    verbose: bool,
    /// Lines not yet handed to the writer thread, and their records' keys and figures.
    batch: Vec<u8>,
    records: Vec<(KeyId, KeptFigures)>,
    /// When the oldest line of `batch` was added.
    waiting_since: Option<Instant>,
    /// The records of the batches the writer thread has not yet written, in
    /// the order sent.
    queued: VecDeque<Vec<(KeyId, KeptFigures)>>,
    /// Lines written for keys that already had one.
    superseded: u64,
    /// Lines this run put in the file.
    landed: u64,
    /// `--cache`: where replies to keep go, and those of the lines waiting
    /// (handed over with them, one burst per transaction).
    cache: Option<(crate::cache::Handle, Vec<crate::cache::Entry>)>,
}

/// What the collector saw, once every event is in.
pub(super) struct Collected {
    pub written: Tally,
    pub sent: Tally,
    pub superseded: u64,
    /// The first failure to write the output, if any.
    pub failed: Option<SinkError>,
    /// Answered requests whose line is not in the output.
    pub lost: u64,
    /// The output was removed or replaced during the run: no line of it,
    /// this run's or an earlier one's, is in the file the path names.
    pub gone: bool,
}

impl<'a> Collector<'a> {
    pub fn new(
        job: &'a Job,
        writer: WriterThread<Writer>,
        progress: &'a mut Progress,
        keys: &'a mut KeyTable<Seen>,
        stop: Arc<StopSignal>,
    ) -> Collector<'a> {
        Collector {
            job,
            writer: Some(writer),
            written: Tally::default(),
            sent: Tally::default(),
            progress,
            keys,
            stop,
            verbose: false,
            batch: Vec::new(),
            records: Vec::new(),
            waiting_since: None,
            queued: VecDeque::new(),
            superseded: 0,
            landed: 0,
            cache: None,
        }
    }

    /// `--cache`: keep the `ok` replies of this run in the cache.
    pub fn cache(mut self, handle: Option<crate::cache::Handle>) -> Self {
        self.cache = handle.map(|h| (h, Vec::new()));
        self
    }

    /// `-v`: say each retry and each change of pace.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    pub async fn collect(&mut self, event: Event) {
        let outcome = match event {
            Event::RetryPlanned(note) => {
                if self.verbose {
                    super::verbose::retry(&note);
                }
                return;
            }
            Event::Pace(change) => {
                if self.verbose {
                    super::verbose::pace(&change);
                }
                return;
            }
            Event::Endpoint(note) => return super::routes::warn(&note),
            Event::Retrying { .. } => return self.progress.on_retry(),
            Event::Done(outcome) => outcome,
            Event::Cached(hit) => {
                let record = Record::from_hit(&self.job.name, *hit);
                return self.take(record, false).await;
            }
        };
        let record = Record::from_outcome(&self.job.name, *outcome, &self.job.pricing);
        self.take(record, true).await;
    }

    /// One ended request's line; `answered`: by the endpoint in this run
    /// (not from the cache), so an `ok` reply is one for the cache to keep.
    async fn take(&mut self, record: Record, answered: bool) {
        self.sent.observe(&record);
        self.progress.on_record(&record);
        let start = self.batch.len();
        record.write_line(&mut self.batch);
        if let (Some(cache), true) = (&mut self.cache, answered && record.status == Status::Ok) {
            // The line as written: redacted, and with every field a reply has.
            if let Some(reply) = crate::cache::reply_part(&self.batch[start..]) {
                let sha = record.request_sha256.clone();
                cache.1.push(crate::cache::Entry { sha, reply });
            }
        }
        self.records
            .push((KeyId::of(&record.key), KeptFigures::of(record)));
        self.waiting_since.get_or_insert_with(Instant::now);
        if self.batch.len() >= BATCH_BYTES {
            self.flush().await;
        }
    }

    /// When the waiting lines are due to be handed to the writer thread
    /// ([`FLUSH_AFTER`] after the oldest); None when none wait.
    pub fn flush_due(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + FLUSH_AFTER)
    }

    /// Flushes once the waiting lines are due.
    pub async fn flush_if_due(&mut self) {
        if self.flush_due().is_some_and(|due| due <= Instant::now()) {
            self.flush().await;
        }
    }

    /// Hands the waiting lines to the writer thread (waiting while the queue
    /// is full), and counts what it has written meanwhile.
    pub async fn flush(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        self.waiting_since = None;
        if let Some((cache, entries)) = &mut self.cache {
            if !entries.is_empty() {
                cache.put(std::mem::take(entries));
            }
        }
        if !self.batch.is_empty() {
            let next = writer.buffer();
            writer.send(std::mem::replace(&mut self.batch, next)).await;
            self.queued.push_back(std::mem::take(&mut self.records));
        }
        let written = writer.written();
        self.land(written);
    }

    /// Waits for the writer thread to write every line (so the summary is
    /// computed over lines in the file), then makes the last attempt after a
    /// failure and checks the file is still the output.
    pub fn finish(mut self) -> Collected {
        let mut failed = None;
        let mut lost = 0;
        let mut gone = false;
        if let Some((cache, entries)) = self.cache.take() {
            if !entries.is_empty() {
                cache.put(entries);
            }
        }
        if let Some(writer) = self.writer.take() {
            if !self.batch.is_empty() {
                self.queued.push_back(std::mem::take(&mut self.records));
            }
            let (drained, written) = writer.finish(std::mem::take(&mut self.batch));
            self.land(written);
            let waiting = || self.queued.iter().map(|b| b.len() as u64).sum::<u64>();
            match drained {
                None => {
                    self.stop.stop(StopReason::OutputFailed);
                    lost = waiting();
                    failed = Some(SinkError::Io {
                        path: self.job.output.path.clone(),
                        error: std::io::Error::other("the thread writing the output panicked"),
                    });
                }
                Some(drained) => {
                    let mut sink = drained.sink;
                    if drained.failed.is_some() && !drained.pending.is_empty() {
                        // One more attempt: space may have been freed meanwhile.
                        match sink.append_lines(&drained.pending) {
                            Ok(()) => self.land(self.queued.len()),
                            Err(_) => lost = waiting(),
                        }
                    }
                    failed = drained.failed;
                    if sink.gone() {
                        // Found mid-run: the lines written before went too.
                        gone = true;
                        lost =
                            self.landed + self.queued.iter().map(|b| b.len() as u64).sum::<u64>();
                    }
                    if failed.is_none() {
                        // Every write succeeded, but into a file someone removed or
                        // replaced: the answers are not in the output the next run reads.
                        if let Err(e) = sink.check_in_place() {
                            self.stop.stop(StopReason::OutputFailed);
                            failed = Some(e);
                            gone = true;
                            lost = self.landed;
                        }
                    }
                }
            }
        }
        if gone {
            // The summary counts the job as its output stands: none of these
            // lines is in it any more, nor any an earlier run wrote.
            self.written = Tally::default();
            for seen in self.keys.values_mut() {
                seen.ok = None;
                seen.prior = None;
            }
        }
        Collected {
            gone,
            written: std::mem::take(&mut self.written),
            sent: std::mem::take(&mut self.sent),
            superseded: self.superseded,
            failed,
            lost,
        }
    }

    /// The writer thread wrote the first `batches` queued: their requests
    /// count for the job.
    fn land(&mut self, batches: usize) {
        for _ in 0..batches {
            let Some(records) = self.queued.pop_front() else {
                return;
            };
            for (id, figures) in records {
                self.landed += 1;
                self.written.observe_kept(&figures);
                if let Some(seen) = self.keys.get_mut(&id) {
                    // Every record is of one of the job's keys.
                    self.superseded += u64::from(seen.in_file);
                    seen.ok = Some(figures.ok());
                }
            }
        }
    }
}

impl Drop for Collector<'_> {
    /// Unwinding from a panic: the lines of every request that ended still
    /// reach the file.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.finish(std::mem::take(&mut self.batch));
        }
    }
}
