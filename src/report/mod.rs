//! Summaries and reports: statistics over records; the run's summary as
//! JSON or a table, and `report`'s usage report over output files (`usage`).
//!
//! Never calls HTTP: a report is a pure function of records.

mod command;
pub mod summary;
pub mod table;
pub mod usage;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use command::command;
pub use summary::{
    KeptFigures, LineFigures, ReadBack, RequestCounts, RunFacts, Summary, Tally, ThisRun,
};

use crate::keys::{estimate_lines, Gather, Keep, KeyId, KeyTable};
use crate::sink::{BadLine, Beside, Lines, Torn};

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
    #[error("no outputs to report on: no *.jsonl among the files and folders named (see the notes above)")]
    NoOutputs,
    #[error("--pricing {}: {}", path.display(), render_problems(problems))]
    Pricing {
        path: PathBuf,
        problems: Vec<crate::job::Problem>,
    },
    #[error("cannot write the report to {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the report to standard output: {0}")]
    Print(std::io::Error),
}

/// The problems of a prices file, one a line.
fn render_problems(problems: &[crate::job::Problem]) -> String {
    let mut out = match problems.len() {
        1 => "the prices have a problem:".to_string(),
        n => format!("the prices have {n} problems:"),
    };
    for p in problems {
        out.push_str(&format!("\n  {p}"));
    }
    out
}

impl From<BadLine> for ReportError {
    fn from(bad: BadLine) -> ReportError {
        ReportError::Record {
            path: bad.path,
            line: bad.line,
            reason: bad.reason,
        }
    }
}

/// Checks, before anything is sent, that a summary can be written to `path`
/// at the end, leaving nothing behind: the path is not a folder, and a file
/// can be created in its folder or, when that folder does not exist yet, in
/// the nearest one that does (where the missing ones will be made).
pub fn check_summary_path(path: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    if written_into(path)? {
        return Ok(());
    }
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(ErrorKind::IsADirectory, "it is a folder"));
    }
    let mut dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    while let Some(d) = dir {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{} is not a folder", d.display()),
                ))
            }
            Err(_) => dir = d.parent().filter(|d| !d.as_os_str().is_empty()),
        }
    }
    let probe = dir.unwrap_or(Path::new(".")).join("summary");
    // Dropped at once: tempfile deletes it.
    crate::sink::temp_beside(&probe).map(drop)
}

/// The fields of a [`LineFigures`], as they are named in a line.
pub(crate) const FIGURE_FIELDS: &[&[u8]] = &[
    b"\"key\"",
    b"\"status\"",
    b"\"model\"",
    b"\"param_set\"",
    b"\"finish_reason\"",
    b"\"usage\"",
    b"\"cost_usd\"",
    b"\"latency_ms\"",
    b"\"ttft_ms\"",
    b"\"attempts\"",
    b"\"uncertain_attempts\"",
    b"\"error\"",
    b"\"cached\"",
    b"\"endpoint\"",
];

/// The figures of one output line, or None when it does not parse. Only
/// the fields the tally reads are parsed (the reply's text, the row and the
/// parameters are most of a line); the whole line when the fast path does
/// not vouch for it. `slim`: a buffer kept across lines.
pub(crate) fn line_figures(line: &crate::sink::Line, slim: &mut Vec<u8>) -> Option<LineFigures> {
    match crate::sink::head::slim(line.text, FIGURE_FIELDS, slim) {
        Some(()) => serde_json::from_slice::<LineFigures>(slim).ok(),
        None => line.parse::<LineFigures>().ok(),
    }
}

/// Folds into `tally` the lines of the output at `path` whose key `keep`
/// accepts, the latest of each key only. `dedupe`: the file may hold more
/// than one line per key (it was not compacted), so a first pass finds each
/// key's last line. Lines that do not parse are skipped: the resume scan
/// has already judged the file, and a torn line is read like any other
/// (this run wrote only whole lines after the scan cut one off).
pub fn fold_output(
    path: &Path,
    tally: &mut Tally,
    mut keep: impl FnMut(KeyId) -> bool,
    dedupe: bool,
) -> std::io::Result<()> {
    // Each kept key's last line: one 24-byte entry a line, sorted in place
    // (a hash map of a million keys took twice that, and more as it grew).
    let mut last: Option<KeyTable<u64>> = None;
    if dedupe {
        let mut gathered = Gather::default();
        gathered.expect(estimate_lines(path));
        if let Some(mut lines) = Lines::open(path, Torn::Yield)? {
            while let Some(line) = lines.next_line()? {
                let head = match crate::sink::head::read(line.text) {
                    Some(head) => head,
                    None => match line.parse::<crate::sink::RecordHead>() {
                        Ok(head) => head,
                        Err(_) => continue,
                    },
                };
                let id = KeyId::of(&head.key);
                if keep(id) {
                    gathered.push((id, line.number));
                }
            }
        }
        let (table, _) = KeyTable::build(gathered, Keep::Last, Some(|a: &u64, b: &u64| a.cmp(b)));
        last = Some(table);
    }
    let Some(mut lines) = Lines::open(path, Torn::Yield)? else {
        return Ok(());
    };
    let mut latest = |id: KeyId, number: u64| match &last {
        Some(table) => table.get(&id) == Some(&number),
        None => keep(id),
    };
    // The figures are taken in the walk that finds the key, as the resume
    // scan takes them; a line the fast path does not vouch for is serde's.
    let mut back = ReadBack::with(std::mem::take(tally));
    let mut slim = Vec::new();
    while let Some(line) = lines.next_line()? {
        match crate::sink::head::read_each(line.text, |name, raw| back.field(name, raw)) {
            Some(head) if latest(KeyId::of(&head.key), line.number) => back.line(&line, true),
            Some(_) => back.skip(),
            None => {
                back.skip();
                if let Some(figures) = line_figures(&line, &mut slim) {
                    if latest(KeyId::of(&figures.key), line.number) {
                        back.observe(&figures);
                    }
                }
            }
        }
    }
    *tally = back.finish();
    Ok(())
}

/// The summary file's text, pretty JSON ending in a newline: what `run
/// --json` prints too.
pub fn summary_json(summary: &Summary) -> std::io::Result<String> {
    let mut text = serde_json::to_string_pretty(summary)?;
    text.push('\n');
    Ok(text)
}

/// Writes `summary` as pretty JSON to `path`: atomically (temp file + rename)
/// when it is a plain file or none yet; straight into a device or a pipe
/// (`--summary /dev/null`, `--summary >(jq .)`), which a rename would replace.
pub fn write_summary(path: &Path, summary: &Summary) -> std::io::Result<()> {
    let text = summary_json(summary)?.into_bytes();
    if written_into(path)? {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(&text);
    }
    crate::sink::write_atomically(path, &text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_an_uncompacted_output_takes_the_latest_line_of_each_kept_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let lines = [
            r#"{"key":"a","status":"error","attempts":3,"error":{"kind":"server"}}"#,
            r#"{"key":"b","status":"ok","attempts":1,"cost_usd":0.5,"latency_ms":10.0}"#,
            r#"{"key":"gone","status":"ok","attempts":1,"cost_usd":9.0}"#,
            r#"{"key":"a","status":"ok","attempts":2,"cost_usd":0.25,"latency_ms":20.0}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let gone = KeyId::of("gone");
        let mut tally = Tally::default();
        fold_output(&path, &mut tally, |id| id != gone, true).expect("fold");
        assert_eq!((tally.ok, tally.failed), (2, 0));
        assert_eq!(tally.cost(), 0.75);
        // Without dedupe every kept line counts: only right for a compacted file.
        let mut tally = Tally::default();
        fold_output(&path, &mut tally, |id| id != gone, false).expect("fold");
        assert_eq!((tally.ok, tally.failed), (2, 1));
    }

    /// Regression: a hand-edited line whose usage is not one (a negative
    /// count, a field twice) was dropped from the summary while the resume
    /// scan took it as done: 10 requests ok, the figures of 9.
    #[test]
    fn a_line_with_a_usage_that_is_not_one_still_counts_its_tokens_unreported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let lines = [
            r#"{"key":"a","status":"ok","attempts":1,"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            r#"{"key":"b","status":"ok","attempts":2,"usage":{"prompt_tokens":-1,"completion_tokens":2,"total_tokens":1}}"#,
            r#"{"key":"c","status":"ok","attempts":1,"usage":{"prompt_tokens":1,"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        for dedupe in [false, true] {
            let mut tally = Tally::default();
            fold_output(&path, &mut tally, |_| true, dedupe).expect("fold");
            assert_eq!(tally.ok, 3, "dedupe {dedupe}");
            assert_eq!(tally.completion_tokens(), 2, "dedupe {dedupe}");
        }
    }
}
