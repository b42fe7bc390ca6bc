//! `promptbatch report`: the usage report over output files, in the format
//! asked for, on stdout or written to `-o FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::usage::Field;
use super::usage::{self, Format};
use super::ReportError;
use crate::cli::{ByField, ReportArgs};
use crate::printer;

pub fn command(args: &ReportArgs) -> Result<(), ReportError> {
    let pricing = match &args.pricing {
        Some(path) => {
            let pricing =
                crate::job::read_pricing(path).map_err(|problems| ReportError::Pricing {
                    path: path.clone(),
                    problems,
                })?;
            if pricing.models.is_empty() {
                printer::warning(format_args!("{} prices no model", path.display()));
            }
            Some(pricing)
        }
        None => None,
    };
    let output = args.output.as_deref().map(expand).transpose()?;
    if let Some(path) = &output {
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(ReportError::Write {
                path: path.clone(),
                error: std::io::Error::other("it is a folder; name a file, e.g. -o report.html"),
            });
        }
    }
    let format = match (args.json, args.format, &output) {
        (true, _, _) => Format::Json,
        (false, Some(format), _) => format.into(),
        (false, None, Some(path)) => Format::of_path(path).unwrap_or(Format::Table),
        (false, None, None) => Format::Table,
    };
    let files = usage::inputs::expand(&args.outputs)?;
    if files.is_empty() {
        return Err(ReportError::NoOutputs);
    }
    if let Some(path) = &output {
        refuse_an_input(path, &files)?;
    }
    // `--by model,model` is one grouping.
    let mut by: Vec<Field> = Vec::new();
    for field in args.by.iter().map(|f| field(*f)) {
        if !by.contains(&field) {
            by.push(field);
        }
    }
    let report = usage::fold::fold(&files, &by, pricing.as_ref())?;
    let text = usage::format::render(&report, format);
    match output {
        Some(path) => write_report(&path, text.as_bytes()).map_err(|error| ReportError::Write {
            path: path.clone(),
            error,
        }),
        None => printer::out(&text).map_err(ReportError::Print),
    }
}

fn field(f: ByField) -> Field {
    match f {
        ByField::Model => Field::Model,
        ByField::ParamSet => Field::ParamSet,
        ByField::Job => Field::Job,
        ByField::Day => Field::Day,
        ByField::Status => Field::Status,
        ByField::FinishReason => Field::FinishReason,
        ByField::ErrorKind => Field::ErrorKind,
        ByField::File => Field::File,
        ByField::Endpoint => Field::Endpoint,
    }
}

/// `{date}` and `{datetime}` in `-o`, the command's start in UTC; any
/// other placeholder (`{data}`, `{name}`: there is no job) is refused.
fn expand(path: &Path) -> Result<PathBuf, ReportError> {
    use crate::job::placeholder::{self, Values};
    let values = Values {
        name: None,
        shard: None,
        at: chrono::Utc::now(),
    };
    let text = path.to_string_lossy();
    placeholder::expand(&text, &values)
        .map(PathBuf::from)
        .map_err(|e| ReportError::Write {
            path: path.to_path_buf(),
            error: std::io::Error::other(e.to_string()),
        })
}

/// `-o` naming a file the report reads (itself, through a symlink or a hard
/// link) would replace a run's records with their report: refused.
fn refuse_an_input(path: &Path, files: &[PathBuf]) -> Result<(), ReportError> {
    let Ok(target) = std::fs::metadata(path) else {
        return Ok(());
    };
    if !target.is_file() {
        return Ok(());
    }
    for file in files {
        if same_file(path, &target, file) {
            return Err(ReportError::Write {
                path: path.to_path_buf(),
                error: std::io::Error::other(format!(
                    "it is one of the outputs reported on ({}); name another file, e.g. -o report.html",
                    file.display()
                )),
            });
        }
    }
    Ok(())
}

/// Whether `file` is the file `path` (whose metadata is `meta`) names.
#[cfg(unix)]
fn same_file(_path: &Path, meta: &std::fs::Metadata, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
}

/// Whether `file` is the file `path` names (no inodes: by resolved path).
#[cfg(not(unix))]
fn same_file(path: &Path, _meta: &std::fs::Metadata, file: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).ok();
    real(path).is_some() && real(path) == real(file)
}

/// Writes the report where `-o` says. A pipe or device (`/dev/stdout`, a
/// FIFO, `/dev/null`) is written to as a shell redirect would, never
/// replaced by a file; a symlink is followed, so the link stays and its
/// file is replaced; anything else is written atomically.
fn write_report(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            let mut out = std::fs::OpenOptions::new().write(true).open(path)?;
            out.write_all(bytes)?;
            out.flush()
        }
        Ok(_) => crate::sink::write_atomically(&std::fs::canonicalize(path)?, bytes),
        Err(_) => crate::sink::write_atomically(path, bytes),
    }
}
