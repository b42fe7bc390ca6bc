//! CSV rows: a header row names the fields, every later record is one row.
//!
//! Every column is a field holding a string; no column name is special here.
//! Records are split by `csv-core` (quotes, doubled quotes, commas and line
//! breaks inside quotes; CRLF, LF or CR between records; a leading BOM), but
//! the reading loop is ours: the `csv` crate reports the line where the
//! *previous* record ended, which is off by the blank lines and the LF of a
//! CRLF in between, and a row's line must be exact to be useful. Records are
//! checked for UTF-8 one at a time, so a bad byte or a record with the wrong
//! number of fields is an error for that row, not the end of the file.

use std::collections::HashSet;
use std::io::BufRead;

use csv_core::{ReadRecordResult, Reader};
use serde_json::{Map, Value};

use super::{io_message, InputError, RawRow, Rows};

const BOM: &str = "\u{feff}";

/// Reads and checks the header, then streams the records.
pub(super) fn rows<R: BufRead + Send + 'static>(input: R, path: &str) -> Result<Rows, InputError> {
    let mut input = input;
    skip_bom(&mut input).map_err(|e| read_error(path, &e, 1))?;
    let mut records = Records {
        input,
        core: Reader::new(),
        line: 1,
        bytes: vec![0; 4096],
        ends: vec![0; 64],
        len: 0,
    };
    let names = match records.next_record() {
        Ok(Some(line)) => header_names(&records, line, path)?,
        // Nothing at all, as some exports write on a day without rows: no
        // rows, which the run refuses unless --allow-empty, like a bare header.
        Ok(None) => return Ok(Box::new(std::iter::empty())),
        Err(e) => return Err(read_error(path, &e, records.line)),
    };
    Ok(Box::new(CsvRows {
        records,
        names,
        path: path.to_string(),
        number: 0,
        done: false,
    }))
}

/// Consumes a UTF-8 byte order mark. csv-core would too, but when its first
/// input is the BOM alone it takes the empty rest for the end of the file.
fn skip_bom(input: &mut impl BufRead) -> std::io::Result<()> {
    if input.fill_buf()?.starts_with(BOM.as_bytes()) {
        input.consume(BOM.len());
    }
    Ok(())
}

/// The header's column names: UTF-8, BOM and surrounding spaces removed, non-empty, unique.
fn header_names<R>(records: &Records<R>, line: u64, path: &str) -> Result<Vec<String>, InputError> {
    let mut names = Vec::with_capacity(records.len);
    let mut seen = HashSet::with_capacity(records.len);
    for i in 0..records.len {
        let text = std::str::from_utf8(records.field(i)).map_err(|_| {
            InputError::new(
                path,
                Some(line),
                format!(
                    "header column {} is not valid UTF-8; save the file as UTF-8",
                    i + 1
                ),
            )
        })?;
        let text = if i == 0 {
            text.strip_prefix(BOM).unwrap_or(text)
        } else {
            text
        };
        // Spreadsheet exports often write "id, question": the field is "question".
        let name = text.trim();
        if name.is_empty() {
            return Err(InputError::new(
                path,
                Some(line),
                format!(
                    "header column {} has no name; every column needs one",
                    i + 1
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(InputError::new(
                path,
                Some(line),
                format!("the header names column {name:?} twice; column names must be unique"),
            )
            .with_field(name));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Raw records with the line each starts on.
struct Records<R> {
    input: R,
    core: Reader,
    /// The line of the next byte to read.
    line: u64,
    /// The current record's field bytes, back to back; `ends[i]` is where field `i` ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// How many fields the current record has.
    len: usize,
}

impl<R: BufRead> Records<R> {
    /// Reads the next record and returns the line it starts on; `None` at the end.
    fn next_record(&mut self) -> std::io::Result<Option<u64>> {
        self.skip_line_breaks()?;
        let start = self.line;
        let (mut out, mut ends) = (0, 0);
        loop {
            let input = self.input.fill_buf()?;
            let (result, read, written, ended) =
                self.core
                    .read_record(input, &mut self.bytes[out..], &mut self.ends[ends..]);
            self.line += count_newlines(&input[..read]);
            self.input.consume(read);
            out += written;
            ends += ended;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.bytes.resize(self.bytes.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    self.len = ends;
                    return Ok(Some(start));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    /// Consumes the line breaks before a record (blank lines, the LF of a
    /// CRLF), counting them, so that the record's first byte is next.
    /// csv-core would skip them too, but without telling us how many.
    fn skip_line_breaks(&mut self) -> std::io::Result<()> {
        loop {
            let input = self.input.fill_buf()?;
            let breaks = input
                .iter()
                .take_while(|b| **b == b'\n' || **b == b'\r')
                .count();
            let all = breaks == input.len();
            self.line += count_newlines(&input[..breaks]);
            self.input.consume(breaks);
            if all && breaks > 0 {
                continue;
            }
            return Ok(());
        }
    }
}

impl<R> Records<R> {
    /// Field `i` of the current record.
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

struct CsvRows<R> {
    records: Records<R>,
    names: Vec<String>,
    path: String,
    number: u64,
    done: bool,
}

impl<R: BufRead> CsvRows<R> {
    /// Turns the current record into a row, or says what is wrong with it.
    fn row(&self, line: u64) -> Result<RawRow, InputError> {
        let records = &self.records;
        if records.len != self.names.len() {
            return Err(InputError::new(
                self.path.as_str(),
                Some(line),
                format!(
                    "{}, but the header has {}{}",
                    crate::printer::count(records.len as u64, "field"),
                    crate::printer::count(self.names.len() as u64, "column"),
                    if records.len < self.names.len() {
                        "; a value with a comma, quote or line break must be in double quotes, with any quote inside doubled (\"\")"
                    } else {
                        "; a value with a comma must be in double quotes"
                    }
                ),
            ));
        }
        let mut fields = Map::new();
        for (i, name) in self.names.iter().enumerate() {
            let text = std::str::from_utf8(records.field(i)).map_err(|e| {
                InputError::new(
                    self.path.as_str(),
                    Some(line),
                    format!(
                        "invalid UTF-8 at byte {} of the value; save the file as UTF-8",
                        e.valid_up_to() + 1
                    ),
                )
                .with_field(name.as_str())
            })?;
            fields.insert(name.clone(), Value::String(text.to_string()));
        }
        Ok(RawRow {
            line,
            number: self.number,
            fields,
        })
    }
}

impl<R: BufRead> Iterator for CsvRows<R> {
    type Item = Result<RawRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.records.next_record() {
            Ok(Some(line)) => {
                self.number += 1;
                Some(self.row(line))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                // A read error leaves us at an unknown place in the file: stop here.
                self.done = true;
                Some(Err(read_error(&self.path, &e, self.records.line)))
            }
        }
    }
}

fn read_error(path: &str, e: &std::io::Error, line: u64) -> InputError {
    InputError::new(
        path,
        Some(line),
        format!("cannot read the file: {}", io_message(e)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(bytes: &[u8]) -> Result<Vec<Result<RawRow, InputError>>, InputError> {
        // A tiny buffer, so that records and line breaks straddle refills.
        let input = std::io::BufReader::with_capacity(3, std::io::Cursor::new(bytes.to_vec()));
        Ok(rows(input, "q.csv")?.collect())
    }

    fn ok_rows(bytes: &[u8]) -> Vec<RawRow> {
        read(bytes)
            .expect("header is fine")
            .into_iter()
            .map(|r| r.expect("row is fine"))
            .collect()
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let rows = ok_rows(b"\xef\xbb\xbfid,question\r\n1,Why?\r\n2,How?\r\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            Value::Object(rows[0].fields.clone()),
            json!({"id": "1", "question": "Why?"})
        );
        assert_eq!((rows[1].line, rows[1].number), (3, 2));
    }

    #[test]
    fn quoted_commas_quotes_and_newlines_keep_later_line_numbers_right() {
        let text = "id,text\n1,\"a, b\"\n2,\"say \"\"hi\"\"\nand\nbye\"\n3,plain\n";
        let rows = ok_rows(text.as_bytes());
        assert_eq!(rows[0].fields["text"], json!("a, b"));
        assert_eq!(rows[1].fields["text"], json!("say \"hi\"\nand\nbye"));
        assert_eq!((rows[1].line, rows[1].number), (3, 2));
        assert_eq!((rows[2].line, rows[2].number), (6, 3));
    }

    #[test]
    fn crlf_inside_quotes_and_blank_crlf_lines_keep_line_numbers_right() {
        let text = "id,text\r\n\r\n1,\"a\r\nb\"\r\n\r\n\r\n2,c\r\n3,\"\"\r\n";
        let rows = ok_rows(text.as_bytes());
        assert_eq!(rows[0].fields["text"], json!("a\r\nb"));
        let lines: Vec<_> = rows.iter().map(|r| (r.line, r.number)).collect();
        assert_eq!(lines, vec![(3, 1), (7, 2), (8, 3)]);
        assert_eq!(rows[2].fields["text"], json!(""));
    }

    #[test]
    fn wrong_field_count_is_a_row_error_and_reading_goes_on() {
        let rows = read(b"a,b,c,d\n1,2,3,4\n1,2,3\n5,6,7,8\n").expect("header is fine");
        assert_eq!(rows.len(), 3);
        let err = rows[1].clone().unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            err.message
                .starts_with("3 fields, but the header has 4 columns; a value with a comma"),
            "{}",
            err.message
        );
        assert_eq!(
            err.to_string(),
            "q.csv:3: 3 fields, but the header has 4 columns; a value with a comma, quote or line break must be in double quotes, with any quote inside doubled (\"\")"
        );
        assert_eq!(rows[2].clone().expect("fine").number, 3);
    }

    #[test]
    fn a_field_count_of_one_is_singular() {
        let rows = read(b"q\na,b\n").expect("header is fine");
        let err = rows[0].clone().unwrap_err();
        assert!(
            err.message
                .starts_with("2 fields, but the header has 1 column;"),
            "{}",
            err.message
        );
    }

    #[test]
    fn duplicate_or_empty_header_names_are_errors() {
        let err = read(b"id,q,id\n1,2,3\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("\"id\" twice"), "{}", err.message);
        let err = read(b"id,,q\n1,2,3\n").unwrap_err();
        assert!(
            err.message.contains("column 2 has no name"),
            "{}",
            err.message
        );
    }

    #[test]
    fn header_names_are_trimmed() {
        let rows = ok_rows(b"id, question \n1,x\n");
        assert_eq!(rows[0].fields["question"], json!("x"));
    }

    #[test]
    fn empty_and_header_only_files_have_no_rows() {
        assert!(ok_rows(b"").is_empty());
        assert!(ok_rows(b"\n\n").is_empty());
        assert!(ok_rows(b"id,question\n").is_empty());
        assert!(ok_rows(b"id,question").is_empty());
    }

    #[test]
    fn empty_lines_are_skipped() {
        let rows = ok_rows(b"id,q\n\n1,x\n\n2,y\n");
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].line, rows[1].number), (5, 2));
    }

    #[test]
    fn invalid_utf8_names_the_line_and_column() {
        let rows = read(b"id,q\n1,ok\n2,bad \xff here\n3,ok\n").expect("header is fine");
        let err = rows[1].clone().unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.field.as_deref(), Some("q"));
        assert!(err.message.contains("UTF-8"), "{}", err.message);
        assert!(rows[2].is_ok());

        let err = read(b"id,\xfeq\n1,2\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("UTF-8"), "{}", err.message);
    }
}
