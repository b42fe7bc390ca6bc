//! The collector: consumes the scheduler's events, one output line, tally and
//! progress update per ended request.
//!
//! Lines are batched and appended together; a record counts for the job (its
//! key done, its figures in the job's tally) only once its line is in the
//! file. A failure to write (disk full) stops dispatch (`output_failed`) but
//! drops nothing: the requests in flight are waited for, their lines kept in
//! memory (only those that ended after the failure: dispatch has stopped, so
//! they are bounded by the concurrency and the event queue), and appended in
//! one more attempt at the end.

use std::sync::Arc;

use super::scan::Seen;
use crate::job::Job;
use crate::keys::{KeyId, KeyTable};
use crate::progress::Progress;
use crate::report::Tally;
use crate::scheduler::{Event, StopReason, StopSignal};
use crate::sink::{Record, SinkError, Status, Writer};

/// Appended once this many bytes of lines are waiting, even mid-burst.
const BATCH_BYTES: usize = 256 * 1024;

pub(super) struct Collector<'a> {
    job: &'a Job,
    writer: Writer,
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
    /// Lines not yet in the file, and their records.
    batch: Vec<u8>,
    records: Vec<Record>,
    /// Lines written for keys that already had one.
    superseded: u64,
    /// Lines this run put in the file.
    landed: u64,
    failed: Option<SinkError>,
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
}

impl<'a> Collector<'a> {
    pub fn new(
        job: &'a Job,
        writer: Writer,
        progress: &'a mut Progress,
        keys: &'a mut KeyTable<Seen>,
        stop: Arc<StopSignal>,
    ) -> Collector<'a> {
        Collector {
            job,
            writer,
            written: Tally::default(),
            sent: Tally::default(),
            progress,
            keys,
            stop,
            verbose: false,
            batch: Vec::new(),
            records: Vec::new(),
            superseded: 0,
            landed: 0,
            failed: None,
        }
    }

    /// `-v`: say each retry and each change of pace.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    pub fn collect(&mut self, event: Event) {
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
            Event::Retrying { .. } => return self.progress.on_retry(),
            Event::Done(outcome) => outcome,
        };
        let record = Record::from_outcome(&self.job.name, *outcome, &self.job.pricing);
        self.sent.observe(&record);
        self.progress.on_record(&record);
        self.batch.extend_from_slice(&record.to_line());
        self.records.push(record);
        if self.batch.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Appends the waiting lines (after a failure they wait for `finish`).
    pub fn flush(&mut self) {
        if self.failed.is_some() || self.batch.is_empty() {
            return;
        }
        match self.writer.append_lines(&self.batch) {
            Ok(()) => self.landed(),
            Err(e) => {
                self.stop.stop(StopReason::OutputFailed);
                self.failed = Some(e);
            }
        }
    }

    pub fn finish(mut self) -> Collected {
        self.flush();
        let mut lost = 0;
        if self.failed.is_some() && !self.batch.is_empty() {
            // One more attempt: space may have been freed meanwhile.
            match self.writer.append_lines(&self.batch) {
                Ok(()) => self.landed(),
                Err(_) => lost = self.records.len() as u64,
            }
        }
        if self.failed.is_none() {
            // Every write succeeded, but into a file someone removed or
            // replaced: the answers are not in the output the next run reads.
            if let Err(e) = self.writer.check_in_place() {
                self.stop.stop(StopReason::OutputFailed);
                self.failed = Some(e);
                lost = self.landed;
            }
        }
        Collected {
            written: self.written,
            sent: self.sent,
            superseded: self.superseded,
            failed: self.failed,
            lost,
        }
    }

    /// The batch is in the file: its requests count for the job.
    fn landed(&mut self) {
        self.batch.clear();
        for record in self.records.drain(..) {
            self.landed += 1;
            self.written.observe(&record);
            if let Some(seen) = self.keys.get_mut(&KeyId::of(&record.key)) {
                // Every record is of one of the job's keys.
                self.superseded += u64::from(seen.in_file);
                seen.ok = Some(record.status == Status::Ok);
            }
        }
    }
}
