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
//! Stdout carries results (`validate`'s estimate, `report`'s table, `run
//! --json`'s summary) and goes through [`out`]; everything else is stderr.
//!
//! Text lines on a stderr that is not a terminal (cron, systemd, a pipe)
//! start with the UTC time to the second, `2026-11-26T02:00:05Z promptbatch:
//! ...`: read in a log hours later, a line means little without it. On a
//! terminal they stay as they are (the reader is watching); progress log
//! lines carry the time either way.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
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
    /// Whether text lines start with the time; None until the first line
    /// asks (stderr is not a terminal).
    stamp: Option<bool>,
}

static STATE: Mutex<State> = Mutex::new(State {
    format: LogFormat::Text,
    bar: None,
    stamp: None,
});

impl State {
    /// Text lines are stamped where stderr is not a terminal: a log file.
    fn stamp(&mut self) -> bool {
        *self
            .stamp
            .get_or_insert_with(|| !std::io::stderr().is_terminal())
    }
}

fn state() -> std::sync::MutexGuard<'static, State> {
    // A panic while printing leaves nothing half-set worth refusing over.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets the format of every later message (once, when a command starts).
///
/// With JSON, a panic's message becomes an `error` event too (a panic in one
/// request is caught and recorded, and its default text would be the one
/// line on stderr a shipper cannot parse).
pub fn set_format(format: LogFormat) {
    state().format = format;
    if format == LogFormat::Json {
        std::panic::set_hook(Box::new(|info| {
            let m = Message {
                level: Level::Error,
                event: "error",
                message: &format!("internal error (a bug in promptbatch): {info}"),
                fields: Map::new(),
            };
            // Not through the state's lock: the panic may have happened while holding it.
            let text = line(LogFormat::Json, Utc::now(), false, &m);
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }));
    }
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
    say(level, event, message, fields, false);
}

/// A progress line: text has the time in front even on a terminal (it is a
/// log line: `--progress log`), JSON the figures.
pub fn progress(message: impl Display, fields: Map<String, Value>) {
    say(Level::Info, "progress", message, fields, true);
}

fn say(
    level: Level,
    event: &str,
    message: impl Display,
    fields: Map<String, Value>,
    always_stamp: bool,
) {
    let mut state = state();
    let stamp = always_stamp || state.stamp();
    let line = line(
        state.format,
        Utc::now(),
        stamp,
        &Message {
            level,
            event,
            message: &message.to_string(),
            fields,
        },
    );
    emit(&mut state, &line);
}

/// `text` with the time in front.
fn stamped(now: DateTime<Utc>, text: impl Display) -> String {
    format!("{} {text}", now.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Text for people only (the summary table): JSON leaves it out, its figures
/// travel in an event instead. In a log only its first line is stamped, so
/// the table's columns stay aligned.
pub fn text(block: &str) {
    let mut state = state();
    if state.format == LogFormat::Text {
        let block = block.trim_end_matches('\n');
        if state.stamp() {
            emit(&mut state, &stamped(Utc::now(), block));
        } else {
            emit(&mut state, block);
        }
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

/// The line a message becomes (without the newline); `stamp`: text starts
/// with the time.
fn line(format: LogFormat, now: DateTime<Utc>, stamp: bool, m: &Message) -> String {
    match format {
        LogFormat::Text => {
            let text = match m.level {
                Level::Info => format!("promptbatch: {}", m.message),
                Level::Warn => format!("promptbatch: warning: {}", m.message),
                Level::Error => format!("error: {}", m.message),
            };
            if stamp {
                stamped(now, text)
            } else {
                text
            }
        }
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
        let at = |level| {
            line(
                LogFormat::Text,
                now,
                false,
                &message(level, "it", none.clone()),
            )
        };
        assert_eq!(at(Level::Info), "promptbatch: it");
        assert_eq!(at(Level::Warn), "promptbatch: warning: it");
        assert_eq!(at(Level::Error), "error: it");
    }

    #[test]
    fn a_stamped_text_line_starts_with_the_utc_time_to_the_second() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T03:00:05.750+01:00")
            .expect("a time")
            .with_timezone(&Utc);
        let none = json!({});
        let at = |level| {
            line(
                LogFormat::Text,
                now,
                true,
                &message(level, "it", none.clone()),
            )
        };
        assert_eq!(at(Level::Info), "2026-11-26T02:00:05Z promptbatch: it");
        assert_eq!(
            at(Level::Warn),
            "2026-11-26T02:00:05Z promptbatch: warning: it"
        );
        assert_eq!(at(Level::Error), "2026-11-26T02:00:05Z error: it");
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
        // JSON has its `ts`: never a stamp in front.
        let text = line(LogFormat::Json, now, true, &m);
        assert!(!text.contains('\n'), "{text}");
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["ts"], "2026-11-25T23:00:00.000Z");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["event"], "end");
        assert_eq!(value["message"], "two\nlines");
        assert_eq!(value["requests"]["ok"], 2);
    }
}
