//! JSONL rows: one JSON object per line, blank lines skipped.
//!
//! Lines are read into one reused buffer, so memory follows the longest line,
//! not the file. UTF-8 is checked before parsing so that a bad byte is
//! reported as an encoding problem rather than as puzzling JSON.

use std::io::BufRead;

use serde_json::Value;

use super::{InputError, RawRow, Rows};

const BOM: &[u8] = b"\xef\xbb\xbf";

pub(super) fn rows<R: BufRead + Send + 'static>(input: R, path: &str) -> Rows {
    Box::new(JsonlRows {
        input,
        path: path.to_string(),
        buf: Vec::new(),
        line: 0,
        number: 0,
        done: false,
    })
}

struct JsonlRows<R> {
    input: R,
    path: String,
    buf: Vec<u8>,
    line: u64,
    number: u64,
    done: bool,
}

impl<R: BufRead> Iterator for JsonlRows<R> {
    type Item = Result<RawRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    let mut text = self.buf.as_slice();
                    text = text.strip_suffix(b"\n").unwrap_or(text);
                    text = text.strip_suffix(b"\r").unwrap_or(text);
                    if self.line == 1 {
                        text = text.strip_prefix(BOM).unwrap_or(text);
                    }
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    self.number += 1;
                    return Some(parse(text, &self.path, self.line, self.number));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(InputError::new(
                        self.path.as_str(),
                        Some(self.line + 1),
                        format!("cannot read the file: {}", super::io_message(&e)),
                    )));
                }
            }
        }
        None
    }
}

/// One non-blank line into a row.
fn parse(bytes: &[u8], path: &str, line: u64, number: u64) -> Result<RawRow, InputError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        InputError::new(
            path,
            Some(line),
            format!(
                "invalid UTF-8 at column {}; save the file as UTF-8",
                e.valid_up_to() + 1
            ),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        InputError::new(
            path,
            Some(line),
            format!("invalid JSON at column {}: {}", e.column(), json_reason(&e)),
        )
    })?;
    match value {
        Value::Object(fields) => Ok(RawRow {
            line,
            number,
            fields,
        }),
        other => Err(InputError::new(
            path,
            Some(line),
            format!(
                "expected a JSON object, got {}; write one {{...}} object per line",
                kind(&other)
            ),
        )),
    }
}

/// serde_json's message without its " at line L column C" tail (we say where ourselves).
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&tail) {
        Some(reason) => reason.to_string(),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(bytes: &[u8]) -> Vec<Result<RawRow, InputError>> {
        rows(std::io::Cursor::new(bytes.to_vec()), "q.jsonl").collect()
    }

    #[test]
    fn blank_lines_are_skipped_and_lines_counted() {
        let rows = read(b"{\"a\":1}\n\n   \n\t\n{\"a\":2}\n\n");
        assert_eq!(rows.len(), 2);
        let second = rows[1].clone().expect("valid");
        assert_eq!((second.line, second.number), (5, 2));
        assert_eq!(second.fields["a"], json!(2));
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let rows = read(b"\xef\xbb\xbf{\"a\":\"x\"}\r\n{\"a\":\"y\"}\r\n");
        let values: Vec<_> = rows
            .into_iter()
            .map(|r| r.expect("valid").fields["a"].clone())
            .collect();
        assert_eq!(values, vec![json!("x"), json!("y")]);
    }

    #[test]
    fn last_line_without_newline_is_read() {
        let rows = read(b"{\"a\":1}\n{\"a\":2}");
        assert_eq!(rows.len(), 2);
        assert!(rows[1].is_ok());
    }

    #[test]
    fn invalid_json_names_line_and_column_and_reading_goes_on() {
        let rows = read(b"{\"a\":1}\n\n{}\n{\"a\": 1 \"b\": 2}\n{\"a\":3}\n");
        assert_eq!(rows.len(), 4);
        let err = rows[2].clone().unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.message, "invalid JSON at column 9: expected `,` or `}`");
        assert_eq!(
            err.to_string(),
            "q.jsonl:4: invalid JSON at column 9: expected `,` or `}`"
        );
        assert_eq!(rows[3].clone().expect("valid").number, 4);
    }

    #[test]
    fn non_objects_are_errors_naming_what_they_are() {
        let rows = read(b"[1,2]\n\"text\"\n17\n");
        let messages: Vec<_> = rows.into_iter().map(|r| r.unwrap_err().message).collect();
        assert!(messages[0].starts_with("expected a JSON object, got an array"));
        assert!(messages[1].starts_with("expected a JSON object, got a string"));
        assert!(messages[2].starts_with("expected a JSON object, got a number"));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let rows = read(b"{\"a\":1}\n{\"a\":\"\xff\"}\n");
        let err = rows[1].clone().unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(
            err.message.contains("invalid UTF-8 at column 7"),
            "{}",
            err.message
        );
    }

    #[test]
    fn long_lines_are_read_whole() {
        let long = "x".repeat(3 * 1024 * 1024);
        let text = format!("{{\"a\":1}}\n{{\"p\":\"{long}\"}}\n{{\"a\":3}}\n");
        let rows = read(text.as_bytes());
        let row = rows[1].clone().expect("valid");
        assert_eq!(row.fields["p"].as_str().map(str::len), Some(long.len()));
        assert_eq!(rows[2].clone().expect("valid").line, 3);
    }
}
