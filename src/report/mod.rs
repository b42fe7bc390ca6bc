//! Summaries and reports: statistics over records, written as JSON or as a table.
//!
//! Never calls HTTP: a report is a pure function of records.

pub mod summary;
pub mod table;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use summary::{RequestCounts, Summary, Tally};

use crate::sink::{Record, Status};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: not a promptbatch record: {reason}")]
    Record {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("no records in {0}")]
    Empty(String),
}

/// Writes `summary` as pretty JSON to `path`: atomically (temp file + rename)
/// when it is a plain file or none yet; straight into a device or a pipe
/// (`--summary /dev/null`, `--summary >(jq .)`), which a rename would replace.
pub fn write_summary(path: &Path, summary: &Summary) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(summary)?;
    text.push(b'\n');
    if written_into(path)? {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(&text);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut temp = crate::sink::temp_beside(path)?;
    temp.write_all(&text)?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Checks, before anything is sent, that the summary can be written at the
/// end: a folder in its place, or a folder that cannot be written, would
/// otherwise be found only after the requests were paid for.
pub fn check_summary_path(path: &Path) -> std::io::Result<()> {
    if written_into(path)? {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Dropped at once: it only proves a temp file can be made beside it.
    crate::sink::temp_beside(path).map(drop)
}

/// True for a pipe, or a character device named as itself (`/dev/null`):
/// written into, never replaced. False for a plain file or none; an error
/// for anything else (a folder, a socket, a device reached through a link,
/// which may be planted to make a run write into `/dev/mem`).
fn written_into(path: &Path) -> std::io::Result<bool> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(false);
    };
    if meta.is_file() {
        return Ok(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if kind.is_fifo() || (kind.is_char_device() && !linked) {
            return Ok(true);
        }
    }
    Err(std::io::Error::other(
        "not a plain file: the summary is written to a plain file, a pipe or a device named as itself (--summary /dev/null); choose another --summary",
    ))
}

/// A usage report over output files: every record counts as sent; the time
/// span runs from the earliest start to the latest finish.
pub fn over_outputs(paths: &[PathBuf]) -> Result<Summary, ReportError> {
    let mut tally = Tally::default();
    let mut jobs: Vec<String> = Vec::new();
    let mut first: Option<DateTime<Utc>> = None;
    let mut last: Option<DateTime<Utc>> = None;
    let mut counts = RequestCounts::default();
    for path in paths {
        let io = |error| ReportError::Io {
            path: path.clone(),
            error,
        };
        let reader = BufReader::new(File::open(path).map_err(io)?);
        // A bad line is an error only once a later line shows it is not the
        // last: a run writing, or killed mid-write, leaves half a last line.
        let mut pending: Option<ReportError> = None;
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(e) = pending.take() {
                return Err(e);
            }
            let record: Record = match serde_json::from_str(&line) {
                Ok(record) => record,
                Err(e) => {
                    pending = Some(ReportError::Record {
                        path: path.clone(),
                        line: n as u64 + 1,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if !jobs.contains(&record.job) {
                jobs.push(record.job.clone());
            }
            let parse = |t: &Option<String>| {
                t.as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            if let Some(t) = parse(&record.started_at) {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
            if let Some(t) = parse(&record.finished_at) {
                last = Some(last.map_or(t, |l| l.max(t)));
            }
            match record.status {
                Status::Ok => counts.ok += 1,
                Status::Error => counts.failed += 1,
            }
            tally.observe(&record);
        }
        if let Some(ReportError::Record { line, .. }) = pending {
            eprintln!(
                "promptbatch: {}:{line}: left out an incomplete last line (a run still writing, or one stopped mid-write)",
                path.display()
            );
        }
    }
    counts.total = counts.ok + counts.failed;
    if counts.total == 0 {
        let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ReportError::Empty(names.join(", ")));
    }
    let now = Utc::now();
    let started = first.unwrap_or(now);
    let finished = last.unwrap_or(started).max(started);
    let span = (finished - started).to_std().unwrap_or_default();
    Ok(tally.summary(&jobs.join(","), started, finished, span, counts, None))
}
