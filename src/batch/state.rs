//! `<output>.batches.json`: the provider batches a job has in flight, so a
//! rerun (after a crash, or the next cron firing) resumes polling them
//! instead of submitting their requests twice.
//!
//! An entry is written the moment its file is uploaded (file id, no batch
//! id yet) and again once its batch is created: a run killed between the
//! two leaves a file id that the next run looks for among the endpoint's
//! batches before creating one. Written atomically (a temp file made with
//! O_EXCL, mode 0600, renamed over the file: a symlink at either path is
//! replaced, never followed); it holds ids, keys and request hashes, never
//! a key or a header.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file beside `output`.
pub fn path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".batches.json");
    PathBuf::from(name)
}

/// Reading or writing the file failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a batches file ({error}); it lists the provider batches of this output, so it is not replaced: move it aside if those batches are no longer wanted")]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{path} is a symlink or not a plain file; it is neither read nor written through")]
    NotPlain { path: PathBuf },
}

/// Every batch in flight.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub batches: Vec<Entry>,
}

/// One submitted (or being submitted) batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub input_file_id: String,
    /// None until `POST /batches` answered.
    pub batch_id: Option<String>,
    /// The status last seen.
    pub status: String,
    pub created_at: String,
    /// The sum of its requests' worst cases at batch prices: what the budget
    /// holds for it until its results settle it.
    pub worst_case_usd: f64,
    /// `[key, request_sha256]` of each request it holds (its custom_ids).
    pub requests: Vec<(String, String)>,
}

/// The state at `path`; an absent file is no batch in flight.
pub fn load(path: &Path) -> Result<State, StateError> {
    let io = |error| StateError::Io {
        path: path.to_path_buf(),
        error,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(StateError::NotPlain {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(io(e)),
    }
    let text = std::fs::read(path).map_err(io)?;
    serde_json::from_slice(&text).map_err(|error| StateError::Parse {
        path: path.to_path_buf(),
        error,
    })
}

/// The status of a settled batch whose lines were handed to the output: it
/// stays listed until the run's lines are known to be in the file (then
/// [`prune`] removes it), so a crash before that re-reads its results
/// instead of losing them.
pub const RECORDED: &str = "recorded";

/// Drops the batches whose lines are in the output (run once the output is written).
pub fn prune(path: &Path) -> Result<(), StateError> {
    let mut state = load(path)?;
    let before = state.batches.len();
    state.batches.retain(|e| e.status != RECORDED);
    if state.batches.len() == before {
        return Ok(());
    }
    save(path, &state)
}

/// Writes `state` atomically; with no batch left, removes the file.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let io = |error| StateError::Io {
        path: path.to_path_buf(),
        error,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() && !meta.file_type().is_symlink() {
            return Err(StateError::NotPlain {
                path: path.to_path_buf(),
            });
        }
    }
    if state.batches.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        };
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover of a killed run (or a planted symlink) goes: the link itself, not its target.
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    let text = serde_json::to_vec_pretty(state).map_err(|e| io(e.into()))?;
    file.write_all(&text).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_reads_back_and_an_empty_one_removes_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = path(&dir.path().join("out.jsonl"));
        assert_eq!(load(&path).expect("absent"), State::default());
        let state = State {
            batches: vec![Entry {
                input_file_id: "file-1".into(),
                batch_id: None,
                status: "uploaded".into(),
                created_at: "2026-11-26T00:00:00Z".into(),
                worst_case_usd: 0.5,
                requests: vec![("a/default".into(), "ab".into())],
            }],
        };
        save(&path, &state).expect("saved");
        assert_eq!(load(&path).expect("read"), state);
        save(&path, &State::default()).expect("emptied");
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_replaced_never_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").expect("target");
        let path = path(&dir.path().join("out.jsonl"));
        std::os::unix::fs::symlink(&target, &path).expect("link");
        assert!(matches!(load(&path), Err(StateError::NotPlain { .. })));
        save(&path, &State { batches: vec![] }).expect("the link goes");
        assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep");
    }
}
