//! The paths beside an output: where it really is (symlinks resolved), its
//! compaction temp file, its `--fresh` backup, and whether it changed.
//!
//! Two paths to one file must share one lock and one temp file, so all of
//! them are derived from the output with every symlink resolved.

use std::path::{Path, PathBuf};

use super::{io_error, SinkError};

/// More links in a row than this is a loop (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// `path` with every symlink resolved: its folder made canonical (and created
/// when missing, as the run would anyway), then its last component followed
/// while it is a symlink. The file itself need not exist.
pub fn resolve(path: &Path) -> Result<PathBuf, SinkError> {
    let mut current = canonical_folder(path)?;
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(io_error(&current))?;
                // A relative target is relative to the link's folder.
                let folder = current.parent().unwrap_or(Path::new("/"));
                current = canonical_folder(&folder.join(target))?;
            }
            _ => return Ok(current),
        }
    }
    Err(SinkError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::other("too many levels of symbolic links"),
    })
}

/// `path`'s folder made canonical, joined with its file name.
fn canonical_folder(path: &Path) -> Result<PathBuf, SinkError> {
    let name = path.file_name().ok_or_else(|| SinkError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::other("not a file name (it ends in / or ..)"),
    })?;
    let folder = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(io_error(folder))?;
    let folder = std::fs::canonicalize(folder).map_err(io_error(folder))?;
    Ok(folder.join(name))
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What an output's lock file adds to its name.
pub const LOCK_SUFFIX: &str = ".lock";
/// What a compaction's temp file adds to the output's name.
pub const COMPACT_TEMP_SUFFIX: &str = ".compact.tmp";
/// How the name of an output moved aside by `--fresh` ends.
pub const BACKUP_SUFFIX: &str = ".bak";

/// The lock file of an output (of `resolved`, the output with every symlink
/// resolved, so that two paths to one file share it).
pub fn lock_path(resolved: &Path) -> PathBuf {
    with_suffix(resolved, LOCK_SUFFIX)
}

/// Where compaction writes before it renames: beside the real file, so the
/// rename stays on one file system and a symlinked output stays a symlink.
pub(crate) fn compact_temp(resolved: &Path) -> PathBuf {
    with_suffix(resolved, COMPACT_TEMP_SUFFIX)
}

/// Removes a compaction temp file left by a run that was killed mid-compaction.
/// Called with the lock held, so no live run is writing it.
pub fn remove_stale_temp(output: &Path) -> Result<Option<PathBuf>, SinkError> {
    let temp = compact_temp(&resolve(output)?);
    match std::fs::remove_file(&temp) {
        Ok(()) => Ok(Some(temp)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&temp)(e)),
    }
}

/// Proves that compaction will be able to make its temp file beside the
/// output: a folder the output can be appended in but no file created in
/// would otherwise fail only at the end, after the requests were paid for.
/// Called with the lock held, once a stale temp file is gone.
pub fn check_temp(output: &Path) -> Result<(), SinkError> {
    let temp = compact_temp(&resolve(output)?);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io_error(&temp))?;
    std::fs::remove_file(&temp).map_err(io_error(&temp))
}

/// `--fresh`: moves an existing output (the file its path resolves to) to
/// `<output>.<UTC YYYYMMDDTHHMMSSZ>.bak`, never over an earlier backup: a
/// second one in the same second gets `.1.bak`, `.2.bak`, ...
pub fn move_aside(output: &Path) -> Result<Option<PathBuf>, SinkError> {
    let real = resolve(output)?;
    if std::fs::symlink_metadata(&real).is_err() {
        return Ok(None);
    }
    // The same stamp as `{datetime}`: backups sort with the outputs named by it.
    let stamp = chrono::Utc::now().format(crate::job::placeholder::DATETIME_FORMAT);
    for n in 0u32..1000 {
        let bak = if n == 0 {
            with_suffix(&real, &format!(".{stamp}{BACKUP_SUFFIX}"))
        } else {
            with_suffix(&real, &format!(".{stamp}.{n}{BACKUP_SUFFIX}"))
        };
        if std::fs::symlink_metadata(&bak).is_ok() {
            continue;
        }
        std::fs::rename(&real, &bak).map_err(io_error(&real))?;
        return Ok(Some(bak));
    }
    Err(SinkError::Io {
        path: real,
        error: std::io::Error::other(
            "a thousand backups of it already exist for this second; remove some",
        ),
    })
}

/// What tells whether a file changed between two looks: which file it is
/// (device and inode), its length and its modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    id: (u64, u64),
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = (0, 0);
        FileStamp {
            id,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// Whether both stamps are of the same file (device and inode), however
    /// it changed; always true off Unix, where there is no identity to compare.
    pub fn same_file(&self, other: &FileStamp) -> bool {
        self.id == other.id
    }

    /// The stamp of the file at `path` now (None when there is none).
    pub fn now(path: &Path) -> Option<FileStamp> {
        std::fs::metadata(path).ok().map(|m| FileStamp::of(&m))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_path_resolves_to_its_target_even_before_the_target_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(dir.path()).expect("canon");
        std::fs::create_dir(real.join("data")).expect("mkdir");
        std::os::unix::fs::symlink("data/out.jsonl", real.join("link.jsonl")).expect("link");
        assert_eq!(
            resolve(&real.join("link.jsonl")).expect("resolves"),
            real.join("data/out.jsonl")
        );
        std::fs::write(real.join("data/out.jsonl"), "").expect("write");
        assert_eq!(
            resolve(&real.join("data/../link.jsonl")).expect("resolves"),
            real.join("data/out.jsonl")
        );
        std::os::unix::fs::symlink("loop.jsonl", real.join("loop.jsonl")).expect("link");
        assert!(resolve(&real.join("loop.jsonl")).is_err());
    }

    #[test]
    fn backups_never_overwrite_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("o.jsonl");
        let mut backups = Vec::new();
        for text in ["one", "two", "three"] {
            std::fs::write(&out, text).expect("write");
            backups.push(move_aside(&out).expect("moves").expect("a backup"));
        }
        assert!(!out.exists());
        let texts: Vec<String> = backups
            .iter()
            .map(|b| std::fs::read_to_string(b).expect("read"))
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
        let name = backups[0].file_name().expect("name").to_string_lossy();
        assert!(
            name.starts_with("o.jsonl.2") && name.ends_with("Z.bak"),
            "{name}"
        );
        assert_eq!(move_aside(&out).expect("nothing to move"), None);
    }
}
