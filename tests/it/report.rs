//! `promptbatch report` over outputs of several runs, shards and copies:
//! every figure, for every grouping and in every format, equals the sums
//! computed here independently over the lines (see `expect`); side files
//! are skipped, the same call counts once, prices given by --pricing apply
//! where the provider gave none, and an unpriced request is never $0.

mod data;
mod expect;
mod misuse;

use std::process::Output;

use serde_json::{json, Value};

use crate::common::{code, stderr, stdout, Sandbox};
use data::{jsonl, outputs, records, PRICES};
use expect::{check_csv, check_json, span, Prices};

fn prices() -> Prices {
    Prices::from([
        ("m/a".to_string(), (0.5, 1.5)),
        ("m/b".to_string(), (2.0, 6.0)),
    ])
}

fn report(sb: &Sandbox, args: &[String], extra: &[&str]) -> Output {
    let mut all: Vec<&str> = vec!["report"];
    all.extend(args.iter().map(String::as_str));
    all.extend(extra);
    sb.command(&all).output().expect("the binary runs")
}

#[test]
fn figures_equal_independent_sums_for_every_grouping_in_json_and_csv() {
    let sb = Sandbox::new();
    let (args, files) = outputs(&sb);
    sb.write("prices.toml", PRICES);
    let counted = expect::counted(&files);
    assert!(
        counted.len() < files.iter().map(|f| f.1.len()).sum::<usize>(),
        "the test has duplicates"
    );
    let all: Vec<&Value> = counted.iter().map(|(_, l)| l).collect();
    for by in [
        "model",
        "param_set",
        "job",
        "day",
        "status",
        "finish_reason",
        "error_kind",
        "file",
        "day,model",
        "endpoint",
        "endpoint,model",
    ] {
        let fields: Vec<&str> = by.split(',').collect();
        let want = expect::groups(&counted, &fields, &prices());
        let totals = expect::figures(&all, &prices());
        let out = report(
            &sb,
            &args,
            &["--by", by, "--pricing", "prices.toml", "--format", "json"],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        check_json(&stdout(&out), &fields, &want, &totals);
        let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
        assert!((got["span_s"].as_f64().expect("span") - span(&files)).abs() < 1e-3);
        let lines: Vec<u64> = (got["files"].as_array().expect("files").iter())
            .map(|f| f["lines"].as_u64().expect("lines"))
            .collect();
        assert_eq!(lines.iter().sum::<u64>(), counted.len() as u64);
        assert!(got["pricing_check"]["requests"].as_u64().expect("check") > 0);
        let out = report(
            &sb,
            &args,
            &["--by", by, "--pricing", "prices.toml", "--format", "csv"],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        check_csv(&stdout(&out), &fields, &want, &totals);
    }
    // Without --pricing: only the recorded costs; repeated --by flags combine.
    let none = Prices::new();
    let want = expect::groups(&counted, &["model", "status"], &none);
    let out = report(&sb, &args, &["--by", "model", "--by", "status", "--json"]);
    check_json(
        &stdout(&out),
        &["model", "status"],
        &want,
        &expect::figures(&all, &none),
    );
    let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert!(got.get("pricing_check").is_none(), "{got}");
}

#[test]
fn side_files_are_skipped_with_a_note_and_a_file_named_twice_is_read_once() {
    let sb = Sandbox::new();
    let (args, files) = outputs(&sb);
    let out = report(&sb, &args, &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    for side in [
        "a.jsonl.lock",
        "a.summary.json",
        "a.jsonl.20261120T000000Z.bak",
        "a.jsonl.compact.tmp",
    ] {
        assert_eq!(
            err.matches(&format!("skipped out/{side}")).count(),
            1,
            "{err}"
        );
    }
    assert!(
        err.contains("out/a.jsonl was given more than once"),
        "{err}"
    );
    let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let names: Vec<&str> = (got["files"].as_array().expect("files").iter())
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        names,
        [
            "out/a-copy.jsonl",
            "out/a.jsonl",
            "out/b.jsonl",
            "out/shard.jsonl"
        ]
    );
    let counted = expect::counted(&files).len() as u64;
    let t = &got["totals"]["requests"];
    assert_eq!(
        t["ok"].as_u64().expect("ok") + t["failed"].as_u64().expect("failed"),
        counted
    );
    // The folder itself reads the same files.
    let folder = report(&sb, &["out".to_string()], &["--json"]);
    let err = stderr(&folder);
    assert!(
        err.contains("skipped 4 files in out that are not outputs"),
        "{err}"
    );
    let again: Value = serde_json::from_str(&stdout(&folder)).expect("json");
    assert_eq!(again["totals"], got["totals"]);
    // Only side files: nothing to report on.
    let out = report(&sb, &["out/a.jsonl.lock".to_string()], &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no outputs"), "{}", stderr(&out));
}

#[test]
fn the_same_call_counts_once_and_the_same_key_answered_again_counts_again() {
    let sb = Sandbox::new();
    let mut rng = fastrand::Rng::with_seed(3);
    let lines = records(&mut rng, "j", "x", 0, 4, "2026-11-24");
    let mut again = lines[0].clone();
    again["started_at"] = json!("2026-11-25T10:00:00.000Z");
    again["response_id"] = Value::Null;
    sb.write("a.jsonl", &jsonl(&lines));
    sb.write("copy.jsonl", &jsonl(&lines));
    sb.write("later.jsonl", &jsonl(&[lines[1].clone(), again]));
    let out = report(
        &sb,
        &["a.jsonl".into(), "copy.jsonl".into(), "later.jsonl".into()],
        &["--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let t = &got["totals"]["requests"];
    assert_eq!(
        t["ok"].as_u64().expect("ok") + t["failed"].as_u64().expect("failed"),
        5
    );
    let dups: Vec<u64> = (got["files"].as_array().expect("files").iter())
        .map(|f| f["duplicates"].as_u64().expect("duplicates"))
        .collect();
    assert_eq!(dups, [0, 4, 1]);
}

/// One answered line: `cost` and `source` as given.
fn line(key: &str, model: &str, cost: Value, source: Value) -> Value {
    json!({"key": key, "job": "j", "id": key, "param_set": "p", "status": "ok", "model": model,
        "content": "hi", "finish_reason": "stop",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000},
        "cost_usd": cost, "cost_source": source, "latency_ms": 12.0, "ttft_ms": null,
        "attempts": 1, "uncertain_attempts": 0, "client_request_id": "c", "request_sha256": "00",
        "error": null, "response_id": null, "provider": null,
        "started_at": null, "finished_at": "2026-11-24T10:00:00.000Z", "params": {}, "input": {}})
}

#[test]
fn unpriced_requests_are_a_count_never_zero_dollars() {
    let sb = Sandbox::new();
    sb.write(
        "a.jsonl",
        &jsonl(&[
            line("1", "m/c", Value::Null, Value::Null),
            line("2", "m/c", Value::Null, Value::Null),
        ]),
    );
    let out = report(&sb, &["a.jsonl".into()], &["--json"]);
    let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(got["totals"]["cost_usd"]["total"], Value::Null);
    assert_eq!(got["totals"]["cost_usd"]["unpriced_requests"], 2);
    for format in ["table", "markdown", "csv"] {
        let out = report(&sb, &["a.jsonl".into()], &["--format", format]);
        let text = stdout(&out);
        assert!(
            !text.contains("$0") && !text.contains("\\$0"),
            "{format}: {text}"
        );
        if format != "csv" {
            assert!(text.contains("2 requests unpriced"), "{format}: {text}");
        }
    }
    // --pricing prices them: $1 per 1M prompt and $2 per 1M completion tokens.
    sb.write("prices.toml", "\"m/c\" = { input = 1, output = 2 }\n");
    let out = report(
        &sb,
        &["a.jsonl".into()],
        &["--json", "--pricing", "prices.toml"],
    );
    let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(got["totals"]["cost_usd"]["total"], json!(0.01));
    assert_eq!(got["totals"]["cost_usd"]["unpriced_requests"], 0);
}

#[test]
fn pricing_overrides_the_runs_prices_but_never_the_providers_and_says_how_far_they_differ() {
    let sb = Sandbox::new();
    let lines = [
        line("1", "m/a", json!(0.02), json!("provider")),
        line("2", "m/a", json!(0.5), json!("pricing")),
        line("3", "m/z", json!(0.25), json!("pricing")),
    ];
    sb.write("a.jsonl", &jsonl(&lines));
    sb.write("prices.toml", "\"m/a\" = { input = 1, output = 2 }\n");
    let out = report(
        &sb,
        &["a.jsonl".into()],
        &["--json", "--pricing", "prices.toml"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let got: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let c = &got["totals"]["cost_usd"];
    assert_eq!(
        (c["provider"].as_f64(), c["pricing"].as_f64()),
        (Some(0.02), Some(0.255))
    );
    assert_eq!(
        got["pricing_check"],
        json!({"requests": 1, "provider_usd": 0.02, "pricing_usd": 0.005})
    );
    for format in ["table", "markdown"] {
        let out = report(
            &sb,
            &["a.jsonl".into()],
            &["--format", format, "--pricing", "prices.toml"],
        );
        let text = stdout(&out).replace('\\', "");
        assert!(
            text.contains("provider $0.020000, --pricing $0.005000"),
            "{format}: {text}"
        );
    }
    let out = report(
        &sb,
        &["a.jsonl".into()],
        &["--format", "csv", "--pricing", "prices.toml"],
    );
    assert!(stdout(&out)
        .lines()
        .next()
        .expect("header")
        .ends_with("pricing_check_pricing_usd"));
}

#[test]
fn a_bad_pricing_file_is_named_at_its_line_and_field() {
    let sb = Sandbox::new();
    sb.write(
        "a.jsonl",
        &jsonl(&[line("1", "m/a", Value::Null, Value::Null)]),
    );
    sb.write("prices.toml", "# prices\n\"m/a\" = { input = 1, output = 2 }\n\"m/b\" = { input = \"cheap\", output = 2 }\n");
    let out = report(&sb, &["a.jsonl".into()], &["--pricing", "prices.toml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("prices.toml:3:"), "{err}");
    assert!(err.contains("\"m/b\" input"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn output_files_take_their_format_from_the_extension_and_every_format_holds_the_totals() {
    let sb = Sandbox::new();
    let (args, files) = outputs(&sb);
    let counted = expect::counted(&files);
    let all: Vec<&Value> = counted.iter().map(|(_, l)| l).collect();
    let totals = expect::figures(&all, &Prices::new());
    let ok = totals["requests"]["ok"].to_string();
    for name in [
        "r.json",
        "r.csv",
        "r.md",
        "r.html",
        "r.txt",
        "reports/{date}.json",
    ] {
        let out = report(&sb, &args, &["--by", "model", "-o", name]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
    }
    let read = |name: &str| sb.read(name);
    check_json(
        &read("r.json"),
        &["model"],
        &expect::groups(&counted, &["model"], &Prices::new()),
        &totals,
    );
    check_csv(
        &read("r.csv"),
        &["model"],
        &expect::groups(&counted, &["model"], &Prices::new()),
        &totals,
    );
    assert!(
        read("r.md").contains(&format!("| **total** | **{ok}** |")),
        "{}",
        read("r.md")
    );
    assert!(read("r.html")
        .to_ascii_lowercase()
        .starts_with("<!doctype html"));
    let table = read("r.txt");
    let row = table
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("totals row");
    assert_eq!(row.split_whitespace().nth(1), Some(ok.as_str()), "{table}");
    // {date} became today's UTC date (the one before or after, at midnight).
    let dated: Vec<String> = (std::fs::read_dir(sb.path("reports")).expect("reports"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dated.len(), 1, "{dated:?}");
    let day = dated[0].strip_suffix(".json").expect(".json");
    assert!(
        chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok(),
        "{dated:?}"
    );
    // --format beats the extension; a folder is refused.
    let out = report(&sb, &args, &["-o", "r.json", "--format", "csv"]);
    assert_eq!(code(&out), 0);
    assert!(
        read("r.json").starts_with("group,requests_ok"),
        "{}",
        read("r.json")
    );
    let out = report(&sb, &args, &["-o", "out"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("folder"), "{}", stderr(&out));
}

/// `--by endpoint` for people: a row per endpoint with its independent
/// count, and the lines of a job with one endpoint (no `endpoint`) in a
/// row of their own, under `-` (— in HTML).
#[test]
fn the_table_markdown_and_html_group_by_endpoint_with_lines_without_one_apart() {
    let sb = Sandbox::new();
    let (args, files) = outputs(&sb);
    let counted = expect::counted(&files);
    let want = expect::groups(&counted, &["endpoint"], &Prices::new());
    let ok = |name: Value| want[&json!([name]).to_string()]["requests"]["ok"].to_string();
    assert_eq!(want.len(), 4, "three endpoints and the lines without one");
    let out = report(&sb, &args, &["--by", "endpoint"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = stdout(&out);
    for (cell, name) in [
        ("key-a", json!("key-a")),
        ("key-b", json!("key-b")),
        ("fallback", json!("fallback")),
        ("-", Value::Null),
    ] {
        let row = (table.lines())
            .find(|l| l.split_whitespace().next() == Some(cell))
            .unwrap_or_else(|| panic!("no row {cell}: {table}"));
        assert_eq!(
            row.split_whitespace().nth(1),
            Some(ok(name).as_str()),
            "{table}"
        );
    }
    let out = report(
        &sb,
        &args,
        &["--by", "endpoint,model", "--format", "markdown"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.starts_with("| endpoint | model |"), "{md}");
    let pairs = expect::groups(&counted, &["endpoint", "model"], &Prices::new());
    let want_a = &pairs[&json!(["key-a", "m/b"]).to_string()]["requests"]["ok"];
    assert!(md.contains(&format!("| key-a | m/b | {want_a} |")), "{md}");
    let out = report(&sb, &args, &["--by", "endpoint", "--format", "html"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let html = stdout(&out);
    for name in ["key-a", "key-b", "fallback"] {
        assert!(
            html.contains(&format!(r#"<td class="key">{name}</td>"#)),
            "{name}"
        );
    }
    assert!(html.contains(r#"<td class="key none" title="no value">"#));
}

#[test]
fn an_unknown_by_field_lists_the_valid_ones() {
    let sb = Sandbox::new();
    let out = sb
        .command(&["report", "a.jsonl", "--by", "day,modle"])
        .output()
        .expect("runs");
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    for field in [
        "model",
        "param_set",
        "job",
        "day",
        "status",
        "finish_reason",
        "error_kind",
        "file",
        "endpoint",
    ] {
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn the_readme_report_examples_run_as_written() {
    let readme = include_str!("../../README.md");
    let start = readme.find("## Reports").expect("section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").expect("next section")];
    let sb = Sandbox::new();
    outputs(&sb);
    sb.write("prices.toml", PRICES);
    let examples: Vec<&str> = (section.lines())
        .filter(|l| l.starts_with("promptbatch report "))
        .collect();
    assert!(examples.len() >= 3, "{section}");
    for example in examples {
        // The shell's glob, done here.
        let mut args: Vec<String> = Vec::new();
        for word in example.split_whitespace().skip(1) {
            if word == "out/*.jsonl" {
                let mut names: Vec<String> = std::fs::read_dir(sb.path("out"))
                    .expect("out")
                    .map(|e| format!("out/{}", e.expect("entry").file_name().to_string_lossy()))
                    .filter(|n| n.ends_with(".jsonl"))
                    .collect();
                names.sort();
                args.extend(names);
            } else {
                args.push(word.to_string());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.command(&args).output().expect("runs");
        assert_eq!(code(&out), 0, "{example}: {}", stderr(&out));
    }
    // The -o examples wrote their files.
    assert!(sb.read("usage.csv").starts_with("day,model,requests_ok"));
    let html = std::fs::read_dir(sb.dir.path())
        .expect("sandbox")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with("weekly-")
        })
        .count();
    assert_eq!(html, 1);
}

/// The page a user opens: written by the binary over the same outputs, laid
/// out by Chromium, its totals row equal to the sums computed here.
#[test]
fn the_html_page_from_the_binary_shows_the_independent_totals_in_chromium() {
    let sb = Sandbox::new();
    let (args, files) = outputs(&sb);
    sb.write("prices.toml", PRICES);
    let counted = expect::counted(&files);
    let all: Vec<&Value> = counted.iter().map(|(_, l)| l).collect();
    let mut want = std::collections::BTreeMap::new();
    expect::flat(&expect::figures(&all, &prices()), "", &mut want);
    let out = report(
        &sb,
        &args,
        &[
            "--by",
            "day,model",
            "--pricing",
            "prices.toml",
            "-o",
            "r.html",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dom = crate::html::dom(&sb.dir.path().join("r.html"));
    for id in [
        "chart-cost-per-day",
        "chart-tokens-per-day",
        "chart-latency",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no {id} in the DOM");
    }
    let mut checked = 0;
    for (name, value) in &want {
        let Some(want) = value.as_f64() else { continue };
        let attr = format!("data-total=\"{name}\"");
        if name.starts_with("latency") || name.starts_with("ttft") || !dom.contains(&attr) {
            continue;
        }
        let got: f64 = crate::html::value_of(&dom, &attr)
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}: {got} != {want}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} totals on the page: {want:?}");
}
