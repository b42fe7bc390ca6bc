//! Placeholders in paths: `{name}`, `{date}`, `{datetime}` and `{shard}`
//! (`K-of-N`, `0-of-1` when the job is not split) in output and summary paths (and in any other path a command writes, such as a report's
//! `-o`): which exist, checking a path for unknown ones, and expanding them.
//!
//! `{date}` and `{datetime}` come from one instant, the run's start, so the
//! two never disagree across midnight, and a scheduled job that puts either in
//! its output path starts a new file each time instead of resuming the last
//! run's. An unknown placeholder (`{data}`, `{time}`) is refused rather than
//! kept as literal text: a typo would otherwise become a file name, and every
//! nightly run would quietly resume the same file.

use chrono::{DateTime, Utc};

/// `{date}`: the UTC date, `2026-11-26`.
pub const DATE_FORMAT: &str = "%Y-%m-%d";
/// `{datetime}`: the UTC date and time to the second, `20261126T020005Z`
/// (sorts by time, and has no `:` that some file systems and tools refuse).
pub const DATETIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// What the placeholders of one path stand for.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    /// `{name}`: the job's name; None where there is no job (a report's `-o`),
    /// which makes `{name}` unknown there.
    pub name: Option<&'a str>,
    /// `{shard}`: `K-of-N`; None where there is no job, as for `name`.
    pub shard: Option<&'a str>,
    /// `{date}` and `{datetime}`: the run's (or the command's) start.
    pub at: DateTime<Utc>,
}

impl Values<'_> {
    /// The placeholders these values fill, as a path may spell them.
    pub fn known(&self) -> Vec<&'static str> {
        let mut known = Vec::with_capacity(4);
        if self.name.is_some() {
            known.push("name");
        }
        known.extend(["date", "datetime"]);
        if self.shard.is_some() {
            known.push("shard");
        }
        known
    }

    fn value(&self, word: &str) -> Option<String> {
        match word {
            "name" => self.name.map(str::to_string),
            "shard" => self.shard.map(str::to_string),
            "date" => Some(self.at.format(DATE_FORMAT).to_string()),
            "datetime" => Some(self.at.format(DATETIME_FORMAT).to_string()),
            _ => None,
        }
    }
}

/// A path with a placeholder nothing fills.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown placeholder {{{word}}} in {text:?}; the placeholders are {}",
    list(known)
)]
pub struct UnknownPlaceholder {
    pub word: String,
    pub text: String,
    pub known: Vec<&'static str>,
}

/// `{name}, {date} and {datetime}`.
fn list(known: &[&str]) -> String {
    let braced: Vec<String> = known.iter().map(|k| format!("{{{k}}}")).collect();
    match braced.split_last() {
        None => "none".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Fails on the first `{word}` in `text` that is not one of `known`.
///
/// Checked when a path is read (job file or flag), before its values are
/// known, so the message names the place it was written.
pub fn check(text: &str, known: &[&'static str]) -> Result<(), UnknownPlaceholder> {
    for (_, word) in words(text) {
        if !known.contains(&word) {
            return Err(UnknownPlaceholder {
                word: word.into(),
                text: text.into(),
                known: known.to_vec(),
            });
        }
    }
    Ok(())
}

/// `text` with every placeholder replaced by its value, in one pass (a job
/// name that holds `{date}` stays as it is).
///
/// Braces around anything but a word (`{}`, `{a b}`) are kept as they are:
/// they cannot be a placeholder, and some people do name files that way.
pub fn expand(text: &str, values: &Values) -> Result<String, UnknownPlaceholder> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut from = 0;
    for (at, word) in words(text) {
        let Some(value) = values.value(word) else {
            return Err(UnknownPlaceholder {
                word: word.into(),
                text: text.into(),
                known: values.known(),
            });
        };
        out.push_str(&text[from..at]);
        out.push_str(&value);
        from = at + word.len() + 2;
    }
    out.push_str(&text[from..]);
    Ok(out)
}

/// Each `{word}` of `text` (letters, digits, `_`) with the byte offset of its `{`.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = 0;
    std::iter::from_fn(move || loop {
        let open = rest + text[rest..].find('{')?;
        let after = open + 1;
        let close = after + text[after..].find('}')?;
        let word = &text[after..close];
        let is_word =
            !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_word {
            rest = close + 1;
            return Some((open, word));
        }
        // `{a {date}`: the word may start at a later brace.
        rest = after;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn date_and_datetime_are_one_utc_instant() {
        let values = Values {
            name: Some("nightly"),
            shard: None,
            // 23:30 the day before in New York, but UTC decides.
            at: at("2026-11-26T02:00:05.999-00:00"),
        };
        assert_eq!(
            expand("out/{name}-{date}/{datetime}.jsonl", &values),
            Ok("out/nightly-2026-11-26/20261126T020005Z.jsonl".into())
        );
        let offset = Values {
            name: None,
            shard: None,
            at: at("2026-11-25T23:30:00-05:00"),
        };
        assert_eq!(
            expand("{date} {datetime}", &offset),
            Ok("2026-11-26 20261126T043000Z".into())
        );
    }

    #[test]
    fn expansion_is_one_pass_and_keeps_non_placeholders() {
        let values = Values {
            name: Some("{date}"),
            shard: None,
            at: at("2026-01-02T03:04:05Z"),
        };
        assert_eq!(expand("{name}.jsonl", &values), Ok("{date}.jsonl".into()));
        assert_eq!(
            expand("a{}b{x y}{ {date}}", &values),
            Ok("a{}b{x y}{ 2026-01-02}".into())
        );
        assert_eq!(expand("no braces", &values), Ok("no braces".into()));
        assert_eq!(expand("open { only", &values), Ok("open { only".into()));
        assert_eq!(expand("ünï{date}ç", &values), Ok("ünï2026-01-02ç".into()));
    }

    #[test]
    fn shard_renders_k_of_n() {
        let values = Values {
            name: Some("faq"),
            shard: Some("2-of-4"),
            at: at("2026-01-02T03:04:05Z"),
        };
        assert_eq!(
            expand("out/{name}-{shard}.jsonl", &values),
            Ok("out/faq-2-of-4.jsonl".into())
        );
        assert!(check("{shard}.jsonl", &values.known()).is_ok());
        let none = Values {
            shard: None,
            ..values
        };
        assert_eq!(expand("{shard}", &none).expect_err("no job").word, "shard");
    }

    #[test]
    fn an_unknown_placeholder_is_named_with_the_known_ones() {
        let err = check("out/{name}-{data}.jsonl", &["name", "date", "datetime"])
            .expect_err("{data} is a typo");
        assert_eq!(err.word, "data");
        assert_eq!(
            err.to_string(),
            "unknown placeholder {data} in \"out/{name}-{data}.jsonl\"; the placeholders are {name}, {date} and {datetime}"
        );
        assert!(check("out/{name}-{datetime}.jsonl", &["name", "date", "datetime"]).is_ok());
    }

    #[test]
    fn without_a_name_name_is_unknown() {
        let values = Values {
            name: None,
            shard: None,
            at: at("2026-01-02T03:04:05Z"),
        };
        let err = expand("reports/{name}-{date}.html", &values).expect_err("no name here");
        assert_eq!(err.word, "name");
        assert!(
            err.to_string()
                .ends_with("the placeholders are {date} and {datetime}"),
            "{err}"
        );
        assert_eq!(
            expand("reports/week-{date}.html", &values),
            Ok("reports/week-2026-01-02.html".into())
        );
    }
}
