//! What a report must say, computed here over the lines as JSON values with
//! plain code that shares nothing with the product's fold: the check that
//! the report's figures are the sums they claim to be.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};

/// Prices by model: (input, output) USD per 1M tokens.
pub type Prices = HashMap<String, (f64, f64)>;

/// The lines that count, each with the file it was read from: the same
/// call (key + response id, else key + start) seen again is dropped.
pub fn counted(files: &[(String, Vec<Value>)]) -> Vec<(String, Value)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (name, lines) in files {
        for line in lines {
            let key = line["key"].as_str().unwrap_or_default().to_string();
            let id = match (line["response_id"].as_str(), line["started_at"].as_str()) {
                (Some(r), _) => Some(format!("r:{r}")),
                (None, Some(s)) => Some(format!("s:{s}")),
                _ => None,
            };
            if let Some(id) = id {
                if !seen.insert((key, id)) {
                    continue;
                }
            }
            out.push((name.clone(), line.clone()));
        }
    }
    out
}

/// A line's value for a --by field.
pub fn value(field: &str, file: &str, line: &Value) -> Value {
    match field {
        "day" => match line["finished_at"].as_str() {
            Some(t) => {
                let t = chrono::DateTime::parse_from_rfc3339(t).expect("time");
                json!(t.with_timezone(&chrono::Utc).format("%Y-%m-%d").to_string())
            }
            None => Value::Null,
        },
        "error_kind" => line["error"]["kind"].clone(),
        "file" => json!(file),
        other => line[other].clone(),
    }
}

/// The groups a report by `by` must hold: values → figures (the JSON shape).
pub fn groups(lines: &[(String, Value)], by: &[&str], prices: &Prices) -> BTreeMap<String, Value> {
    let mut members: BTreeMap<String, (Vec<Value>, Vec<&Value>)> = BTreeMap::new();
    for (file, line) in lines {
        let values: Vec<Value> = by.iter().map(|f| value(f, file, line)).collect();
        let key = serde_json::to_string(&values).expect("key");
        members
            .entry(key)
            .or_insert((values, Vec::new()))
            .1
            .push(line);
    }
    members
        .into_iter()
        .map(|(key, (_, lines))| (key, figures(&lines, prices)))
        .collect()
}

/// The figures of some lines, in the report's JSON shape.
pub fn figures(lines: &[&Value], prices: &Prices) -> Value {
    let (mut ok, mut failed) = (0u64, 0u64);
    let (mut prompt, mut completion, mut cached, mut reasoning, mut unreported) =
        (0u64, 0, 0, 0, 0);
    let (mut provider, mut pricing, mut priced, mut unpriced) = (0.0, 0.0, 0u64, 0u64);
    let (mut latencies, mut ttfts) = (Vec::new(), Vec::new());
    let (mut retries, mut uncertain) = (0u64, 0u64);
    for line in lines {
        let is_ok = line["status"] == "ok";
        if is_ok {
            ok += 1;
            if let Some(ms) = line["latency_ms"].as_f64() {
                latencies.push(ms);
            }
            if let Some(ms) = line["ttft_ms"].as_f64() {
                ttfts.push(ms);
            }
        } else {
            failed += 1;
        }
        let usage = &line["usage"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        if usage.is_object() {
            prompt += n(&usage["prompt_tokens"]);
            completion += n(&usage["completion_tokens"]);
            cached += n(&usage["cached_tokens"]);
            reasoning += n(&usage["reasoning_tokens"]);
        } else if is_ok {
            unreported += 1;
        }
        let model = line["model"].as_str().unwrap_or_default();
        let flag = prices
            .get(model)
            .filter(|_| usage.is_object())
            .map(|(i, o)| {
                n(&usage["prompt_tokens"]) as f64 * i / 1e6
                    + n(&usage["completion_tokens"]) as f64 * o / 1e6
            });
        let cost = line["cost_usd"].as_f64();
        match (line["cost_source"].as_str(), cost, flag) {
            (Some("provider"), Some(c), _) => {
                provider += c;
                priced += 1;
            }
            (_, _, Some(c)) | (_, Some(c), None) => {
                pricing += c;
                priced += 1;
            }
            _ if is_ok => unpriced += 1,
            _ => {}
        }
        retries += line["attempts"].as_u64().unwrap_or(1).saturating_sub(1);
        uncertain += n(&line["uncertain_attempts"]);
    }
    let total = if priced == 0 && unpriced > 0 {
        Value::Null
    } else {
        json!(provider + pricing)
    };
    let latency = if latencies.is_empty() {
        Value::Null
    } else {
        json!({"p50": rank(&mut latencies, 0.5), "p95": rank(&mut latencies, 0.95), "p99": rank(&mut latencies, 0.99)})
    };
    let ttft = if ttfts.is_empty() {
        Value::Null
    } else {
        json!({"p50": rank(&mut ttfts, 0.5)})
    };
    json!({
        "requests": {"ok": ok, "failed": failed},
        "tokens": {"prompt": prompt, "completion": completion, "cached": cached, "reasoning": reasoning, "unreported": unreported},
        "cost_usd": {"total": total, "provider": provider, "pricing": pricing, "unpriced_requests": unpriced},
        "latency_ms": latency,
        "ttft_ms": ttft,
        "retries": retries,
        "uncertain_attempts": uncertain,
    })
}

/// The nearest-rank percentile.
fn rank(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[at - 1]
}

/// Fails unless `got` matches `want`: integers exactly, dollars to 1e-9
/// relative, latencies within a histogram's 0.1% (plus the 0.1 ms shown).
pub fn assert_matches(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g.get(k).unwrap_or(&Value::Null);
                assert_matches(gv, wv, &format!("{at}.{k}"));
            }
        }
        (Value::Number(g), Value::Number(w)) if w.is_u64() && !at.contains("cost") => {
            assert_eq!(g, w, "{at}");
        }
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().expect("f64"), w.as_f64().expect("f64"));
            let tolerance = if at.contains("_ms") {
                w.abs() * 1e-3 + 0.1
            } else {
                w.abs() * 1e-9 + 1e-15
            };
            assert!((g - w).abs() <= tolerance, "{at}: {g} vs {w}");
        }
        (g, w) => assert_eq!(g, w, "{at}"),
    }
}

/// The JSON figures flattened as the CSV names them (`cost_usd_total`).
pub fn flat(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flat(v, &name, out);
            }
        }
        Value::Null if prefix == "latency_ms" => {
            for p in ["p50", "p95", "p99"] {
                out.insert(format!("latency_ms_{p}"), Value::Null);
            }
        }
        Value::Null if prefix == "ttft_ms" => {
            out.insert("ttft_ms_p50".into(), Value::Null);
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The sum of each file's span (first start to last finish of its counted lines).
pub fn span(files: &[(String, Vec<Value>)]) -> f64 {
    let counted = counted(files);
    let t =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time")).expect("time");
    let mut total = 0.0;
    for (name, _) in files {
        let lines: Vec<&Value> = counted
            .iter()
            .filter(|(f, _)| f == name)
            .map(|(_, l)| l)
            .collect();
        let (Some(first), Some(last)) = (
            lines.iter().map(|l| t(&l["started_at"])).min(),
            lines.iter().map(|l| t(&l["finished_at"])).max(),
        ) else {
            continue;
        };
        total += (last - first).num_microseconds().expect("span") as f64 / 1e6;
    }
    total
}

pub fn check_json(text: &str, by: &[&str], want: &BTreeMap<String, Value>, totals: &Value) {
    let got: Value = serde_json::from_str(text).expect("JSON report");
    // The contract's order, top level (indented two spaces).
    let at = |key: &str| text.find(&format!("\n  \"{key}\":")).expect(key);
    let order = ["by", "groups", "totals", "span_s", "files"].map(at);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(got["by"], json!(by));
    let groups = got["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), want.len(), "{by:?}: {groups:?}");
    for group in groups {
        let values: Vec<Value> = by.iter().map(|f| group[*f].clone()).collect();
        let key = serde_json::to_string(&values).expect("key");
        let expected = want
            .get(&key)
            .unwrap_or_else(|| panic!("{by:?}: unexpected group {key}"));
        assert_matches(group, expected, &format!("{by:?} {key}"));
    }
    assert_matches(&got["totals"], totals, &format!("{by:?} totals"));
}

pub fn check_csv(text: &str, by: &[&str], want: &BTreeMap<String, Value>, totals: &Value) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows: Vec<Vec<String>> = (reader.records())
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(
        rows.len(),
        want.len() + 1,
        "{by:?}: one row per group and the totals"
    );
    let parse = |cell: &str| -> Value {
        if cell.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(cell).unwrap_or_else(|_| json!(cell))
        }
    };
    for (i, row) in rows.iter().enumerate() {
        let cells: BTreeMap<&str, &str> = header
            .iter()
            .map(String::as_str)
            .zip(row.iter().map(String::as_str))
            .collect();
        let expected = if i + 1 == rows.len() {
            assert_eq!(row[0], "total");
            totals
        } else {
            let values: Vec<Value> = (by.iter())
                .map(|f| match cells[f] {
                    "" => Value::Null,
                    v => json!(v),
                })
                .collect();
            let key = serde_json::to_string(&values).expect("key");
            want.get(&key)
                .unwrap_or_else(|| panic!("{by:?}: unexpected CSV group {key}"))
        };
        let mut columns = BTreeMap::new();
        flat(expected, "", &mut columns);
        for (name, value) in &columns {
            let cell = cells
                .get(name.as_str())
                .unwrap_or_else(|| panic!("no column {name}"));
            assert_matches(&parse(cell), value, &format!("csv {by:?} row {i} {name}"));
        }
    }
}
