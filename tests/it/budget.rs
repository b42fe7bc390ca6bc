//! The budget: dispatch stops at it, unknown costs and lost attempts count
//! against it across reruns, and a retry it denies is never sent.

use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn the_budget_stops_dispatch_with_exit_3() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let rows: String = (1..=10)
        .map(|i| format!("{{\"prompt\": \"question number {i}\"}}\n"))
        .collect();
    sb.write("rows.jsonl", &rows);
    // Worst case per request: ~(30 bytes + 8) input tokens + 100 output tokens at $1 per 1M
    // = about $0.00013; a $0.0005 budget holds 3 worst cases, and more as replies settle below
    // theirs. Four at a time must still leave nothing for a rerun with the same budget.
    let out = run_job(&sb)
        .job(&prompt_job(&mock.url(), "max_tokens = 100\n[limits]\nconcurrency = 4\nmax_cost_usd = 0.0005\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"))
        .output()
        .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "budget");
    let total = summary["cost_usd"]["total"].as_f64().expect("cost");
    assert!(total > 0.0 && total <= 0.0005, "{total}");
    assert!(summary["requests"]["not_sent"].as_u64().expect("n") > 0);
    let sent = mock.stats().requests();
    // A rerun with the same budget spends nothing more, and says why in one --quiet line.
    let out = run_job(&sb).args(&["--quiet"]).output().await;
    assert_eq!(code(&out), 3);
    assert_eq!(mock.stats().requests(), sent);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("budget reached") && err.contains("t.jsonl"),
        "{err}"
    );
    // The summary still describes the job: what the first run spent.
    let again = sb.summary("t.summary.json");
    assert_eq!(again["cost_usd"]["total"].as_f64(), Some(total));
    assert_eq!(again["this_run"]["sent"], 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn the_budget_counts_unknown_costs_and_lost_attempts_across_reruns() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // No usage reported: each answer counts at its worst case. Two resets per
    // request: each lost attempt counts at its worst case too, and a retry
    // after one needs room of its own.
    let rows: String = (1..=12)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"prompt\": \"[mock:no-usage] q{i}\"}}\n")
            } else {
                format!("{{\"prompt\": \"[mock:fail=reset,reset] q{i}\"}}\n")
            }
        })
        .collect();
    let out = run_job(&sb)
        .rows(&rows)
        .job(&prompt_job(&mock.url(), "max_tokens = 100\n[limits]\nconcurrency = 3\nmax_cost_usd = 0.001\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"))
        .output()
        .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let charged = |records: Vec<Value>| -> f64 {
        records
            .iter()
            .map(|r| {
                r["budget_charge_usd"]
                    .as_f64()
                    .expect("a budget run records its charge")
            })
            .sum()
    };
    let first = charged(sb.records("t.jsonl"));
    assert!(first <= 0.001 + 1e-12, "charged {first} past the budget");
    // A rerun with the same budget: the cap holds over both runs.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let both = charged(sb.records("t.jsonl"));
    assert!(
        both <= 0.001 + 1e-12,
        "charged {both} past the budget over two runs"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_retry_the_budget_denies_is_never_sent_and_never_charged() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"prompt\": \"[mock:fail=reset,reset] q\"}\n",
    );
    // The worst case is (prompt bound + 100 tokens) at $1 per 1M: a little
    // over $0.0001, so $0.0002 holds one attempt and not two.
    let out = run_job(&sb)
        .job(&prompt_job(&mock.url(), "max_tokens = 100\n[limits]\nmax_cost_usd = 0.0002\n[pricing]\nm = { input = 1.0, output = 1.0 }\n"))
        .output()
        .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 1, "the retry was not sent");
    let records = sb.records("t.jsonl");
    let r = &records[0];
    assert_eq!(r["uncertain_attempts"], 1, "{r}");
    let charge = r["budget_charge_usd"].as_f64().expect("charged");
    // One uncertain attempt at its worst case, nothing for the denied one.
    assert!(
        charge > 0.0001 && charge < 0.00015,
        "charged {charge}: the denied retry was counted"
    );
    mock.shutdown().await;
}
