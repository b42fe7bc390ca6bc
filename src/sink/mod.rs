//! The output JSONL: one lock per output, the resume scan, appending, compaction.
//!
//! A run only appends while it runs (a crash loses at most a half line, which
//! the next scan cuts off) and compacts atomically when it ends.

mod batch;
mod compact;
pub mod head;
pub mod lines;
mod lock;
mod paths;
pub mod record;
pub(crate) mod resume;
mod thread;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use batch::{write_batch_output, CustomId};
pub use compact::compact;
pub use lines::{BadLine, Line, Lines, Torn};
pub use lock::{holder, OutputLock};
pub use paths::{
    check_temp, lock_path, move_aside, remove_stale_temp, resolve, FileStamp, BACKUP_SUFFIX,
    COMPACT_TEMP_SUFFIX, LOCK_SUFFIX,
};
pub use record::{Record, RecordHead, Status};
pub use resume::{check_is_output, scan, scan_with, Beside, Completions, Latest, ResumeState};
pub use thread::{Append, Drained, WriterThread};

/// Something went wrong with the output file itself (not with a request).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    // The io error is part of the message, not a `source`: printed as a
    // chain it would say the same thing twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is being written by another promptbatch run (process {pid}); wait for it to end or choose another --output")]
    Locked { path: PathBuf, pid: String },
    #[error("{path} is the same file as an output another promptbatch run is writing under another name (a hard link); wait for it to end or choose another --output")]
    LockedByLink { path: PathBuf },
    #[error("{path} is not a regular file: the output must be a plain file (it is appended to, then replaced when compacted); choose another --output")]
    NotAFile { path: PathBuf },
    #[error("{path} is a symbolic link, a hard link to another file or not a plain file, and a lock file must be a plain file of its own: nothing was written through it; remove it (no run holds it then) or choose another --output")]
    LockNotAFile { path: PathBuf },
    #[error("{path} is not a promptbatch output (its first line is not a record: {reason}); choose another --output, so as not to overwrite it")]
    NotAnOutput { path: PathBuf, reason: String },
    #[error("{path}:{line}: not a promptbatch record ({reason}); the file was edited by hand: fix or remove that line, or start over with --fresh (which keeps it as a backup)")]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

impl From<BadLine> for SinkError {
    fn from(bad: BadLine) -> SinkError {
        SinkError::Corrupt {
            path: bad.path,
            line: bad.line,
            reason: bad.reason,
        }
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |error| SinkError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A temp file beside `path` for an atomic replace, created with the usual
/// permissions (0666 less the umask), not tempfile's owner-only 0600: other
/// users and services read these reports.
pub fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".promptbatch-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Writes `bytes` to `path` through a temp file beside it and a rename
/// (creating its folder), so a reader (a web server, a mail job, `jq`)
/// never sees half a file: the run's summary and a report's `-o`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut temp = temp_beside(path)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What the output holds, read only (before the lock is held). With `fresh`
/// it is only checked to be an output: [`take_over`] moves it aside.
pub fn read(path: &Path, fresh: bool) -> Result<ResumeState, SinkError> {
    read_with(path, fresh, &mut ())
}

/// [`read`], handing `beside` every line the scan reads.
pub fn read_with(
    path: &Path,
    fresh: bool,
    beside: &mut impl Beside,
) -> Result<ResumeState, SinkError> {
    if fresh {
        check_is_output(path)?;
        return Ok(ResumeState::default());
    }
    scan_with(path, beside)
}

/// With the lock held and every other check passed: removes a killed run's
/// compaction temp file (and proves a new one can be made), then moves the old output aside (`fresh`; returns
/// the backup) or cuts off the unterminated last line `resume` found.
pub fn take_over(
    path: &Path,
    resume: &ResumeState,
    fresh: bool,
) -> Result<Option<PathBuf>, SinkError> {
    remove_stale_temp(path)?;
    check_temp(path)?;
    if fresh {
        return move_aside(path);
    }
    resume.repair(path)?;
    Ok(None)
}

/// Appends whole lines to the output. The caller batches them (the collector
/// hands them to [`WriterThread`] whenever no further record is waiting, so
/// every ended request reaches the file promptly without a system call per
/// line under load).
///
/// A failed write (disk full) may leave part of a line behind; the file is
/// cut back to its last whole line at once, so a later append, or the next
/// run, starts clean rather than after a half line it would trip on.
pub struct Writer {
    path: PathBuf,
    file: File,
    /// The file's length after the last complete write: it ends on a whole line there.
    good_len: u64,
    /// A failed write left part of a line that could not be cut off: nothing
    /// more may follow it (it would put a half line in the middle of the file).
    torn: bool,
    /// When the output path was last checked to lead here, mid-run.
    checked: std::time::Instant,
    /// The output was found removed or replaced: nothing more is appended
    /// (it would only go to a file nobody can read).
    gone: bool,
}

/// How often, while lines are appended, the output path is checked to still
/// lead to the file written: a removed output stops the run within about
/// this long, instead of paying for every request left.
const IN_PLACE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Writer {
    pub fn append(path: &Path) -> Result<Writer, SinkError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        let good_len = file.metadata().map_err(io_error(path))?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            good_len,
            torn: false,
            checked: std::time::Instant::now(),
            gone: false,
        })
    }

    /// Appends `lines` (whole lines, each ending in a newline): all or none.
    pub fn append_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        if self.gone || self.checked.elapsed() >= IN_PLACE_EVERY {
            self.checked = std::time::Instant::now();
            if let Err(e) = self.check_in_place() {
                self.gone = true;
                return Err(e);
            }
        }
        if self.torn {
            return Err(io_error(&self.path)(std::io::Error::other(
                "an earlier failed write left part of a line that could not be cut off",
            )));
        }
        match self.file.write_all(lines) {
            Ok(()) => {
                self.good_len += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Shrinking never needs space; if even this fails, the next
                // run's scan cuts the half line off.
                self.torn = self.file.set_len(self.good_len).is_err();
                Err(io_error(&self.path)(e))
            }
        }
    }

    /// Whether the output path still leads to the file this writer appends
    /// to: removed or replaced during the run, every line written went with
    /// the old file, though each write succeeded.
    /// Whether a write found the output removed or replaced: every line this
    /// run appended went with the old file.
    pub fn gone(&self) -> bool {
        self.gone
    }

    pub fn check_in_place(&self) -> Result<(), SinkError> {
        let gone = || {
            io_error(&self.path)(std::io::Error::other(
                "the output was removed or replaced during the run, and the lines this run appended went with the old file",
            ))
        };
        let Some(now) = FileStamp::now(&self.path) else {
            return Err(gone());
        };
        let ours = self.file.metadata().map_err(io_error(&self.path))?;
        if !FileStamp::of(&ours).same_file(&now) {
            return Err(gone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_append_is_an_error_naming_the_output() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let Ok(mut w) = Writer::append(Path::new("/dev/full")) else {
            return;
        };
        let err = w.append_lines(b"{\"key\":\"a\"}\n").unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    #[test]
    fn an_output_removed_or_replaced_during_the_run_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let mut w = Writer::append(&path).expect("open");
        w.append_lines(b"{\"key\":\"a\"}\n").expect("append");
        w.check_in_place().expect("still there");
        std::fs::remove_file(&path).expect("rm");
        let err = w.check_in_place().unwrap_err();
        assert!(err.to_string().contains("removed or replaced"), "{err}");
        std::fs::write(&path, "other\n").expect("write");
        assert!(w.check_in_place().is_err(), "another file at the path");
    }
}
