//! One output line as the report reads it: only the fields a report needs,
//! borrowed from the line's bytes (escaped strings alone are copied), so a
//! million lines parse without a million allocations.
//!
//! A line must still look like a record (`key`, `job`, `param_set`,
//! `status`, `model`, `attempts`): a data file named by mistake is an error
//! naming its line, not a report of zeros.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::client::Usage;
use crate::sink::Status;

#[derive(Debug, Deserialize)]
pub struct UsageLine<'a> {
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    #[serde(borrow)]
    pub job: Cow<'a, str>,
    #[serde(borrow)]
    pub param_set: Cow<'a, str>,
    pub status: Status,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<LineUsage>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default, borrow)]
    pub cost_source: Option<Cow<'a, str>>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    pub attempts: u32,
    #[serde(default)]
    pub uncertain_attempts: u32,
    #[serde(default, borrow)]
    pub error: Option<LineError<'a>>,
    #[serde(default, borrow)]
    pub response_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub started_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub finished_at: Option<Cow<'a, str>>,
    /// Answered from the response cache: no call, nothing spent.
    #[serde(default)]
    pub cached: Option<bool>,
    /// The endpoint that answered; absent for a job with one endpoint.
    #[serde(default, borrow)]
    pub endpoint: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct LineError<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// `usage` as recorded: the flat `cached_tokens` / `reasoning_tokens` the
/// client keeps, or OpenAI's nested details if a record carries them.
#[derive(Debug, Default, Deserialize)]
pub struct LineUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<Details>,
    #[serde(default)]
    pub completion_tokens_details: Option<Details>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Details {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl LineUsage {
    pub fn cached(&self) -> u64 {
        (self.cached_tokens)
            .or_else(|| self.prompt_tokens_details.as_ref()?.cached_tokens)
            .unwrap_or(0)
    }

    pub fn reasoning(&self) -> u64 {
        (self.reasoning_tokens)
            .or_else(|| self.completion_tokens_details.as_ref()?.reasoning_tokens)
            .unwrap_or(0)
    }

    /// The client's spelling, for the job's price arithmetic.
    pub fn as_usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            cached_tokens: None,
            reasoning_tokens: None,
        }
    }
}

impl UsageLine<'_> {
    pub fn ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The UTC day of `finished_at` (`YYYY-MM-DD`).
    pub fn day(&self) -> Option<Cow<'_, str>> {
        let at = self.finished_at.as_deref()?;
        // A run writes UTC with a `Z`: its first ten characters are the day,
        // once the time parses (a hand-edited `2026-13-45T...Z` is no day).
        if at.ends_with('Z') && at.as_bytes().get(10) == Some(&b'T') {
            instant(at)?;
            return at.get(..10).map(Cow::Borrowed);
        }
        let t = instant(at)?;
        Some(Cow::Owned(
            DateTime::<Utc>::from_timestamp_micros(t)?
                .format("%Y-%m-%d")
                .to_string(),
        ))
    }
}

/// An RFC 3339 time as microseconds since the epoch.
pub fn instant(at: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(extra: &str) -> String {
        format!(
            r#"{{"key":"a","job":"j","param_set":"p","status":"ok","model":"m","attempts":1{extra}}}"#
        )
    }

    #[test]
    fn the_day_is_utc_whatever_the_offset_written() {
        let text = line(r#","finished_at":"2026-11-24T23:30:00.000Z""#);
        let l: UsageLine = serde_json::from_str(&text).expect("line");
        assert_eq!(l.day().as_deref(), Some("2026-11-24"));
        let text = line(r#","finished_at":"2026-11-24T23:30:00-02:00""#);
        let l: UsageLine = serde_json::from_str(&text).expect("line");
        assert_eq!(l.day().as_deref(), Some("2026-11-25"));
        let text = line("");
        let l: UsageLine = serde_json::from_str(&text).expect("line");
        assert_eq!(l.day(), None);
        // Not a time, though shaped like one: no day (as for the span).
        for at in [
            "2026-13-45T00:00:00Z",
            "garbageXYZTxxZ",
            "2026-11-24T99:00:00Z",
        ] {
            let text = line(&format!(r#","finished_at":"{at}""#));
            let l: UsageLine = serde_json::from_str(&text).expect("line");
            assert_eq!(l.day(), None, "{at}");
        }
    }

    #[test]
    fn cached_and_reasoning_tokens_come_flat_or_nested() {
        let flat: LineUsage =
            serde_json::from_str(r#"{"prompt_tokens":5,"cached_tokens":3,"reasoning_tokens":2}"#)
                .expect("usage");
        assert_eq!((flat.cached(), flat.reasoning()), (3, 2));
        let nested: LineUsage = serde_json::from_str(
            r#"{"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":7}}"#,
        )
        .expect("usage");
        assert_eq!((nested.cached(), nested.reasoning()), (4, 7));
    }

    #[test]
    fn escaped_strings_parse_and_a_line_without_record_fields_does_not() {
        let text = line(r#","finish_reason":"st\u006fp""#).replace("\"j\"", "\"j\\\"ob\"");
        let l: UsageLine = serde_json::from_str(&text).expect("line");
        assert_eq!(l.finish_reason.as_deref(), Some("stop"));
        assert_eq!(l.job, "j\"ob");
        assert!(serde_json::from_str::<UsageLine>(r#"{"key":"a","status":"ok"}"#).is_err());
    }
}
