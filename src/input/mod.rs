//! Input rows, streamed: one file per format, rows as `Result<RawRow, InputError>`.
//!
//! The input is never held in memory whole; standard input is first spooled to
//! a temporary file so that the validation pass and the run read the same rows.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::job::Format;

mod csv;
mod jsonl;
mod spool;

pub use spool::{resolve, Spooled};

/// The rows of one input, read one at a time. A row error does not end the
/// stream (the next row follows); an I/O error is the last item.
pub type Rows = Box<dyn Iterator<Item = Result<RawRow, InputError>> + Send>;

/// Read buffer: large enough that reading is not the bottleneck, small enough to never matter.
const READ_BUFFER: usize = 256 * 1024;

/// Opens an input for streaming. A CSV header is read and checked here, so a
/// bad header is an error before the first row.
pub fn open(file: &InputFile, format: Format) -> Result<Rows, InputError> {
    let handle = File::open(&file.path).map_err(|e| {
        InputError::new(
            file.display.clone(),
            None,
            format!(
                "cannot open {}: {}; check [input] path or --input",
                file.display,
                io_message(&e)
            ),
        )
    })?;
    let reader = BufReader::with_capacity(READ_BUFFER, handle);
    match format {
        Format::Csv => csv::rows(reader, &file.display),
        // A Batch request line is a JSON object too: the planner reads its fields.
        Format::Jsonl | Format::OpenaiBatch => Ok(jsonl::rows(reader, &file.display)),
    }
}

/// An I/O error's text without the "(os error N)" suffix, which tells a user nothing.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// One row as read: its fields and the 1-based line where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub line: u64,
    /// 1-based row number among the data rows (CSV: after the header; JSONL: non-blank lines).
    pub number: u64,
    pub fields: Map<String, Value>,
}

/// A problem with the input, naming where it is and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct InputError {
    /// The file as the user named it (`<stdin>` for standard input).
    pub path: String,
    pub line: Option<u64>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl InputError {
    pub fn new(path: impl Into<String>, line: Option<u64>, message: impl Into<String>) -> Self {
        InputError {
            path: path.into(),
            line,
            field: None,
            message: message.into(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Where rows are read from once standard input has been spooled.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// What to open.
    pub path: PathBuf,
    /// What to call it in messages.
    pub display: String,
}

impl InputFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}
