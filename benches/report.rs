//! The report benchmark: `cargo bench --bench report` writes a realistic
//! output of 1,000,000 lines (several models, parameter sets and days, some
//! errors, streamed and unpriced lines) and times the release binary's
//! `report` over it: as a table, and `--by day,model --format json`.
//!
//! It prints lines/s, wall and CPU time and peak memory (the child's own,
//! from wait4's rusage); nothing here passes or fails on a time.
//! `PROMPTBATCH_BENCH_LINES=100000` writes fewer lines.

mod common;

use common::{timeval, wait4};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const MODELS: [&str; 4] = [
    "google/gemma-3-4b-it",
    "google/gemma-3-12b-it",
    "google/gemma-3-27b-it",
    "google/gemma-3-4b-it:free",
];
const SETS: [&str; 3] = ["precise", "creative", "default"];
const KINDS: [&str; 4] = ["rate_limited", "server", "timeout", "bad_output"];

fn main() {
    let lines: u64 = std::env::var("PROMPTBATCH_BENCH_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("nightly.jsonl");
    let start = Instant::now();
    let bytes = write_output(&out, lines);
    println!(
        "wrote {lines} lines ({:.0} MiB) in {:.1} s",
        bytes as f64 / (1024.0 * 1024.0),
        start.elapsed().as_secs_f64()
    );
    for (name, flags) in [
        ("table", vec![]),
        (
            "--by day,model --format json",
            vec!["--by", "day,model", "--format", "json"],
        ),
    ] {
        let f = report(&out, &flags);
        println!("report {name}");
        println!(
            "  {lines} lines in {:.2} s = {:.0} lines/s; CPU {:.2} s; peak memory {:.1} MiB",
            f.wall.as_secs_f64(),
            lines as f64 / f.wall.as_secs_f64(),
            f.cpu.as_secs_f64(),
            f.max_rss_kib as f64 / 1024.0
        );
    }
}

struct Figures {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

fn report(out: &Path, flags: &[&str]) -> Figures {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptbatch"));
    cmd.arg("report")
        .arg(out)
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let start = Instant::now();
    // Reaped by wait4 below (std's wait would not give the child's rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("the binary runs");
    let (status, usage) = wait4(child.id() as libc::pid_t);
    let wall = start.elapsed();
    assert_eq!(status, 0, "report exited with {status}");
    Figures {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// Writes `n` records like a run's: 30 days, four models, three sets, 8%
/// errors, a third streamed, some without usage or cost. Returns its size.
fn write_output(path: &Path, n: u64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut bytes = 0u64;
    let answer = "The capital is a city on a river, founded centuries ago; it holds the seat of government, most ministries and the national library. ".repeat(3);
    for i in 0..n {
        let id = format!("r{}", i / 3);
        let set = SETS[(i % 3) as usize];
        let model = MODELS[rng.usize(..MODELS.len())];
        let ok = rng.f64() > 0.08;
        let day = 1 + (i * 30 / n.max(1));
        let (h, m, s) = (rng.u32(0..24), rng.u32(0..60), rng.u32(0..60));
        let latency = (rng.f64() * rng.f64() * 4000.0 * 10.0).round() / 10.0 + 20.0;
        let started = format!(
            "2026-11-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            rng.u32(0..1000)
        );
        let finished = format!(
            "2026-11-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            rng.u32(0..1000)
        );
        let (p, c) = (rng.u64(20..900), rng.u64(5..600));
        let usage = (ok && rng.f64() > 0.05)
            .then(|| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}));
        let streamed = ok && rng.f64() < 0.33;
        let record = json!({
            "key": format!("{id}/{set}"), "job": "faq-nightly", "id": id, "param_set": set,
            "status": if ok { "ok" } else { "error" }, "model": model,
            "content": if ok { json!(answer) } else { json!(null) },
            "finish_reason": if ok { json!(if rng.f64() < 0.9 { "stop" } else { "length" }) } else { json!(null) },
            "usage": usage,
            "cost_usd": if usage.is_some() && rng.f64() < 0.8 { json!((p + 2 * c) as f64 * 4e-8) } else { json!(null) },
            "cost_source": if usage.is_some() { json!("provider") } else { json!(null) },
            "latency_ms": if ok { json!(latency) } else { json!(null) },
            "ttft_ms": if streamed { json!((latency * 2.0).round() / 10.0) } else { json!(null) },
            "attempts": if rng.f64() < 0.1 { 2 } else { 1 }, "uncertain_attempts": 0,
            "client_request_id": format!("faq-nightly:{id}:{set}:1"),
            "request_sha256": "3b9f0c5e2d7a41b8c6e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f",
            "error": if ok { json!(null) } else { json!({"kind": KINDS[rng.usize(..4)], "status": 500, "message": "upstream error"}) },
            "response_id": if ok { json!(format!("chatcmpl-{i:012}")) } else { json!(null) },
            "provider": null, "started_at": started, "finished_at": finished,
            "params": {"temperature": 0.2, "max_tokens": 512},
            "input": {"id": id, "question": format!("What is the capital of country number {i}?")},
        });
        let line = record.to_string();
        bytes += line.len() as u64 + 1;
        writeln!(out, "{line}").expect("write");
    }
    out.flush().expect("flush");
    bytes
}
