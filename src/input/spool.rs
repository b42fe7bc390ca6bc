//! Where the rows come from: a file as named, or standard input spooled to a
//! temporary file.
//!
//! A run reads its input twice (the validation pass, then the run), and
//! standard input can be read only once, so it is copied to a temporary file
//! first. The copy is streamed, never held in memory, and deleted when the
//! [`Spooled`] value is dropped.

use std::io::{BufWriter, Read, Write};

use tempfile::NamedTempFile;

use super::{io_message, InputError, InputFile};
use crate::job::InputSource;

const STDIN_DISPLAY: &str = "<stdin>";

/// An input ready to be opened any number of times; keeps a spooled copy alive.
#[derive(Debug)]
pub struct Spooled {
    pub file: InputFile,
    _temp: Option<NamedTempFile>,
}

/// A file as it is (shown as the path as given); standard input spooled to a
/// temporary file (shown as `<stdin>`).
pub fn resolve(source: &InputSource) -> Result<Spooled, InputError> {
    match source {
        InputSource::File(path) => Ok(Spooled {
            file: InputFile {
                path: path.clone(),
                display: path.display().to_string(),
            },
            _temp: None,
        }),
        InputSource::Stdin => spool(std::io::stdin().lock()),
    }
}

/// Copies `input` to a new temporary file.
fn spool(mut input: impl Read) -> Result<Spooled, InputError> {
    let temp = tempfile::Builder::new()
        .prefix("promptbatch-stdin-")
        .tempfile()
        .map_err(|e| {
            InputError::new(
                STDIN_DISPLAY,
                None,
                format!(
                    "cannot create a temporary file to hold standard input: {}; set TMPDIR to a writable folder or pass the input as a file",
                    io_message(&e)
                ),
            )
        })?;
    let write_error = |e: std::io::Error| {
        InputError::new(
            STDIN_DISPLAY,
            None,
            format!(
                "cannot copy standard input to {}: {}; free some space or set TMPDIR to another folder",
                temp.path().display(),
                io_message(&e)
            ),
        )
    };
    {
        let mut out = BufWriter::with_capacity(256 * 1024, temp.as_file());
        copy(&mut input, &mut out).map_err(|e| match e {
            CopyError::Read(e) => InputError::new(
                STDIN_DISPLAY,
                None,
                format!("cannot read standard input: {}", io_message(&e)),
            ),
            CopyError::Write(e) => write_error(e),
        })?;
        out.flush().map_err(write_error)?;
    }
    Ok(Spooled {
        file: InputFile {
            path: temp.path().to_path_buf(),
            display: STDIN_DISPLAY.to_string(),
        },
        _temp: Some(temp),
    })
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// `io::copy`, but telling a read failure (the pipe) from a write failure (the disk).
fn copy(input: &mut impl Read, out: &mut impl Write) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::open;
    use crate::job::Format;

    #[test]
    fn a_file_is_used_as_it_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("q.jsonl");
        std::fs::write(&path, "{\"prompt\":\"hi\"}\n").expect("write");
        let spooled = resolve(&InputSource::File(path.clone())).expect("resolves");
        assert_eq!(spooled.file.path, path);
        assert_eq!(spooled.file.display, path.display().to_string());
        let rows: Vec<_> = open(&spooled.file, Format::Jsonl).expect("opens").collect();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn spooled_input_reads_twice_and_is_deleted_on_drop() {
        let spooled = spool(&b"{\"a\":1}\n{\"a\":2}\n"[..]).expect("spools");
        assert_eq!(spooled.file.display, "<stdin>");
        for _ in 0..2 {
            let rows: Vec<_> = open(&spooled.file, Format::Jsonl).expect("opens").collect();
            assert_eq!(rows.len(), 2);
        }
        let path = spooled.file.path.clone();
        assert!(path.exists());
        drop(spooled);
        assert!(!path.exists());
    }

    #[test]
    fn a_missing_file_says_what_to_do() {
        let file = InputFile {
            path: "/nonexistent-dir/questions.csv".into(),
            display: "questions.csv".into(),
        };
        let err = open(&file, Format::Csv).err().expect("cannot open");
        assert_eq!(err.line, None);
        assert!(
            err.message
                .starts_with("cannot open questions.csv: No such file or directory;"),
            "{}",
            err.message
        );
        assert!(err.message.ends_with("check [input] path or --input"));
    }
}
