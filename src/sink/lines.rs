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

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Outputs run to gigabytes: read them in large blocks.
const READ_BUFFER: usize = 256 * 1024;

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
    /// The torn line held back: its number and offset (its bytes stay in `buf`).
    held: Option<(u64, u64)>,
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
            let n = self.reader.read_until(b'\n', &mut self.buf)? as u64;
            if n == 0 {
                self.done = true;
                return Ok(None);
            }
            self.number += 1;
            let offset = self.offset;
            self.offset += n;
            let torn = self.buf.last() != Some(&b'\n');
            if torn {
                // Nothing follows an unterminated line.
                self.done = true;
                if self.torn == Torn::HoldBack {
                    self.held = Some((self.number, offset));
                    return Ok(None);
                }
            }
            if is_blank(trim_newline(&self.buf)) {
                continue;
            }
            return Ok(Some(Line {
                number: self.number,
                offset,
                len: n,
                text: trim_newline(&self.buf),
                torn,
                path: &self.path,
            }));
        }
    }

    /// The torn last line held back ([`Torn::HoldBack`]), once [`Lines::next_line`] has said None.
    pub fn torn(&self) -> Option<Line<'_>> {
        let (number, offset) = self.held?;
        Some(Line {
            number,
            offset,
            len: self.buf.len() as u64,
            text: trim_newline(&self.buf),
            torn: true,
            path: &self.path,
        })
    }
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
}
