//! How a message looks: text per level, stamps, colour, JSON lines, counts.

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
            false,
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
fn colour_marks_the_prefixes_in_text_and_never_in_json() {
    let now = Utc::now();
    let none = json!({});
    let error = line(
        LogFormat::Text,
        true,
        now,
        false,
        &message(Level::Error, "it", none.clone()),
    );
    assert_eq!(error, "\x1b[1m\x1b[31merror:\x1b[0m it");
    let warn = line(
        LogFormat::Text,
        true,
        now,
        false,
        &message(Level::Warn, "it", none.clone()),
    );
    assert!(warn.starts_with("promptbatch: \x1b["), "{warn:?}");
    assert!(warn.ends_with("warning:\x1b[0m it"), "{warn:?}");
    let json = line(
        LogFormat::Json,
        true,
        now,
        false,
        &message(Level::Error, "it", none),
    );
    assert!(!json.contains('\x1b'), "{json:?}");
    assert_eq!(heading("cost", false), "cost");
    assert_eq!(heading("cost", true), "\x1b[1mcost\x1b[0m");
}

#[test]
fn auto_colours_only_a_terminal_without_no_color_or_a_dumb_term() {
    use ColorChoice::*;
    // choice, terminal, NO_COLOR, TERM, colour?
    let cases = [
        (Auto, true, None, Some("xterm-256color"), true),
        (Auto, true, None, None, true),
        (Auto, false, None, Some("xterm"), false),
        (Auto, true, Some("1"), Some("xterm"), false),
        // NO_COLOR set but empty does not count.
        (Auto, true, Some(""), Some("xterm"), true),
        (Auto, true, None, Some("dumb"), false),
        (Always, false, Some("1"), Some("dumb"), true),
        (Never, true, None, Some("xterm"), false),
    ];
    for (choice, terminal, no_color, term, expected) in cases {
        assert_eq!(
            choice.decide(terminal, no_color, term),
            expected,
            "{choice:?} terminal={terminal} NO_COLOR={no_color:?} TERM={term:?}"
        );
    }
}

#[test]
fn the_color_flag_is_found_before_clap_parses() {
    let from = |args: &[&str]| ColorChoice::from_args(args.iter().copied());
    assert_eq!(from(&["promptbatch", "run", "--help"]), ColorChoice::Auto);
    assert_eq!(from(&["pb", "--color", "never", "run"]), ColorChoice::Never);
    assert_eq!(from(&["pb", "run", "--color=always"]), ColorChoice::Always);
    assert_eq!(
        from(&["pb", "--color=never", "run", "--color", "always"]),
        ColorChoice::Always
    );
    // After `--` it is an argument, not the flag; a bad value is clap's to report.
    assert_eq!(
        from(&["pb", "run", "--", "--color=always"]),
        ColorChoice::Auto
    );
    assert_eq!(from(&["pb", "--color=purple"]), ColorChoice::Auto);
}

#[test]
fn counts_agree_with_their_nouns() {
    assert_eq!(count(1, "row"), "1 row");
    assert_eq!(count(2, "row"), "2 rows");
    assert_eq!(count(0, "request"), "0 requests");
    assert_eq!(count_as(1, "retry", "retries"), "1 retry");
    assert_eq!(count_as(3, "retry", "retries"), "3 retries");
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
            false,
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
    let text = line(LogFormat::Json, false, now, true, &m);
    assert!(!text.contains('\n'), "{text}");
    let value: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["ts"], "2026-11-25T23:00:00.000Z");
    assert_eq!(value["level"], "warn");
    assert_eq!(value["event"], "end");
    assert_eq!(value["message"], "two\nlines");
    assert_eq!(value["requests"]["ok"], 2);
}
