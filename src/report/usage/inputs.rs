//! Which files a report reads: the arguments as given (files, folders, the
//! shell's glob expansions), folders replaced by their `*.jsonl` (sorted, not
//! recursive, but a note names the subfolders that hold outputs), the files
//! that sit beside outputs skipped with a note (one each when named, one per
//! folder), and a file named twice read once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::report::ReportError;
use crate::{printer, sink};

/// The files beside an output that are not outputs (named as the run
/// names them), and what each one is.
const SIDE_FILES: [(&str, &str); 4] = [
    (sink::LOCK_SUFFIX, "the lock of a run"),
    (crate::job::SUMMARY_SUFFIX, "a run's summary"),
    (sink::BACKUP_SUFFIX, "an output moved aside by --fresh"),
    (sink::COMPACT_TEMP_SUFFIX, "a compaction's temp file"),
];

/// What a side file is, by its name; None for anything else.
pub fn side_file(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    SIDE_FILES
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, what)| *what)
}

/// The files to read, in order.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    let mut files = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut take = |path: PathBuf, files: &mut Vec<PathBuf>| {
        if let Some(what) = side_file(&path) {
            printer::notice(format_args!(
                "skipped {}: {what}, not an output",
                path.display()
            ));
            return;
        }
        // A path that cannot be resolved is opened as given and its error named then.
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(real) {
            printer::notice(format_args!(
                "{} was given more than once: read once",
                path.display()
            ));
            return;
        }
        files.push(path);
    };
    for arg in args {
        if !std::fs::metadata(arg).is_ok_and(|m| m.is_dir()) {
            take(arg.clone(), &mut files);
            continue;
        }
        let io = |error| ReportError::Io {
            path: arg.clone(),
            error,
        };
        let mut inside = Vec::new();
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(arg).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.path().is_dir() {
                if holds_jsonl(&entry.path()) {
                    folders.push(entry.path());
                }
                continue;
            }
            if !entry.file_type().map_err(io)?.is_file() && !entry.path().is_file() {
                continue;
            }
            let path = entry.path();
            let jsonl = path.extension().is_some_and(|e| e == "jsonl");
            if jsonl || side_file(&path).is_some() {
                inside.push(path);
            }
        }
        inside.sort();
        // Every output in a folder has its lock and summary beside it: one
        // note for the folder, not two a run.
        let (side, outputs): (Vec<_>, Vec<_>) =
            inside.into_iter().partition(|p| side_file(p).is_some());
        if !side.is_empty() {
            let one = side.len() == 1;
            printer::notice(format_args!(
                "skipped {} in {} that {} (locks, summaries, backups, temp files)",
                printer::count(side.len() as u64, "file"),
                arg.display(),
                if one {
                    "is not an output"
                } else {
                    "are not outputs"
                },
            ));
        }
        // Not recursive (a folder of backups or of other projects stays
        // out), but outputs one level down are named, not silently missed.
        folders.sort();
        if let Some(first) = folders.first() {
            printer::notice(format_args!(
                "{} inside {} not read (name {}, e.g. {})",
                printer::count_as(
                    folders.len() as u64,
                    "folder with outputs",
                    "folders with outputs"
                ),
                arg.display(),
                if folders.len() == 1 { "it" } else { "them" },
                first.display(),
            ));
        }
        if outputs.is_empty() && folders.is_empty() {
            printer::notice(format_args!("{} holds no *.jsonl output", arg.display()));
        }
        for path in outputs {
            take(path, &mut files);
        }
    }
    Ok(files)
}

/// Whether `dir` holds a `*.jsonl` file (read errors: no).
fn holds_jsonl(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "jsonl") && e.path().is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_are_told_by_their_names() {
        for name in [
            "out.jsonl.lock",
            "out.summary.json",
            "out.jsonl.20261124T100000Z.bak",
            "out.jsonl.20261124T100000Z.1.bak",
            "out.jsonl.compact.tmp",
        ] {
            assert!(side_file(Path::new(name)).is_some(), "{name}");
        }
        for name in ["out.jsonl", "lockout.jsonl", "summary.jsonl", "out.json"] {
            assert_eq!(side_file(Path::new(name)), None, "{name}");
        }
    }

    #[test]
    fn a_folder_gives_its_outputs_sorted_and_a_file_named_twice_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.jsonl", "a.jsonl", "a.jsonl.lock", "notes.txt"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/c.jsonl"), "").expect("write");
        let a = dir.path().join("a.jsonl");
        let files = expand(&[dir.path().to_path_buf(), a.clone()]).expect("expand");
        assert_eq!(files, vec![a, dir.path().join("b.jsonl")]);
    }
}
