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
use super::lines::{starts_like_a_record, Line, Lines, Torn};
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
        self.prior_of(sha_prefix(sha256)?)
    }

    /// [`Self::prior`] of a request whose hash has the prefix `sha` ([`sha_prefix`]).
    pub fn prior_of(self, sha: u64) -> Option<bool> {
        (self.sha()? == sha).then_some(self.ok())
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

/// What another reader of the output's lines gathers in the resume scan's
/// own pass (the run's summary read-back), so that a file of a gigabyte is
/// read, and each line walked, once.
pub trait Beside {
    /// A field of the line being read, as the fast reader walks it: its
    /// name as written (quotes included) and its raw value.
    fn field(&mut self, name: &[u8], raw: &[u8]);
    /// The line is read. `walked`: every field of it went to
    /// [`Beside::field`]; else some or none did, and the line is this
    /// reader's to parse.
    fn line(&mut self, line: &Line<'_>, walked: bool);
}

/// Nothing read beside.
impl Beside for () {
    fn field(&mut self, _: &[u8], _: &[u8]) {}
    fn line(&mut self, _: &Line<'_>, _: bool) {}
}

/// Scans `path` (missing = empty), reading only: see [`ResumeState::repair`].
pub fn scan(path: &Path) -> Result<ResumeState, SinkError> {
    scan_with(path, &mut ())
}

/// [`scan`], handing `beside` every line it reads (a torn last one left out).
pub fn scan_with(path: &Path, beside: &mut impl Beside) -> Result<ResumeState, SinkError> {
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
        let (mut head, walked): (RecordHead, bool) =
            match head::read_each(line.text, |name, raw| beside.field(name, raw)) {
                Some(head) => (head, true),
                None => (line.parse()?, false),
            };
        beside.line(&line, walked);
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
pub(crate) mod tests;
