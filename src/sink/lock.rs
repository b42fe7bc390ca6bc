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
    path: PathBuf,
}

impl OutputLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock of `output`, or says which process holds it.
    pub fn acquire(output: &Path) -> Result<OutputLock, SinkError> {
        // A device or a folder would be read forever by the resume scan, or
        // cannot be appended to and renamed over: only plain files are outputs.
        if let Ok(meta) = std::fs::metadata(output) {
            if !meta.is_file() {
                return Err(SinkError::NotAFile {
                    path: output.to_path_buf(),
                });
            }
        }
        let mut path = output.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
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
        file.set_len(0).map_err(io_error(&path))?;
        file.seek(SeekFrom::Start(0)).map_err(io_error(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io_error(&path))?;
        file.flush().map_err(io_error(&path))?;
        Ok(OutputLock { _file: file, path })
    }
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
        drop(first);
        let again = OutputLock::acquire(&out).expect("lock after release");
        assert!(again.path().ends_with("out.jsonl.lock"));
    }
}
