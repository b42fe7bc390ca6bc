//! The scale rows of the benchmark: a fresh run of 1,000,000 rows against the
//! instant mock, then a rerun over its complete output (nothing to send):
//! wall time, CPU and peak memory of the client, each beside its target.
//!
//! The mock runs in this process, so the child's `ru_maxrss` also counts
//! the pages it shared with this process when it was forked (the kernel
//! carries the high-water mark over exec): the rows are written and the mock
//! started before, and this process stays far below the figures measured.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use promptbatch::mock::{MockConfig, MockServer};
use serde_json::{json, Value};

use crate::common::{timeval, wait4};
use crate::table::{self, Bound, Row};

/// One measured run of the client.
pub struct Measured {
    pub name: String,
    pub exit: i32,
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_mib: f64,
    pub requests: u64,
    /// The target this row is read against, in words.
    pub target: &'static str,
    pub met: bool,
}

/// The fresh run and the rerun, at `rows` rows.
pub async fn run(rows: u64) -> Vec<Measured> {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("rows.jsonl");
    write_rows(&input, rows);
    let out = dir.path().join("out.jsonl");
    let mut measured = Vec::new();
    for (name, target, limit_s) in [
        ("fresh run", "peak < 64 MiB", None),
        (
            "rerun over the complete output (nothing to send)",
            "< 2 s and peak < 64 MiB",
            Some(2.0),
        ),
    ] {
        let before = mock.stats().requests();
        let mut m = client(&mock.url(), &input, &out).await;
        m.name = format!("{rows} rows, {name}");
        m.requests = mock.stats().requests() - before;
        m.target = target;
        m.met =
            m.exit == 0 && m.peak_mib < 64.0 && limit_s.is_none_or(|s| m.wall.as_secs_f64() < s);
        measured.push(m);
    }
    mock.shutdown().await;
    measured
}

async fn client(url: &str, input: &Path, out: &Path) -> Measured {
    let mut cmd = client_command(input, url, out);
    cmd.args(["--concurrency", "256"]);
    let start = Instant::now();
    // Reaped by wait4 below (std's wait would not give the child's rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("the binary runs");
    let pid = child.id() as libc::pid_t;
    let (exit, usage) = tokio::task::spawn_blocking(move || wait4(pid))
        .await
        .expect("join");
    Measured {
        name: String::new(),
        exit,
        wall: start.elapsed(),
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        requests: 0,
        target: "",
        met: false,
    }
}

/// The client's command line in every throughput scenario: `input` to
/// `out` against `url`, with no key and nothing printed but errors; each
/// scenario adds its concurrency, attempts and flags.
pub fn client_command(input: &Path, url: &str, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptbatch"));
    cmd.args(["run", "--input"])
        .arg(input)
        .args([
            "--model",
            "google/gemma-3-4b-it",
            "--param",
            "max_tokens=64",
        ])
        .args([
            "--endpoint",
            url,
            "--api-key-env",
            "",
            "--quiet",
            "--output",
        ])
        .arg(out);
    cmd
}

/// `n` JSONL rows with a prompt each: the input of every throughput scenario.
pub fn write_rows(path: &Path, n: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..n {
        writeln!(
            out,
            "{{\"id\": \"r{i}\", \"prompt\": \"Question {i}: what is the capital of country number {i}?\"}}"
        )
        .expect("write");
    }
}

/// Prints the rows, the target beside each figure.
pub fn print(rows: &[Measured]) {
    for m in rows {
        println!("{}", m.name);
        println!(
            "  {:.2} s, client CPU {:.2} s, peak memory {:.1} MiB, {} requests sent, exit {}",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.peak_mib,
            m.requests,
            m.exit
        );
        println!(
            "  target: {} ({})\n",
            m.target,
            if m.met { "met" } else { "NOT met" }
        );
    }
}

/// The fresh run and the rerun as rows of the targets table: the fresh run's
/// peak memory, the rerun's time (its peak memory beside it, judged too).
pub fn rows(measured: &[Measured]) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(fresh) = measured.first() {
        rows.push(Row::measured(
            table::FRESH,
            fresh.peak_mib,
            fresh.exit == 0 && Bound::Below(64.0).holds(fresh.peak_mib),
            cost(fresh),
        ));
    }
    if let Some(rerun) = measured.get(1) {
        let s = rerun.wall.as_secs_f64();
        rows.push(Row::measured(
            table::RERUN,
            s,
            rerun.exit == 0
                && Bound::Below(2.0).holds(s)
                && Bound::Below(64.0).holds(rerun.peak_mib),
            cost(rerun),
        ));
    }
    rows
}

/// What the run cost; a rerun that sends nothing has no rate or CPU per
/// request.
fn cost(m: &Measured) -> table::Run {
    let sent = (m.requests > 0).then_some(m.requests as f64);
    table::Run {
        requests_per_s: sent.map(|n| n / m.wall.as_secs_f64()),
        cpu_us_per_request: sent.map(|n| m.cpu.as_secs_f64() * 1e6 / n),
        peak_mib: Some(m.peak_mib),
        bounced_pct: None,
    }
}

pub fn json(m: &Measured) -> Value {
    let r = cost(m);
    json!({
        "name": m.name,
        "requests": m.requests,
        "exit": m.exit,
        "wall_s": m.wall.as_secs_f64(),
        "cpu_s": m.cpu.as_secs_f64(),
        "requests_per_s": r.requests_per_s,
        "cpu_us_per_request": r.cpu_us_per_request,
        "peak_mib": m.peak_mib,
        "target": m.target,
        "met": m.met,
        "skipped": null,
    })
}
