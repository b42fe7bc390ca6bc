//! The one reader of output lines: it streams a JSONL output through one
//! reused buffer, skips blank lines, takes `\n` or `\r\n` off, numbers lines
//! as an editor does, and applies the torn-last-line rule.
//!
//! The rule: a run only appends whole lines, so only the last line can lack
//! its newline — a run killed mid-write, or one still writing. That line is
//! torn, whatever it holds. What a torn line means is the reader's caller's
//! to say ([`Torn`]): the resume scan cuts it off, a report leaves it out
//! when it does not parse. Any other line that does not parse is a
//! [`BadLine`] naming file and line.
//!
//! A line is read whole only when it starts like a record (or is blank) by
//! its first [`PEEK`] bytes: a large file without newlines (a disk image, a
//! sparse file) named as the output is never read into memory whole. Such a
//! line is handed over [`Line::long`], holding only its first bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Outputs run to gigabytes: read them in large blocks.
const READ_BUFFER: usize = 256 * 1024;

/// How much of a line is read before it must start like a record.
pub const PEEK: u64 = 64 * 1024;

/// What [`Lines`] does with a torn (unterminated) last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// Held back, blank or not, for [`Lines::torn`]: the resume scan cuts
    /// it off before a run appends after it.
    HoldBack,
    /// Handed over like the other lines (a blank one skipped like them),
    /// flagged [`Line::torn`].
    Yield,
}

/// One line of an output.
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based, blank lines counted: the number an editor shows.
    pub number: u64,
    /// Where the line starts in the file.
    pub offset: u64,
    /// Its length in the file, newline included.
    pub len: u64,
    /// Its bytes without the newline (`\n` or `\r\n`).
    pub text: &'a [u8],
    /// The unterminated last line.
    pub torn: bool,
    /// Longer than [`PEEK`] without starting like a record: `text` holds
    /// only its first bytes, the rest was read past and dropped.
    pub long: bool,
    path: &'a Path,
}

/// A line that does not parse as what it should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub path: PathBuf,
    pub line: u64,
    pub reason: String,
}

impl<'a> Line<'a> {
    /// Only whitespace (which a run never writes, but an editor may).
    pub fn is_blank(&self) -> bool {
        is_blank(self.text)
    }

    /// The line as JSON of type `T`, or what is wrong with it, naming the line.
    pub fn parse<T: serde::Deserialize<'a>>(&self) -> Result<T, BadLine> {
        serde_json::from_slice(self.text).map_err(|e| self.bad(e.to_string()))
    }

    /// This line is wrong for `reason`.
    pub fn bad(&self, reason: String) -> BadLine {
        BadLine {
            path: self.path.to_path_buf(),
            line: self.number,
            reason,
        }
    }
}

/// The lines of one output file, read front to back. A lending iterator
/// (each line borrows the one buffer): `while let Some(line) = lines.next_line()?`.
pub struct Lines {
    reader: BufReader<File>,
    path: PathBuf,
    torn: Torn,
    buf: Vec<u8>,
    /// The last line read (its number) and where the next one starts.
    number: u64,
    offset: u64,
    /// The torn line held back: its number, offset, length and whether it is
    /// long (its bytes, or its first ones, stay in `buf`).
    held: Option<(u64, u64, u64, bool)>,
    done: bool,
}

impl Lines {
    /// The lines of `file`, read from where it stands (its start when just
    /// opened); `path` names it in errors.
    pub fn new(file: File, path: &Path, torn: Torn) -> Lines {
        Lines {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            path: path.to_path_buf(),
            torn,
            buf: Vec::new(),
            number: 0,
            offset: 0,
            held: None,
            done: false,
        }
    }

    /// The lines of the file at `path`; None when there is no such file.
    pub fn open(path: &Path, torn: Torn) -> std::io::Result<Option<Lines>> {
        match File::open(path) {
            Ok(file) => Ok(Some(Lines::new(file, path, torn))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next line that is not blank; None at the end (or at a torn line held back).
    pub fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            self.buf.clear();
            let (n, terminated, long) = self.read_line()?;
            if n == 0 {
                self.done = true;
                return Ok(None);
            }
            self.number += 1;
            let offset = self.offset;
            self.offset += n;
            let torn = !terminated;
            if torn {
                // Nothing follows an unterminated line.
                self.done = true;
                if self.torn == Torn::HoldBack {
                    self.held = Some((self.number, offset, n, long));
                    return Ok(None);
                }
            }
            if !long && is_blank(trim_newline(&self.buf)) {
                continue;
            }
            return Ok(Some(Line {
                number: self.number,
                offset,
                len: n,
                text: trim_newline(&self.buf),
                torn,
                long,
                path: &self.path,
            }));
        }
    }

    /// Reads the next line into `buf`: its length in the file, whether it
    /// ends in a newline, and whether it was too long to keep (see [`PEEK`]).
    fn read_line(&mut self) -> std::io::Result<(u64, bool, bool)> {
        let mut n = self
            .reader
            .by_ref()
            .take(PEEK)
            .read_until(b'\n', &mut self.buf)? as u64;
        if n == PEEK && self.buf.last() != Some(&b'\n') {
            let start = self.buf.trim_ascii_start();
            if !start.is_empty() && !starts_like_a_record(start) {
                let (rest, terminated) = self.skip_rest()?;
                return Ok((n + rest, terminated, true));
            }
            n += self.reader.read_until(b'\n', &mut self.buf)? as u64;
        }
        Ok((n, self.buf.last() == Some(&b'\n'), false))
    }

    /// Reads past the rest of a long line without keeping it: its length and
    /// whether it ends in a newline.
    fn skip_rest(&mut self) -> std::io::Result<(u64, bool)> {
        let mut bytes = 0u64;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok((bytes, false));
            }
            if let Some(at) = chunk.iter().position(|&b| b == b'\n') {
                self.reader.consume(at + 1);
                return Ok((bytes + at as u64 + 1, true));
            }
            let len = chunk.len();
            self.reader.consume(len);
            bytes += len as u64;
        }
    }

    /// The torn last line held back ([`Torn::HoldBack`]), once [`Lines::next_line`] has said None.
    pub fn torn(&self) -> Option<Line<'_>> {
        let (number, offset, len, long) = self.held?;
        Some(Line {
            number,
            offset,
            len,
            text: trim_newline(&self.buf),
            torn: true,
            long,
            path: &self.path,
        })
    }
}

/// Whether `text` is how a run starts a record line, `{"key":"...","job":"`,
/// or a piece of that: the compact form a run writes, with `job` after `key`.
pub fn starts_like_a_record(text: &[u8]) -> bool {
    const START: &[u8] = b"{\"key\":\"";
    const NEXT: &[u8] = b",\"job\":\"";
    let Some(key) = text.strip_prefix(START) else {
        return START.starts_with(text);
    };
    // The key string ends at the first quote that is not escaped.
    let mut escaped = false;
    for (i, &b) in key.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => {
                let rest = &key[i + 1..];
                return rest.starts_with(NEXT) || NEXT.starts_with(rest);
            }
            _ => {}
        }
    }
    true
}

fn is_blank(text: &[u8]) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    /// (number, offset, len, text, torn) of every line handed over, then the held-back one.
    type Seen = (u64, u64, u64, String, bool);
    fn read(content: &[u8], torn: Torn) -> (Vec<Seen>, Option<Seen>) {
        let (_d, path) = write(content);
        let mut lines = Lines::open(&path, torn).expect("open").expect("a file");
        let seen = |l: &Line| {
            let text = String::from_utf8_lossy(l.text).into_owned();
            (l.number, l.offset, l.len, text, l.torn)
        };
        let mut all = Vec::new();
        while let Some(line) = lines.next_line().expect("read") {
            all.push(seen(&line));
        }
        assert!(
            lines.next_line().expect("read").is_none(),
            "the end stays the end"
        );
        let held = lines.torn().map(|l| seen(&l));
        (all, held)
    }

    #[test]
    fn blank_lines_are_skipped_but_counted_and_crlf_is_taken_off() {
        let (all, held) = read(b"{\"a\":1}\r\n\n  \r\n{\"b\":2}\n", Torn::HoldBack);
        assert_eq!(
            all,
            [
                (1, 0, 9, "{\"a\":1}".into(), false),
                (4, 14, 8, "{\"b\":2}".into(), false)
            ]
        );
        assert_eq!(held, None);
    }

    #[test]
    fn an_unterminated_last_line_is_torn_held_back_or_handed_over() {
        let content = b"{\"a\":1}\n{\"key\":\"c/de\r";
        let (all, held) = read(content, Torn::HoldBack);
        assert_eq!(all.len(), 1);
        assert_eq!(held, Some((2, 8, 13, "{\"key\":\"c/de".into(), true)));
        let (all, held) = read(content, Torn::Yield);
        assert_eq!(all[1], (2, 8, 13, "{\"key\":\"c/de".into(), true));
        assert_eq!(held, None);
        // A blank torn line is still torn when held back (it is cut), and
        // skipped like any blank line when handed over.
        let (all, held) = read(b"{\"a\":1}\n  ", Torn::HoldBack);
        assert_eq!((all.len(), held.map(|h| h.0)), (1, Some(2)));
        let (all, held) = read(b"{\"a\":1}\n  ", Torn::Yield);
        assert_eq!((all.len(), held), (1, None));
    }

    #[test]
    fn a_line_that_does_not_parse_names_its_file_and_line() {
        let (_d, path) = write(b"\n{\"a\":1}\nnot json\n");
        let mut lines = Lines::open(&path, Torn::Yield)
            .expect("open")
            .expect("file");
        let first = lines.next_line().expect("read").expect("a line");
        let value: serde_json::Value = first.parse().expect("parses");
        assert_eq!(value["a"], 1);
        let bad = lines.next_line().expect("read").expect("a line");
        let err = bad.parse::<serde_json::Value>().unwrap_err();
        assert_eq!((err.path, err.line), (path.clone(), 3));
    }

    #[test]
    fn a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = Lines::open(&dir.path().join("none.jsonl"), Torn::Yield).expect("open");
        assert!(none.is_none());
    }

    #[test]
    fn a_long_line_that_is_no_record_is_read_past_never_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("image.bin");
        let file = File::create(&path).expect("create");
        // 16 MiB of zero bytes and no newline: a sparse file, a disk image.
        file.set_len(16 << 20).expect("size");
        for torn in [Torn::Yield, Torn::HoldBack] {
            let mut lines = Lines::open(&path, torn).expect("open").expect("a file");
            let (len, long, was_torn) = match lines.next_line().expect("reads") {
                Some(line) => (line.len, line.long, line.torn),
                None => {
                    let held = lines.torn().expect("held back");
                    (held.len, held.long, held.torn)
                }
            };
            assert_eq!((len, long, was_torn), (16 << 20, true, true));
            assert!(
                lines.buf.capacity() <= 4 * PEEK as usize,
                "{}",
                lines.buf.capacity()
            );
        }
    }

    #[test]
    fn a_long_record_is_read_whole_and_a_long_terminated_line_is_handed_over() {
        let long = format!("{{\"key\":\"a\",\"job\":\"{}\"}}", "x".repeat(200_000));
        let garbage = "y".repeat(200_000);
        let (seen, held) = read(format!("{long}\n{garbage}\n").as_bytes(), Torn::HoldBack);
        assert_eq!(held, None);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].3, long);
        assert_eq!(seen[1].2, 200_001, "its whole length, newline included");
        assert_eq!(seen[1].3.len(), PEEK as usize, "only its first bytes kept");
    }

    #[test]
    fn a_record_start_is_told_from_other_json() {
        for start in [
            "{",
            "{\"ke",
            "{\"key\":\"a/b",
            "{\"key\":\"a\\\"b\",\"jo",
            "{\"key\":\"a\",\"job\":\"t\",\"id\"",
        ] {
            assert!(starts_like_a_record(start.as_bytes()), "{start}");
        }
        for start in [
            "[",
            "{\"key\": \"a\"",
            "{\"key\":\"a\",\"value\":1}",
            "{\"id\":1}",
        ] {
            assert!(!starts_like_a_record(start.as_bytes()), "{start}");
        }
    }
}
