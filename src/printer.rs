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
//!
//! Colour (`--color`, `NO_COLOR`) is decided here once per command, for
//! stderr only: the `error:` / `warning:` prefixes and the summary table's
//! headings. A JSON log never gets any, and neither do results on stdout
//! (they end up in files). [`count`] writes "1 row" / "2 rows" for every
//! message that puts a number before a noun.

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

/// `--color`: when messages on stderr are coloured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// When stderr is a terminal, TERM is not `dumb` and NO_COLOR is unset or empty.
    #[default]
    Auto,
    /// Always, NO_COLOR and pipes included (not in a JSON log).
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether stderr gets colour: `no_color` is NO_COLOR's value, `term` TERM's.
    pub fn decide(self, terminal: bool, no_color: Option<&str>, term: Option<&str>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // https://no-color.org: set and not empty means no colour.
            ColorChoice::Auto => {
                terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb")
            }
        }
    }

    /// The choice for clap's own help and errors, which it prints before
    /// the flags are parsed: taken from the raw arguments (the last
    /// `--color` before a `--` wins; a bad value is clap's to report).
    pub fn from_args<I, S>(args: I) -> ColorChoice
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut choice = ColorChoice::Auto;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg.as_ref().to_string_lossy().into_owned();
            if arg == "--" {
                break;
            }
            let value = match arg.strip_prefix("--color") {
                Some("") => args
                    .next()
                    .map(|v| v.as_ref().to_string_lossy().into_owned()),
                Some(rest) => rest.strip_prefix('=').map(str::to_string),
                None => None,
            };
            match value.as_deref() {
                Some("always") => choice = ColorChoice::Always,
                Some("never") => choice = ColorChoice::Never,
                Some("auto") => choice = ColorChoice::Auto,
                _ => {}
            }
        }
        choice
    }

    /// The same choice for clap.
    pub fn clap(self) -> clap::ColorChoice {
        match self {
            ColorChoice::Auto => clap::ColorChoice::Auto,
            ColorChoice::Always => clap::ColorChoice::Always,
            ColorChoice::Never => clap::ColorChoice::Never,
        }
    }
}

/// "1 row", "2 rows", "0 rows": a count and its noun, for messages to people.
/// Nouns whose plural is not the singular plus "s" use [`count_as`].
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// [`count`] with the plural given: `count_as(n, "retry", "retries")`.
pub fn count_as(n: u64, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
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
    /// Colour on stderr (never in JSON, whatever this says).
    color: bool,
    /// The bar being drawn, if any: lines are printed with it lifted.
    bar: Option<ProgressBar>,
    /// Whether text lines start with the time; None until the first line
    /// asks (stderr is not a terminal).
    stamp: Option<bool>,
}

static STATE: Mutex<State> = Mutex::new(State {
    format: LogFormat::Text,
    color: false,
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
            let text = line(LogFormat::Json, false, Utc::now(), false, &m);
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }));
    }
}

pub fn format() -> LogFormat {
    state().format
}

/// Decides once per command whether stderr gets colour (see [`ColorChoice::decide`]).
pub fn set_color(choice: ColorChoice) {
    let no_color = std::env::var("NO_COLOR").ok();
    let term = std::env::var("TERM").ok();
    let color = choice.decide(
        std::io::stderr().is_terminal(),
        no_color.as_deref(),
        term.as_deref(),
    );
    state().color = color;
}

/// Whether text on stderr is coloured now (a JSON log never is).
pub fn color() -> bool {
    let state = state();
    state.color && state.format == LogFormat::Text
}

/// `text` in bold, when `color`: the summary table's headings.
pub fn heading(text: &str, color: bool) -> String {
    let style = anstyle::Style::new().bold();
    styled(text, style, color)
}

fn styled(text: &str, style: anstyle::Style, color: bool) -> String {
    if color {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
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
        state.color,
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
fn line(format: LogFormat, color: bool, now: DateTime<Utc>, stamp: bool, m: &Message) -> String {
    use anstyle::AnsiColor;
    let prefix = |name: &str, hue: AnsiColor| {
        let style = anstyle::Style::new().bold().fg_color(Some(hue.into()));
        styled(name, style, color)
    };
    match format {
        LogFormat::Text => {
            let text = match m.level {
                Level::Info => format!("promptbatch: {}", m.message),
                Level::Warn => format!(
                    "promptbatch: {} {}",
                    prefix("warning:", AnsiColor::Yellow),
                    m.message
                ),
                Level::Error => format!("{} {}", prefix("error:", AnsiColor::Red), m.message),
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
mod tests;
