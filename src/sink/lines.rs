//! Reading an output line by line: lines that start like a record are read
//! whole; a long one that does not is never held in memory.

use std::io::{BufRead, Read};

/// How much of a line is read before it must start like a record: a large
/// file without newlines (a disk image, a sparse file) named as the output is
/// refused without being read into memory whole.
pub(super) const PEEK: u64 = 64 * 1024;

pub(super) enum Line {
    /// The line is in the buffer, newline included: its length (0 at the end).
    Read(u64),
    /// A line longer than [`PEEK`] that does not start like a record: `PEEK`
    /// bytes of it read and dropped; [`skip_rest`] reads past the rest.
    Long,
}

/// Reads the next line into `buf`, unless it is [`Line::Long`].
pub(super) fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let n = reader.by_ref().take(PEEK).read_until(b'\n', buf)? as u64;
    if n < PEEK || buf.last() == Some(&b'\n') {
        return Ok(Line::Read(n));
    }
    let start = buf.trim_ascii_start();
    if start.is_empty() || starts_like_a_record(start) {
        let rest = reader.read_until(b'\n', buf)? as u64;
        return Ok(Line::Read(n + rest));
    }
    buf.clear();
    Ok(Line::Long)
}

/// Reads past the rest of a [`Line::Long`] without keeping it: the line's
/// length and whether it ends in a newline.
pub(super) fn skip_rest(reader: &mut impl BufRead) -> std::io::Result<(u64, bool)> {
    let mut bytes = PEEK;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((bytes, false));
        }
        if let Some(at) = chunk.iter().position(|&b| b == b'\n') {
            reader.consume(at + 1);
            return Ok((bytes + at as u64 + 1, true));
        }
        let len = chunk.len();
        reader.consume(len);
        bytes += len as u64;
    }
}

/// Whether `text` is how a run starts a record line, `{"key":"...","job":"`,
/// or a piece of that: the compact form a run writes, with `job` after `key`.
pub(super) fn starts_like_a_record(text: &[u8]) -> bool {
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

/// A line without its newline (LF or CRLF).
pub(super) fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn a_long_line_that_is_no_record_is_skipped_never_held() {
        let mut reader = BufReader::new(std::io::repeat(0).take(16 << 20));
        let mut buf = Vec::new();
        let line = read_line(&mut reader, &mut buf).expect("reads");
        assert!(matches!(line, Line::Long));
        assert!(buf.capacity() <= 4 * PEEK as usize, "{}", buf.capacity());
        assert_eq!(skip_rest(&mut reader).expect("skips"), (16 << 20, false));
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
