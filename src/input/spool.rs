//! Where the rows come from: a plain file as named, or standard input (or any
//! input that is not a plain file: a FIFO, `<(...)`, a device) spooled to a
//! temporary file.
//!
//! A run reads its input twice (the validation pass, then the run), and a
//! pipe can be read only once, so it is copied to a temporary file first. The
//! copy is streamed, never held in memory, and deleted when the [`Spooled`]
//! value is dropped. On Linux it never has a name and is read back through
//! `/proc/self/fd`: a run killed while it spools an endless pipe (Ctrl-C,
//! SIGTERM, even SIGKILL) leaves nothing in the temporary folder, since the
//! kernel frees an unnamed file with its last descriptor.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use tempfile::NamedTempFile;

use super::{io_message, InputError, InputFile};
use crate::job::InputSource;

const STDIN_DISPLAY: &str = "<stdin>";

/// An input ready to be opened any number of times; keeps a spooled copy alive.
#[derive(Debug)]
pub struct Spooled {
    pub file: InputFile,
    _temp: Option<Temp>,
}

/// The spooled copy: a named temporary file, or (Linux) an open unnamed one.
#[derive(Debug)]
enum Temp {
    Named(NamedTempFile),
    #[cfg(target_os = "linux")]
    Unnamed(std::fs::File),
}

impl Temp {
    /// An unnamed file where the copy can be reopened without a name: it never
    /// has one (`O_TMPFILE` where the file system has it), so no kill at any
    /// moment can leave it behind. A named one elsewhere.
    fn create() -> std::io::Result<Temp> {
        #[cfg(target_os = "linux")]
        if std::path::Path::new("/proc/self/fd").is_dir() {
            return tempfile::tempfile().map(Temp::Unnamed);
        }
        tempfile::Builder::new()
            .prefix("promptbatch-input-")
            .tempfile()
            .map(Temp::Named)
    }

    fn file(&self) -> &std::fs::File {
        match self {
            Temp::Named(temp) => temp.as_file(),
            #[cfg(target_os = "linux")]
            Temp::Unnamed(file) => file,
        }
    }

    /// A path that opens the copy anew, with its own read position.
    fn path(&self) -> PathBuf {
        match self {
            Temp::Named(temp) => temp.path().to_path_buf(),
            #[cfg(target_os = "linux")]
            Temp::Unnamed(file) => {
                use std::os::fd::AsRawFd;
                PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
            }
        }
    }
}

/// A plain file as it is (shown as the path as given); standard input spooled
/// to a temporary file (shown as `<stdin>`), and so is a path that is not a
/// plain file (shown as the path): reading a FIFO twice would find it empty
/// the second time and send nothing.
pub fn resolve(source: &InputSource) -> Result<Spooled, InputError> {
    match source {
        InputSource::File(path) => {
            let display = path.display().to_string();
            // A missing file or a folder is left to `open`, which says so.
            let pipe_like = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
            if !pipe_like {
                return Ok(Spooled {
                    file: InputFile {
                        path: path.clone(),
                        display,
                    },
                    _temp: None,
                });
            }
            let handle = std::fs::File::open(path).map_err(|e| {
                InputError::new(
                    display.clone(),
                    None,
                    format!(
                        "cannot open {display}: {}; check [input] path or --input",
                        io_message(&e)
                    ),
                )
            })?;
            spool(handle, &display)
        }
        InputSource::Stdin => spool(std::io::stdin().lock(), STDIN_DISPLAY),
    }
}

/// Copies `input` to a new temporary file; `display` names the input in messages.
fn spool(mut input: impl Read, display: &str) -> Result<Spooled, InputError> {
    let temp = Temp::create().map_err(|e| {
            InputError::new(
                display,
                None,
                format!(
                    "cannot create a temporary file to hold {display}: {}; set TMPDIR to a writable folder or pass the input as a plain file",
                    io_message(&e)
                ),
            )
        })?;
    let temp_name = std::env::temp_dir().display().to_string();
    let write_error = |e: std::io::Error| {
        InputError::new(
            display,
            None,
            format!(
                "cannot copy {display} to a temporary file in {temp_name}: {}; free some space or set TMPDIR to another folder",
                io_message(&e)
            ),
        )
    };
    {
        let mut out = BufWriter::with_capacity(256 * 1024, temp.file());
        copy(&mut input, &mut out).map_err(|e| match e {
            CopyError::Read(e) => InputError::new(
                display,
                None,
                format!("cannot read {display}: {}", io_message(&e)),
            ),
            CopyError::Write(e) => write_error(e),
        })?;
        out.flush().map_err(write_error)?;
    }
    Ok(Spooled {
        file: InputFile {
            path: temp.path(),
            display: display.to_string(),
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
    fn spooled_input_reads_twice_and_leaves_no_file_behind() {
        let spooled = spool(&b"{\"a\":1}\n{\"a\":2}\n"[..], STDIN_DISPLAY).expect("spools");
        assert_eq!(spooled.file.display, "<stdin>");
        for _ in 0..2 {
            let rows: Vec<_> = open(&spooled.file, Format::Jsonl).expect("opens").collect();
            assert_eq!(rows.len(), 2);
        }
        let path = spooled.file.path.clone();
        assert!(path.exists());
        #[cfg(target_os = "linux")]
        {
            // Already nameless: nothing is left behind however the run ends.
            use std::os::unix::fs::MetadataExt;
            assert!(path.starts_with("/proc/self/fd"), "{}", path.display());
            assert_eq!(std::fs::metadata(&path).expect("meta").nlink(), 0);
        }
        #[cfg(not(target_os = "linux"))]
        {
            drop(spooled);
            assert!(!path.exists());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_spooled_and_read_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rows.jsonl");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::write(path, "{\"a\":1}\n{\"a\":2}\n"))
        };
        let spooled = resolve(&InputSource::File(path.clone())).expect("spools");
        writer.join().expect("join").expect("written");
        assert_ne!(spooled.file.path, path);
        assert_eq!(spooled.file.display, path.display().to_string());
        for _ in 0..2 {
            let rows: Vec<_> = open(&spooled.file, Format::Jsonl).expect("opens").collect();
            assert_eq!(rows.len(), 2);
        }
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
