//! The benchmark: `cargo bench` prints requests/s, CPU per request, peak memory,
//! efficiency against the ideal, and 429 bounces under an enforced rate limit.
//!
//! The release `promptbatch` binary runs as a child process against the
//! built-in mock served from this process on 127.0.0.1, so the client's CPU
//! time and peak memory are its own (wait4's rusage), not the mock's. It
//! prints figures; nothing here passes or fails on a wall-clock time.
//! `PROMPTBATCH_BENCH_SCALE=0.2 cargo bench` runs a smaller version;
//! `PROMPTBATCH_BENCH_ONLY=limit` only the scenarios whose name has "limit"
//! (`rows` for the 1,000,000-row fresh run and rerun, `scale.rs`).
//! Each scenario keeps its learned paces in its own temporary state folder
//! (`XDG_STATE_HOME`), never the user's.

mod common;
#[path = "throughput/scale.rs"]
mod scale;

use common::{timeval, wait4};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use promptbatch::mock::{MockConfig, MockServer};
use serde_json::Value;

struct Scenario {
    name: &'static str,
    requests: u64,
    concurrency: u64,
    mock: MockConfig,
    /// Extra flags for the client.
    flags: Vec<String>,
    /// Requests per second at best (concurrency / latency, or the rate limit).
    ideal_per_s: Option<f64>,
    /// Run the job once before the measured run, against the same server and
    /// state folder: the measured run is a second scheduled run.
    second_run: bool,
}

struct Figures {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
    summary: Value,
    limited: u64,
    received: u64,
}

fn main() {
    let scale: f64 = std::env::var("PROMPTBATCH_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: f64| ((base * scale).round() as u64).max(10);
    let scenarios = [
        Scenario {
            name: "instant server, concurrency 64",
            requests: n(50_000.0),
            concurrency: 64,
            mock: MockConfig::default(),
            flags: vec![],
            ideal_per_s: None,
            second_run: false,
        },
        Scenario {
            name: "50 ms server, concurrency 100",
            requests: n(10_000.0),
            concurrency: 100,
            mock: MockConfig {
                latency: Duration::from_millis(50),
                ..MockConfig::default()
            },
            flags: vec![],
            ideal_per_s: Some(100.0 / 0.050),
            second_run: false,
        },
        Scenario {
            name: "50 ms server, 50 ms jitter, streaming, concurrency 100",
            requests: n(10_000.0),
            concurrency: 100,
            mock: MockConfig {
                latency: Duration::from_millis(50),
                jitter: Duration::from_millis(50),
                ..MockConfig::default()
            },
            flags: vec!["--param".into(), "stream=true".into()],
            ideal_per_s: Some(100.0 / 0.075),
            second_run: false,
        },
        Scenario {
            name: "limit 6000 req/min enforced, --rpm 6000, concurrency 64",
            requests: n(1_500.0),
            concurrency: 64,
            mock: MockConfig {
                limit_requests: 100,
                limit_window: Duration::from_secs(1),
                ..MockConfig::default()
            },
            flags: vec!["--rpm".into(), "6000".into()],
            ideal_per_s: Some(100.0),
            second_run: false,
        },
        Scenario {
            name: "limit 6000 req/min enforced, no --rpm (429s only), concurrency 64",
            requests: n(1_500.0),
            concurrency: 64,
            mock: MockConfig {
                limit_requests: 100,
                limit_window: Duration::from_secs(1),
                ..MockConfig::default()
            },
            flags: vec![],
            ideal_per_s: Some(100.0),
            second_run: false,
        },
        Scenario {
            name: "limit 6000 req/min enforced and announced in x-ratelimit-* headers, no --rpm, concurrency 64",
            requests: n(1_500.0),
            concurrency: 64,
            mock: MockConfig {
                limit_requests: 100,
                limit_window: Duration::from_secs(1),
                rate_headers: true,
                ..MockConfig::default()
            },
            flags: vec![],
            ideal_per_s: Some(100.0),
            second_run: false,
        },
        Scenario {
            name: "limit 6000 req/min enforced, no headers, no --rpm, second run (pace learned by the first), concurrency 64",
            requests: n(1_500.0),
            concurrency: 64,
            mock: MockConfig {
                limit_requests: 100,
                limit_window: Duration::from_secs(1),
                ..MockConfig::default()
            },
            flags: vec![],
            ideal_per_s: Some(100.0),
            second_run: true,
        },
        Scenario {
            name: "5 % stray 429s with Retry-After 1 s (each holds its slot 1 s), concurrency 64",
            requests: n(20_000.0),
            concurrency: 64,
            mock: MockConfig {
                rate_429: 0.05,
                ..MockConfig::default()
            },
            flags: vec![],
            ideal_per_s: None,
            second_run: false,
        },
    ];
    let only = std::env::var("PROMPTBATCH_BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("promptbatch benchmark (client: release binary in a child process; server: built-in mock)\n");
    for s in scenarios.iter().filter(|s| s.name.contains(only.as_str())) {
        let f = runtime.block_on(run(s));
        print(s, &f);
    }
    if "1,000,000 rows: fresh run and rerun".contains(only.as_str()) {
        let rows = n(1_000_000.0);
        scale::print(&runtime.block_on(scale::run(rows)));
    }
}

async fn run(s: &Scenario) -> Figures {
    let mock = MockServer::start(s.mock.clone())
        .await
        .expect("mock starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("rows.jsonl");
    scale::write_rows(&input, s.requests);
    let out = dir.path().join("out.jsonl");
    if s.second_run {
        let mut first = command(s, &mock, dir.path(), &input, &out);
        // Off the runtime: the mock serves on it meanwhile.
        let first = tokio::task::spawn_blocking(move || first.status().expect("the binary runs"))
            .await
            .expect("join");
        assert!(first.code().is_some_and(|c| c <= 1), "first run: {first}");
    }
    let (limited_before, received_before) =
        (mock.stats().status_count(429), mock.stats().requests());
    let mut cmd = command(s, &mock, dir.path(), &input, &out);
    if s.second_run {
        cmd.arg("--fresh");
    }
    let start = Instant::now();
    // Reaped by wait4 below (std's wait would not give the child's rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("the binary runs");
    let pid = child.id() as libc::pid_t;
    let (status, usage) = tokio::task::spawn_blocking(move || wait4(pid))
        .await
        .expect("join");
    let wall = start.elapsed();
    assert!(
        status == 0 || status == 1,
        "promptbatch exited with {status}"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out.summary.json")).expect("summary"),
    )
    .expect("summary JSON");
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    let figures = Figures {
        wall,
        cpu,
        max_rss_kib: usage.ru_maxrss,
        summary,
        limited: mock.stats().status_count(429) - limited_before,
        received: mock.stats().requests() - received_before,
    };
    mock.shutdown().await;
    figures
}

/// The client's command line for `s`, its state kept in `dir`.
fn command(s: &Scenario, mock: &MockServer, dir: &Path, input: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptbatch"));
    cmd.env("XDG_STATE_HOME", dir.join("state"));
    cmd.args(["run", "--input"])
        .arg(input)
        .args([
            "--model",
            "google/gemma-3-4b-it",
            "--param",
            "max_tokens=64",
        ])
        .args(["--endpoint", &mock.url(), "--api-key-env", ""])
        .args(["--concurrency", &s.concurrency.to_string()])
        .args(["--max-attempts", "10", "--quiet", "--output"])
        .arg(out)
        .args(&s.flags);
    cmd
}

fn print(s: &Scenario, f: &Figures) {
    let sent = f.summary["requests"]["ok"].as_u64().unwrap_or(0)
        + f.summary["requests"]["failed"].as_u64().unwrap_or(0);
    let per_s = sent as f64 / f.wall.as_secs_f64();
    println!("{}", s.name);
    println!(
        "  {sent} requests in {:.2} s = {per_s:.0} requests/s (whole process, start-up and input scan included)",
        f.wall.as_secs_f64()
    );
    if let Some(ideal) = s.ideal_per_s {
        println!(
            "  efficiency {:.0} % of the ideal {ideal:.0} requests/s",
            100.0 * per_s / ideal
        );
    }
    println!(
        "  client CPU {:.1} µs per request ({:.2} s total), peak memory {:.1} MiB",
        f.cpu.as_secs_f64() * 1e6 / sent.max(1) as f64,
        f.cpu.as_secs_f64(),
        f.max_rss_kib as f64 / 1024.0
    );
    println!(
        "  server saw {} requests, answered {} with 429 ({:.1} % bounced); ok {}, failed {}",
        f.received,
        f.limited,
        100.0 * f.limited as f64 / f.received.max(1) as f64,
        f.summary["requests"]["ok"],
        f.summary["requests"]["failed"]
    );
    println!(
        "  latency ms p50 {} p99 {}; summary throughput {} requests/s\n",
        f.summary["latency_ms"]["p50"],
        f.summary["latency_ms"]["p99"],
        f.summary["throughput"]["requests_per_s"]
    );
}
