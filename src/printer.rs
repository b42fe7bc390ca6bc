//! The printer: every line for people goes through here.
//!
//! One place decides how a message looks (`promptbatch: ...` notices,
//! `promptbatch: warning: ...`, `error: ...`; or one JSON object per line with
//! `--log-format json`) and whether a progress bar is drawing: while one is,
//! a line is printed with the bar lifted (indicatif's `suspend`) so it never
//! lands in the middle of the bar. The model is ripgrep's `messages.rs`: a
//! little global state, set once per command, that every caller shares
//! without threading a handle through the pipeline.
//!
//! Stdout carries results (`validate`'s estimate, `report`'s table) and goes
//! through [`out`]; everything else is stderr.

use std::fmt::Display;
use std::io::Write;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::ProgressBar;
use serde_json::{Map, Value};

/// How messages on stderr are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: `promptbatch: ...`, `error: ...`, the summary table.
    #[default]
    Text,
    /// One JSON object per line (`ts`, `level`, `event`, `message`, figures), for log shippers.
    Json,
}

/// How serious a message is; `level` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

struct State {
    format: LogFormat,
    /// The bar being drawn, if any: lines are printed with it lifted.
    bar: Option<ProgressBar>,
}

static STATE: Mutex<State> = Mutex::new(State {
    format: LogFormat::Text,
    bar: None,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    // A panic while printing leaves nothing half-set worth refusing over.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets the format of every later message (once, when a command starts).
pub fn set_format(format: LogFormat) {
    state().format = format;
}

pub fn format() -> LogFormat {
    state().format
}

/// A bar is drawing from now on: lines go above it.
pub fn bar_drawing(bar: &ProgressBar) {
    state().bar = Some(bar.clone());
}

/// The bar is gone (finished and cleared).
pub fn bar_done() {
    state().bar = None;
}

/// Something people should know: `promptbatch: {message}`.
pub fn notice(message: impl Display) {
    event(Level::Info, "notice", message, Map::new());
}

/// Something that may be wrong but does not stop anything: `promptbatch: warning: {message}`.
pub fn warning(message: impl Display) {
    event(Level::Warn, "warning", message, Map::new());
}

/// Why a command failed, or a failure it survived: `error: {message}`.
pub fn error(message: impl Display) {
    event(Level::Error, "error", message, Map::new());
}

/// A message with figures: text shows the message only, JSON adds the figures.
pub fn event(level: Level, event: &str, message: impl Display, fields: Map<String, Value>) {
    let mut state = state();
    let line = line(
        state.format,
        Utc::now(),
        &Message {
            level,
            event,
            message: &message.to_string(),
            fields,
        },
    );
    emit(&mut state, &line);
}

/// A progress line: text puts a timestamp in it (it is for logs), JSON the figures.
pub fn progress(message: impl Display, fields: Map<String, Value>) {
    let message = match format() {
        LogFormat::Text => stamped(Utc::now(), message),
        // The event has its `ts`.
        LogFormat::Json => message.to_string(),
    };
    event(Level::Info, "progress", message, fields);
}

/// A text log line's message with the time in front: read in a cron log
/// hours later, "10/40" means little without it.
fn stamped(now: DateTime<Utc>, message: impl Display) -> String {
    format!(
        "{} {message}",
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Text for people only (the summary table): JSON leaves it out, its figures
/// travel in an event instead.
pub fn text(block: &str) {
    let mut state = state();
    if state.format == LogFormat::Text {
        emit(&mut state, block.trim_end_matches('\n'));
    }
}

/// A command's result on stdout.
pub fn out(text: &str) -> std::io::Result<()> {
    let state = state();
    let write = || {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    };
    match &state.bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Writes one line (or block) on stderr, lifting the bar while it does.
fn emit(state: &mut State, line: &str) {
    let write = || {
        let mut stderr = std::io::stderr().lock();
        // Stderr gone (a closed pipe): nowhere left to say so.
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.write_all(b"\n");
    };
    match &state.bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

struct Message<'a> {
    level: Level,
    event: &'a str,
    message: &'a str,
    fields: Map<String, Value>,
}

/// The line a message becomes (without the newline).
fn line(format: LogFormat, now: DateTime<Utc>, m: &Message) -> String {
    match format {
        LogFormat::Text => match m.level {
            Level::Info => format!("promptbatch: {}", m.message),
            Level::Warn => format!("promptbatch: warning: {}", m.message),
            Level::Error => format!("error: {}", m.message),
        },
        LogFormat::Json => {
            let mut object = Map::new();
            object.insert(
                "ts".into(),
                now.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
            );
            object.insert("level".into(), m.level.name().into());
            object.insert("event".into(), m.event.into());
            object.insert("message".into(), m.message.into());
            for (key, value) in &m.fields {
                object.entry(key.clone()).or_insert_with(|| value.clone());
            }
            Value::Object(object).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message<'a>(level: Level, text: &'a str, fields: Value) -> Message<'a> {
        let Value::Object(fields) = fields else {
            panic!("fields are an object")
        };
        Message {
            level,
            event: "end",
            message: text,
            fields,
        }
    }

    #[test]
    fn text_has_one_format_per_level() {
        let now = Utc::now();
        let none = json!({});
        let at = |level| line(LogFormat::Text, now, &message(level, "it", none.clone()));
        assert_eq!(at(Level::Info), "promptbatch: it");
        assert_eq!(at(Level::Warn), "promptbatch: warning: it");
        assert_eq!(at(Level::Error), "error: it");
    }

    #[test]
    fn a_text_progress_line_starts_with_the_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T23:00:05.250Z")
            .expect("a time")
            .with_timezone(&Utc);
        assert_eq!(
            stamped(now, "3/10 (30%)"),
            "2026-11-25T23:00:05Z 3/10 (30%)"
        );
    }

    #[test]
    fn json_is_one_line_with_the_fields_and_the_figures() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T23:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let m = message(
            Level::Warn,
            "two\nlines",
            json!({"requests": {"ok": 2}, "level": "not this one"}),
        );
        let text = line(LogFormat::Json, now, &m);
        assert!(!text.contains('\n'), "{text}");
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["ts"], "2026-11-25T23:00:00.000Z");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["event"], "end");
        assert_eq!(value["message"], "two\nlines");
        assert_eq!(value["requests"]["ok"], 2);
    }
}
