//! The fold over hand-made lines: dedupe, side files, spans, torn lines and
//! the chart series against the totals.

use super::*;

/// A record line with the fields a report reads; `extra` (`,"k":v,...`)
/// overrides or adds.
fn line(key: &str, extra: &str) -> String {
    let mut record: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"key":"{key}","job":"j","id":"{key}","param_set":"p","status":"ok","model":"m","attempts":1,"uncertain_attempts":0,"usage":{{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}},"latency_ms":100.0,"started_at":"2026-11-24T10:00:00.000Z","finished_at":"2026-11-24T10:00:01.000Z"}}"#
    ))
    .expect("record");
    let extra: serde_json::Value =
        serde_json::from_str(&format!("{{{}}}", extra.trim_start_matches(','))).expect("extra");
    for (k, v) in extra.as_object().expect("object") {
        record[k] = v.clone();
    }
    record.to_string()
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    path
}

#[test]
fn the_same_call_counts_once_and_the_same_key_answered_again_counts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(
        dir.path(),
        "a.jsonl",
        &[
            line("q1", r#","response_id":"r1""#),
            line("q2", ""),
            // The same key answered again later: another call.
            line("q2", r#","started_at":"2026-11-25T10:00:00.000Z""#),
            // Neither response id nor start: counted every time.
            line("q3", r#","started_at":null"#),
        ],
    );
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&a, &copy).expect("copy");
    let report = fold(&[a, copy], &[Field::File], None).expect("report");
    assert_eq!(report.totals.requests.ok, 5);
    assert_eq!(report.files[0].lines, 4);
    assert_eq!((report.files[1].lines, report.files[1].duplicates), (1, 3));
    // The copy's only counted line is the one with nothing to tell it by.
    assert_eq!(report.groups.len(), 2);
    assert_eq!(report.groups[1].figures.requests.ok, 1);
}

#[test]
fn the_provider_figure_wins_and_flag_prices_override_the_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "a.jsonl",
        &[
            line("a", r#","cost_usd":0.5,"cost_source":"provider""#),
            line("b", r#","cost_usd":0.25,"cost_source":"pricing""#),
            line("c", r#","cost_usd":null,"cost_source":null"#),
            line("d", r#","usage":null"#),
            line("e", r#","model":"other""#),
        ],
    );
    let without = fold(std::slice::from_ref(&path), &[], None).expect("report");
    let c = &without.totals.cost_usd;
    assert_eq!((c.total, c.provider, c.pricing), (Some(0.75), 0.5, 0.25));
    assert_eq!(c.unpriced_requests, 3);
    assert_eq!(without.pricing_check, None);

    let mut pricing = Pricing::default();
    let price = crate::job::Price {
        input: 1000.0,
        output: 2000.0,
    };
    pricing.models.insert("m".into(), price);
    let with = fold(&[path], &[], Some(&pricing)).expect("report");
    let c = &with.totals.cost_usd;
    // 10 prompt and 20 completion tokens at $1000 / $2000 per 1M: $0.05.
    assert_eq!(c.provider, 0.5);
    assert_eq!(c.pricing, 0.1, "b re-priced, c priced");
    assert_eq!(c.unpriced_requests, 2, "d has no usage, e no price");
    let check = with.pricing_check.expect("a has both figures");
    assert_eq!(
        (check.requests, check.provider_usd, check.pricing_usd),
        (1, 0.5, 0.05)
    );
}

#[test]
fn the_span_is_the_sum_of_each_files_run_never_the_gap_between() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |s: &str, f: &str| format!(r#","started_at":"{s}","finished_at":"{f}""#);
    let a = write(
        dir.path(),
        "a.jsonl",
        &[
            line(
                "1",
                &at("2026-11-24T10:00:00.000Z", "2026-11-24T10:00:05.000Z"),
            ),
            line(
                "2",
                &at("2026-11-24T10:00:02.000Z", "2026-11-24T10:00:10.000Z"),
            ),
        ],
    );
    let b = write(
        dir.path(),
        "b.jsonl",
        &[line(
            "1",
            &at("2026-11-25T10:00:00.000Z", "2026-11-25T10:00:03.500Z"),
        )],
    );
    let report = fold(&[a, b], &[Field::Day], None).expect("report");
    assert_eq!(report.span_s, 13.5);
    let days: Vec<_> = report.groups.iter().map(|g| g.values[0].clone()).collect();
    assert_eq!(days, [Some("2026-11-24".into()), Some("2026-11-25".into())]);
}

#[test]
fn groups_sort_by_their_values_a_missing_value_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "a.jsonl",
        &[
            line("1", r#","finish_reason":"stop""#),
            line("2", r#","status":"error","error":{"kind":"server"}"#),
            line("3", r#","finish_reason":"length""#),
        ],
    );
    let report = fold(&[path], &[Field::FinishReason, Field::ErrorKind], None).expect("report");
    let values: Vec<_> = report.groups.iter().map(|g| g.values.clone()).collect();
    assert_eq!(
        values,
        [
            vec![Some("length".into()), None],
            vec![Some("stop".into()), None],
            vec![None, Some("server".into())],
        ]
    );
    assert_eq!(report.charts.by_error_kind.get("server"), Some(&1));
    assert_eq!(report.charts.by_status.get("ok"), Some(&2));
}

#[test]
fn a_torn_last_line_is_left_out_and_a_bad_whole_line_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, format!("{}\r\n\n{{\"key\":\"b", line("a", ""))).expect("write");
    let report = fold(std::slice::from_ref(&path), &[], None).expect("torn line left out");
    assert_eq!(report.totals.requests.ok, 1);
    std::fs::write(&path, format!("{}\r\n\n{{\"key\":\"b\n", line("a", ""))).expect("write");
    let err = fold(std::slice::from_ref(&path), &[], None).unwrap_err();
    assert!(matches!(err, ReportError::Record { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("out.jsonl:3"), "{err}");
}

#[test]
fn latency_buckets_are_contiguous_cover_every_value_and_stay_few() {
    for values in [
        vec![(0.0, 1), (0.4, 2), (3.0, 1)],
        vec![(41.7, 10), (60.1, 3)],
        vec![(5.0, 1)],
        vec![(0.2, 1), (120_000.0, 1)],
    ] {
        let buckets = latency_buckets(&values);
        let total: u64 = values.iter().map(|v| v.1).sum();
        assert_eq!(
            buckets.iter().map(|b| b.count).sum::<u64>(),
            total,
            "{values:?}"
        );
        assert!((1..=40).contains(&buckets.len()), "{buckets:?}");
        for w in buckets.windows(2) {
            assert_eq!(w[0].hi_ms, w[1].lo_ms);
        }
        assert!(buckets[0].lo_ms <= values[0].0);
        assert!(buckets[buckets.len() - 1].hi_ms > values[values.len() - 1].0);
    }
    assert!(latency_buckets(&[]).is_empty());
}

#[test]
fn the_charts_add_up_to_the_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day2 = r#","finished_at":"2026-11-25T08:00:00.000Z""#;
    let path = write(
        dir.path(),
        "a.jsonl",
        &[
            line("1", r#","cost_usd":0.5,"cost_source":"provider""#),
            line(
                "2",
                &format!(r#","cost_usd":0.25,"cost_source":"pricing","model":"n"{day2}"#),
            ),
            line("3", day2),
            line(
                "4",
                r#","status":"error","error":{"kind":"timeout"},"usage":null"#,
            ),
        ],
    );
    let report = fold(&[path], &[], None).expect("report");
    let cells: Vec<&DayModel> = report
        .charts
        .days
        .values()
        .flat_map(|m| m.values())
        .collect();
    let sum = |f: fn(&DayModel) -> f64| cells.iter().map(|c| f(c)).sum::<f64>();
    assert_eq!(sum(|c| c.cost_usd), 0.75);
    assert_eq!(sum(|c| c.requests as f64), 4.0);
    assert_eq!(sum(|c| c.unpriced_requests as f64), 1.0);
    assert_eq!(sum(|c| c.tokens as f64), 90.0);
    assert_eq!(report.charts.days["2026-11-25"]["n"].cost_usd, 0.25);
    let latency: u64 = report.charts.latency.iter().map(|b| b.count).sum();
    assert_eq!(latency, 3, "the answers' latencies only");
    assert_eq!(report.charts.by_status["error"], 1);
    assert_eq!(report.charts.by_error_kind["timeout"], 1);
}

#[test]
fn a_byte_order_mark_before_the_first_line_is_read_past() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bom.jsonl");
    let text = format!("\u{FEFF}{}\r\n{}\r\n", line("q1", ""), line("q2", ""));
    std::fs::write(&path, text).expect("write");
    let report = fold(std::slice::from_ref(&path), &[], None).expect("a report");
    assert_eq!(report.totals.requests.ok, 2);
    // Anywhere else it is no record.
    let text = format!("{}\n\u{FEFF}{}\n", line("q1", ""), line("q2", ""));
    std::fs::write(&path, text).expect("write");
    assert!(fold(&[path], &[], None).is_err());
}
