//! Replay: recorded answers of real servers, served verbatim.
//!
//! A replay folder holds `NAME.http` files, each one HTTP answer as a server
//! sends it: a status line, header lines, a blank line, then the body exactly
//! as recorded (a JSON body, an SSE stream with its comments and `[DONE]`, an
//! error body). The mock loads every one when it starts and answers a
//! completions request with the file whose NAME is the request's `model`: a
//! choice among what was loaded, never a path taken from a request. This is how
//! the compatibility tests put each server's documented bodies through the real
//! client (`tests/fixtures/compat`), and how `mock-server --replay DIR` shows a
//! user what promptbatch makes of a server's answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Response;

use super::body::{self, MockBody};

/// Every answer of a replay folder, by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replay {
    answers: BTreeMap<String, Answer>,
}

/// One recorded answer.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// A replay folder or file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {reason}; a replay file is a status line (HTTP/1.1 200 OK), header lines, a blank line and the body", .path.display())]
    Bad { path: PathBuf, reason: String },
    #[error("{} holds no .http file to replay", .0.display())]
    Empty(PathBuf),
}

impl Replay {
    /// Loads every `*.http` file of `dir`.
    pub fn load(dir: &Path) -> Result<Replay, ReplayError> {
        let read = |path: &Path, error| ReplayError::Read {
            path: path.to_path_buf(),
            error,
        };
        let mut answers = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
            let path = entry.map_err(|e| read(dir, e))?.path();
            let name = match (path.extension(), path.file_stem()) {
                (Some(ext), Some(stem)) if ext == "http" => stem.to_string_lossy().into_owned(),
                _ => continue,
            };
            let bytes = std::fs::read(&path).map_err(|e| read(&path, e))?;
            let answer = parse(&bytes).map_err(|reason| ReplayError::Bad {
                path: path.clone(),
                reason,
            })?;
            answers.insert(name, answer);
        }
        if answers.is_empty() {
            return Err(ReplayError::Empty(dir.to_path_buf()));
        }
        Ok(Replay { answers })
    }

    /// The names it can answer, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.answers.keys().map(String::as_str)
    }

    /// The answer named `model`, as recorded; `None` when there is none.
    pub(crate) fn answer(&self, model: &str) -> Option<Response<MockBody>> {
        let answer = self.answers.get(model)?;
        // The content type is among the recorded headers (set below).
        let mut response = body::reply(answer.status, body::JSON, answer.body.clone());
        let headers = response.headers_mut();
        for (name, value) in &answer.headers {
            headers.insert(name.clone(), value.clone());
        }
        Some(response)
    }
}

/// `HTTP/1.1 200 OK\nname: value\n...\n\nbody`; CRLF or LF in the head, the body untouched.
fn parse(bytes: &[u8]) -> Result<Answer, String> {
    let (head, body) = split_head(bytes).ok_or("no blank line after the head")?;
    let head = std::str::from_utf8(head).map_err(|_| "the head is not UTF-8".to_string())?;
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..600).contains(code))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let name = HeaderName::try_from(name.trim()).map_err(|e| format!("{name:?}: {e}"))?;
        let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("{value:?}: {e}"))?;
        headers.push((name, value));
    }
    Ok(Answer {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4));
    let lf = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| (at, 2));
    let (at, len) = match (crlf, lf) {
        (Some(c), Some(l)) => {
            if c.0 < l.0 {
                c
            } else {
                l
            }
        }
        (c, l) => c.or(l)?,
    };
    Some((&bytes[..at], &bytes[at + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_answer_keeps_status_headers_and_body_bytes() {
        let text = b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json; charset=utf-8\r\nx-request-id: abc\r\n\r\n{\"error\":{}}\n\n";
        let answer = parse(text).expect("parses");
        assert_eq!(answer.status, 401);
        assert_eq!(answer.headers.len(), 2);
        assert_eq!(answer.headers[0].1, "application/json; charset=utf-8");
        assert_eq!(&answer.body[..], b"{\"error\":{}}\n\n");
        let sse = b"HTTP/1.1 200 OK\ncontent-type: text/event-stream\n\n: OPENROUTER PROCESSING\n\ndata: {}\n\n";
        let answer = parse(sse).expect("parses");
        assert_eq!(&answer.body[..], b": OPENROUTER PROCESSING\n\ndata: {}\n\n");
    }

    #[test]
    fn a_file_without_a_head_is_refused() {
        assert!(parse(b"{\"id\": 1}").is_err());
        assert!(parse(b"HTTP/1.1 abc\n\n{}").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\nno colon here\n\n{}").is_err());
    }
}
