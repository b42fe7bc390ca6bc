//! The resume scan: what an existing output already holds, before a run appends to it.
//!
//! A crash mid-write can leave an unterminated or unparseable last line; the
//! scan cuts it off so the next append starts on a clean line. Anything
//! unparseable elsewhere was edited by hand and stops the run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::record::{RecordHead, Status};
use super::{io_error, SinkError};
use crate::keys::{sha_prefix, KeyId, KeyMap};

/// The latest line of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub ok: bool,
    /// The first 128 bits of its `request_sha256` (None when the line has none).
    pub sha: Option<u128>,
}

#[derive(Debug, Default)]
pub struct ResumeState {
    /// Latest line per key, for every key in the file (the job's or not).
    pub latest: KeyMap<Latest>,
    /// What every line of the file counts against a budget: its
    /// `budget_charge_usd` when a budget was set, else its cost.
    pub recorded_cost_usd: f64,
    pub lines: u64,
    /// Bytes cut off a damaged last line, with its line number.
    pub cut: Option<(u64, u64)>,
}

impl ResumeState {
    /// How `key`'s latest line ended, if it was made from the same request
    /// (a line of an edited request says nothing about the request as it is now).
    pub fn prior(&self, key: &str, sha256: &str) -> Option<bool> {
        self.latest
            .get(&KeyId::of(key))
            .filter(|l| l.sha.is_some() && l.sha == sha_prefix(sha256))
            .map(|l| l.ok)
    }

    /// True when `key`'s latest line is ok and was made from the same request.
    pub fn is_done(&self, key: &str, sha256: &str) -> bool {
        self.prior(key, sha256) == Some(true)
    }
}

/// Scans `path` (missing = empty). With `repair`, a damaged last line is cut
/// off; without (`validate`), it is only reported in `cut`.
pub fn scan(path: &Path, repair: bool) -> Result<ResumeState, SinkError> {
    let mut state = ResumeState::default();
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(SinkError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(state),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut buf = Vec::new();
    let mut good_end: u64 = 0;
    let mut line_no: u64 = 0;
    // A bad line is only an error once a later line proves it was not the last.
    let mut pending_bad: Option<(u64, String)> = None;
    // Whether the pending bad line starts like one of our records.
    let mut pending_ours = false;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some((line, reason)) = pending_bad.take() {
            return Err(not_a_record(path, line, state.lines, reason));
        }
        let terminated = buf.last() == Some(&b'\n');
        let text = trim_newline(&buf);
        if text.iter().all(u8::is_ascii_whitespace) && terminated {
            good_end += n as u64;
            continue;
        }
        match serde_json::from_slice::<RecordHead>(text) {
            Ok(head) if terminated => {
                good_end += n as u64;
                state.lines += 1;
                state.recorded_cost_usd += head.budget_charge_usd.or(head.cost_usd).unwrap_or(0.0);
                state.latest.insert(
                    KeyId::of(&head.key),
                    Latest {
                        ok: head.status == Status::Ok,
                        sha: sha_prefix(&head.request_sha256),
                    },
                );
            }
            Ok(_) => pending_bad = Some((line_no, "the line is not terminated".into())),
            Err(e) => pending_bad = Some((line_no, e.to_string())),
        }
        pending_ours = text.starts_with(RECORD_START);
    }
    if let Some((line, reason)) = pending_bad {
        // Never cut the only line of a file that may not be ours: a one-line
        // data file without a final newline looks just like a half-written record.
        if state.lines == 0 && !pending_ours {
            return Err(not_a_record(path, line, 0, reason));
        }
        let len = std::fs::metadata(path).map_err(io_error(path))?.len();
        if repair {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_error(path))?;
            file.set_len(good_end).map_err(io_error(path))?;
        }
        state.cut = Some((line, len - good_end));
    }
    Ok(state)
}

/// How every record line starts (`key` is the record's first field).
const RECORD_START: &[u8] = b"{\"key\":";

/// A bad line before any good one: most likely not an output at all (a data
/// file the default output name landed on), and --fresh would move it aside.
fn not_a_record(path: &Path, line: u64, good_lines: u64, reason: String) -> SinkError {
    if good_lines == 0 {
        SinkError::NotAnOutput {
            path: path.to_path_buf(),
            reason,
        }
    } else {
        SinkError::Corrupt {
            path: path.to_path_buf(),
            line,
            reason,
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"key":"a/default","status":"ok","request_sha256":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","cost_usd":0.5}"#;
    const ERR: &str = r#"{"key":"b/default","status":"error","request_sha256":"b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2","cost_usd":null}"#;
    const OK_B: &str = r#"{"key":"b/default","status":"ok","request_sha256":"b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2","cost_usd":0.25}"#;

    fn write(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = scan(&dir.path().join("none.jsonl"), true).expect("scan");
        assert!(state.latest.is_empty());
    }

    #[test]
    fn latest_line_per_key_wins_and_cost_sums_every_line() {
        let (_d, path) = write(&format!("{OK}\n{ERR}\n{OK_B}\n"));
        let state = scan(&path, true).expect("scan");
        assert!(state.is_done("a/default", &"a1".repeat(32)));
        assert!(!state.is_done("a/default", &"c3".repeat(32)));
        assert!(state.is_done("b/default", &"b2".repeat(32)));
        assert_eq!(state.lines, 3);
        assert!((state.recorded_cost_usd - 0.75).abs() < 1e-12);
        assert_eq!(state.cut, None);
    }

    #[test]
    fn an_unterminated_last_line_is_cut_off() {
        let (_d, path) = write(&format!("{OK}\n{ERR}\n{{\"key\":\"c/def"));
        let state = scan(&path, true).expect("scan");
        assert_eq!(state.lines, 2);
        assert_eq!(state.cut.map(|c| c.0), Some(3));
        let left = std::fs::read_to_string(&path).expect("read");
        assert_eq!(left, format!("{OK}\n{ERR}\n"));
    }

    #[test]
    fn a_complete_but_unterminated_last_line_is_cut_too() {
        let (_d, path) = write(&format!("{OK}\n{OK_B}"));
        let state = scan(&path, true).expect("scan");
        assert_eq!(state.lines, 1);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{OK}\n")
        );
    }

    #[test]
    fn a_one_line_data_file_without_a_newline_is_never_cut() {
        let (_d, path) = write("{\"question\": \"why?\"}");
        let err = scan(&path, true).unwrap_err();
        assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"question\": \"why?\"}"
        );
        // A first record cut short by a crash is ours: it is cut.
        let (_d, path) = write("{\"key\":\"a/def");
        let state = scan(&path, true).expect("scan");
        assert_eq!(state.cut.map(|c| c.0), Some(1));
    }

    #[test]
    fn a_file_that_is_not_an_output_is_named_as_such() {
        let (_d, path) = write("{\"question\": \"why?\"}\n{\"question\": \"how?\"}\n");
        let err = scan(&path, true).unwrap_err();
        assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
        assert!(err.to_string().contains("choose another --output"), "{err}");
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_naming_it() {
        let (_d, path) = write(&format!("{OK}\nnot json\n{OK_B}\n"));
        let err = scan(&path, true).unwrap_err();
        assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
        // Nothing was cut: the user has to look at the file.
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .contains("not json"));
    }
}
