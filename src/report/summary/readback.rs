//! The summary's read-back of an output, made inside the resume scan's own
//! pass over the file ([`Beside`]): a rerun with nothing to send owes a
//! summary of every line, and a second read of a gigabyte, with a second
//! walk of each line and a serde parse of its figures, cost as much as the
//! scan itself.
//!
//! The scan's fast reader hands over each field it walks; the few the tally
//! reads are taken here when they have the shape a run writes (a plain
//! string, a small whole number, null, a number serde reads alone, a usage
//! of plain counts), and a line with anything else is parsed by serde as a
//! whole, as [`line_figures`] does for a report: the same figures either
//! way, which the tests check shape by shape.

use super::{Figures, Tally};
use crate::client::Usage;
use crate::report::line_figures;
use crate::sink::head::counts;
use crate::sink::{Beside, Line};

/// The fields the tally reads, one bit each (a field given twice is
/// serde's to refuse).
const KEY: u16 = 1;
const STATUS: u16 = 1 << 1;
const MODEL: u16 = 1 << 2;
const PARAM_SET: u16 = 1 << 3;
const FINISH_REASON: u16 = 1 << 4;
const USAGE: u16 = 1 << 5;
const COST: u16 = 1 << 6;
const LATENCY: u16 = 1 << 7;
const TTFT: u16 = 1 << 8;
const ATTEMPTS: u16 = 1 << 9;
const UNCERTAIN: u16 = 1 << 10;
const ERROR: u16 = 1 << 11;
const CACHED: u16 = 1 << 12;
const ENDPOINT: u16 = 1 << 13;

/// A tally of every line the resume scan reads.
#[derive(Debug, Default)]
pub struct ReadBack {
    tally: Tally,
    /// What the line being read gave so far.
    at: Taken,
    /// Its strings, in buffers kept across lines (no allocation per line).
    model: String,
    param_set: String,
    finish_reason: String,
    endpoint: String,
    /// For serde's cut-down line ([`line_figures`]).
    slim: Vec<u8>,
    /// Lines whose figures serde read (the tests' witness that the others were not).
    read_by_serde: u64,
}

/// One line's figures as its fields came.
#[derive(Debug, Default, Clone, Copy)]
struct Taken {
    seen: u16,
    /// A value not of a shape read here: serde reads the line.
    lost: bool,
    ok: bool,
    /// `finish_reason` is a string (in the buffer), not null.
    finish_reason: bool,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    attempts: u32,
    uncertain: u32,
    /// Answered from the response cache.
    cached: bool,
    /// `endpoint` is a string (in the buffer), not null or absent.
    endpoint: bool,
}

impl ReadBack {
    /// Folding on into `tally`.
    pub fn with(tally: Tally) -> ReadBack {
        ReadBack {
            tally,
            ..ReadBack::default()
        }
    }

    /// Forgets the fields of the line being read: it is not to be counted.
    pub fn skip(&mut self) {
        self.at = Taken::default();
    }

    /// Counts a line serde read.
    pub fn observe(&mut self, figures: &super::LineFigures) {
        self.tally.observe_line(figures);
    }

    /// The tally of every line read.
    pub fn finish(self) -> Tally {
        self.tally
    }
}

impl Beside for ReadBack {
    fn field(&mut self, name: &[u8], raw: &[u8]) {
        let bit = match name {
            b"\"key\"" => KEY,
            b"\"status\"" => STATUS,
            b"\"model\"" => MODEL,
            b"\"param_set\"" => PARAM_SET,
            b"\"finish_reason\"" => FINISH_REASON,
            b"\"usage\"" => USAGE,
            b"\"cost_usd\"" => COST,
            b"\"latency_ms\"" => LATENCY,
            b"\"ttft_ms\"" => TTFT,
            b"\"attempts\"" => ATTEMPTS,
            b"\"uncertain_attempts\"" => UNCERTAIN,
            b"\"error\"" => ERROR,
            b"\"cached\"" => CACHED,
            b"\"endpoint\"" => ENDPOINT,
            // A name with an escape might spell one of the above.
            other if other.contains(&b'\\') => {
                self.at.lost = true;
                return;
            }
            _ => return,
        };
        let at = &mut self.at;
        if at.seen & bit != 0 {
            at.lost = true;
            return;
        }
        at.seen |= bit;
        let read = match bit {
            KEY => raw.first() == Some(&b'"'),
            STATUS => match raw {
                b"\"ok\"" => {
                    at.ok = true;
                    true
                }
                b"\"error\"" => true,
                _ => false,
            },
            MODEL => copy(raw, &mut self.model),
            PARAM_SET => copy(raw, &mut self.param_set),
            FINISH_REASON => {
                at.finish_reason = raw != b"null";
                !at.finish_reason || copy(raw, &mut self.finish_reason)
            }
            USAGE => match raw {
                b"null" => true,
                _ => {
                    at.usage = usage(raw);
                    at.usage.is_some()
                }
            },
            COST => number(raw, &mut at.cost_usd),
            LATENCY => number(raw, &mut at.latency_ms),
            TTFT => number(raw, &mut at.ttft_ms),
            ATTEMPTS => count(raw, &mut at.attempts),
            UNCERTAIN => count(raw, &mut at.uncertain),
            CACHED => {
                at.cached = raw == b"true";
                at.cached || raw == b"false" || raw == b"null"
            }
            ENDPOINT => {
                at.endpoint = raw != b"null";
                !at.endpoint || copy(raw, &mut self.endpoint)
            }
            // An error's kind is read by serde: failed lines are few.
            _ => raw == b"null",
        };
        at.lost |= !read;
    }

    fn line(&mut self, line: &Line<'_>, walked: bool) {
        let at = std::mem::take(&mut self.at);
        if !walked || at.lost || at.seen & (KEY | STATUS) != KEY | STATUS {
            self.read_by_serde += 1;
            if let Some(figures) = line_figures(line, &mut self.slim) {
                self.tally.observe_line(&figures);
            }
            return;
        }
        fn given(seen: u16, bit: u16, text: &str) -> &str {
            if seen & bit != 0 {
                text
            } else {
                ""
            }
        }
        let model = given(at.seen, MODEL, &self.model);
        let param_set = given(at.seen, PARAM_SET, &self.param_set);
        self.tally.add(Figures {
            ok: at.ok,
            model,
            param_set,
            finish_reason: at.finish_reason.then_some(self.finish_reason.as_str()),
            usage: at.usage.as_ref(),
            cost_usd: at.cost_usd,
            latency_ms: at.latency_ms,
            ttft_ms: at.ttft_ms,
            attempts: at.attempts,
            uncertain: at.uncertain,
            error_kind: None,
            cached: at.cached,
            endpoint: at.endpoint.then_some(self.endpoint.as_str()),
        });
    }
}

/// A string without escapes into `out`; false for anything else (null
/// included: serde refuses it where a string is due).
fn copy(raw: &[u8], out: &mut String) -> bool {
    let Some(inner) = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) else {
        return false;
    };
    if inner.contains(&b'\\') {
        return false;
    }
    let Ok(text) = std::str::from_utf8(inner) else {
        return false;
    };
    out.clear();
    out.push_str(text);
    true
}

/// An optional number, read by serde itself (its range and rounding).
fn number(raw: &[u8], out: &mut Option<f64>) -> bool {
    if raw == b"null" {
        *out = None;
        return true;
    }
    match serde_json::from_slice::<Option<f64>>(raw) {
        Ok(value) => {
            *out = value;
            true
        }
        Err(_) => false,
    }
}

/// A whole number of at most 9 digits (a u32 whatever they are).
fn count(raw: &[u8], out: &mut u32) -> bool {
    if raw.is_empty() || raw.len() > 9 || !raw.iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Leading zeros are not JSON: the walker gave up on them already.
    *out = raw.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    true
}

/// A usage of plain counts ([`counts`]); None for anything else (serde
/// then judges the line).
fn usage(raw: &[u8]) -> Option<Usage> {
    let mut given: [Option<u64>; 5] = [None; 5];
    counts(raw, |name, n| {
        let slot = match name {
            b"\"prompt_tokens\"" => 0,
            b"\"completion_tokens\"" => 1,
            b"\"total_tokens\"" => 2,
            b"\"cached_tokens\"" => 3,
            b"\"reasoning_tokens\"" => 4,
            _ => return None,
        };
        match given[slot] {
            Some(_) => None,
            None => {
                given[slot] = Some(n);
                Some(())
            }
        }
    })?;
    Some(Usage {
        prompt_tokens: given[0]?,
        completion_tokens: given[1]?,
        total_tokens: given[2]?,
        cached_tokens: given[3],
        reasoning_tokens: given[4],
    })
}

#[cfg(test)]
mod tests;
