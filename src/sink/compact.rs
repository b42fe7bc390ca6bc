//! Compaction: one line per key, the latest, written to a temp file and renamed over the output.
//!
//! Two streaming passes (find each key's last line, then copy those lines in
//! file order), so a large output is never held in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use super::record::RecordHead;
use super::{io_error, SinkError};
use crate::keys::{KeyId, KeyMap};

/// Rewrites `path` to the latest line of every key, keeping keys the job no
/// longer has. Returns the number of lines dropped.
pub fn compact(path: &Path) -> Result<u64, SinkError> {
    let mut last: KeyMap<u64> = KeyMap::default();
    let mut lines = 0u64;
    for_each_line(path, |n, line| {
        let head: RecordHead = serde_json::from_slice(line).map_err(|e| SinkError::Corrupt {
            path: path.to_path_buf(),
            line: n,
            reason: e.to_string(),
        })?;
        last.insert(KeyId::of(&head.key), n);
        lines = n;
        Ok(())
    })?;
    let dropped = lines - last.len() as u64;
    if dropped == 0 {
        return Ok(0);
    }
    let mut keep: Vec<bool> = vec![false; lines as usize + 1];
    for n in last.values() {
        keep[*n as usize] = true;
    }
    drop(last);
    let temp = super::temp_beside(path).map_err(io_error(path))?;
    // The compacted file keeps the permissions the output had.
    let permissions = std::fs::metadata(path)
        .map_err(io_error(path))?
        .permissions();
    std::fs::set_permissions(temp.path(), permissions).map_err(io_error(path))?;
    let mut out = BufWriter::with_capacity(256 * 1024, temp);
    for_each_line(path, |n, line| {
        if keep[n as usize] {
            out.write_all(line).map_err(io_error(path))?;
            out.write_all(b"\n").map_err(io_error(path))?;
        }
        Ok(())
    })?;
    let temp = out
        .into_inner()
        .map_err(|e| io_error(path)(e.into_error()))?;
    temp.as_file().sync_all().map_err(io_error(path))?;
    temp.persist(path).map_err(|e| io_error(path)(e.error))?;
    Ok(dropped)
}

/// Calls `f` with each non-blank line (1-based number, without its newline).
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), SinkError>,
) -> Result<(), SinkError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_error(path))? == 0 {
            return Ok(());
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        n += 1;
        f(n, line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_line_of_every_key_in_file_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let lines = [
            r#"{"key":"a","status":"error","n":1}"#,
            r#"{"key":"old","status":"ok","n":2}"#,
            r#"{"key":"b","status":"ok","n":3}"#,
            r#"{"key":"a","status":"ok","n":4}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        assert_eq!(compact(&path).expect("compact"), 1);
        let left = std::fs::read_to_string(&path).expect("read");
        assert_eq!(left, [lines[1], lines[2], lines[3]].join("\n") + "\n");
        // Already compact: nothing changes.
        assert_eq!(compact(&path).expect("compact"), 0);
    }

    #[cfg(unix)]
    #[test]
    fn compaction_keeps_the_permissions_of_the_output() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(
            &path,
            "{\"key\":\"a\",\"status\":\"ok\"}\n{\"key\":\"a\",\"status\":\"ok\"}\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(compact(&path).expect("compact"), 1);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}
