//! The resume scan on every shape of output: latest lines, charges, torn
//! and edited lines, and files that are not outputs.

use super::*;

/// A record line as a run writes it, with `extra` fields at its end.
pub(crate) fn record(key: &str, status: &str, sha: &str, extra: &str) -> String {
    let (id, set) = key.split_once('/').unwrap_or((key, "default"));
    format!(
        r#"{{"key":"{key}","job":"t","id":"{id}","param_set":"{set}","status":"{status}","attempts":1,"uncertain_attempts":0,"client_request_id":"t:{id}:{set}:1","request_sha256":"{}","params":{{}},"input":{{}}{extra}}}"#,
        sha.repeat(32)
    )
}

fn ok() -> String {
    record("a/default", "ok", "a1", r#","cost_usd":0.5"#)
}
fn err_b() -> String {
    record("b/default", "error", "b2", r#","cost_usd":null"#)
}
fn ok_b() -> String {
    record("b/default", "ok", "b2", r#","cost_usd":0.25"#)
}

fn write(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, content).expect("write");
    (dir, path)
}

/// Scans and repairs, as a run does once it holds the lock.
fn scan_repair(path: &Path) -> Result<ResumeState, SinkError> {
    let state = scan(path)?;
    assert!(state.unchanged(path));
    state.repair(path)?;
    Ok(state)
}

#[test]
fn missing_file_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = scan(&dir.path().join("none.jsonl")).expect("scan");
    assert!(state.latest.is_empty());
    assert!(state.unchanged(&dir.path().join("none.jsonl")));
}

#[test]
fn completions_of_ok_lines_are_summed_per_model_and_odd_usage_is_skipped_not_refused() {
    let usage = |model: &str, tokens: &str| {
        format!(
            r#","model":"{model}","usage":{{"prompt_tokens":3,"completion_tokens":{tokens},"total_tokens":9}}"#
        )
    };
    let lines = [
        record("a/default", "ok", "a1", &usage("m", "10")),
        // Superseded by the next line, and still a real reply of "m".
        record("b/default", "ok", "b2", &usage("m", "20")),
        record("b/default", "ok", "b2", &usage("m", "33")),
        record("c/default", "error", "c3", &usage("m", "1000")),
        record("d/default", "ok", "d4", &usage("other", "7")),
        record("e/default", "ok", "e5", &usage("m", "-4")),
        record("f/default", "ok", "f6", &usage("m", "\"12\"")),
        record("g/default", "ok", "g7", r#","model":"m","usage":null"#),
        record("h/default", "ok", "h8", r#","model":"m","usage":"garbage""#),
        record("i/default", "ok", "i9", &usage("m", "9007199254740993")),
    ];
    let (_d, path) = write(&format!("{}\n", lines.join("\n")));
    let state = scan(&path).expect("odd usage is no reason to refuse an output");
    assert_eq!(state.lines, 10);
    assert_eq!(
        state.completions.get("m"),
        Some(&Completions {
            lines: 3,
            tokens: 63
        })
    );
    assert_eq!(state.completions["m"].mean(), Some(21.0));
    assert_eq!(state.completions["other"].tokens, 7);
    assert_eq!(Completions::default().mean(), None);
}

#[test]
fn latest_line_per_key_wins_and_cost_sums_every_line() {
    let (_d, path) = write(&format!("{}\n{}\n{}\n", ok(), err_b(), ok_b()));
    let state = scan_repair(&path).expect("scan");
    assert!(state.is_done("a/default", &"a1".repeat(32)));
    assert!(!state.is_done("a/default", &"c3".repeat(32)));
    assert!(state.is_done("b/default", &"b2".repeat(32)));
    assert_eq!(state.lines, 3);
    assert!((state.recorded_cost_usd - 0.75).abs() < 1e-12);
    assert_eq!(state.cut, None);
}

#[test]
fn the_last_of_many_lines_of_a_key_wins_wherever_the_sort_put_them() {
    let mut lines = String::new();
    for round in 0..3 {
        for i in 0..300 {
            let key = format!("k{i}/default");
            // Even keys end ok, odd ones end in error, the other way round before.
            let last = round == 2;
            let ok = (i % 2 == 0) == last;
            let status = if ok { "ok" } else { "error" };
            lines.push_str(&record(&key, status, "c4", ""));
            lines.push('\n');
        }
    }
    let (_d, path) = write(&lines);
    let state = scan(&path).expect("scan");
    assert_eq!((state.lines, state.keys), (900, 300));
    for i in 0..300 {
        let done = state.is_done(&format!("k{i}/default"), &"c4".repeat(32));
        assert_eq!(done, i % 2 == 0, "k{i}");
    }
}

#[test]
fn folded_charges_count_with_the_line_that_carries_them() {
    let line = record(
        "a/default",
        "error",
        "a1",
        r#","cost_usd":null,"budget_charge_usd":0.25,"prior_charge_usd":0.5"#,
    );
    let (_d, path) = write(&format!("{line}\n{}\n", ok_b()));
    let state = scan(&path).expect("scan");
    assert!((state.recorded_cost_usd - 1.0).abs() < 1e-12);
}

#[test]
fn an_unterminated_last_line_is_cut_off_once_repaired() {
    let (_d, path) = write(&format!("{}\n{}\n{{\"key\":\"c/def", ok(), err_b()));
    let state = scan(&path).expect("scan");
    assert_eq!(state.lines, 2);
    assert_eq!(state.cut.map(|c| c.0), Some(3));
    // Scanning only reads.
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .ends_with("c/def"));
    state.repair(&path).expect("repair");
    let left = std::fs::read_to_string(&path).expect("read");
    assert_eq!(left, format!("{}\n{}\n", ok(), err_b()));
}

#[test]
fn a_complete_but_unterminated_last_line_is_cut_too() {
    let (_d, path) = write(&format!("{}\n{}", ok(), ok_b()));
    let state = scan_repair(&path).expect("scan");
    assert_eq!(state.lines, 1);
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        format!("{}\n", ok())
    );
}

#[test]
fn a_one_line_data_file_without_a_newline_is_never_cut() {
    let (_d, path) = write("{\"question\": \"why?\"}");
    let err = scan(&path).unwrap_err();
    assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
    assert!(check_is_output(&path).is_err());
    // Not even one whose first field is `key`.
    for data in [
        "{\"key\":\"mine\",\"value\":1}",
        "{\"key\": \"mine\", \"value\": 1",
        "{\"key\":\"mine\",\"value\":1",
    ] {
        let (_d, path) = write(data);
        let err = scan(&path).unwrap_err();
        assert!(
            matches!(err, SinkError::NotAnOutput { .. }),
            "{data}: {err}"
        );
        assert!(check_is_output(&path).is_err(), "{data}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), data);
    }
    // A first record cut short by a crash is ours: it is cut, wherever it was cut.
    let line = ok();
    for end in [1, 5, 9, 15, 20, 60, line.len() - 1, line.len()] {
        let (_d, path) = write(&line[..end]);
        let state = scan_repair(&path).expect(&line[..end]);
        assert_eq!(state.cut.map(|c| c.0), Some(1), "{}", &line[..end]);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
    }
}

#[test]
fn a_file_that_is_not_an_output_is_named_as_such() {
    let (_d, path) = write("{\"question\": \"why?\"}\n{\"question\": \"how?\"}\n");
    let err = scan(&path).unwrap_err();
    assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
    assert!(err.to_string().contains("choose another --output"), "{err}");
}

#[test]
fn lines_with_only_key_and_status_are_not_records() {
    let data = "{\"key\":\"x\",\"status\":\"ok\",\"note\":\"mine\"}\n{\"key\":\"x\",\"status\":\"ok\",\"note\":\"also mine\"}\n";
    let (_d, path) = write(data);
    let err = scan(&path).unwrap_err();
    assert!(matches!(err, SinkError::NotAnOutput { .. }), "{err}");
    let err = check_is_output(&path).unwrap_err();
    assert!(err.to_string().contains("out.jsonl"), "{err}");
    assert!(err.to_string().contains("missing field"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), data);
    // A real output, or an empty file, passes.
    let (_d, path) = write(&format!("\n{}\n{}", ok(), err_b()));
    check_is_output(&path).expect("an output");
    let (_d, path) = write("");
    check_is_output(&path).expect("empty");
}

#[test]
fn a_bad_line_in_the_middle_is_an_error_naming_it() {
    let (_d, path) = write(&format!("{}\nnot json\n{}\n", ok(), ok_b()));
    let err = scan(&path).unwrap_err();
    assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
    // Nothing was cut: the user has to look at the file.
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .contains("not json"));
}

#[test]
fn a_terminated_last_line_that_does_not_parse_is_an_error_not_a_cut() {
    let (_d, path) = write(&format!("{}\n\n{{\"key\":\"c/def\n", ok()));
    let err = scan(&path).unwrap_err();
    assert!(matches!(err, SinkError::Corrupt { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("out.jsonl:3"), "{err}");
}

#[test]
fn a_negative_cost_or_charge_is_an_error_never_counted() {
    for extra in [
        r#","cost_usd":-1000"#,
        r#","cost_usd":0.1,"budget_charge_usd":-0.5"#,
        r#","cost_usd":0.1,"prior_charge_usd":-2"#,
    ] {
        let bad = record("c/default", "ok", "c3", extra);
        let (_d, path) = write(&format!("{}\n{bad}\n", ok()));
        let err = scan(&path).unwrap_err();
        assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("negative"), "{err}");
    }
    // Not even on the first line: it is a record, with a figure no run writes.
    let bad = record("c/default", "ok", "c3", r#","cost_usd":-1000"#);
    let (_d, path) = write(&format!("{bad}\n"));
    assert!(matches!(
        scan(&path).unwrap_err(),
        SinkError::Corrupt { line: 1, .. }
    ));
}

#[test]
fn long_lines_are_judged_by_how_they_start() {
    let garbage = "x".repeat(1 << 20);
    // A file without a newline in its first 64 KiB (a disk image, say).
    let (_d, path) = write(&garbage);
    assert!(matches!(scan(&path), Err(SinkError::NotAnOutput { .. })));
    assert!(matches!(
        check_is_output(&path),
        Err(SinkError::NotAnOutput { .. })
    ));
    // After a record: a terminated one was edited in, an unterminated one is cut.
    let (_d, path) = write(&format!("{}\n{garbage}\n{}\n", ok(), ok_b()));
    let err = scan(&path).unwrap_err();
    assert!(matches!(err, SinkError::Corrupt { line: 2, .. }), "{err}");
    let (_d, path) = write(&format!("{}\n\n{garbage}", ok()));
    let state = scan_repair(&path).expect("scan");
    assert_eq!(state.cut, Some((3, 1 << 20)));
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        format!("{}\n\n", ok())
    );
    // A long record is read whole.
    let long = record("c/default", "ok", "c3", &format!(r#","note":"{garbage}""#));
    let (_d, path) = write(&format!("{long}\n{}\n", ok()));
    let state = scan(&path).expect("scan");
    assert_eq!(state.lines, 2);
    check_is_output(&path).expect("an output");
}

#[test]
fn a_file_written_after_the_scan_is_seen_as_changed() {
    let (_d, path) = write(&format!("{}\n", ok()));
    let state = scan(&path).expect("scan");
    assert!(state.unchanged(&path));
    std::fs::write(&path, format!("{}\n{}\n", ok(), err_b())).expect("write");
    assert!(!state.unchanged(&path));
}
