//! `by_endpoint` against figures computed here over the lines as JSON
//! values, on every path a summary is made by: the live tally of records,
//! of figures kept without their record, the read-back of an output (fast
//! path and serde), and a run's mix of the two; and the cap on names.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{json, Value};

use super::*;
use crate::report::summary::{KeptFigures, RequestCounts, RunFacts, Tally};
use crate::sink::Record;

const ENDPOINTS: [&str; 3] = ["key-a", "key-b", "fallback"];
const KINDS: [&str; 4] = ["server", "timeout", "rate_limited", "auth"];

/// A full record line of key `q{i}/default`: three endpoints in turn, every
/// tenth line without one (and every tenth `null`), failures of several
/// kinds, lines without usage or cost, streamed ones with a TTFT.
fn line(i: usize, endpoint: Option<&str>, failed: bool) -> Value {
    let latency = 20.0 + (i * 37 % 500) as f64 + 0.5;
    let mut line = json!({
        "key": format!("q{i}/default"), "job": "t", "id": format!("q{i}"),
        "param_set": "default", "status": if failed { "error" } else { "ok" },
        "model": "m", "content": if failed { Value::Null } else { json!("an answer") },
        "finish_reason": if failed { Value::Null } else { json!("stop") },
        "usage": if failed || i % 11 == 5 { Value::Null } else {
            json!({"prompt_tokens": i, "completion_tokens": 2 * i + 1, "total_tokens": 3 * i + 1})
        },
        "cost_usd": if i % 5 == 2 { Value::Null } else { json!((i as f64 + 1.0) / 1e6) },
        "cost_source": if i % 5 == 2 { Value::Null } else { json!("provider") },
        "latency_ms": if failed { Value::Null } else { json!(latency) },
        "ttft_ms": if !failed && i.is_multiple_of(4) { json!((latency / 3.0 * 10.0).round() / 10.0) } else { Value::Null },
        "attempts": if failed { 3 } else { 1 }, "uncertain_attempts": u32::from(failed),
        "client_request_id": format!("t:q{i}:default:1"), "request_sha256": "ab".repeat(32),
        "error": if failed {
            json!({"kind": KINDS[i % 4], "status": 500, "message": "no"})
        } else { Value::Null },
        "response_id": format!("r{i}"), "provider": null,
        "started_at": "2026-11-24T10:00:00.000Z", "finished_at": "2026-11-24T10:00:01.000Z",
        "params": {}, "input": {"prompt": "q"},
    });
    match (endpoint, i % 10) {
        (_, 8) => line["endpoint"] = Value::Null,
        (Some(name), _) => line["endpoint"] = json!(name),
        (None, _) => {}
    }
    line
}

/// The output: 90 keys, each one's latest line last; every sixth key also
/// has an earlier failed line on another endpoint (superseded: resumed).
fn output() -> (Vec<Value>, Vec<Value>) {
    let (mut all, mut latest) = (Vec::new(), Vec::new());
    for i in 0..90 {
        let endpoint = (i % 10 != 9).then_some(ENDPOINTS[i % 3]);
        if i.is_multiple_of(6) {
            all.push(line(i, Some(ENDPOINTS[(i + 1) % 3]), true));
        }
        let last = line(i, endpoint, i % 7 == 3);
        all.push(last.clone());
        latest.push(last);
    }
    (all, latest)
}

/// The nearest-rank percentile of `values`.
fn rank(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `by_endpoint` as the contract defines it, over `lines` (JSON values),
/// with plain code that shares nothing with the tally.
fn expected(lines: &[Value]) -> BTreeMap<String, Value> {
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for l in lines {
        if let Some(name) = l["endpoint"].as_str() {
            groups.entry(name.to_string()).or_default().push(l);
        }
    }
    let mut out = BTreeMap::new();
    for (name, lines) in groups {
        let (mut ok, mut failed, mut cost, mut unpriced) = (0u64, 0u64, 0.0f64, 0u64);
        let (mut prompt, mut completion, mut total, mut unreported) = (0u64, 0u64, 0u64, 0u64);
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut latencies = Vec::new();
        for l in lines {
            let is_ok = l["status"] == "ok";
            if is_ok {
                ok += 1;
                latencies.extend(l["latency_ms"].as_f64());
                unpriced += u64::from(l["cost_usd"].is_null());
                match l["usage"].as_object() {
                    Some(u) => {
                        prompt += u["prompt_tokens"].as_u64().expect("n");
                        completion += u["completion_tokens"].as_u64().expect("n");
                        total += u["total_tokens"].as_u64().expect("n");
                    }
                    None => unreported += 1,
                }
            } else {
                failed += 1;
                let kind = l["error"]["kind"].as_str().expect("kind");
                *errors.entry(kind.to_string()).or_default() += 1;
            }
            cost += l["cost_usd"].as_f64().unwrap_or(0.0);
        }
        let latency = (!latencies.is_empty()).then(|| {
            json!({"p50": rank(&latencies, 0.5), "p95": rank(&latencies, 0.95), "p99": rank(&latencies, 0.99)})
        });
        out.insert(
            name,
            json!({
                "requests": {"ok": ok, "failed": failed},
                "tokens": {"prompt": prompt, "completion": completion, "total": total, "unreported": unreported},
                "cost_usd": cost, "unpriced_requests": unpriced, "errors": errors,
                "latency_ms": latency,
            }),
        );
    }
    out
}

fn facts() -> RunFacts {
    let now = Utc::now();
    RunFacts {
        job: "t".into(),
        started: now,
        finished: now,
        busy: std::time::Duration::from_secs(1),
        requests: RequestCounts::default(),
        stopped: None,
        stopped_because: None,
        other_keys_in_output: 0,
    }
}

fn by_endpoint(tally: &Tally) -> BTreeMap<String, EndpointFigures> {
    tally.summary(&Tally::default(), facts()).by_endpoint
}

/// `got` says what `want` says: counts exactly, dollars to 12 digits,
/// percentiles to the histogram's 3 significant digits.
fn assert_matches(got: &BTreeMap<String, EndpointFigures>, want: &BTreeMap<String, Value>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, want) in want {
        let g = serde_json::to_value(&got[name]).expect("json");
        for part in ["requests", "tokens", "unpriced_requests", "errors"] {
            assert_eq!(g[part], want[part], "{name} {part}");
        }
        let (gc, wc) = (g["cost_usd"].as_f64(), want["cost_usd"].as_f64());
        let (gc, wc) = (gc.expect("cost"), wc.expect("cost"));
        assert!((gc - wc).abs() <= wc * 1e-11, "{name} cost {gc} vs {wc}");
        for q in ["p50", "p95", "p99"] {
            let g = g["latency_ms"][q].as_f64().expect("percentile");
            let w = want["latency_ms"][q].as_f64().expect("percentile");
            assert!((g - w).abs() <= w * 1e-3 + 0.1, "{name} {q}: {g} vs {w}");
        }
    }
}

fn write(lines: &[Value]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

fn record(line: &Value) -> Record {
    serde_json::from_value(line.clone()).expect("a record")
}

#[test]
fn three_endpoints_figures_equal_independent_sums_on_every_path() {
    let (all, latest) = output();
    let want = expected(&latest);
    assert_eq!(want.len(), 3);
    assert!(want
        .values()
        .all(|w| w["requests"]["failed"].as_u64() > Some(0)));

    // Live: the records a run writes, and their figures kept without them.
    let (mut live, mut kept) = (Tally::default(), Tally::default());
    for l in &latest {
        live.observe(&record(l));
        kept.observe_kept(&KeptFigures::of(record(l)));
    }
    let live = by_endpoint(&live);
    assert_matches(&live, &want);
    assert_eq!(by_endpoint(&kept), live);

    // Read back from an uncompacted output: each key's latest line only.
    let (_dir, path) = write(&all);
    let mut back = Tally::default();
    crate::report::fold_output(&path, &mut back, |_| true, true).expect("fold");
    assert_eq!(by_endpoint(&back), live);

    // The resume scan's read-back of a compacted output (one line a key).
    let (_dir, path) = write(&latest);
    let mut scan = crate::report::ReadBack::default();
    crate::sink::scan_with(&path, &mut scan).expect("scan");
    assert_eq!(by_endpoint(&scan.finish()), live);

    // A resumed run: its own lines live, the earlier ones read back after.
    let (_dir, path) = write(&all);
    let mut mixed = Tally::default();
    let ours: Vec<&Value> = latest.iter().step_by(2).collect();
    for l in &ours {
        mixed.observe(&record(l));
    }
    let theirs = |id: crate::keys::KeyId| {
        !ours
            .iter()
            .any(|l| crate::keys::KeyId::of(l["key"].as_str().expect("key")) == id)
    };
    crate::report::fold_output(&path, &mut mixed, theirs, true).expect("fold");
    assert_eq!(by_endpoint(&mixed), live);
}

#[test]
fn lines_without_an_endpoint_make_no_by_endpoint() {
    let mut tally = Tally::default();
    for i in 0..20 {
        tally.observe(&record(&line(i, None, i % 3 == 0)));
    }
    let summary = tally.summary(&Tally::default(), facts());
    assert!(summary.by_endpoint.is_empty());
    let text = crate::report::summary_json(&summary).expect("json");
    assert!(!text.contains("by_endpoint"), "{text}");
    // One line with an endpoint is enough to have it.
    tally.observe(&record(&line(3, Some("key-a"), false)));
    let text = crate::report::summary_json(&tally.summary(&Tally::default(), facts()));
    assert!(text.expect("json").contains("\"by_endpoint\""));
}

/// The figures of an `ok` line of 1 ms that cost $1, for the cap tests.
fn one_ok() -> Figures<'static> {
    Figures {
        ok: true,
        model: "m",
        param_set: "default",
        finish_reason: Some("stop"),
        usage: None,
        cost_usd: Some(1.0),
        latency_ms: Some(1.0),
        ttft_ms: None,
        attempts: 1,
        uncertain: 0,
        error_kind: None,
        cached: false,
        endpoint: None,
    }
}

#[test]
fn a_hundred_thousand_names_keep_the_first_sixty_four_in_sort_order_and_fold_the_rest() {
    const N: usize = 100_000;
    let names: Vec<String> = (0..N).map(|i| format!("ep-{i:06}")).collect();
    let mut orders = vec![names.clone()];
    let mut reversed = names.clone();
    reversed.reverse();
    orders.push(reversed);
    let mut shuffled = names.clone();
    fastrand::Rng::with_seed(7).shuffle(&mut shuffled);
    orders.push(shuffled);
    let mut results = Vec::new();
    for order in &orders {
        let mut by = ByEndpoint::default();
        for name in order {
            by.add(name, &one_ok());
            // Bounded all along, not only at the end.
            assert!(by.named.len() <= MAX_NAMED);
        }
        results.push(by.figures());
    }
    let first = &results[0];
    assert_eq!(first.len(), MAX_NAMED + 1);
    let kept: Vec<&String> = first.keys().filter(|k| *k != OTHER).collect();
    let want: Vec<&String> = names.iter().take(MAX_NAMED).collect();
    assert_eq!(kept, want);
    let other = &first[OTHER];
    assert!(other.folded);
    assert_eq!(other.requests.ok, (N - MAX_NAMED) as u64);
    assert_eq!(other.cost_usd, (N - MAX_NAMED) as f64);
    assert_eq!(other.latency_ms.map(|l| l.p99), Some(1.0));
    assert!(first.values().filter(|e| e.folded).count() == 1);
    // Whatever order the lines came in: the same entries.
    assert_eq!(results[1], *first);
    assert_eq!(results[2], *first);
}

#[test]
fn an_endpoint_called_other_is_never_mixed_with_the_folded_rest() {
    let mut by = ByEndpoint::default();
    for i in 0..MAX_NAMED + 3 {
        by.add(&format!("a{i:03}"), &one_ok());
    }
    // "other" sorts after "a...": it is folded itself, into the rest.
    by.add("other", &one_ok());
    let f = by.figures();
    assert_eq!(f[OTHER].requests.ok, 4);
    let mut by = ByEndpoint::default();
    for i in 0..MAX_NAMED + 3 {
        by.add(&format!("z{i:03}"), &one_ok());
    }
    by.add("other", &one_ok());
    let f = by.figures();
    assert!(!f[OTHER].folded && f[OTHER].requests.ok == 1);
    assert!(f["(other)"].folded && f["(other)"].requests.ok == 4);
}

#[test]
fn a_file_of_a_hundred_thousand_endpoint_names_reads_back_bounded() {
    const N: usize = 100_000;
    let text: String = (0..N)
        .map(|i| {
            crate::sink::resume::tests::record(
                &format!("k{i}/default"),
                "ok",
                "a1",
                &format!(r#","cost_usd":0.5,"latency_ms":2.5,"endpoint":"hostile-{i:06}""#),
            ) + "\n"
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, text).expect("write");
    let mut back = crate::report::ReadBack::default();
    crate::sink::scan_with(&path, &mut back).expect("scan");
    let by = by_endpoint(&back.finish());
    assert_eq!(by.len(), MAX_NAMED + 1);
    assert_eq!(by[OTHER].requests.ok, (N - MAX_NAMED) as u64);
    assert_eq!(by["hostile-000000"].requests.ok, 1);
    assert_eq!(by[OTHER].cost_usd, 0.5 * (N - MAX_NAMED) as f64);
}

#[test]
fn the_table_shows_each_endpoint_and_says_what_the_folded_entry_holds() {
    let mut tally = Tally::default();
    for i in 0..12 {
        tally.observe(&record(&line(i, Some(ENDPOINTS[i % 3]), i == 4)));
    }
    let text = crate::report::table::render(&tally.summary(&Tally::default(), facts()));
    assert!(text.contains("\n  by endpoint\n"), "{text}");
    let row = |name: &str| {
        (text.lines())
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {text}"))
            .to_string()
    };
    // key-a: lines 0, 3, 6, 9, all answered; key-b: 1, 4 (failed), 7, 10.
    assert!(row("key-a").contains("4 ok") && row("key-a").contains("0 failed"));
    assert!(row("key-b").contains("3 ok") && row("key-b").contains("1 failed"));
    assert!(
        row("fallback").contains(" ms · p95 "),
        "{}",
        row("fallback")
    );
    assert!(!text.contains("past the first"), "{text}");
    // Past MAX_NAMED names (every tenth line names none): the folded
    // entry is said for what it is.
    for i in 0..2 * MAX_NAMED {
        tally.observe(&record(&line(i, Some(&format!("n{i:03}")), false)));
    }
    let text = crate::report::table::render(&tally.summary(&Tally::default(), facts()));
    assert!(
        text.contains(&format!(
            "(other holds the endpoints past the first {MAX_NAMED} names, in sort order)"
        )),
        "{text}"
    );
    // Without an endpoint on any line: no block.
    let mut plain = Tally::default();
    plain.observe(&record(&line(1, None, false)));
    let text = crate::report::table::render(&plain.summary(&Tally::default(), facts()));
    assert!(!text.contains("by endpoint"), "{text}");
}
