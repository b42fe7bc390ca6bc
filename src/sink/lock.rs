//! One run per output: an OS lock (flock) on `<output>.lock` holding the process id.
//!
//! The lock file stays after the run; the OS frees the lock of a killed
//! process, so the next run simply takes it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{io_error, SinkError};

#[derive(Debug)]
pub struct OutputLock {
    _file: File,
    /// The output itself, locked too: a hard link is another path to it
    /// with a lock file of its own, and only the file knows they are one.
    _output: Option<File>,
    path: PathBuf,
}

impl OutputLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock of `output`, or says which process holds it. The lock
    /// is on the output with every symlink resolved, so two paths to one file
    /// share one lock.
    pub fn acquire(output: &Path) -> Result<OutputLock, SinkError> {
        let real = super::resolve(output)?;
        // A device or a folder would be read forever by the resume scan, or
        // cannot be appended to and renamed over: only plain files are outputs.
        if let Ok(meta) = std::fs::metadata(&real) {
            if !meta.is_file() {
                return Err(SinkError::NotAFile {
                    path: output.to_path_buf(),
                });
            }
        }
        let path = super::paths::lock_path(&real);
        let mut file = open_plain(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                // Best effort: the holder wrote its pid right after locking.
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(SinkError::Locked {
                    path: output.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path)(e)),
        }
        let output_file = lock_output(&real, output)?;
        file.set_len(0).map_err(io_error(&path))?;
        file.seek(SeekFrom::Start(0)).map_err(io_error(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io_error(&path))?;
        file.flush().map_err(io_error(&path))?;
        Ok(OutputLock {
            _file: file,
            _output: output_file,
            path,
        })
    }
}

/// Locks the output file itself when there is one (see [`OutputLock`]).
fn lock_output(real: &Path, output: &Path) -> Result<Option<File>, SinkError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO put there since it was checked must not hang the run.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(real) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(real)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(SinkError::LockedByLink {
            path: output.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(real)(e)),
    }
}

/// The process id of the run that holds `output`'s lock, if one does
/// (`validate` warns of it). Creates nothing: an output or lock file not
/// there yet has no holder.
pub fn holder(output: &Path) -> Option<String> {
    let real = std::fs::canonicalize(output).ok().or_else(|| {
        let folder = output.parent().filter(|d| !d.as_os_str().is_empty());
        let folder = std::fs::canonicalize(folder.unwrap_or(Path::new("."))).ok()?;
        Some(folder.join(output.file_name()?))
    })?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(super::paths::lock_path(&real)).ok()?;
    match file.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            Some(if pid.is_empty() { "unknown" } else { pid }.to_string())
        }
        _ => None,
    }
}

/// Opens (or creates) the lock file without following a symlink: a lock path
/// planted as a link to another file must not get that file truncated.
fn open_plain(path: &Path) -> Result<File, SinkError> {
    let not_plain = || SinkError::LockNotAFile {
        path: path.to_path_buf(),
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(not_plain());
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The check above can race with a link made just after it; this cannot.
        // O_NONBLOCK: a FIFO put there between the two must not hang the run.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_plain()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let meta = file.metadata().map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(not_plain());
    }
    // A hard link planted there is another file under a second name: taking
    // the lock would overwrite it with a process id.
    #[cfg(unix)]
    if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
        return Err(not_plain());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_lock_is_taken_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let first = OutputLock::acquire(&out).expect("first lock");
        let err = OutputLock::acquire(&out).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        assert!(matches!(err, SinkError::Locked { .. }));
        assert_eq!(holder(&out), Some(std::process::id().to_string()));
        drop(first);
        assert_eq!(holder(&out), None);
        let again = OutputLock::acquire(&out).expect("lock after release");
        assert!(again.path().ends_with("out.jsonl.lock"));
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_path_that_is_a_link_or_not_a_file_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join("out.jsonl.lock")).expect("link");
        let err = OutputLock::acquire(&out).unwrap_err();
        assert!(matches!(err, SinkError::LockNotAFile { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        // A dangling link is not followed either: nothing is created at its target.
        let other = dir.path().join("other.jsonl");
        std::os::unix::fs::symlink(
            dir.path().join("made.txt"),
            dir.path().join("other.jsonl.lock"),
        )
        .expect("link");
        assert!(OutputLock::acquire(&other).is_err());
        assert!(!dir.path().join("made.txt").exists());
        // A hard link to another file is not written through either.
        let fourth = dir.path().join("fourth.jsonl");
        std::fs::hard_link(&victim, dir.path().join("fourth.jsonl.lock")).expect("hard link");
        let err = OutputLock::acquire(&fourth).unwrap_err();
        assert!(matches!(err, SinkError::LockNotAFile { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        // A folder in its place.
        let third = dir.path().join("third.jsonl");
        std::fs::create_dir(dir.path().join("third.jsonl.lock")).expect("mkdir");
        let err = OutputLock::acquire(&third).unwrap_err();
        assert!(matches!(err, SinkError::LockNotAFile { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_hard_link_to_a_locked_output_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        std::fs::write(&out, "").expect("write");
        std::fs::hard_link(&out, dir.path().join("same.jsonl")).expect("hard link");
        let held = OutputLock::acquire(&out).expect("lock");
        let err = OutputLock::acquire(&dir.path().join("same.jsonl")).unwrap_err();
        assert!(matches!(err, SinkError::LockedByLink { .. }), "{err}");
        drop(held);
        OutputLock::acquire(&dir.path().join("same.jsonl")).expect("lock after release");
    }

    #[cfg(unix)]
    #[test]
    fn two_paths_to_one_output_share_one_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        std::os::unix::fs::symlink("out.jsonl", dir.path().join("link.jsonl")).expect("link");
        let _held = OutputLock::acquire(&out).expect("lock");
        let err = OutputLock::acquire(&dir.path().join("link.jsonl")).unwrap_err();
        assert!(matches!(err, SinkError::Locked { .. }), "{err}");
        let err = OutputLock::acquire(&dir.path().join("sub/../out.jsonl")).unwrap_err();
        assert!(matches!(err, SinkError::Locked { .. }), "{err}");
    }
}
