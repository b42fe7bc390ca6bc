//! The resume scan: what an existing output already holds, before a run appends to it.
//!
//! The scan only reads; the run repairs what it found once it holds the lock.
//! A crash mid-write can leave only an unterminated last line, which is cut
//! off. Anything else that does not read as a record (an unparseable line
//! anywhere, a negative cost) was edited by hand and stops the run: cutting
//! it would lose a line, counting it would give the budget room it lacks.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use super::head;
use super::lines::{starts_like_a_record, Lines, Torn};
use super::paths::FileStamp;
use super::record::{RecordCheck, RecordHead, Status};
use super::{io_error, SinkError};
use crate::keys::{estimate_lines, sha_prefix, Gather, Keep, KeyTable, ShortId};

/// The latest line of one key in one word: whether it is `ok`, and the
/// first 62 bits of its `request_sha256` ([`sha_prefix`]) when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest(u64);

impl Latest {
    pub fn new(ok: bool, sha: Option<u64>) -> Latest {
        Latest(sha.map_or(0, |sha| (sha << 2) | 2) | u64::from(ok))
    }

    pub fn ok(self) -> bool {
        self.0 & 1 == 1
    }

    pub fn sha(self) -> Option<u64> {
        (self.0 & 2 == 2).then_some(self.0 >> 2)
    }

    /// How the line ended, if it was made from the request whose hash is
    /// `sha256` (a line of an edited request says nothing about the request as it is now).
    pub fn prior(self, sha256: &str) -> Option<bool> {
        let sha = self.sha()?;
        (Some(sha) == sha_prefix(sha256)).then_some(self.ok())
    }
}

/// The completion tokens of a model's `ok` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Completions {
    /// `ok` lines that reported their completion tokens.
    pub lines: u64,
    pub tokens: u64,
}

impl Completions {
    /// Completion tokens per line (None without a line).
    pub fn mean(&self) -> Option<f64> {
        (self.lines > 0).then(|| self.tokens as f64 / self.lines as f64)
    }
}

/// Above this a token count is bad usage, not a count (DESIGN: Output record).
const MAX_TOKENS: u64 = 1 << 53;

#[derive(Debug, Default)]
pub struct ResumeState {
    /// Latest line per key, for every key in the file (the job's or not).
    /// The check pass reads it, then lets it go ([`Self::release_keys`]).
    pub latest: KeyTable<Latest, ShortId>,
    /// How many keys the file has lines for (`latest`'s size, kept once it is let go).
    pub keys: u64,
    /// What every line of the file counts against a budget: its
    /// `budget_charge_usd` when a budget was set, else its cost, plus the
    /// charges compaction folded into it (`prior_charge_usd`).
    pub recorded_cost_usd: f64,
    /// Per requested model, the completions of every `ok` line (superseded
    /// ones too: each is a real reply): what `validate` expects a request to use.
    pub completions: BTreeMap<String, Completions>,
    pub lines: u64,
    /// An unterminated last line to cut off: its line number and bytes.
    pub cut: Option<(u64, u64)>,
    /// Where the good lines end (where the line to cut off starts).
    good_end: u64,
    /// The file as it was scanned (None: there was none).
    stamp: Option<FileStamp>,
}

impl ResumeState {
    /// How `key`'s latest line ended, if it was made from the same request
    /// (a line of an edited request says nothing about the request as it is now).
    pub fn prior(&self, key: &str, sha256: &str) -> Option<bool> {
        self.latest.get(&ShortId::of(key))?.prior(sha256)
    }

    /// Frees the per-key table once the check pass has read what it needs
    /// from it (the count stays in [`Self::keys`]).
    pub fn release_keys(&mut self) {
        self.latest = KeyTable::default();
    }

    /// True when `key`'s latest line is ok and was made from the same request.
    pub fn is_done(&self, key: &str, sha256: &str) -> bool {
        self.prior(key, sha256) == Some(true)
    }

    /// Whether `path` is still the file this scan read, as it was (another
    /// run may have written it before this one took the lock).
    pub fn unchanged(&self, path: &Path) -> bool {
        FileStamp::now(path) == self.stamp
    }

    /// Cuts off the unterminated last line the scan found, so the next
    /// append starts on a clean line. Only with the lock held.
    pub fn repair(&self, path: &Path) -> Result<(), SinkError> {
        if self.cut.is_none() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        file.set_len(self.good_end).map_err(io_error(path))
    }
}

/// Refuses `path` as an output unless it is missing, empty, or a plain file
/// whose first line is one of this tool's records: a data file is never
/// appended to, compacted or moved aside.
pub fn check_is_output(path: &Path) -> Result<(), SinkError> {
    let Some(file) = open(path)? else {
        return Ok(());
    };
    let mut lines = Lines::new(file, path, Torn::Yield);
    match lines.next_line().map_err(io_error(path))? {
        None => Ok(()),
        Some(first) if first.long => Err(not_a_record_start(path)),
        Some(first) if first.torn => unterminated_first_line(path, first.text),
        Some(first) => first_line_is_a_record(path, first.text),
    }
}

/// Scans `path` (missing = empty), reading only: see [`ResumeState::repair`].
pub fn scan(path: &Path) -> Result<ResumeState, SinkError> {
    let mut state = ResumeState::default();
    let Some(file) = open(path)? else {
        return Ok(state);
    };
    state.stamp = Some(FileStamp::of(&file.metadata().map_err(io_error(path))?));
    // A torn last line is held back, to be cut once the lock is held.
    let mut lines = Lines::new(file, path, Torn::HoldBack);
    let mut latest = Gather::default();
    latest.expect(estimate_lines(path));
    while let Some(line) = lines.next_line().map_err(io_error(path))? {
        if line.long && state.lines == 0 {
            return Err(not_a_record_start(path));
        }
        if line.long {
            return Err(line
                .bad("a long line that does not start like a record".into())
                .into());
        }
        if state.lines == 0 {
            first_line_is_a_record(path, line.text)?;
        }
        // The fast path when it vouches for the line, else the full parse decides.
        let mut head: RecordHead = match head::read(line.text) {
            Some(head) => head,
            None => line.parse()?,
        };
        if let Some(reason) = head.bad_figure() {
            return Err(line.bad(reason).into());
        }
        state.lines += 1;
        state.recorded_cost_usd =
            crate::scheduler::pricing::add_usd(state.recorded_cost_usd, head.total_charge());
        let tokens = head.completion_tokens().filter(|t| *t <= MAX_TOKENS);
        if let (Some(tokens), Some(model)) = (tokens, head.model.take()) {
            let seen = match state.completions.get_mut(model.as_ref()) {
                Some(seen) => seen,
                None => state.completions.entry(model.into_owned()).or_default(),
            };
            seen.lines += 1;
            seen.tokens = seen.tokens.saturating_add(tokens);
        }
        let ok = head.status == Status::Ok;
        latest.push((
            ShortId::of(&head.key),
            Latest::new(ok, sha_prefix(&head.request_sha256)),
        ));
    }
    // Sorted in place (a stable sort would borrow half the table's size):
    // a key with more than one line keeps any of them here, and its latest
    // is looked up again below.
    let (table, dropped) = KeyTable::build(latest, Keep::Last, Some(|_, _| Ordering::Equal));
    state.latest = table;
    state.keys = state.latest.len() as u64;
    if !dropped.is_empty() {
        latest_of_repeated(path, &mut state.latest, dropped)?;
    }
    if let Some(torn) = lines.torn() {
        if state.lines == 0 && torn.long {
            return Err(not_a_record_start(path));
        }
        if state.lines == 0 && !torn.is_blank() {
            unterminated_first_line(path, torn.text)?;
        }
        state.cut = Some((torn.number, torn.len));
        state.good_end = torn.offset;
    }
    Ok(state)
}

/// Sets the entry of every key in `repeated` to the key's last line, read
/// again from the file: only a file that holds a key more than once (one
/// not compacted) pays this second read. The scan read the same lines
/// just before, so none fails to parse now but a torn last one, left out.
fn latest_of_repeated(
    path: &Path,
    table: &mut KeyTable<Latest, ShortId>,
    repeated: Vec<(ShortId, Latest)>,
) -> Result<(), SinkError> {
    let mut ids: Vec<ShortId> = repeated.into_iter().map(|(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    let Some(file) = open(path)? else {
        return Ok(());
    };
    let mut lines = Lines::new(file, path, Torn::HoldBack);
    while let Some(line) = lines.next_line().map_err(io_error(path))? {
        let head = match head::read(line.text) {
            Some(head) => head,
            None => match line.parse::<RecordHead>() {
                Ok(head) => head,
                Err(_) => continue,
            },
        };
        let id = ShortId::of(&head.key);
        if ids.binary_search(&id).is_err() {
            continue;
        }
        if let Some(entry) = table.get_mut(&id) {
            *entry = Latest::new(head.status == Status::Ok, sha_prefix(&head.request_sha256));
        }
    }
    Ok(())
}

fn not_a_record_start(path: &Path) -> SinkError {
    SinkError::NotAnOutput {
        path: path.to_path_buf(),
        reason: "it does not start like one, and runs past 64 KiB without a newline".into(),
    }
}

/// The file for reading; None when there is none. Only plain files are outputs.
fn open(path: &Path) -> Result<Option<File>, SinkError> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(SinkError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// The first line must carry every field a record has, with its type: a data
/// file whose rows happen to have `key` and `status` is not an output.
fn first_line_is_a_record(path: &Path, text: &[u8]) -> Result<(), SinkError> {
    serde_json::from_slice::<RecordCheck>(text)
        .map(drop)
        .map_err(|e| SinkError::NotAnOutput {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// A file whose only line is unterminated is ours only if it is a record
/// that lacks its newline, or the start of one cut short: a one-line data
/// file without a final newline (`{"key": ...}` included) looks just like a
/// half-written record otherwise, and must never be cut.
fn unterminated_first_line(path: &Path, text: &[u8]) -> Result<(), SinkError> {
    // Whole JSON is a whole line: it must be a record like any first line.
    if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() {
        return first_line_is_a_record(path, text);
    }
    if starts_like_a_record(text) {
        return Ok(());
    }
    Err(SinkError::NotAnOutput {
        path: path.to_path_buf(),
        reason: "its only line is not terminated and does not start like a record".into(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record line as a run writes it, with `extra` fields at its end.
    pub(crate) fn record(key: &str, status: &str, sha: &str, extra: &str) -> String {
        let (id, set) = key.split_once('/').unwrap_or((key, "default"));
        format!(
            r#"{{"key":"{key}","job":"t","id":"{id}","param_set":"{set}","status":"{status}","attempts":1,"uncertain_attempts":0,"client_request_id":"t:{id}:{set}:1","request_sha256":"{}","params":{{}},"input":{{}}{extra}}}"#,
            sha.repeat(32)
        )
    }

    fn ok() -> String {
        record("a/default", "ok", "a1", r#","cost_usd":0.5"#)
    }
    fn err_b() -> String {
        record("b/default", "error", "b2", r#","cost_usd":null"#)
    }
    fn ok_b() -> String {
        record("b/default", "ok", "b2", r#","cost_usd":0.25"#)
    }

    fn write(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    /// Scans and repairs, as a run does once it holds the lock.
    fn scan_repair(path: &Path) -> Result<ResumeState, SinkError> {
        let state = scan(path)?;
        assert!(state.unchanged(path));
        state.repair(path)?;
        Ok(state)
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = scan(&dir.path().join("none.jsonl")).expect("scan");
        assert!(state.latest.is_empty());
        assert!(state.unchanged(&dir.path().join("none.jsonl")));
    }

    #[test]
    fn completions_of_ok_lines_are_summed_per_model_and_odd_usage_is_skipped_not_refused() {
        let usage = |model: &str, tokens: &str| {
            format!(
                r#","model":"{model}","usage":{{"prompt_tokens":3,"completion_tokens":{tokens},"total_tokens":9}}"#
            )
        };
        let lines = [
            record("a/default", "ok", "a1", &usage("m", "10")),
            // Superseded by the next line, and still a real reply of "m".
            record("b/default", "ok", "b2", &usage("m", "20")),
            record("b/default", "ok", "b2", &usage("m", "33")),
            record("c/default", "error", "c3", &usage("m", "1000")),
            record("d/default", "ok", "d4", &usage("other", "7")),
            record("e/default", "ok", "e5", &usage("m", "-4")),
            record("f/default", "ok", "f6", &usage("m", "\"12\"")),
            record("g/default", "ok", "g7", r#","model":"m","usage":null"#),
            record("h/default", "ok", "h8", r#","model":"m","usage":"garbage""#),
            record("i/default", "ok", "i9", &usage("m", "9007199254740993")),
        ];
        let (_d, path) = write(&format!("{}\n", lines.join("\n")));
        let state = scan(&path).expect("odd usage is no reason to refuse an output");
        assert_eq!(state.lines, 10);
        assert_eq!(
            state.completions.get("m"),
            Some(&Completions {
                lines: 3,
                tokens: 63
            })
        );
        assert_eq!(state.completions["m"].mean(), Some(21.0));
        assert_eq!(state.completions["other"].tokens, 7);
        assert_eq!(Completions::default().mean(), None);
    }

    #[test]
    fn latest_line_per_key_wins_and_cost_sums_every_line() {
        let (_d, path) = write(&format!("{}\n{}\n{}\n", ok(), err_b(), ok_b()));
        let state = scan_repair(&path).expect("scan");
        assert!(state.is_done("a/default", &"a1".repeat(32)));
        assert!(!state.is_done("a/default", &"c3".repeat(32)));
        assert!(state.is_done("b/default", &"b2".repeat(32)));
        assert_eq!(state.lines, 3);
        assert!((state.recorded_cost_usd - 0.75).abs() < 1e-12);
        assert_eq!(state.cut, None);
    }

    #[test]
    fn the_last_of_many_lines_of_a_key_wins_wherever_the_sort_put_them() {
        let mut lines = String::new();
        for round in 0..3 {
            for i in 0..300 {
                let key = format!("k{i}/default");
                // Even keys end ok, odd ones end in error, the other way round before.
                let last = round == 2;
                let ok = (i % 2 == 0) == last;
                let status = if ok { "ok" } else { "error" };
                lines.push_str(&record(&key, status, "c4", ""));
                lines.push('\n');
            }
        }
        let (_d, path) = write(&lines);
        let state = scan(&path).expect("scan");
        assert_eq!((state.lines, state.keys), (900, 300));
        for i in 0..300 {
            let done = state.is_done(&format!("k{i}/default"), &"c4".repeat(32));
            assert_eq!(done, i % 2 == 0, "k{i}");
        }
    }

    #[test]
    fn folded_charges_count_with_the_line_that_carries_them() {
        let line = record(
            "a/default",
            "error",
            "a1",
            r#","cost_usd":null,"budget_charge_usd":0.25,"prior_charge_usd":0.5"#,
        );
        let (_d, path) = write(&format!("{line}\n{}\n", ok_b()));
        let state = scan(&path).expect("scan");
        assert!((state.recorded_cost_usd - 1.0).abs() < 1e-12);
    }

    #[test]
    fn an_unterminated_last_line_is_cut_off_once_repaired() {
        let (_d, path) = write(&format!("{}\n{}\n{{\"key\":\"c/def", ok(), err_b()));
        let state = scan(&path).expect("scan");
        assert_eq!(state.lines, 2);
        assert_eq!(state.cut.map(|c| c.0), Some(3));
        // Scanning only reads.
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .ends_with("c/def"));
        state.repair(&path).expect("repair");
        let left = std::fs::read_to_string(&path).expect("read");
        assert_eq!(left, format!("{}\n{}\n", ok(), err_b()));
    }

    #[test]
    fn a_complete_but_unterminated_last_line_is_cut_too() {
        let (_d, path) = write(&format!("{}\n{}", ok(), ok_b()));
        let state = scan_repair(&path).expect("scan");
        assert_eq!(state.lines, 1);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n", ok())
        );
    }

    #[test]
    fn a_one_line_data_file_without_a_newline_is_never_cut() {
        let (_d, path) = write("{\"question\": \"why?\"}");
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
        assert!(check_is_output(&path).is_err());
        // Not even one whose first field is `key`.
        for data in [
            "{\"key\":\"mine\",\"value\":1}",
            "{\"key\": \"mine\", \"value\": 1",
            "{\"key\":\"mine\",\"value\":1",
        ] {
            let (_d, path) = write(data);
            let err = scan(&path).unwrap_err();
            assert!(
                matches!(err, SinkError::NotAnOutput { .. }),
                "{data}: {err}"
            );
            assert!(check_is_output(&path).is_err(), "{data}");
            assert_eq!(std::fs::read_to_string(&path).expect("read"), data);
        }
        // A first record cut short by a crash is ours: it is cut, wherever it was cut.
        let line = ok();
        for end in [1, 5, 9, 15, 20, 60, line.len() - 1, line.len()] {
            let (_d, path) = write(&line[..end]);
            let state = scan_repair(&path).expect(&line[..end]);
            assert_eq!(state.cut.map(|c| c.0), Some(1), "{}", &line[..end]);
            assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        }
    }

    #[test]
    fn a_file_that_is_not_an_output_is_named_as_such() {
        let (_d, path) = write("{\"question\": \"why?\"}\n{\"question\": \"how?\"}\n");
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
        assert!(err.to_string().contains("choose another --output"), "{err}");
    }

    #[test]
    fn lines_with_only_key_and_status_are_not_records() {
        let data = "{\"key\":\"x\",\"status\":\"ok\",\"note\":\"mine\"}\n{\"key\":\"x\",\"status\":\"ok\",\"note\":\"also mine\"}\n";
        let (_d, path) = write(data);
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
        let err = check_is_output(&path).unwrap_err();
        assert!(err.to_string().contains("out.jsonl"), "{err}");
        assert!(err.to_string().contains("missing field"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), data);
        // A real output, or an empty file, passes.
        let (_d, path) = write(&format!("\n{}\n{}", ok(), err_b()));
        check_is_output(&path).expect("an output");
        let (_d, path) = write("");
        check_is_output(&path).expect("empty");
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_naming_it() {
        let (_d, path) = write(&format!("{}\nnot json\n{}\n", ok(), ok_b()));
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
        // Nothing was cut: the user has to look at the file.
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .contains("not json"));
    }

    #[test]
    fn a_terminated_last_line_that_does_not_parse_is_an_error_not_a_cut() {
        let (_d, path) = write(&format!("{}\n\n{{\"key\":\"c/def\n", ok()));
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::Corrupt { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("out.jsonl:3"), "{err}");
    }

    #[test]
    fn a_negative_cost_or_charge_is_an_error_never_counted() {
        for extra in [
            r#","cost_usd":-1000"#,
            r#","cost_usd":0.1,"budget_charge_usd":-0.5"#,
            r#","cost_usd":0.1,"prior_charge_usd":-2"#,
        ] {
            let bad = record("c/default", "ok", "c3", extra);
            let (_d, path) = write(&format!("{}\n{bad}\n", ok()));
            let err = scan(&path).unwrap_err();
            assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
            assert!(err.to_string().contains("negative"), "{err}");
        }
        // Not even on the first line: it is a record, with a figure no run writes.
        let bad = record("c/default", "ok", "c3", r#","cost_usd":-1000"#);
        let (_d, path) = write(&format!("{bad}\n"));
        assert!(matches!(
            scan(&path).unwrap_err(),
            SinkError::Corrupt { line: 1, .. }
        ));
    }

    #[test]
    fn long_lines_are_judged_by_how_they_start() {
        let garbage = "x".repeat(1 << 20);
        // A file without a newline in its first 64 KiB (a disk image, say).
        let (_d, path) = write(&garbage);
        assert!(matches!(scan(&path), Err(SinkError::NotAnOutput { .. })));
        assert!(matches!(
            check_is_output(&path),
            Err(SinkError::NotAnOutput { .. })
        ));
        // After a record: a terminated one was edited in, an unterminated one is cut.
        let (_d, path) = write(&format!("{}\n{garbage}\n{}\n", ok(), ok_b()));
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
        let (_d, path) = write(&format!("{}\n\n{garbage}", ok()));
        let state = scan_repair(&path).expect("scan");
        assert_eq!(state.cut, Some((3, 1 << 20)));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n\n", ok())
        );
        // A long record is read whole.
        let long = record("c/default", "ok", "c3", &format!(r#","note":"{garbage}""#));
        let (_d, path) = write(&format!("{long}\n{}\n", ok()));
        let state = scan(&path).expect("scan");
        assert_eq!(state.lines, 2);
        check_is_output(&path).expect("an output");
    }

    #[test]
    fn a_file_written_after_the_scan_is_seen_as_changed() {
        let (_d, path) = write(&format!("{}\n", ok()));
        let state = scan(&path).expect("scan");
        assert!(state.unchanged(&path));
        std::fs::write(&path, format!("{}\n{}\n", ok(), err_b())).expect("write");
        assert!(!state.unchanged(&path));
    }
}
