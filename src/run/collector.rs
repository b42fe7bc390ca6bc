//! The collector: consumes the scheduler's events, one output line, tally and
//! progress update per ended request.
//!
//! A failure to write the output (disk full) does not drop the events still
//! coming: dispatch is halted, the requests in flight are waited for and
//! counted, and the run reports how many ended without a line.

use std::sync::Arc;

use crate::job::Job;
use crate::keys::{KeyId, KeyMap};
use crate::progress::Progress;
use crate::report::Tally;
use crate::scan::Seen;
use crate::scheduler::{Event, StopSignal};
use crate::sink::{Record, ResumeState, SinkError, Status, Writer};

pub(super) struct Collector<'a> {
    job: &'a Job,
    writer: Writer,
    tally: Tally,
    progress: &'a mut Progress,
    resume: &'a ResumeState,
    /// The job's keys; each request sent in this run notes how it ended.
    keys: &'a mut KeyMap<Seen>,
    stop: Arc<StopSignal>,
    /// Lines written for keys that already had one.
    superseded: u64,
    failed: Option<SinkError>,
    /// Requests that ended after the output failed.
    lost: u64,
}

/// What the collector saw, once every event is in.
pub(super) struct Collected {
    pub tally: Tally,
    pub superseded: u64,
    pub failed: Option<SinkError>,
    pub lost: u64,
}

impl<'a> Collector<'a> {
    pub fn new(
        job: &'a Job,
        writer: Writer,
        progress: &'a mut Progress,
        resume: &'a ResumeState,
        keys: &'a mut KeyMap<Seen>,
        stop: Arc<StopSignal>,
    ) -> Collector<'a> {
        Collector {
            job,
            writer,
            tally: Tally::default(),
            progress,
            resume,
            keys,
            stop,
            superseded: 0,
            failed: None,
            lost: 0,
        }
    }

    pub fn collect(&mut self, event: Event) {
        let outcome = match event {
            Event::Retrying { .. } => return self.progress.on_retry(),
            Event::Done(outcome) => outcome,
        };
        if self.failed.is_some() {
            self.lost += 1;
            return;
        }
        let record = Record::from_outcome(&self.job.name, *outcome, &self.job.pricing);
        if let Err(e) = self.writer.write(&record) {
            self.fail(e);
            self.lost += 1;
            return;
        }
        self.tally.observe(&record);
        self.progress.on_record(&record);
        let id = KeyId::of(&record.key);
        if self.resume.latest.contains_key(&id) {
            self.superseded += 1;
        }
        if let Some(seen) = self.keys.get_mut(&id) {
            seen.ok = Some(record.status == Status::Ok);
        }
    }

    pub fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.writer.flush() {
                self.fail(e);
            }
        }
    }

    pub fn finish(mut self) -> Collected {
        self.flush();
        Collected {
            tally: self.tally,
            superseded: self.superseded,
            failed: self.failed,
            lost: self.lost,
        }
    }

    fn fail(&mut self, e: SinkError) {
        self.stop.halt();
        self.failed = Some(e);
    }
}
