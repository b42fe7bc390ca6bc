//! The producer: reads the rows again on a blocking thread and feeds the
//! scheduler the requests not already done.
//!
//! The scan checked every row before anything was sent; a file that changed
//! since (a pipeline still writing it) is refused rather than sent unchecked:
//! no row past the ones the scan counted is read, and a change found at the
//! end is reported (exit 1; a rerun sends the rest).

use std::path::Path;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::input::{self, InputError, Spooled};
use crate::job::Job;
use crate::plan::Planner;
use crate::plan::Request;

use super::cached::Answerer;
use super::scan::Bits;

/// Requests handed to the scheduler at once: one wake-up of each side per
/// batch rather than per request.
pub(super) const BATCH: usize = 256;

/// Body bytes past which a batch goes at once, however few its requests:
/// with [`QUEUED_BATCHES`], what is planned ahead of dispatch stays a few MiB
/// (or a few requests, when one is bigger) whatever the rows' size (a
/// request also holds its row, about as much again).
const BATCH_BYTES: usize = 1024 * 1024;

/// Batches that may wait for the scheduler (with [`BATCH`] and
/// [`BATCH_BYTES`], the requests planned ahead of dispatch).
pub(super) const QUEUED_BATCHES: usize = 4;

/// What identifies a file's content cheaply: its length and modification time.
pub(super) type Stamp = Option<(u64, SystemTime)>;

pub(super) fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Why the producer stopped before the end of the input. The rows were all
/// checked before sending, so each of these means the input changed meanwhile.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProducerError {
    #[error(
        "{input} changed after it was checked; nothing was sent from it: rerun once it is complete"
    )]
    Changed { input: String },
    #[error(
        "{input} changed during the run; only the {} checked before sending were read: rerun once it is complete to send the rest",
        crate::printer::count(*rows, "row")
    )]
    Grew { input: String, rows: u64 },
    #[error(transparent)]
    Open(InputError),
    #[error("{} (the input changed during the run; rerun to resume)", first(.0))]
    Row(Vec<InputError>),
    #[error("internal error: the input reader failed: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

fn first(problems: &[InputError]) -> String {
    problems
        .first()
        .map_or_else(String::new, ToString::to_string)
}

/// Where planned requests go: the scheduler, unless the cache answers them.
pub(super) struct Out {
    pub requests: mpsc::Sender<Vec<Request>>,
    pub cache: Option<Answerer>,
}

/// Spawns the producer; it ends when the `rows` rows the scan checked are
/// read or the scheduler stops taking requests, and says why it stopped early.
/// `send` says which requests (numbered in input order) the scan found to
/// send: a row with none is not planned again, and with none at all (a
/// rerun over a complete output) the input is not read again.
pub(super) fn spawn(
    job: &Job,
    file: &Spooled,
    checked: Stamp,
    rows: u64,
    send: Bits,
    to_send: u64,
    out: Out,
) -> JoinHandle<Result<(), ProducerError>> {
    let Out {
        requests: tx,
        mut cache,
    } = out;
    let planner = Planner::new(job);
    let format = job.input.format;
    // The scan already stopped at --limit: its count is the smaller bound.
    let limit = usize::try_from(rows).unwrap_or(usize::MAX);
    let file = file.file.clone();
    let per_row = planner.requests_per_row();
    let waiting = tx.clone();
    let idle = move || waiting.capacity() == waiting.max_capacity();
    // With a cache, what it answers goes to the collector, the rest on.
    let mut hand_over = move |batch: Vec<Request>| -> bool {
        // Stopped (Ctrl-C, the budget): not even what the cache knows is
        // answered any more, so a stop is prompt.
        if tx.is_closed() {
            return false;
        }
        let batch = match cache.as_mut() {
            Some(cache) => match cache.answer(batch) {
                Some(misses) => misses,
                None => return false,
            },
            None => batch,
        };
        batch.is_empty() || tx.blocking_send(batch).is_ok()
    };
    tokio::task::spawn_blocking(move || {
        if stamp(file.path()) != checked {
            return Err(ProducerError::Changed {
                input: file.display.clone(),
            });
        }
        let lines = match to_send {
            0 => None,
            _ => Some(input::open(&file, format).map_err(ProducerError::Open)?),
        };
        let mut first = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        let mut batch_bytes = 0usize;
        for row in lines.into_iter().flatten().take(limit) {
            let row_send = first..first.saturating_add(per_row);
            first = row_send.end;
            if !row_send.clone().any(|i| send.get(i)) {
                continue;
            }
            let requests = row
                .map_err(|e| vec![e])
                .and_then(|row| planner.plan(row, &file.display))
                .map_err(ProducerError::Row)?;
            for (req, i) in requests.into_iter().zip(row_send) {
                if send.get(i) {
                    batch_bytes = batch_bytes.saturating_add(req.body.len());
                    batch.push(req);
                }
            }
            // Whole batches, or at once when the scheduler has nothing left
            // to take (at the start, or when it outruns the reader).
            let full = batch.len() >= BATCH || batch_bytes >= BATCH_BYTES;
            if full || (!batch.is_empty() && idle()) {
                if !hand_over(std::mem::take(&mut batch)) {
                    // The scheduler stopped taking requests: a stop, not a problem.
                    return Ok(());
                }
                batch.reserve(BATCH);
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() && !hand_over(batch) {
            return Ok(());
        }
        if stamp(file.path()) != checked {
            // Rows written meanwhile (a pipeline appending) were never checked:
            // not sent, and not to pass unnoticed as a complete run.
            return Err(ProducerError::Grew {
                input: file.display.clone(),
                rows,
            });
        }
        Ok(())
    })
}
