//! The summary's read-back of the output's lines, begun beside the check pass.
//!
//! A rerun whose requests are all done still owes a summary of the job,
//! read back from every line of the output: a second read of a file that
//! can run to a gigabyte. When the output holds one line per key (it was
//! compacted), that read is started on a thread of its own as soon as the
//! resume scan ends, side by side with the check pass; it is used only if
//! the check pass then finds nothing to send and no key the job lacks (then
//! every line is one the summary reads back), and dropped otherwise.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::report::{line_figures, Tally};
use crate::sink::lines::{Lines, Torn};
use crate::sink::ResumeState;

pub(super) struct Prefold {
    cancel: Arc<AtomicBool>,
    /// Taken by [`Prefold::finish`].
    thread: Option<JoinHandle<Option<Tally>>>,
}

impl Prefold {
    /// Starts the read of `path` when its lines are one per key.
    pub fn start(path: &Path, resume: &ResumeState) -> Option<Prefold> {
        if resume.lines == 0 || resume.lines != resume.keys {
            return None;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (path, stop, lines) = (path.to_path_buf(), cancel.clone(), resume.lines);
        let thread = std::thread::Builder::new()
            .name("read-back".into())
            .spawn(move || fold(&path, &stop, lines))
            .ok()?;
        Some(Prefold {
            cancel,
            thread: Some(thread),
        })
    }

    /// The tally of every line, once read.
    pub fn finish(mut self) -> Option<Tally> {
        self.thread.take()?.join().ok().flatten()
    }
}

impl Drop for Prefold {
    /// Not needed after all: the thread stops at its next line.
    fn drop(&mut self) {
        self.cancel.store(true, Relaxed);
    }
}

/// Folds the first `lines` lines of `path` (those the resume scan read, a
/// torn last one left out) as `report::fold_output` does: a line that does
/// not parse is skipped.
fn fold(path: &Path, stop: &AtomicBool, lines: u64) -> Option<Tally> {
    let mut tally = Tally::default();
    let mut reader = Lines::open(path, Torn::HoldBack).ok()??;
    let (mut slim, mut read) = (Vec::new(), 0u64);
    while let Some(line) = reader.next_line().ok()? {
        if stop.load(Relaxed) {
            return None;
        }
        read += 1;
        if read > lines {
            break;
        }
        if let Some(figures) = line_figures(&line, &mut slim) {
            tally.observe_line(&figures);
        }
    }
    Some(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::resume::tests::record;

    #[test]
    fn the_early_read_back_tallies_what_the_read_back_at_the_end_does() {
        let extra = |i: usize| {
            format!(
                r#","model":"m{}","finish_reason":"stop","usage":{{"prompt_tokens":{i},"completion_tokens":3,"total_tokens":{}}},"cost_usd":0.{i},"latency_ms":{i}.5,"error":null"#,
                i % 3,
                i + 3
            )
        };
        let mut text: String = (1..=50)
            .map(|i| record(&format!("r{i}/default"), "ok", "a1", &extra(i)) + "\n")
            .collect();
        text.push_str(&record(
            "e/default",
            "error",
            "b2",
            r#","error":{"kind":"server","status":500,"message":"x"}"#,
        ));
        text.push('\n');
        // A torn last line: left out by both.
        text.push_str("{\"key\":\"t/def");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, &text).expect("write");

        let early = fold(&path, &AtomicBool::new(false), 51).expect("read");
        let mut late = Tally::default();
        crate::report::fold_output(&path, &mut late, |_| true, false).expect("read");
        assert_eq!(format!("{early:?}"), format!("{late:?}"));
        assert_eq!(early.ok, 50);
        assert_eq!(early.failed, 1);
        // Stopped, it says nothing.
        assert!(fold(&path, &AtomicBool::new(true), 51).is_none());
    }
}
