//! `validate`'s estimate before spending: figures worked out by hand, groups
//! by the model each request asks for, unpriced never $0, the expected
//! completion from an output's earlier lines, `--json` alone on stdout, a
//! rate that can never send a request, and the estimate against what a run
//! on the simulator actually costs.

use serde_json::Value;

use crate::common::*;

/// Nothing listens here: validate sends nothing.
const NOWHERE: &str = "http://127.0.0.1:9/v1/chat/completions";

/// Model "m" at $1 / $2 per 1M tokens; "m2" has no price; 100 tokens at most.
fn priced_job() -> String {
    prompt_job(
        NOWHERE,
        "max_tokens = 100\n[pricing]\n\"m\" = { input = 1.0, output = 2.0 }\n",
    )
}

/// Three rows of 8 bytes for "m", and one a row's params send to "m2".
const ROWS: &str = r#"{"id": "a", "prompt": "abcdefgh"}
{"id": "b", "prompt": "ijklmnop"}
{"id": "c", "prompt": "qrstuvwx"}
{"id": "d", "prompt": "yzabcdef", "params": {"model": "m2"}}
"#;

/// `validate --json` as one JSON document: stdout holds nothing else.
async fn validate_json(sb: &Sandbox, flags: &[&str]) -> Value {
    let mut args = vec!["validate", "job.toml", "--json"];
    args.extend(flags);
    let out = output(sb.command(&args)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document and nothing else ({e}):\n{}",
            stdout(&out)
        )
    })
}

fn set<'a>(doc: &'a Value, param_set: &str, model: &str) -> &'a Value {
    doc["estimate"]["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|s| s["param_set"] == param_set && s["model"] == model)
        .unwrap_or_else(|| panic!("no row for {param_set}/{model}: {doc:#}"))
}

fn usd(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{v} is not a dollar figure"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + b.abs() * 1e-9
}

#[tokio::test]
async fn the_estimate_of_a_known_job_equals_the_figures_worked_out_by_hand() {
    let sb = Sandbox::new();
    sb.write("job.toml", &priced_job());
    sb.write("rows.jsonl", ROWS);
    let doc = validate_json(&sb, &[]).await;
    assert_eq!(
        (doc["rows"].as_u64(), doc["requests"].as_u64()),
        (Some(4), Some(4))
    );

    // "m": 3 requests of 8 bytes in 1 message. Estimate 8/4 + 4 = 6 tokens
    // each, bound 8 + 8 = 16; cap 100 each.
    let m = set(&doc, "default", "m");
    assert_eq!(m["requests"], 3);
    assert_eq!(m["prompt_tokens"], 18);
    assert_eq!(m["prompt_tokens_bound"], 48);
    assert_eq!(m["token_cap"], 300);
    assert_eq!(m["priced"], true);
    // Worst: 48 at $1/M + 300 at $2/M. Expected: 18 at $1/M + 150 at $2/M.
    assert!(close(usd(&m["worst_case_usd"]), 648e-6), "{m}");
    assert!(close(usd(&m["expected_usd"]), 318e-6), "{m}");
    assert_eq!(m["expected_basis"], "half_token_cap");
    assert_eq!(m["expected_completion_tokens"], 150);

    // The row that asks for "m2" is its own group, and unpriced: null, never 0.
    let m2 = set(&doc, "default", "m2");
    assert_eq!(
        (m2["requests"].as_u64(), m2["prompt_tokens"].as_u64()),
        (Some(1), Some(6))
    );
    assert_eq!(m2["priced"], false);
    assert!(
        m2["worst_case_usd"].is_null() && m2["expected_usd"].is_null(),
        "{m2}"
    );

    let totals = &doc["estimate"]["totals"];
    assert_eq!(totals["requests"], 4);
    assert_eq!(totals["prompt_tokens"], 24);
    assert!(close(usd(&totals["worst_case_usd"]), 648e-6), "{totals}");
    assert!(close(usd(&totals["expected_usd"]), 318e-6), "{totals}");
    assert_eq!(totals["unpriced_requests"], 1);
    assert!(doc["estimate"]["method"]
        .as_str()
        .expect("method")
        .contains("/ 4"));
    assert_eq!(doc["warnings"], serde_json::json!([]));
    // --limit counts the first rows only.
    let limited = validate_json(&sb, &["--limit", "2"]).await;
    assert_eq!(set(&limited, "default", "m")["requests"], 2);
    assert_eq!(limited["estimate"]["totals"]["prompt_tokens"], 12);

    // The same figures in the table for people.
    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    // A row of the table, by its first cells.
    let row = |start: &[&str]| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?}:\n{text}"))
    };
    assert_eq!(
        row(&["default", "m"]),
        [
            "default",
            "m",
            "3",
            "18",
            "$0.000648",
            "$0.000318",
            "half",
            "the",
            "token",
            "cap"
        ]
    );
    assert_eq!(
        row(&["default", "m2"]),
        [
            "default",
            "m2",
            "1",
            "6",
            "unknown",
            "unknown",
            "no",
            "[pricing]",
            "for",
            "m2"
        ]
    );
    assert_eq!(
        row(&["total"]),
        [
            "total",
            "4",
            "24",
            "$0.000648",
            "$0.000318",
            "leaves",
            "out",
            "1",
            "request",
            "unpriced"
        ]
    );
    assert!(
        text.contains("4 rows x 1 parameter set = 4 requests"),
        "{text}"
    );
    assert!(
        !has_zero_dollars(&text),
        "an unknown cost shown as $0:\n{text}"
    );
}

/// "$0" as a whole figure (not the start of "$0.000648").
fn has_zero_dollars(text: &str) -> bool {
    text.match_indices("$0")
        .any(|(at, _)| !text[at + 2..].starts_with('.'))
}

#[tokio::test]
async fn a_job_without_pricing_has_unknown_costs_and_a_cap_less_one_no_worst_case() {
    let sb = Sandbox::new();
    sb.write("job.toml", &prompt_job(NOWHERE, ""));
    sb.write("rows.jsonl", "{\"prompt\": \"hello\"}\n");
    let doc = validate_json(&sb, &[]).await;
    let m = set(&doc, "default", "m");
    assert_eq!(m["priced"], false);
    assert!(
        m["worst_case_usd"].is_null() && m["expected_usd"].is_null(),
        "{m}"
    );
    assert!(m["token_cap"].is_null(), "no max_tokens: no cap: {m}");
    let totals = &doc["estimate"]["totals"];
    assert!(
        totals["worst_case_usd"].is_null() && totals["expected_usd"].is_null(),
        "nothing priced is no total, never 0: {totals}"
    );
    let text = stdout(&output(sb.command(&["validate", "job.toml"])).await);
    assert!(text.contains("no [pricing] for m"), "{text}");
    assert!(!has_zero_dollars(&text), "{text}");

    // Priced but uncapped: the worst case has no bound, and says so.
    sb.write(
        "job.toml",
        &prompt_job(
            NOWHERE,
            "[pricing]\n\"m\" = { input = 1.0, output = 2.0 }\n",
        ),
    );
    let doc = validate_json(&sb, &[]).await;
    let m = set(&doc, "default", "m");
    assert!(m["worst_case_usd"].is_null(), "{m}");
    assert_eq!(m["uncapped_requests"], 1);
    assert_eq!(doc["estimate"]["totals"]["uncapped_requests"], 1);
    let text = stdout(&output(sb.command(&["validate", "job.toml"])).await);
    assert!(text.contains("unbounded"), "{text}");
}

/// An `ok` line of an earlier run for `key` and model "m" that used `completion` tokens.
fn earlier_line(key: &str, status: &str, completion: u64) -> String {
    let id = key.split('/').next().unwrap_or(key);
    format!(
        r#"{{"key":"{key}","job":"t","id":"{id}","param_set":"default","status":"{status}","model":"m","usage":{{"prompt_tokens":6,"completion_tokens":{completion},"total_tokens":{}}},"attempts":1,"uncertain_attempts":0,"client_request_id":"t:{id}:default:1","request_sha256":"{}","params":{{}},"input":{{}}}}"#,
        6 + completion,
        "0".repeat(64)
    )
}

#[tokio::test]
async fn the_expected_completion_comes_from_the_outputs_earlier_lines_else_half_the_cap() {
    let sb = Sandbox::new();
    sb.write("job.toml", &priced_job());
    sb.write("rows.jsonl", ROWS);
    let before = validate_json(&sb, &[]).await;
    assert_eq!(
        set(&before, "default", "m")["expected_basis"],
        "half_token_cap"
    );

    // Two ok lines of "m" used 10 and 20 completion tokens; a failed line counts for nothing.
    let lines = [
        earlier_line("a/default", "ok", 10),
        earlier_line("b/default", "ok", 20),
        earlier_line("c/default", "error", 999),
    ];
    sb.write("t.jsonl", &format!("{}\n", lines.join("\n")));
    let after = validate_json(&sb, &[]).await;
    let m = set(&after, "default", "m");
    assert_eq!(m["expected_basis"], "earlier_lines");
    assert_eq!(m["earlier_lines"], 2);
    // 3 requests x a mean of 15.
    assert_eq!(m["expected_completion_tokens"], 45);
    assert!(close(usd(&m["expected_usd"]), (18.0 + 90.0) / 1e6), "{m}");
    // The worst case does not move: it rests on the cap.
    assert!(close(usd(&m["worst_case_usd"]), 648e-6), "{m}");
    // "m2" has no earlier line: still half its cap.
    assert_eq!(
        set(&after, "default", "m2")["expected_basis"],
        "half_token_cap"
    );
    let text = stdout(&output(sb.command(&["validate", "job.toml"])).await);
    assert!(text.contains("2 earlier lines"), "{text}");
}

#[tokio::test]
async fn a_rate_that_can_never_send_a_request_is_exit_2_naming_the_requests_that_never_fit() {
    let sb = Sandbox::new();
    sb.write("job.toml", &priced_job());
    // "short" needs 5 + 8 + 100 = 113 tokens at most; each long one 300 + 8 + 100 = 408.
    let long = "x".repeat(300);
    sb.write(
        "rows.jsonl",
        &format!(
            "{{\"id\": \"short\", \"prompt\": \"hello\"}}\n{{\"id\": \"long1\", \"prompt\": \"{long}\"}}\n{{\"id\": \"long2\", \"prompt\": \"{long}\"}}\n"
        ),
    );
    for command in ["validate", "run"] {
        let out = output(sb.command(&[command, "job.toml", "--tpm", "200", "--json"])).await;
        assert_eq!(code(&out), 2, "{command}: {}", stderr(&out));
        let err = stderr(&out);
        for named in [
            "\"long1/default\"",
            "\"long2/default\"",
            "408 tokens",
            "prompt at most 308",
            "token cap 100",
            "200",
        ] {
            assert!(err.contains(named), "{command} names {named}: {err}");
        }
        assert!(
            !err.contains("short/default"),
            "{command}: the request that fits is no problem: {err}"
        );
        assert!(err.contains("2 problems"), "{command}: {err}");
        assert!(
            stdout(&out).is_empty(),
            "{command}: no estimate for a job that cannot run"
        );
    }
    assert!(!sb.path("t.jsonl").exists(), "nothing was sent");
    // None fits: the rate is the problem, with the rate it would take.
    let out = output(sb.command(&["validate", "job.toml", "--tpm", "100"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("every one of the 3 requests") && err.contains("at least 408"),
        "{err}"
    );
    // A rate every request fits passes.
    let doc = validate_json(&sb, &["--tpm", "408"]).await;
    assert_eq!(doc["requests"], 3);
}

/// The price of `--simulate`'s nominal cost figure, as `[pricing]`, so the
/// estimate and the provider's figure weigh tokens alike.
fn simulated_job(rows: usize) -> (String, String) {
    let price = promptbatch::mock::DEFAULT_USD_PER_MILLION;
    let job = prompt_job(
        NOWHERE,
        &format!("max_tokens = 200\n[pricing]\n\"m\" = {{ input = {price}, output = {price} }}\n"),
    );
    let rows = (1..=rows)
        .map(|i| format!("{{\"id\": \"q{i}\", \"prompt\": \"Question number {i}: what is {i} times {i}?\"}}\n"))
        .collect();
    (job, rows)
}

#[tokio::test]
async fn the_estimate_bounds_a_simulated_runs_actual_cost_and_closes_in_once_lines_exist() {
    let sb = Sandbox::new();
    let (job, rows) = simulated_job(30);
    sb.write("job.toml", &job);
    sb.write("rows.jsonl", &rows);
    let before = validate_json(&sb, &["--simulate"]).await;
    let worst = usd(&before["estimate"]["totals"]["worst_case_usd"]);
    let expected_before = usd(&before["estimate"]["totals"]["expected_usd"]);

    let out = output(sb.command(&["run", "job.toml", "--simulate", "--progress", "off"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["ok"], 30);
    let actual = usd(&summary["cost_usd"]["total"]);
    // The simulator answers 8 to 60 words (tokens) per reply, well under the
    // cap of 200, so half the cap overestimates, within a factor of 4.
    assert!(
        actual > 0.0 && actual <= worst,
        "actual {actual} <= worst case {worst}"
    );
    assert!(
        expected_before >= actual / 4.0 && expected_before <= actual * 4.0,
        "expected {expected_before} within a factor of 4 of actual {actual}"
    );

    // Now the output holds what the model used: the expected cost rests on it
    // and lands closer (the simulator counts prompt tokens as the estimate
    // does, so within 5 %), while the worst case stays where it was.
    let after = validate_json(&sb, &["--simulate"]).await;
    let m = set(&after, "default", "m");
    assert_eq!(m["expected_basis"], "earlier_lines");
    assert_eq!(m["earlier_lines"], 30);
    let expected_after = usd(&after["estimate"]["totals"]["expected_usd"]);
    assert!(
        (expected_after - actual).abs() < (expected_before - actual).abs(),
        "after the run {expected_after} is closer to {actual} than {expected_before}"
    );
    assert!(
        (expected_after - actual).abs() <= actual * 0.05,
        "expected {expected_after} within 5 % of actual {actual}"
    );
    assert!(close(
        usd(&after["estimate"]["totals"]["worst_case_usd"]),
        worst
    ));
    // Everything is done: nothing is left to send, which costs nothing.
    assert_eq!(
        (after["resumed"].as_u64(), after["to_send"].as_u64()),
        (Some(30), Some(0))
    );
    assert_eq!(after["estimate"]["to_send"]["requests"], 0);
    assert_eq!(usd(&after["estimate"]["to_send"]["worst_case_usd"]), 0.0);
}

#[tokio::test]
async fn a_budget_below_the_worst_case_is_a_warning_on_stderr_and_in_the_json() {
    let sb = Sandbox::new();
    sb.write("job.toml", &priced_job());
    // The three rows of "m": worst case $0.000648.
    sb.write(
        "rows.jsonl",
        &ROWS.lines().take(3).collect::<Vec<_>>().join("\n"),
    );
    let doc = validate_json(&sb, &["--max-cost", "0.001"]).await;
    assert_eq!(doc["warnings"], serde_json::json!([]), "within the budget");
    assert_eq!(usd(&doc["budget_usd"]), 0.001);
    let out = output(sb.command(&["validate", "job.toml", "--json", "--max-cost", "0.0005"])).await;
    assert_eq!(code(&out), 0, "a warning, not a refusal: {}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    let warning = doc["warnings"][0].as_str().expect("a warning");
    assert!(
        warning.contains("$0.000500")
            && warning.contains("$0.000648")
            && warning.contains("exit 3"),
        "{warning}"
    );
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
}
