//! `-v/--verbose`: a line for each retry and each change of pace.
//!
//! The scheduler never prints: it tells the collector (`Event::RetryPlanned`,
//! `Event::Pace`), and the collector hands the notes here, where they become
//! a message for people and, with `--log-format json`, a `retry` or `pace`
//! event with the same figures. Told before the wait, so a long
//! `Retry-After` shows why nothing moves while it lasts.

use serde_json::{json, Map, Value};

use crate::client::printable;
use crate::printer::{self, Level};
use crate::scheduler::{PaceChange, PaceWhy, RetryNote};

/// Prints the line for one retry.
pub(super) fn retry(note: &RetryNote) {
    let (message, fields) = retry_line(note);
    printer::event(Level::Info, "retry", message, fields);
}

/// Prints the line for one change of pace.
pub(super) fn pace(change: &PaceChange) {
    let (message, fields) = pace_line(change);
    printer::event(Level::Info, "pace", message, fields);
}

fn retry_line(n: &RetryNote) -> (String, Map<String, Value>) {
    let why = match (n.status, n.uncertain) {
        (Some(status), _) => format!("{}, HTTP {status}", n.kind.as_str()),
        (None, true) => format!("{}, no answer: may have been billed", n.kind.as_str()),
        (None, false) => n.kind.as_str().to_string(),
    };
    let wait = match n.retry_after {
        Some(_) => format!("{}, as the server's Retry-After asked", seconds(n.wait)),
        None => format!("{} (backoff)", seconds(n.wait)),
    };
    // The key is the row's id, from the input: a line break in it would
    // forge a log line and an escape would act on the terminal. The JSON
    // field keeps it as it is (escaped there).
    let at = (n.endpoint.as_deref()).map_or(String::new(), |e| format!(" at endpoint {e:?}"));
    let message = format!(
        "retry {}: attempt {} of {} failed{at} ({why}); next attempt in {wait}",
        printable(&n.key),
        n.attempt,
        n.max_attempts
    );
    let fields = json!({
        "key": n.key,
        "attempt": n.attempt,
        "max_attempts": n.max_attempts,
        "error_kind": n.kind.as_str(),
        "status": n.status,
        "uncertain": n.uncertain,
        "wait_s": n.wait.as_secs_f64(),
        "retry_after_s": n.retry_after.map(|d| d.as_secs_f64()),
    });
    let mut fields = object(fields);
    if let Some(endpoint) = &n.endpoint {
        fields.insert("endpoint".into(), json!(endpoint));
    }
    (message, fields)
}

fn pace_line(c: &PaceChange) -> (String, Map<String, Value>) {
    let was = c
        .previous_per_s
        .map(|p| format!(" (was {})", per_s(p)))
        .unwrap_or_default();
    // What slowed the pace, in words and as figures; None when it sped up.
    let (evidence, reason, rate_limited, in_a_row) = match c.why {
        PaceWhy::NoLimit => (None, "no_limit", None, None),
        PaceWhy::Limited { rate_limited } => (
            Some(format!("{rate_limited} of the last 32 answers were 429s")),
            "limit",
            Some(rate_limited),
            None,
        ),
        PaceWhy::LimitedAgain { in_a_row } => (
            Some(format!(
                "{in_a_row} answers in a row were 429s at the learned pace"
            )),
            "limit_again",
            None,
            Some(in_a_row),
        ),
        PaceWhy::PartWindow => (
            Some("a 429 at a pace measured over part of a window".to_string()),
            "part_window",
            None,
            None,
        ),
        PaceWhy::InARow { in_a_row } => (
            Some(format!(
                "{in_a_row} answers in a row were 429s, more than stray ones make"
            )),
            "in_a_row",
            None,
            Some(in_a_row),
        ),
    };
    let message = match evidence {
        None => format!(
            "pace up: no rate limit showed for a window; now at most {}{was}",
            c.rate_per_s.map_or_else(|| "?".into(), per_s)
        ),
        Some(evidence) => {
            let then = match c.rate_per_s {
                Some(rate) => format!("then at most {}{was}", per_s(rate)),
                None => "the rate is measured over the next window".to_string(),
            };
            format!(
                "pace down: a rate limit shows ({evidence}); sending paused {}, {then}",
                seconds(c.pause)
            )
        }
    };
    let fields = json!({
        "reason": reason,
        "requests_per_s": c.rate_per_s,
        "previous_requests_per_s": c.previous_per_s,
        "pause_s": c.pause.as_secs_f64(),
        "rate_limited_of_last_32": rate_limited,
        "in_a_row": in_a_row,
    });
    (message, object(fields))
}

fn seconds(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.0} s")
    }
}

fn per_s(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.2} requests/s")
    } else {
        format!("{rate:.1} requests/s")
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::ErrorKind;

    fn note() -> RetryNote {
        RetryNote {
            key: "q17/precise".into(),
            attempt: 1,
            max_attempts: 5,
            kind: ErrorKind::RateLimited,
            status: Some(429),
            uncertain: false,
            wait: Duration::from_millis(1500),
            retry_after: Some(Duration::from_millis(1500)),
            endpoint: None,
        }
    }

    #[test]
    fn a_retry_line_says_which_attempt_why_and_how_long() {
        let (text, fields) = retry_line(&note());
        assert_eq!(
            text,
            "retry q17/precise: attempt 1 of 5 failed (rate_limited, HTTP 429); next attempt in 1.50 s, as the server's Retry-After asked"
        );
        assert_eq!(fields["attempt"], 1);
        assert_eq!(fields["max_attempts"], 5);
        assert_eq!(fields["status"], 429);
        assert_eq!(fields["retry_after_s"], 1.5);

        let timeout = RetryNote {
            kind: ErrorKind::Timeout,
            status: None,
            uncertain: true,
            wait: Duration::from_millis(250),
            retry_after: None,
            attempt: 2,
            ..note()
        };
        let (text, fields) = retry_line(&timeout);
        assert_eq!(
            text,
            "retry q17/precise: attempt 2 of 5 failed (timeout, no answer: may have been billed); next attempt in 0.25 s (backoff)"
        );
        assert_eq!(fields["retry_after_s"], Value::Null);
        assert!(fields.get("endpoint").is_none(), "one endpoint: not named");

        let elsewhere = RetryNote {
            endpoint: Some("key-b".into()),
            ..note()
        };
        let (text, fields) = retry_line(&elsewhere);
        assert!(
            text.starts_with(
                "retry q17/precise: attempt 1 of 5 failed at endpoint \"key-b\" (rate_limited"
            ),
            "{text}"
        );
        assert_eq!(fields["endpoint"], "key-b");
    }

    /// Regression: a row id with a line break forged a log line under -v,
    /// and one with an escape sequence acted on the terminal.
    #[test]
    fn a_retry_line_never_carries_the_ids_control_characters() {
        let evil = RetryNote {
            key: "a\n2026-01-01T00:00:00Z promptbatch: forged \u{1b}[31m/default".into(),
            ..note()
        };
        let (text, fields) = retry_line(&evil);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(
            text.starts_with(
                "retry a 2026-01-01T00:00:00Z promptbatch: forged \u{fffd}[31m/default: attempt 1"
            ),
            "{text:?}"
        );
        assert_eq!(
            fields["key"],
            evil.key.as_str(),
            "the JSON field is the key itself"
        );
    }

    #[test]
    fn a_pace_line_says_which_way_to_what_and_why() {
        let down = PaceChange {
            rate_per_s: Some(2.375),
            previous_per_s: Some(5.0),
            pause: Duration::from_secs(1),
            why: PaceWhy::Limited { rate_limited: 24 },
        };
        let (text, fields) = pace_line(&down);
        assert_eq!(
            text,
            "pace down: a rate limit shows (24 of the last 32 answers were 429s); sending paused 1.00 s, then at most 2.38 requests/s (was 5.00 requests/s)"
        );
        assert_eq!(fields["reason"], "limit");
        assert_eq!(fields["requests_per_s"], 2.375);

        let unmeasured = PaceChange {
            rate_per_s: None,
            previous_per_s: None,
            pause: Duration::from_secs(30),
            why: PaceWhy::LimitedAgain { in_a_row: 6 },
        };
        let (text, fields) = pace_line(&unmeasured);
        assert!(text.contains("6 answers in a row were 429s"), "{text}");
        assert!(text.contains("paused 30 s"), "{text}");
        assert!(
            text.ends_with("the rate is measured over the next window"),
            "{text}"
        );
        assert_eq!(fields["reason"], "limit_again");

        let run = PaceChange {
            why: PaceWhy::InARow { in_a_row: 7 },
            ..down.clone()
        };
        let (text, fields) = pace_line(&run);
        assert!(
            text.contains("(7 answers in a row were 429s, more than stray ones make)"),
            "{text}"
        );
        assert_eq!(fields["reason"], "in_a_row");
        assert_eq!(fields["in_a_row"], 7);

        let part = PaceChange {
            why: PaceWhy::PartWindow,
            ..down.clone()
        };
        let (text, fields) = pace_line(&part);
        assert!(
            text.contains("(a 429 at a pace measured over part of a window)"),
            "{text}"
        );
        assert_eq!(fields["reason"], "part_window");

        let up = PaceChange {
            rate_per_s: Some(96.0),
            previous_per_s: Some(95.0),
            pause: Duration::ZERO,
            why: PaceWhy::NoLimit,
        };
        let (text, _) = pace_line(&up);
        assert_eq!(
            text,
            "pace up: no rate limit showed for a window; now at most 96.0 requests/s (was 95.0 requests/s)"
        );
    }
}
