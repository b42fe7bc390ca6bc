//! What is wrong with a job: one [`Problem`] per mistake, all of them in one
//! [`JobError`], and the small helpers every source of settings shares to word
//! them (nearest valid key, value descriptions, line and column).
//!
//! A leaf of `job/`: it imports nothing from its siblings, so the file reader,
//! the flags and the merge can all use it without importing each other.

use std::fmt;

/// One thing wrong with the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `faq.toml:12:1: [limits] concurrency`, `faq.toml:3:15`, `--param temperature`.
    pub place: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// The job is invalid; nothing was sent. Lists every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(&self.problems))]
pub struct JobError {
    pub problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "the job has a problem:\n".to_string(),
        n => format!("the job has {n} problems:\n"),
    };
    for (i, p) in problems.iter().enumerate() {
        out.push_str(&format!("  {}. {p}\n", i + 1));
    }
    out.push_str(if problems.len() == 1 {
        "Fix it"
    } else {
        "Fix them"
    });
    out.push_str(" and run again; `promptbatch validate` checks a job without sending anything.");
    out
}

/// The problems found so far; loading goes on after each one.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            place: place.into(),
            message: message.into(),
        });
    }

    /// Reports `result`'s error at `place` and passes its value on.
    pub fn report<T>(&mut self, result: Result<T, String>, place: impl Into<String>) -> Option<T> {
        result.map_err(|message| self.push(place, message)).ok()
    }
}

/// The candidate closest to `key` when it is close enough to be a likely typo.
pub fn nearest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(key, c), *c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean "question"?` when one of `names` is close to `name`, else "".
pub fn did_you_mean<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    nearest(name, &names).map_or_else(String::new, |near| format!("; did you mean {near:?}?"))
}

/// `unknown key "concurency"; did you mean "concurrency"?`, else the keys there are.
pub(crate) fn unknown_key(key: &str, allowed: &[&str]) -> String {
    match nearest(key, allowed) {
        Some(near) => format!("unknown key {key:?}; did you mean {near:?}?"),
        None => format!(
            "unknown key {key:?}; the keys here are {}",
            allowed
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A short description of a TOML value for error messages.
pub(crate) fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(n) => format!("the number {n}"),
        // Debug keeps the ".0" that says why 8.0 is not a whole number.
        toml::Value::Float(x) => format!("the number {x:?}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date-time {d}"),
        toml::Value::Array(_) => "a list".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// Where each line of a text starts, to turn byte offsets into lines and
/// columns without rescanning the text for every problem (a job file may
/// hold tens of thousands of keys).
pub(crate) struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Lines<'a> {
        let breaks = text.match_indices('\n').map(|(i, _)| i + 1);
        let starts = std::iter::once(0).chain(breaks).collect();
        Lines { text, starts }
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    pub fn at(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let lines = Lines::new("a = 1\nbé = 2\nc");
        assert_eq!(lines.at(0), (1, 1));
        assert_eq!(lines.at(6), (2, 1));
        // "bé " is 4 bytes but 3 characters.
        assert_eq!(lines.at(10), (2, 4));
        assert_eq!(lines.at(15), (3, 2));
    }

    #[test]
    fn unknown_key_suggests_only_close_keys() {
        let allowed = ["concurrency", "requests_per_minute"];
        assert_eq!(
            unknown_key("concurency", &allowed),
            r#"unknown key "concurency"; did you mean "concurrency"?"#
        );
        let far = unknown_key("zzz", &allowed);
        assert!(!far.contains("did you mean"), "{far}");
        assert!(far.contains("\"concurrency\""), "{far}");
    }
}
