//! Walking a parsed TOML job file by hand: typed reads that report instead of failing.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key and cannot
//! suggest the nearest valid one, so every section is read through a
//! [`Section`], which knows where it is (file and section) and pushes one
//! [`Problem`] per bad key while carrying on with the rest.

use serde_json::{Map, Number, Value};

use super::load::Problem;
use super::params::nearest;

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
}

/// One table of the job file and where it is, for naming problems.
pub(crate) struct Section<'a> {
    /// The job file as the user named it, e.g. `faq.toml`.
    pub file: &'a str,
    /// `""` for the top level, else e.g. `[limits]` or `[[params]] #2 ("creative")`.
    pub name: String,
    pub table: &'a toml::Table,
}

impl<'a> Section<'a> {
    /// `faq.toml: [limits] concurrency`, or `faq.toml: name` at the top level.
    pub fn place(&self, key: &str) -> String {
        if self.name.is_empty() {
            format!("{}: {key}", self.file)
        } else {
            format!("{}: {} {key}", self.file, self.name)
        }
    }

    /// One problem per key not in `allowed`, with the nearest allowed key when one is close.
    pub fn reject_unknown(&self, allowed: &[&str], problems: &mut Problems) {
        for key in self.table.keys() {
            if !allowed.contains(&key.as_str()) {
                problems.push(self.place(key), unknown_key(key, allowed));
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a toml::Value> {
        self.table.get(key)
    }

    pub fn string(&self, key: &str, problems: &mut Problems) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                problems.push(
                    self.place(key),
                    format!("must be a string, got {}", describe(other)),
                );
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn whole(&self, key: &str, min: i64, max: i64, problems: &mut Problems) -> Option<i64> {
        let value = self.get(key)?;
        match value {
            toml::Value::Integer(n) if (min..=max).contains(n) => Some(*n),
            toml::Value::Integer(n) => {
                problems.push(
                    self.place(key),
                    format!("must be {}, got {n}", whole_range(min, max)),
                );
                None
            }
            other => {
                problems.push(
                    self.place(key),
                    format!("must be {}, got {}", whole_range(min, max), describe(other)),
                );
                None
            }
        }
    }

    /// A finite number, integer or float; the caller checks its range.
    pub fn number(&self, key: &str, problems: &mut Problems) -> Option<f64> {
        match self.get(key)? {
            toml::Value::Integer(n) => Some(*n as f64),
            toml::Value::Float(x) if x.is_finite() => Some(*x),
            other => {
                problems.push(
                    self.place(key),
                    format!("must be a finite number, got {}", describe(other)),
                );
                None
            }
        }
    }

    /// A sub-table, or a problem saying the key must be one.
    pub fn table(&self, key: &str, problems: &mut Problems) -> Option<&'a toml::Table> {
        match self.get(key)? {
            toml::Value::Table(t) => Some(t),
            other => {
                problems.push(
                    self.place(key),
                    format!("must be a table, got {}", describe(other)),
                );
                None
            }
        }
    }
}

/// `a whole number >= 1` or `a whole number between 1 and 100`.
pub(crate) fn whole_range(min: i64, max: i64) -> String {
    if max == i64::MAX {
        format!("a whole number >= {min}")
    } else {
        format!("a whole number between {min} and {max}")
    }
}

/// `unknown key "concurency"; did you mean "concurrency"?`
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

/// Converts a TOML table to JSON for the chat parameters: date-times become
/// strings; a NaN or infinite float (JSON has none) is a problem at `place(key path)`.
pub(crate) fn table_to_json(
    table: &toml::Table,
    place: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in table {
        if let Some(v) = value_to_json(value, key, place, problems) {
            out.insert(key.clone(), v);
        }
    }
    out
}

fn value_to_json(
    value: &toml::Value,
    path: &str,
    place: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<Value> {
    Some(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => Value::Number((*n).into()),
        toml::Value::Float(x) => match Number::from_f64(*x) {
            Some(n) => Value::Number(n),
            None => {
                problems.push(
                    place(path),
                    format!("{x} cannot be sent as JSON; write a finite number"),
                );
                return None;
            }
        },
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(value_to_json(
                    item,
                    &format!("{path}[{i}]"),
                    place,
                    problems,
                )?);
            }
            Value::Array(out)
        }
        toml::Value::Table(t) => {
            let mut out = Map::new();
            for (k, v) in t {
                out.insert(
                    k.clone(),
                    value_to_json(v, &format!("{path}.{k}"), place, problems)?,
                );
            }
            Value::Object(out)
        }
    })
}

/// Converts a byte offset in `text` to a 1-based line and column (in characters).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\nc";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "bé " is 4 bytes but 3 characters.
        assert_eq!(line_col(text, 10), (2, 4));
        assert_eq!(line_col(text, text.len()), (3, 2));
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

    #[test]
    fn json_conversion_keeps_types_and_rejects_nan() {
        let table: toml::Table = "a = 1\nb = 0.5\nc = [\"x\"]\nd = 1979-05-27\ne = { f = nan }"
            .parse()
            .expect("valid toml");
        let mut problems = Problems::default();
        let json = table_to_json(&table, &|k: &str| format!("here {k}"), &mut problems);
        assert_eq!(json["a"], serde_json::json!(1));
        assert_eq!(json["b"], serde_json::json!(0.5));
        assert_eq!(json["c"], serde_json::json!(["x"]));
        assert_eq!(json["d"], serde_json::json!("1979-05-27"));
        assert!(!json.contains_key("e"));
        assert_eq!(problems.0.len(), 1);
        assert_eq!(problems.0[0].place, "here e.f");
    }
}
