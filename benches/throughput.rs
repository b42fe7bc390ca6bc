//! The benchmark: `cargo bench` prints requests/s, CPU per request, peak memory,
//! efficiency against the ideal, and 429 bounces under an enforced rate limit,
//! then the targets table (`table.rs`): every performance target's figure
//! beside it, met or NOT met, also written as JSON to
//! `target/bench/throughput.json` (or the path in `PROMPTBATCH_BENCH_JSON`).
//!
//! The release `promptbatch` binary runs as a child process against the
//! built-in mock served from this process on 127.0.0.1, so the client's CPU
//! time and peak memory are its own (wait4's rusage), not the mock's; one
//! scenario runs it against nginx instead (`nginx.rs`, skipped when nginx is
//! not installed), and the start-up time is taken against a bare listener
//! (`first.rs`). It prints figures; nothing here passes or fails on a
//! wall-clock time.
//! `PROMPTBATCH_BENCH_SCALE=0.2 cargo bench` runs a smaller version;
//! `PROMPTBATCH_BENCH_ONLY=limit` only the scenarios whose name has "limit"
//! (`rows` for the 1,000,000-row fresh run and rerun, `scale.rs`; `first`
//! for the start-up time; `nginx`); the table names the rows not run.
//! Each scenario keeps its learned paces in its own temporary state folder
//! (`XDG_STATE_HOME`), never the user's.

mod common;
#[path = "throughput/first.rs"]
mod first;
#[path = "throughput/nginx.rs"]
mod nginx;
#[path = "throughput/pace.rs"]
mod pace;
#[path = "throughput/scale.rs"]
mod scale;
#[path = "throughput/table.rs"]
mod table;
#[path = "throughput/targets.rs"]
mod targets;

use common::{timeval, wait4};
use table::Row;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promptbatch::mock::{MockConfig, MockServer, MockStats};
use serde_json::Value;

struct Scenario {
    name: &'static str,
    requests: u64,
    concurrency: u64,
    server: Server,
    /// Extra flags for the client.
    flags: Vec<String>,
    /// Requests per second at best (concurrency / latency, or the rate limit).
    ideal_per_s: Option<f64>,
    /// Run the job once before the measured run, against the same server and
    /// state folder: the measured run is a second scheduled run.
    second_run: bool,
    /// The row of the targets table this scenario's figures go to.
    row: Option<TableRow>,
}

/// The built-in mock enforcing 100 requests a second, announcing it in
/// `x-ratelimit-*` headers or not: the limit scenarios' server.
fn limited(rate_headers: bool) -> Server {
    Server::Mock(MockConfig {
        limit_requests: 100,
        limit_window: Duration::from_secs(1),
        rate_headers,
        ..MockConfig::default()
    })
}

/// What the client is run against.
enum Server {
    /// The built-in mock, in this process: it counts requests and 429s.
    Mock(MockConfig),
    /// Debian's nginx with one static answer, when it is installed.
    Nginx,
}

#[derive(Clone, Copy, PartialEq)]
enum TableRow {
    Nginx,
    Headers,
    Learned,
}

struct Figures {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
    summary: Value,
    /// Requests and 429s the server saw; none from nginx, which cannot count.
    limited: Option<u64>,
    received: Option<u64>,
    /// Lines in the output file.
    records: u64,
    /// What the mock answered in the first second of the run.
    first_second: Option<pace::FirstSecond>,
    /// The share of the ideal held once under way, from the mock's counters.
    sustained_pct: Option<f64>,
    /// The pace the state file held when the run started (a second run's).
    learned_per_s: Option<f64>,
}

fn main() {
    let scale: f64 = std::env::var("PROMPTBATCH_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: f64| ((base * scale).round() as u64).max(10);
    // The limit scenarios run at 100 requests/s: 300 keep them long enough
    // for whole seconds once under way at any scale.
    let scenarios = [
        Scenario {
            name: "static nginx answer, concurrency 64",
            requests: n(50_000.0),
            concurrency: 64,
            server: Server::Nginx,
            flags: vec![],
            ideal_per_s: None,
            second_run: false,
            row: Some(TableRow::Nginx),
        },
        Scenario {
            name: "instant server, concurrency 64",
            requests: n(50_000.0),
            concurrency: 64,
            server: Server::Mock(MockConfig::default()),
            flags: vec![],
            ideal_per_s: None,
            second_run: false,
            row: None,
        },
        Scenario {
            name: "50 ms server, concurrency 100",
            requests: n(10_000.0),
            concurrency: 100,
            server: Server::Mock(MockConfig {
                latency: Duration::from_millis(50),
                ..MockConfig::default()
            }),
            flags: vec![],
            ideal_per_s: Some(100.0 / 0.050),
            second_run: false,
            row: None,
        },
        Scenario {
            name: "50 ms server, 50 ms jitter, streaming, concurrency 100",
            requests: n(10_000.0),
            concurrency: 100,
            server: Server::Mock(MockConfig {
                latency: Duration::from_millis(50),
                jitter: Duration::from_millis(50),
                ..MockConfig::default()
            }),
            flags: vec!["--param".into(), "stream=true".into()],
            ideal_per_s: Some(100.0 / 0.075),
            second_run: false,
            row: None,
        },
        Scenario {
            name: "limit 6000 req/min enforced, --rpm 6000, concurrency 64",
            requests: n(1_500.0).max(300),
            concurrency: 64,
            server: limited(false),
            flags: vec!["--rpm".into(), "6000".into()],
            ideal_per_s: Some(100.0),
            second_run: false,
            row: None,
        },
        Scenario {
            name: "limit 6000 req/min enforced, no --rpm (429s only), concurrency 64",
            requests: n(1_500.0).max(300),
            concurrency: 64,
            server: limited(false),
            flags: vec![],
            ideal_per_s: Some(100.0),
            second_run: false,
            row: None,
        },
        Scenario {
            name: "limit 6000 req/min enforced and announced in x-ratelimit-* headers, no --rpm, concurrency 64",
            requests: n(1_500.0).max(300),
            concurrency: 64,
            server: limited(true),
            flags: vec![],
            ideal_per_s: Some(100.0),
            second_run: false,
            row: Some(TableRow::Headers),
        },
        Scenario {
            name: "limit 6000 req/min enforced, no headers, no --rpm, second run (pace learned by the first), concurrency 64",
            requests: n(1_500.0).max(300),
            concurrency: 64,
            server: limited(false),
            flags: vec![],
            ideal_per_s: Some(100.0),
            second_run: true,
            row: Some(TableRow::Learned),
        },
        Scenario {
            name: "5 % stray 429s with Retry-After 1 s (each holds its slot 1 s), concurrency 64",
            requests: n(20_000.0),
            concurrency: 64,
            server: Server::Mock(MockConfig {
                rate_429: 0.05,
                ..MockConfig::default()
            }),
            flags: vec![],
            ideal_per_s: None,
            second_run: false,
            row: None,
        },
    ];
    let only = std::env::var("PROMPTBATCH_BENCH_ONLY").unwrap_or_default();
    let not_run = format!("not run (PROMPTBATCH_BENCH_ONLY={only})");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("promptbatch benchmark (client: release binary in a child process; server: built-in mock, or nginx where named)\n");
    let mut table = Vec::new();
    let mut json_scenarios = Vec::new();
    if "start to first request".contains(only.as_str()) {
        let starts = first::measure(15);
        match &starts {
            Ok(s) => first::print(s),
            Err(why) => println!("start to first request: {why}\n"),
        }
        json_scenarios.push(targets::first_json(&starts));
        table.push(targets::first_row(&starts));
    } else {
        table.push(Row::skipped(table::FIRST_REQUEST, &not_run));
    }
    let mut measured = Vec::new();
    for s in scenarios.iter() {
        let figures = if s.name.contains(only.as_str()) {
            let f = runtime.block_on(run(s));
            print(s, &f);
            json_scenarios.push(targets::scenario_json(s, &f));
            f
        } else {
            Err(not_run.clone())
        };
        measured.push((s, figures));
    }
    table.splice(0..0, targets::rows_of(&measured, TableRow::Nginx));
    table.extend(targets::rows_of(&measured, TableRow::Headers));
    table.extend(targets::rows_of(&measured, TableRow::Learned));
    if "1,000,000 rows: fresh run and rerun".contains(only.as_str()) {
        let rows = n(1_000_000.0);
        let m = runtime.block_on(scale::run(rows));
        scale::print(&m);
        json_scenarios.extend(m.iter().map(scale::json));
        table.extend(scale::rows(&m));
    } else {
        table.push(Row::skipped(table::FRESH, &not_run));
        table.push(Row::skipped(table::RERUN, &not_run));
    }
    print!("{}", table::render(&table, scale));
    let json = table::document(&table, json_scenarios, scale);
    let path = std::env::var_os("PROMPTBATCH_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/throughput.json")
        });
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).expect("the JSON's folder");
    }
    let text = serde_json::to_string_pretty(&json).expect("JSON");
    std::fs::write(&path, text + "\n").expect("the JSON is written");
    println!("written as JSON to {}", path.display());
}

/// The server a scenario's client talks to, while it runs.
enum Running {
    Mock(MockServer),
    Nginx(nginx::Nginx),
}

impl Running {
    async fn start(server: &Server) -> Result<Running, String> {
        Ok(match server {
            Server::Mock(config) => Running::Mock(
                MockServer::start(config.clone())
                    .await
                    .expect("mock starts"),
            ),
            Server::Nginx => {
                let exe = nginx::find().ok_or(nginx::NOT_INSTALLED)?;
                Running::Nginx(nginx::Nginx::start(&exe)?)
            }
        })
    }

    fn url(&self) -> String {
        match self {
            Running::Mock(m) => m.url(),
            Running::Nginx(n) => n.url(),
        }
    }

    /// The mock's counters, to sample during a run.
    fn stats(&self) -> Option<Arc<MockStats>> {
        match self {
            Running::Mock(m) => Some(m.stats_handle()),
            Running::Nginx(_) => None,
        }
    }

    /// 429s and requests the server saw so far, where it counts them.
    fn counts(&self) -> (Option<u64>, Option<u64>) {
        match self {
            Running::Mock(m) => (
                Some(m.stats().status_count(429)),
                Some(m.stats().requests()),
            ),
            Running::Nginx(_) => (None, None),
        }
    }

    async fn stop(self) {
        match self {
            Running::Mock(m) => m.shutdown().await,
            Running::Nginx(n) => drop(n),
        }
    }
}

async fn run(s: &Scenario) -> Result<Figures, String> {
    let server = Running::start(&s.server).await?;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("rows.jsonl");
    scale::write_rows(&input, s.requests);
    let out = dir.path().join("out.jsonl");
    let url = server.url();
    if s.second_run {
        let mut first = command(s, &url, dir.path(), &input, &out);
        // Off the runtime: the mock serves on it meanwhile.
        let first = tokio::task::spawn_blocking(move || first.status().expect("the binary runs"))
            .await
            .expect("join");
        assert!(first.code().is_some_and(|c| c <= 1), "first run: {first}");
    }
    let learned_per_s = std::fs::read(dir.path().join("state/promptbatch/rates.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .and_then(|state| pace::learned_per_s(&state));
    let (limited_before, received_before) = server.counts();
    let mut cmd = command(s, &url, dir.path(), &input, &out);
    if s.second_run {
        cmd.arg("--fresh");
    }
    let done = Arc::new(AtomicBool::new(false));
    let sampler = server.stats().map(|stats| {
        let (r0, l0) = (stats.requests(), stats.status_count(429));
        let read = move || (stats.requests() - r0, stats.status_count(429) - l0);
        tokio::spawn(pace::sample(read, Duration::from_millis(10), done.clone()))
    });
    let start = Instant::now();
    // Reaped by wait4 below (std's wait would not give the child's rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("the binary runs");
    let pid = child.id() as libc::pid_t;
    let (status, usage) = tokio::task::spawn_blocking(move || wait4(pid))
        .await
        .expect("join");
    let wall = start.elapsed();
    done.store(true, Ordering::SeqCst);
    let samples = match sampler {
        Some(task) => task.await.expect("the sampler ends"),
        None => vec![],
    };
    assert!(
        status == 0 || status == 1,
        "promptbatch exited with {status}"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out.summary.json")).expect("summary"),
    )
    .expect("summary JSON");
    // The records on disk, one line each: what the run promises beside its
    // summary (and the only count there is against nginx).
    let records = std::fs::read(&out)
        .expect("the output")
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    let (limited_after, received_after) = server.counts();
    let since = |after: Option<u64>, before: Option<u64>| Some(after? - before?);
    let figures = Figures {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        summary,
        limited: since(limited_after, limited_before),
        received: since(received_after, received_before),
        records,
        first_second: pace::first_second(&samples),
        sustained_pct: s
            .ideal_per_s
            .and_then(|limit| pace::sustained_share(&samples, limit)),
        learned_per_s,
    };
    server.stop().await;
    Ok(figures)
}

/// The client's command line for `s`, its state kept in `dir`.
fn command(s: &Scenario, url: &str, dir: &Path, input: &Path, out: &Path) -> Command {
    let mut cmd = scale::client_command(input, url, out);
    cmd.env("XDG_STATE_HOME", dir.join("state"))
        .args(["--concurrency", &s.concurrency.to_string()])
        .args(["--max-attempts", "10"])
        .args(&s.flags);
    cmd
}

impl Figures {
    /// Requests that ended, as the summary counts them.
    fn sent(&self) -> u64 {
        self.summary["requests"]["ok"].as_u64().unwrap_or(0)
            + self.summary["requests"]["failed"].as_u64().unwrap_or(0)
    }

    fn per_s(&self) -> f64 {
        self.sent() as f64 / self.wall.as_secs_f64()
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.sent().max(1) as f64
    }

    fn peak_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    fn bounced_pct(&self) -> Option<f64> {
        Some(100.0 * self.limited? as f64 / self.received?.max(1) as f64)
    }

    fn efficiency_pct(&self, s: &Scenario) -> Option<f64> {
        Some(100.0 * self.per_s() / s.ideal_per_s?)
    }

    /// What the first second reached, as a share of the pace learned before.
    fn start_of_learned_pct(&self) -> Option<f64> {
        Some(100.0 * self.first_second?.ok as f64 / self.learned_per_s?)
    }

    fn run(&self) -> table::Run {
        table::Run {
            requests_per_s: Some(self.per_s()),
            cpu_us_per_request: Some(self.cpu_us_per_request()),
            peak_mib: Some(self.peak_mib()),
            bounced_pct: self.bounced_pct(),
        }
    }
}

fn print(s: &Scenario, f: &Result<Figures, String>) {
    println!("{}", s.name);
    let f = match f {
        Ok(f) => f,
        Err(why) => {
            println!("  skipped: {why}\n");
            return;
        }
    };
    println!(
        "  {} requests in {:.2} s = {:.0} requests/s (whole process, start-up and input scan included)",
        f.sent(),
        f.wall.as_secs_f64(),
        f.per_s()
    );
    if let (Some(ideal), Some(e)) = (s.ideal_per_s, f.efficiency_pct(s)) {
        let sustained = f
            .sustained_pct
            .map(|p| format!("; {p:.0} % once under way (whole seconds after the first)"))
            .unwrap_or_default();
        println!("  efficiency {e:.0} % of the ideal {ideal:.0} requests/s{sustained}");
    }
    println!(
        "  client CPU {:.1} µs per request ({:.2} s total), peak memory {:.1} MiB",
        f.cpu_us_per_request(),
        f.cpu.as_secs_f64(),
        f.peak_mib()
    );
    let ok_failed = format!(
        "ok {}, failed {}, {} records in the output",
        f.summary["requests"]["ok"], f.summary["requests"]["failed"], f.records
    );
    match (f.received, f.limited, f.bounced_pct()) {
        (Some(received), Some(limited), Some(bounced)) => println!(
            "  server saw {received} requests, answered {limited} with 429 ({bounced:.1} % bounced); {ok_failed}"
        ),
        // nginx keeps no count the benchmark can read: the summary's is the one.
        _ => println!("  requests counted from the client's summary and output (nginx counts none we can read): {ok_failed}"),
    }
    if s.second_run && f.learned_per_s.is_none() {
        println!("  the first run left no learned pace in the state file");
    }
    if let (true, Some(first), Some(learned)) = (s.second_run, f.first_second, f.learned_per_s) {
        println!(
            "  first second: {} answered, {} bounced; learned pace {learned:.1} requests/s ({:.0} % of it)",
            first.ok,
            first.limited,
            100.0 * first.ok as f64 / learned
        );
    }
    println!(
        "  latency ms p50 {} p99 {}; summary throughput {} requests/s\n",
        f.summary["latency_ms"]["p50"],
        f.summary["latency_ms"]["p99"],
        f.summary["throughput"]["requests_per_s"]
    );
}
