//! The read-back made in the resume scan's pass, and a report's
//! ([`crate::report::fold_output`]), against serde's reading of every
//! line, on every shape of figure.

use super::*;
use crate::sink::resume::tests::record;

/// The tallies of `lines` (after a first line every scan accepts) read both
/// ways, and how many lines the pass left to serde; None when the resume
/// scan refuses the file (then no run reads it back).
fn both_ways(lines: &[String]) -> Option<(String, String, u64)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    let mut text = record("first/default", "ok", "a1", r#","cost_usd":0.5"#) + "\n";
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write");
    let mut back = ReadBack::default();
    crate::sink::scan_with(&path, &mut back).ok()?;
    let read_by_serde = back.read_by_serde;
    let fast = format!("{:?}", back.finish());
    let serde = format!("{:?}", by_serde(&path));
    // A report's read-back takes the same fast path (its dedupe keeps
    // each key's last line: all of them when the key is the only one).
    for dedupe in [false, true] {
        let mut fold = Tally::default();
        crate::report::fold_output(&path, &mut fold, |_| true, dedupe).expect("fold");
        if !dedupe || lines.len() == 1 {
            assert_eq!(format!("{fold:?}"), serde, "dedupe {dedupe}");
        }
    }
    Some((fast, serde, read_by_serde))
}

/// Every line's figures as serde reads them (the read-back before this
/// fast path): the reference.
fn by_serde(path: &std::path::Path) -> Tally {
    let mut tally = Tally::default();
    let mut lines = crate::sink::Lines::open(path, crate::sink::Torn::Yield)
        .expect("open")
        .expect("there");
    let mut slim = Vec::new();
    while let Some(line) = lines.next_line().expect("read") {
        if let Some(figures) = line_figures(&line, &mut slim) {
            tally.observe_line(&figures);
        }
    }
    tally
}

/// `extra` fields after a record's own; `swap` replaces a part of it.
fn line(status: &str, swap: (&str, &str), extra: &str) -> String {
    record("k/default", status, "b2", extra).replacen(swap.0, swap.1, 1)
}

const NONE: (&str, &str) = ("", "");
const RUN: &str = r#","model":"google/gemma-3-4b-it","content":"Paris.","finish_reason":"stop","usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15},"cost_usd":null,"cost_source":null,"latency_ms":0.5,"ttft_ms":null,"error":null"#;

#[test]
fn the_lines_a_run_writes_are_read_without_serde_to_the_same_figures() {
    let usage = r#","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"cached_tokens":4,"reasoning_tokens":5}"#;
    let shapes = [
        line("ok", NONE, RUN),
        line("ok", NONE, &format!("{RUN},\"extra\":[1,{{\"a\":null}}]")),
        line("ok", NONE, usage),
        line(
            "ok",
            NONE,
            r#","model":"m","cost_usd":1.05e-5,"latency_ms":12.25,"ttft_ms":3.5"#,
        ),
        line(
            "ok",
            NONE,
            r#","model":"mé plain","finish_reason":null,"usage":null"#,
        ),
        line("ok", ("\"attempts\":1", "\"attempts\":123456789"), ""),
        line(
            "ok",
            ("\"uncertain_attempts\":0", "\"uncertain_attempts\":7"),
            "",
        ),
        line(
            "ok",
            ("\"param_set\":\"default\",", ""),
            r#","latency_ms":-0.0"#,
        ),
        line("error", NONE, r#","cost_usd":0.25,"error":null"#),
        r#"{"status":"ok","key":"n/default","cost_usd":3}"#.to_string(),
        // The endpoint that answered (jobs with [[endpoints]]), or null.
        line("ok", NONE, &format!(r#"{RUN},"endpoint":"key-a""#)),
        line("ok", NONE, r#","endpoint":"fallback é","latency_ms":3.5"#),
        line("ok", NONE, r#","endpoint":null,"latency_ms":3.5"#),
        line("error", NONE, r#","endpoint":"key-b","error":null"#),
    ];
    for shape in &shapes {
        let (fast, serde, by_serde) = both_ways(std::slice::from_ref(shape)).expect(shape);
        assert_eq!(fast, serde, "{shape}");
        assert_eq!(by_serde, 0, "left to serde: {shape}");
    }
    // All at once, as a file holds them.
    let (fast, serde, _) = both_ways(&shapes).expect("scans");
    assert_eq!(fast, serde);
}

#[test]
fn every_other_shape_is_left_to_serde_and_read_as_it_reads_it() {
    let shapes = [
        // Errors: their kind is serde's to read, and a kind that is no string skips the line.
        line(
            "error",
            NONE,
            r#","error":{"kind":"server","status":500,"message":"x"}"#,
        ),
        line("error", NONE, r#","error":{"kind":5}"#),
        line("error", NONE, r#","error":{}"#),
        // Strings that are not plain, or not strings.
        line("ok", NONE, r#","model":null"#),
        line("ok", NONE, r#","model":"m\"q\u00e9""#),
        line("ok", NONE, r#","finish_reason":"st\u006fp""#),
        line("ok", NONE, r#","finish_reason":5"#),
        line("ok", ("\"param_set\":\"default\"", "\"param_set\":7"), ""),
        line(
            "ok",
            ("\"param_set\":\"default\"", "\"param_set\":null"),
            "",
        ),
        // Usage of every odd shape: skipped as unreported, never the line.
        line(
            "ok",
            NONE,
            r#","usage":{"prompt_tokens":1, "completion_tokens":2,"total_tokens":3}"#,
        ),
        line(
            "ok",
            NONE,
            r#","usage":{"prompt_tokens":-1,"completion_tokens":2,"total_tokens":1}"#,
        ),
        line(
            "ok",
            NONE,
            r#","usage":{"prompt_tokens":1,"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#,
        ),
        line(
            "ok",
            NONE,
            r#","usage":{"completion_tokens":2,"total_tokens":3}"#,
        ),
        line(
            "ok",
            NONE,
            r#","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"other":"x"}"#,
        ),
        line(
            "ok",
            NONE,
            r#","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"cached_tokens":null}"#,
        ),
        line(
            "ok",
            NONE,
            r#","usage":{"prompt_tokens":99999999999999999999,"completion_tokens":2,"total_tokens":3}"#,
        ),
        line("ok", NONE, r#","usage":{}"#),
        line("ok", NONE, r#","usage":"garbage""#),
        line("ok", NONE, r#","usage":[1,2]"#),
        // Figures of another type: the line is skipped by both.
        line("ok", NONE, r#","latency_ms":"fast""#),
        line("ok", NONE, r#","ttft_ms":true"#),
        line("ok", ("\"attempts\":1", "\"attempts\":1.5"), ""),
        line("ok", ("\"attempts\":1", "\"attempts\":-1"), ""),
        line("ok", ("\"attempts\":1", "\"attempts\":4294967296"), ""),
        line("ok", ("\"attempts\":1", "\"attempts\":null"), ""),
        line(
            "ok",
            ("\"uncertain_attempts\":0", "\"uncertain_attempts\":\"0\""),
            "",
        ),
        // An endpoint with an escape, or not a string: serde's (a line it
        // reads without an endpoint, never drops).
        line("ok", NONE, r#","endpoint":"key-\u0061","latency_ms":1"#),
        line("ok", NONE, r#","endpoint":5,"latency_ms":1"#),
        line("ok", NONE, r#","endpoint":{"name":"a"},"latency_ms":1"#),
        line(
            "error",
            NONE,
            r#","endpoint":"key-b","error":{"kind":"server","status":500,"message":"x"}"#,
        ),
        line("ok", NONE, r#","endpoint":"a","endpoint":"b""#),
        line("ok", NONE, r#","\u0065ndpoint":"a""#),
        // A figure's field twice, or its name escaped.
        line("ok", NONE, r#","latency_ms":1,"latency_ms":2"#),
        line("ok", NONE, r#","param_set":"again""#),
        line("ok", ("\"param_set\"", "\"p\\u0061ram_set\""), ""),
        // Lines the fast reader gives up on as a whole.
        line("ok", ("\"key\"", "\"k\\u0065y\""), ""),
        line("ok", ("\"input\":", "\t\"input\":"), RUN),
        line("ok", NONE, r#","cost_usd":1e400"#),
    ];
    let mut compared = 0;
    for shape in &shapes {
        let Some((fast, serde, by_serde)) = both_ways(std::slice::from_ref(shape)) else {
            continue;
        };
        compared += 1;
        assert_eq!(fast, serde, "{shape}");
        assert_eq!(by_serde, 1, "not left to serde: {shape}");
    }
    assert!(compared >= shapes.len() - 2, "the scan refused {compared}");
}

#[test]
fn the_read_back_leaves_out_a_torn_last_line_as_the_scan_does() {
    let extra = |i: usize| {
        format!(
            r#","model":"m{}","finish_reason":"stop","usage":{{"prompt_tokens":{i},"completion_tokens":3,"total_tokens":{}}},"cost_usd":0.{i},"latency_ms":{i}.5,"error":null"#,
            i % 3,
            i + 3
        )
    };
    let mut text: String = (1..=50)
        .map(|i| record(&format!("r{i}/default"), "ok", "a1", &extra(i)) + "\n")
        .collect();
    text.push_str(&record(
        "e/default",
        "error",
        "b2",
        r#","error":{"kind":"server","status":500,"message":"x"}"#,
    ));
    text.push('\n');
    text.push_str("{\"key\":\"t/def");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, &text).expect("write");
    let mut back = ReadBack::default();
    let resume = crate::sink::scan_with(&path, &mut back).expect("scan");
    assert_eq!(resume.lines, 51);
    let early = back.finish();
    let late = by_serde(&path);
    assert_eq!(format!("{early:?}"), format!("{late:?}"));
    assert_eq!((early.ok, early.failed), (50, 1));
}

/// Regression guard: an endpoint that is not a string (a hand-edited line)
/// leaves the line counted, without an endpoint, on both paths.
#[test]
fn an_endpoint_that_is_no_string_is_read_as_none_and_the_line_still_counts() {
    let shape = line("ok", NONE, r#","endpoint":5,"latency_ms":1"#);
    let (fast, serde, _) = both_ways(std::slice::from_ref(&shape)).expect("scans");
    assert_eq!(fast, serde);
    let figures: super::super::LineFigures = serde_json::from_str(&shape).expect("figures");
    assert_eq!(figures.endpoint, None);
    let named: super::super::LineFigures =
        serde_json::from_str(&line("ok", NONE, r#","endpoint":"key-\u0061""#)).expect("figures");
    assert_eq!(named.endpoint.as_deref(), Some("key-a"));
}
