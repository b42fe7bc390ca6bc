//! The directive tables against the parser and the help people read.

use super::*;

#[test]
fn text_without_directives_is_kept_with_whitespace_collapsed() {
    let (d, text) = parse("  hello \n world ").expect("valid");
    assert_eq!(d, Directives::default());
    assert_eq!(text, "hello world");
}

#[test]
fn several_directives_are_parsed_and_removed() {
    let (d, text) = parse(
        "Hi [mock:fail=429, 500,reset] there[mock:latency=20][mock:no-usage] [mock:cost=openrouter][mock:model=x/y][mock:tools] [mock:retry-after-ms=250][mock:chunk-ms=3][mock:echo-auth]",
    )
    .expect("valid");
    assert_eq!(text, "Hi there");
    assert_eq!(
        d.fails,
        vec![Fault::RateLimit, Fault::Server500, Fault::Reset]
    );
    assert_eq!(d.latency, Duration::from_millis(20));
    assert_eq!(d.chunk_gap, Duration::from_millis(3));
    assert!(d.no_usage && d.tools && d.echo_auth);
    assert_eq!(d.cost, Some(CostMode::OpenRouter));
    assert_eq!(d.model.as_deref(), Some("x/y"));
    assert_eq!(d.retry_after_ms, Some(250));
}

/// `[mock:NAME]` or `[mock:NAME=VALUE]` as a directive is written.
fn written(d: &Directive, value: &str) -> String {
    match d.value {
        Some(_) => format!("[mock:{}={value}]", d.name),
        None => format!("[mock:{}]", d.name),
    }
}

#[test]
fn every_listed_directive_fault_and_cost_mode_is_accepted() {
    // A value each directive takes; a new one without a value here fails below.
    let example = |name| match name {
        "fail" => "429,500,reset",
        "retry-after-ms" | "latency" | "chunk-ms" => "25",
        "cost" => "openrouter",
        "model" => "x/y",
        _ => "",
    };
    for d in DIRECTIVES {
        let text = written(d, example(d.name));
        let (parsed, rest) = parse(&format!("hi {text}")).expect(&text);
        assert_ne!(parsed, Directives::default(), "{text} changed nothing");
        assert_eq!(rest, "hi");
    }
    for (name, fault, _) in FAULT_NAMES {
        let (parsed, _) = parse(&format!("[mock:fail={name}]")).expect(name);
        assert_eq!(parsed.fails, vec![*fault], "{name}");
    }
    for (name, mode, _) in COST_MODES {
        let (parsed, _) = parse(&format!("[mock:cost={name}]")).expect(name);
        assert_eq!(parsed.cost, Some(*mode), "{name}");
    }
}

#[test]
fn the_tables_name_each_thing_once() {
    let mut names: Vec<&str> = DIRECTIVES.iter().map(|d| d.name).collect();
    let mut faults: Vec<&str> = FAULT_NAMES.iter().map(|(n, _, _)| *n).collect();
    for list in [&mut names, &mut faults] {
        let before = list.len();
        list.sort_unstable();
        list.dedup();
        assert_eq!(list.len(), before, "{list:?}");
    }
}

#[test]
fn bad_directives_are_errors_that_name_them() {
    for (text, expected) in [
        ("[mock:fail=418]", "unknown mock fault `418`"),
        ("[mock:latency=soon]", "expected whole milliseconds"),
        ("[mock:bogus]", "unknown mock directive `[mock:bogus]`"),
        ("[mock:cost=free]", "unknown mock cost mode `free`"),
        ("[mock:fail]", "needs a value"),
        ("oops [mock:fail=429", "unterminated"),
    ] {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

/// The help people read is generated from the tables: parse it back and
/// check it lists exactly what the mock understands, each accepted.
#[test]
fn mock_server_help_lists_every_directive_fault_and_cost_mode() {
    let mut command = crate::docs::command();
    command.build();
    let help = command
        .find_subcommand_mut("mock-server")
        .expect("mock-server")
        .render_long_help()
        .to_string();
    let listed: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("[mock:"))
        .filter_map(|l| l.split(']').next())
        .collect();
    let names: Vec<&str> = listed
        .iter()
        .map(|d| d.split('=').next().unwrap_or(d))
        .collect();
    let table: Vec<&str> = DIRECTIVES.iter().map(|d| d.name).collect();
    assert_eq!(names, table, "{help}");
    // Each as listed, its placeholder filled in, is accepted.
    for listed in &listed {
        let filled = listed
            .replace("F1,F2,...", "429,500")
            .replace("=MS", "=5")
            .replace("=MODE", "=openrouter")
            .replace("=NAME", "=x/y")
            .replace("=B64,B64,...", "=e30=,W10=");
        let (parsed, _) = parse(&format!("[mock:{filled}]")).expect(&filled);
        assert_ne!(parsed, Directives::default(), "{filled}");
    }
    // The rows under a heading, up to the next blank line.
    let section = |title: &str| -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with(title))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let faults = section("Faults");
    let fault_table: Vec<&str> = FAULT_NAMES.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(faults, fault_table, "{help}");
    for fault in &faults {
        parse(&format!("[mock:fail={fault}]")).expect(fault);
    }
    let modes = section("Cost modes");
    assert_eq!(modes.len(), COST_MODES.len(), "{help}");
    for mode in &modes {
        parse(&format!("[mock:cost={mode}]")).expect(mode);
    }
}

#[test]
fn replies_are_base64_texts_in_attempt_order() {
    // "{}" and "```json\n[1]\n```" in standard base64.
    let (d, rest) = parse("q [mock:reply=e30=, YGBganNvbgpbMV0KYGBg]").expect("parses");
    assert_eq!(
        d.replies,
        vec!["{}".to_string(), "```json\n[1]\n```".into()]
    );
    assert_eq!(rest, "q");
    let e = parse("[mock:reply=not base64!]").expect_err("not base64");
    assert!(e.to_string().contains("not standard base64"), "{e}");
}
