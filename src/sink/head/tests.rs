//! The fast path against the full parse (serde) on every record shape the
//! tests write, on lines serde refuses, and on lines only serde can judge.

use super::*;
use crate::report::LineFigures;
use crate::sink::resume::tests::record;

/// Every shape of line the resume tests write, and then some: the fast
/// path must take each one a run writes, and agree with serde on it.
fn valid_lines() -> Vec<String> {
    let usage =
        r#","model":"m","usage":{"prompt_tokens":3,"completion_tokens":10,"total_tokens":13}"#;
    vec![
        record("a/default", "ok", "a1", r#","cost_usd":0.5"#),
        record("a/default", "ok", "a1", usage),
        record(
            "b/default",
            "error",
            "b2",
            r#","cost_usd":null,"error":{"kind":"server","status":500,"message":"boom \"quoted\" \u00e9"}"#,
        ),
        // Budget charges, and a compacted line's folded charge.
        record(
            "c/default",
            "error",
            "c3",
            r#","cost_usd":null,"budget_charge_usd":0.25,"prior_charge_usd":0.5"#,
        ),
        record(
            "c/default",
            "ok",
            "c3",
            r#","cost_usd":1.05e-5,"budget_charge_usd":2E-7"#,
        ),
        // Another job's keys, an edited request (another hash), another set.
        record("zz/other", "ok", "9f", r#","cost_usd":0"#),
        record("a/precise", "ok", "e7", r#","model":null,"usage":null"#),
        // Odd usage is skipped, not refused.
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"completion_tokens":-4}"#,
        ),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"completion_tokens":"12"}"#,
        ),
        record("d/default", "ok", "d4", r#","model":"m","usage":"garbage""#),
        // Plain counts of every kind: read without serde, as serde reads them.
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":0}"#,
        ),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"completion_tokens":5,"completion_tokens":6}"#,
        ),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"total_tokens":7}"#,
        ),
        record("d/default", "ok", "d4", r#","model":"m","usage":{}"#),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"completion_tokens":123456789012345678}"#,
        ),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"completion_tokens":1234567890123456789012}"#,
        ),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":{"a\"b":1,"completion_tokens":2}"#,
        ),
        record(
            "d/default",
            "ok",
            "d4",
            r#","model":"m","usage":[1,{"a":[]}]"#,
        ),
        // Escapes in the key, the model and the skipped text.
        record(
            r#"q\"uote/default"#,
            "ok",
            "a1",
            r#","model":"m\u00e9","content":"line\nbreak \\ \/ \u00e9""#,
        ),
        // Every kind of value skipped, nested.
        record(
            "e/default",
            "ok",
            "e5",
            r#","latency_ms":12.5,"ttft_ms":-0.0,"n":[true,false,null,{"x":{"y":[1e10,-3]}}],"content":"""#,
        ),
        // Spaces and line layout an editor may leave.
        format!(
            " {{ \"key\" : \"s/default\" , \"status\":\"ok\", \"request_sha256\" : \"{}\" }} ",
            "ab".repeat(32)
        ),
        // A line without a hash, fields in another order.
        r#"{"status":"error","key":"n/default","cost_usd":3}"#.to_string(),
        // The endpoint that answered ([[endpoints]]): plain, escaped, null,
        // and not a string (read as none by the summary, never refused).
        record(
            "f/default",
            "ok",
            "f6",
            r#","model":"m","endpoint":"key-a""#,
        ),
        record("f/default", "ok", "f6", r#","endpoint":"k\u00e9y \"b\"""#),
        record("f/default", "error", "f6", r#","endpoint":null"#),
        record("f/default", "ok", "f6", r#","endpoint":7"#),
    ]
}

/// Lines that are not records, or not JSON: serde decides every one.
fn invalid_lines() -> Vec<String> {
    let ok = record("a/default", "ok", "a1", "");
    vec![
        "not json".into(),
        "{\"key\":\"c/def".into(),
        format!("{ok} trailing"),
        format!("{ok},"),
        ok.replacen("\"status\":\"ok\"", "\"status\":\"maybe\"", 1),
        ok.replacen("\"status\":\"ok\",", "", 1),
        ok.replacen("\"key\":\"a/default\",", "", 1),
        ok.replacen("\"job\"", "\"key\":\"twice\",\"job\"", 1),
        ok.replacen("\"attempts\":1", "\"attempts\":01", 1),
        ok.replacen("\"attempts\":1", "\"attempts\":1.", 1),
        ok.replacen("\"attempts\":1", "\"attempts\":tru", 1),
        ok.replacen("\"params\":{}", "\"params\":{\"a\":\"bad \\q escape\"}", 1),
        ok.replacen(
            "\"params\":{}",
            "\"params\":{\"a\":\"raw \u{1} control\"}",
            1,
        ),
        ok.replacen("\"params\":{}", "\"params\":[1,]", 1),
        ok.replacen("\"request_sha256\":", "\"request_sha256\":5,\"x\":", 1),
        format!("{},\"cost_usd\":\"free\"}}", ok.trim_end_matches('}')),
        "[1,2]".into(),
        "{}".into(),
    ]
}

/// The fields the summary's read-back keeps.
const FIGURES: &[&[u8]] = crate::report::FIGURE_FIELDS;

#[test]
fn the_fast_path_reads_every_record_shape_as_the_full_parse_does() {
    for line in valid_lines() {
        let full: RecordHead = serde_json::from_str(&line).expect(&line);
        let fast = read(line.as_bytes()).unwrap_or_else(|| panic!("fast path refused {line}"));
        assert_eq!(fast, full, "{line}");
        // The decisions the scan draws from a head.
        assert_eq!(fast.total_charge(), full.total_charge(), "{line}");
        assert_eq!(fast.bad_figure(), full.bad_figure(), "{line}");
        assert_eq!(fast.completion_tokens(), full.completion_tokens(), "{line}");
        // And the summary's figures, from the cut-down line.
        let mut small = Vec::new();
        slim(line.as_bytes(), FIGURES, &mut small).expect(&line);
        let slim_figures = serde_json::from_slice::<LineFigures>(&small).ok();
        let full_figures = serde_json::from_str::<LineFigures>(&line).ok();
        assert_eq!(format!("{slim_figures:?}"), format!("{full_figures:?}"));
    }
}

#[test]
fn the_fast_path_leaves_every_line_serde_refuses_to_serde() {
    for line in invalid_lines() {
        assert!(
            serde_json::from_str::<RecordHead>(&line).is_err(),
            "not a bad line: {line}"
        );
        assert_eq!(read(line.as_bytes()), None, "{line}");
    }
    // Bytes that are not UTF-8, inside a string.
    let mut bytes = record("a/default", "ok", "a1", "").into_bytes();
    let at = bytes.len() - 3;
    bytes[at] = 0xff;
    assert!(serde_json::from_slice::<RecordHead>(&bytes).is_err());
    assert_eq!(read(&bytes), None);
    assert_eq!(slim(&bytes, FIGURES, &mut Vec::new()), None);
}

#[test]
fn the_fast_path_gives_up_on_what_only_serde_can_judge_without_refusing_it() {
    // Valid, but not for the fast path to vouch for: serde still reads them.
    let ok = record("a/default", "ok", "a1", "");
    for line in [
        ok.replacen("\"key\"", "\"k\\u0065y\"", 1),
        // A surrogate pair (serde_json writes such a character as UTF-8), a lone one.
        ok.replacen("\"params\":{}", "\"params\":{\"a\":\"lone \\ud800\"}", 1),
        ok.replacen("\"params\":{}", "\"params\":{\"a\":\"\\ud83d\\ude00\"}", 1),
        ok.replacen(
            "\"params\":{}",
            "\"params\":{\"a\":12345678901234567890123456789}",
            1,
        ),
        ok.replacen("\"params\":{}", "\"params\":{\"a\":1e400}", 1),
        ok.replacen(
            "\"params\":{}",
            &format!("\"params\":{}{}", "[".repeat(200), "]".repeat(200)),
            1,
        ),
        // A tab between tokens (a run writes none).
        ok.replacen("\"input\":", "\t\"input\":", 1),
    ] {
        assert_eq!(read(line.as_bytes()), None, "{line}");
        serde_json::from_str::<RecordHead>(&line).expect(&line);
    }
}
