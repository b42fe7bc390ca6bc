//! The outputs the report tests read: varied records of several runs (models,
//! sets, jobs, days, statuses, finish reasons, error kinds, costs from the
//! provider, from prices and none, usage missing, streamed, retried,
//! uncertain, three endpoints or none), a copy, an overlapping shard, and the side files beside them.

use serde_json::{json, Value};

use crate::common::Sandbox;

const MODELS: [&str; 3] = ["m/a", "m/b", "m/c"];
const SETS: [&str; 2] = ["precise", "creative"];
const KINDS: [&str; 4] = ["rate_limited", "server", "timeout", "bad_output"];
/// The endpoints of the `nightly` job (`[[endpoints]]`); `weekly` has one
/// endpoint, so its lines name none.
const ENDPOINTS: [&str; 3] = ["key-a", "key-b", "fallback"];
/// `--pricing`: m/c has no price, so its lines without a cost stay unpriced.
pub const PRICES: &str =
    "[pricing]\n\"m/a\" = { input = 0.5, output = 1.5 }\n\"m/b\" = { input = 2, output = 6 }\n";

/// `n` varied records of `job`, the first `first` ids on, from `day` on.
pub fn records(
    rng: &mut fastrand::Rng,
    job: &str,
    tag: &str,
    first: usize,
    n: usize,
    day: &str,
) -> Vec<Value> {
    let start = chrono::DateTime::parse_from_rfc3339(&format!("{day}T22:00:00Z")).expect("day");
    (0..n)
        .map(|i| {
            let id = format!("q{}", first + i);
            let set = SETS[i % 2];
            let model = MODELS[rng.usize(..3)];
            let ok = rng.f64() > 0.15;
            let started = start + chrono::Duration::milliseconds((i as i64) * 97_000 + rng.i64(0..900));
            let latency = (rng.f64() * 3000.0 * 10.0).round() / 10.0 + 5.0;
            let finished = started + chrono::Duration::microseconds((latency * 1000.0) as i64);
            let stamp = |t: chrono::DateTime<chrono::FixedOffset>| {
                t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            };
            let usage = (ok && rng.f64() > 0.1).then(|| {
                let (p, c) = (rng.u64(5..500), rng.u64(1..800));
                let mut u = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
                if rng.bool() {
                    u["cached_tokens"] = json!(rng.u64(0..p));
                }
                if rng.f64() < 0.3 {
                    u["reasoning_tokens"] = json!(rng.u64(0..c));
                }
                u
            });
            let (cost, source) = match (ok, rng.u8(0..10)) {
                (false, _) => (Value::Null, Value::Null),
                (true, 0..=3) => (json!(rng.u64(1..1000) as f64 / 1e6), json!("provider")),
                (true, 4..=6) if usage.is_some() => (json!(rng.u64(1..1000) as f64 / 1e7), json!("pricing")),
                _ => (Value::Null, Value::Null),
            };
            let finish = match (ok, rng.u8(0..20)) {
                (false, _) => Value::Null,
                (true, 0) => Value::Null,
                (true, 1..=5) => json!("length"),
                _ => json!("stop"),
            };
            let attempts = [1, 1, 1, 2, 3][rng.usize(..5)];
            let mut line = json!({
                "key": format!("{id}/{set}"), "job": job, "id": id, "param_set": set,
                "status": if ok { "ok" } else { "error" }, "model": model,
                "content": if ok { json!("an answer, with \"quotes\" and a\nnewline") } else { Value::Null },
                "finish_reason": finish, "usage": usage, "cost_usd": cost, "cost_source": source,
                "latency_ms": if ok { json!(latency) } else { Value::Null },
                "ttft_ms": if ok && rng.f64() < 0.3 { json!((latency * 3.0).round() / 10.0) } else { Value::Null },
                "attempts": attempts, "uncertain_attempts": u32::from(attempts > 1 && rng.bool()),
                "client_request_id": format!("{job}:{id}:{set}:{attempts}"), "request_sha256": "00",
                "error": if ok { Value::Null } else { json!({"kind": KINDS[rng.usize(..4)], "status": 500, "message": "no"}) },
                "response_id": if ok && rng.f64() < 0.7 { json!(format!("chatcmpl-{tag}-{i}")) } else { Value::Null },
                "provider": null, "started_at": stamp(started), "finished_at": stamp(finished),
                "params": {"temperature": 0.2}, "input": {"id": id, "prompt": "a question"},
            });
            if job == "nightly" {
                line["endpoint"] = json!(ENDPOINTS[i % 3]);
            }
            line
        })
        .collect()
}

pub fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

/// Outputs of two runs, a copy, an overlapping shard and the files that sit
/// beside outputs; the arguments `report out/*` would get (sorted) plus one
/// file named again; and the files as the report must count them.
pub fn outputs(sb: &Sandbox) -> (Vec<String>, Vec<(String, Vec<Value>)>) {
    let mut rng = fastrand::Rng::with_seed(9);
    let a = records(&mut rng, "nightly", "a", 0, 150, "2026-11-20");
    // The same keys answered again two days later: new calls, counted again.
    let b = records(&mut rng, "weekly", "b", 0, 120, "2026-11-22");
    // A shard that overlaps a's last 40 calls.
    let shard = [
        a[110..].to_vec(),
        records(&mut rng, "nightly", "s", 500, 30, "2026-11-21"),
    ]
    .concat();
    let old = records(&mut rng, "nightly", "old", 900, 20, "2026-11-19");
    sb.write("out/a.jsonl", &jsonl(&a));
    sb.write("out/a-copy.jsonl", &jsonl(&a));
    sb.write("out/b.jsonl", &jsonl(&b));
    sb.write("out/shard.jsonl", &jsonl(&shard));
    // Side files: a backup holds records, which must not count.
    sb.write("out/a.jsonl.20261120T000000Z.bak", &jsonl(&old));
    sb.write("out/a.jsonl.compact.tmp", &jsonl(&old));
    sb.write("out/a.jsonl.lock", "4242\n");
    sb.write("out/a.summary.json", "{\"job\": \"nightly\"}\n");
    let mut names: Vec<String> = std::fs::read_dir(sb.path("out"))
        .expect("out")
        .map(|e| format!("out/{}", e.expect("entry").file_name().to_string_lossy()))
        .collect();
    names.sort();
    let mut args = names.clone();
    args.push("out/a.jsonl".into());
    let read = [
        ("out/a-copy.jsonl", &a),
        ("out/a.jsonl", &a),
        ("out/b.jsonl", &b),
        ("out/shard.jsonl", &shard),
    ];
    let files = read
        .iter()
        .map(|(n, l)| (n.to_string(), l.to_vec()))
        .collect();
    (args, files)
}
