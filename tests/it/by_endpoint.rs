//! The summary's `by_endpoint` from the real binary: absent for a job with
//! one endpoint; over a resumed output whose lines name endpoints (as a job
//! with `[[endpoints]]` writes them), equal to figures computed here over
//! each key's latest line, the same whether the run read the output back
//! after sending or in its resume scan; valid against the summary schema,
//! which describes it; and shown on stderr as a "by endpoint" block.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::*;

const ENDPOINTS: [&str; 3] = ["key-a", "key-b", "fallback"];

/// The nearest-rank percentile of `values`.
fn rank(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `by_endpoint` over `lines` (each key's latest), by plain sums.
fn expected(lines: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for name in ENDPOINTS {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["endpoint"] == name).collect();
        let ok: Vec<&&Value> = mine.iter().filter(|l| l["status"] == "ok").collect();
        let sum = |f: &str| -> u64 {
            ok.iter()
                .map(|l| l["usage"][f].as_u64().expect("usage"))
                .sum()
        };
        let latencies: Vec<f64> = ok
            .iter()
            .map(|l| l["latency_ms"].as_f64().expect("latency"))
            .collect();
        out.insert(
            name.to_string(),
            json!({
                "requests": {"ok": ok.len(), "failed": mine.len() - ok.len()},
                "tokens": {"prompt": sum("prompt_tokens"), "completion": sum("completion_tokens"),
                           "total": sum("total_tokens"), "unreported": 0},
                "cost_usd": mine.iter().map(|l| l["cost_usd"].as_f64().unwrap_or(0.0)).sum::<f64>(),
                "unpriced_requests": 0, "errors": {},
                "latency_ms": {"p50": rank(&latencies, 0.5), "p95": rank(&latencies, 0.95), "p99": rank(&latencies, 0.99)},
            }),
        );
    }
    out
}

fn assert_matches(got: &Value, want: &BTreeMap<String, Value>) {
    let got = got.as_object().expect("by_endpoint is an object");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, want) in want {
        let g = &got[name];
        for part in ["requests", "tokens", "unpriced_requests", "errors"] {
            assert_eq!(g[part], want[part], "{name} {part}");
        }
        let (gc, wc) = (
            g["cost_usd"].as_f64().expect("cost"),
            want["cost_usd"].as_f64().expect("cost"),
        );
        assert!(
            wc > 0.0 && (gc - wc).abs() <= wc * 1e-9,
            "{name}: {gc} vs {wc}"
        );
        for q in ["p50", "p95", "p99"] {
            let (g, w) = (
                g["latency_ms"][q].as_f64().expect("p"),
                want["latency_ms"][q].as_f64().expect("p"),
            );
            assert!((g - w).abs() <= w * 1e-3 + 0.1, "{name} {q}: {g} vs {w}");
        }
    }
}

#[tokio::test]
async fn a_resumed_output_naming_endpoints_is_summed_per_endpoint_over_each_keys_latest_line() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let rows: String = (0..9)
        .map(|i| format!("{{\"id\": \"a{i}\", \"prompt\": \"question {i}\"}}\n"))
        .collect();
    let job = prompt_job(
        &mock.url(),
        "[pricing]\n\"m\" = { input = 1.5, output = 2.5 }\n",
    );
    let out = run_job(&sb).rows(&rows).job(&job).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // One endpoint: no line names one, and the summary has no by_endpoint.
    let first = sb.summary("t.summary.json");
    assert!(first.get("by_endpoint").is_none(), "{first:#}");
    assert!(!stderr(&out).contains("by endpoint"), "{}", stderr(&out));

    // The same output as a job with [[endpoints]] would have left it: each
    // line names its endpoint; two keys failed first on another endpoint
    // (superseded lines, not counted), and one key's latest line failed (a
    // rerun sends it again, and its new line names none).
    let lines: Vec<Value> = sb
        .read("t.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), 9);
    let failed = |line: &Value, endpoint: &str, kind: &str| {
        let mut f = line.clone();
        for field in [
            "content",
            "finish_reason",
            "usage",
            "cost_usd",
            "cost_source",
            "latency_ms",
            "response_id",
        ] {
            f[field] = Value::Null;
        }
        f["status"] = json!("error");
        f["endpoint"] = json!(endpoint);
        f["error"] = json!({"kind": kind, "status": 500, "message": "upstream failed"});
        f
    };
    let (mut file, mut latest) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        let mut line = line.clone();
        line["endpoint"] = json!(ENDPOINTS[i % 3]);
        let id = line["id"].as_str().expect("id").to_string();
        if id == "a0" || id == "a4" {
            file.push(failed(&line, ENDPOINTS[(i + 1) % 3], "server"));
        }
        if id == "a7" {
            line = failed(&line, "key-b", "timeout");
        } else {
            latest.push(line.clone());
        }
        file.push(line);
    }
    sb.write(
        "t.jsonl",
        &file
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    );
    let want = expected(&latest);

    // The rerun sends a7 only, then reads the rest back (uncompacted: each key's latest line).
    let out = run_job(&sb).args(&["--json"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 10);
    let second = sb.summary("t.summary.json");
    assert_eq!(second["requests"]["resumed"], 8);
    assert_matches(&second["by_endpoint"], &want);
    let printed: Value = serde_json::from_str(&stdout(&out)).expect("--json");
    assert_eq!(printed["by_endpoint"], second["by_endpoint"]);
    let err = stderr(&out);
    assert!(err.contains("by endpoint"), "{err}");
    for name in ENDPOINTS {
        let row = (err.lines())
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {err}"));
        let ok = want[name]["requests"]["ok"].as_u64().expect("ok");
        assert!(
            row.contains(&format!("{ok} ok")) && row.contains("p95"),
            "{row}"
        );
    }

    // Nothing left to send: the resume scan's own read-back says the same.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 10);
    let third = sb.summary("t.summary.json");
    assert_eq!(third["requests"]["resumed"], 9);
    assert_eq!(third["by_endpoint"], second["by_endpoint"]);
    mock.shutdown().await;
}

#[test]
fn the_summary_schema_describes_by_endpoint() {
    let entry = json!({
        "requests": {"ok": 3, "failed": 1},
        "tokens": {"prompt": 10, "completion": 20, "total": 30, "unreported": 0},
        "cost_usd": 0.25, "unpriced_requests": 0, "errors": {"server": 1},
        "latency_ms": {"p50": 12.5, "p95": 40.0, "p99": 41.0},
    });
    let summary = |by_endpoint: Value| {
        json!({
            "job": "t", "started_at": "2026-11-24T10:00:00.000Z", "finished_at": "2026-11-24T10:00:01.000Z",
            "wall_s": 1.0, "requests": {"total": 4, "ok": 3, "failed": 1, "resumed": 0, "not_sent": 0},
            "attempts": 4, "retries": 0, "uncertain_attempts": 0, "stopped": null,
            "finish_reasons": {"stop": 3}, "errors": {"server": 1},
            "tokens": {"prompt": 10, "completion": 20, "total": 30, "unreported": 0},
            "cost_usd": {"total": 0.25, "by_model": {"m": 0.25}, "by_param_set": {"default": 0.25}, "unpriced_requests": 0},
            "latency_ms": null, "ttft_ms": null, "by_endpoint": by_endpoint,
            "throughput": {"requests_per_s": 4.0, "completion_tokens_per_s": 20.0},
            "this_run": {"sent": 4, "attempts": 4, "retries": 0, "uncertain_attempts": 0,
                "tokens": {"prompt": 10, "completion": 20, "total": 30, "unreported": 0},
                "cost_usd": 0.25, "wall_s": 1.0, "throughput": {"requests_per_s": 4.0, "completion_tokens_per_s": 20.0}},
            "other_keys_in_output": 0,
        })
    };
    let mut folded = entry.clone();
    folded["folded"] = json!(true);
    folded["latency_ms"] = Value::Null;
    let good = summary(json!({"key-a": entry, "other": folded}));
    assert_eq!(summary_schema_errors(&good), Vec::<String>::new());
    // Every part of an entry is required, with its type.
    for (part, bad) in [
        ("latency_ms", None),
        ("errors", None),
        ("requests", Some(json!({"ok": 1}))),
        ("cost_usd", Some(json!(-1.0))),
        ("tokens", Some(json!({"prompt": 1}))),
        ("folded", Some(json!("yes"))),
        ("unpriced_requests", Some(json!(-1))),
    ] {
        let mut broken = entry.clone();
        match bad {
            Some(value) => broken[part] = value,
            None => drop(broken.as_object_mut().expect("object").remove(part)),
        }
        let errors = summary_schema_errors(&summary(json!({"key-a": broken})));
        assert!(
            !errors.is_empty(),
            "{part}: the schema accepts a broken entry"
        );
    }
    assert!(!summary_schema_errors(&summary(json!([1]))).is_empty());
}
