//! Shared test harness: a fresh temp dir per test, the real binary, the built-in mock on 127.0.0.1:0,
//! and JSON Schema validation of every record and summary a run writes.
//!
//! Every run gets a sentinel API key, and the test jobs a sentinel secret
//! header; no part of either (8 characters or more) may appear in any file a
//! run leaves in the sandbox or in anything it prints. The sandbox checks its
//! files when it is dropped and [`output`] / [`code`] check what a run
//! printed, so every test makes that promise without asking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::Value;

pub use promptbatch::mock::{MockConfig, MockServer};

/// The API key of every run (in `AIMLAPI_API_KEY`, unless a test sets another).
pub const SENTINEL_KEY: &str = "pbK3y-7Qz9xW2mV8rT4nL6jH5cF1";
/// The value of the `x-api-key` header the test jobs send.
pub const SENTINEL_HEADER: &str = "pbHdr-Xq4Lw8Ne2Rt6Yu1Io3Pa5Sd";
/// Parts of a secret this long count as a leak.
const LEAK_PART: usize = 8;

/// Fails when `bytes` hold any part of 8 or more characters of a sentinel secret.
pub fn assert_no_secret(what: &str, bytes: &[u8]) {
    for secret in [SENTINEL_KEY, SENTINEL_HEADER] {
        for part in secret.as_bytes().windows(LEAK_PART) {
            if let Some(at) = bytes.windows(LEAK_PART).position(|w| w == part) {
                let from = at.saturating_sub(80);
                let to = (at + 80).min(bytes.len());
                panic!(
                    "a secret leaked into {what}: {:?} at byte {at}: ...{}...",
                    String::from_utf8_lossy(part),
                    String::from_utf8_lossy(&bytes[from..to])
                );
            }
        }
    }
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// What the test itself wrote, by path: a job file may hold a secret header.
    written: Mutex<HashMap<PathBuf, Vec<u8>>>,
}

impl Drop for Sandbox {
    /// Every file a run left in the sandbox is free of the sentinel secrets.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => dirs.push(path),
                    Ok(kind) if kind.is_file() => {
                        let Ok(bytes) = std::fs::read(&path) else {
                            continue;
                        };
                        if written.get(&path) != Some(&bytes) {
                            assert_no_secret(&path.display().to_string(), &bytes);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            written: Mutex::default(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.clone(), content.as_bytes().to_vec());
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read")
    }

    /// The `--fresh` backups of `output` (`<output>.<UTC stamp>[.N].bak`), sorted.
    pub fn backups(&self, output: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{output}.")) && n.ends_with(".bak"))
            .collect();
        names.sort();
        names
    }

    /// The records of an output file, each checked against the record schema.
    pub fn records(&self, name: &str) -> Vec<Value> {
        self.read(name)
            .lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line).expect("a JSON line");
                assert_valid(record_schema(), &record, "record");
                record
            })
            .collect()
    }

    /// The summary file, checked against the summary schema.
    pub fn summary(&self, name: &str) -> Value {
        let summary: Value = serde_json::from_str(&self.read(name)).expect("summary JSON");
        let errors = summary_schema_errors(&summary);
        assert!(
            errors.is_empty(),
            "summary does not match its schema: {errors:?}\n{summary:#}"
        );
        summary
    }

    /// `promptbatch ARGS` in this sandbox, with the sentinel key, never an inherited one.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptbatch"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("AIMLAPI_API_KEY", SENTINEL_KEY)
            .env("NO_COLOR", "1")
            // Learned paces go to the sandbox, never the user's ~/.local/state
            // (and are checked for secrets with every other file there).
            .env("XDG_STATE_HOME", self.state_home());
        // A test run inside a Slurm array or Kubernetes Indexed Job is not a shard.
        for var in [
            "PROMPTBATCH_SHARD",
            "SLURM_ARRAY_TASK_ID",
            "JOB_COMPLETION_INDEX",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Where runs of this sandbox keep their state (rates.json under promptbatch/).
    pub fn state_home(&self) -> PathBuf {
        self.path(".state")
    }
}

/// One `promptbatch run job.toml` in a sandbox: the set-up every end-to-end
/// test repeats (write the job and its rows, add flags and environment, run).
///
/// `--progress off` is added unless the flags choose a display themselves
/// (`--progress ...` or `--quiet`).
pub struct RunJob<'a> {
    sb: &'a Sandbox,
    files: Vec<(String, String)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// Starts a [`RunJob`] in `sb`; with nothing added it reruns the job as it stands.
pub fn run_job(sb: &Sandbox) -> RunJob<'_> {
    RunJob {
        sb,
        files: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
    }
}

impl RunJob<'_> {
    /// Writes `job.toml` first.
    pub fn job(self, toml: &str) -> Self {
        self.file("job.toml", toml)
    }

    /// Writes `rows.jsonl` first.
    pub fn rows(self, jsonl: &str) -> Self {
        self.file("rows.jsonl", jsonl)
    }

    /// Writes any other file first (a CSV input, an old output).
    pub fn file(mut self, name: &str, content: &str) -> Self {
        self.files.push((name.to_string(), content.to_string()));
        self
    }

    /// Flags after `run job.toml`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable of the run (the sentinel key is set already).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Writes the files and returns the command, for a test that runs it its own way.
    pub fn command(self) -> Command {
        for (name, content) in &self.files {
            self.sb.write(name, content);
        }
        let display = self
            .args
            .iter()
            .any(|a| a == "--progress" || a == "--quiet");
        let mut args = vec!["run", "job.toml"];
        args.extend(self.args.iter().map(String::as_str));
        if !display {
            args.extend(["--progress", "off"]);
        }
        let mut cmd = self.sb.command(&args);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs it: what it printed, checked for secrets.
    pub async fn output(self) -> Output {
        output(self.command()).await
    }
}

/// Runs a command off the async runtime (the mock serves on it meanwhile).
pub async fn output(mut cmd: Command) -> Output {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .expect("join");
    assert_printed_no_secret(&out);
    out
}

/// Neither stream of a run holds a sentinel secret.
pub fn assert_printed_no_secret(out: &Output) {
    assert_no_secret("stdout", &out.stdout);
    assert_no_secret("stderr", &out.stderr);
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The exit code; also checks the run printed no secret (runs spawned by hand end here).
pub fn code(out: &Output) -> i32 {
    assert_printed_no_secret(out);
    out.status.code().expect("exited with a code")
}

fn record_schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| compile(include_str!("../fixtures/record.schema.json")))
}

fn summary_schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| compile(include_str!("../fixtures/summary.schema.json")))
}

/// The summary's `by_endpoint`, which the shared summary schema (copied as
/// it is) does not describe: checked beside it.
fn by_endpoint_schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| compile(include_str!("../fixtures/by_endpoint.schema.json")))
}

/// What the summary schema (and, when the summary has one, the
/// `by_endpoint` schema) finds wrong with `value` (empty when it is valid).
pub fn summary_schema_errors(value: &Value) -> Vec<String> {
    let by_endpoint = value.get("by_endpoint").into_iter().flat_map(|v| {
        by_endpoint_schema()
            .iter_errors(v)
            .map(|e| format!("{} at /by_endpoint{}", e, e.instance_path))
            .collect::<Vec<_>>()
    });
    (summary_schema().iter_errors(value))
        .map(|e| format!("{} at {}", e, e.instance_path))
        .chain(by_endpoint)
        .collect()
}

fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("schema JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("valid schema")
}

fn assert_valid(schema: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = schema
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:?}\n{value:#}"
    );
}

/// Records keyed by `key`.
pub fn by_key(records: &[Value]) -> std::collections::HashMap<String, Value> {
    records
        .iter()
        .map(|r| (r["key"].as_str().expect("key").to_string(), r.clone()))
        .collect()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

// The usual job of the pipeline tests.

/// A job of `extra` TOML at `url`, with the sentinel header, a 5 s timeout and
/// fast retries (4 attempts).
pub fn job_toml(url: &str, extra: &str) -> String {
    format!(
        r#"name = "t"
[endpoint]
url = "{url}"
api_key_env = "AIMLAPI_API_KEY"
headers = {{ "x-api-key" = "{SENTINEL_HEADER}" }}
timeout_secs = 5
[retry]
max_attempts = 4
initial_backoff_ms = 1
max_backoff_ms = 20
{extra}"#
    )
}

/// The usual job: prompt rows from rows.jsonl, model "m", then `extra` TOML.
pub fn prompt_job(url: &str, extra: &str) -> String {
    job_toml(
        url,
        &format!("[input]\npath = \"rows.jsonl\"\n[defaults]\nmodel = \"m\"\n{extra}"),
    )
}

/// The request bodies the mock received, by X-Client-Request-Id.
pub fn bodies(mock: &MockServer) -> HashMap<String, Value> {
    mock.received()
        .into_iter()
        .map(|r| {
            let id = r
                .header("x-client-request-id")
                .expect("every attempt carries X-Client-Request-Id")
                .to_string();
            (id, r.body)
        })
        .collect()
}

pub async fn mock(config: MockConfig) -> MockServer {
    MockServer::start(MockConfig {
        record: true,
        ..config
    })
    .await
    .expect("mock starts")
}

/// A mock that wants the key "right", and a job of `rows` prompts sent one at
/// a time with the key from TEST_KEY.
pub async fn keyed_job(rows: usize) -> (MockServer, Sandbox) {
    let mock = mock(MockConfig {
        require_key: Some("right".into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let lines: String = (1..=rows)
        .map(|i| format!("{{\"prompt\": \"q{i}\"}}\n"))
        .collect();
    sb.write("rows.jsonl", &lines);
    let job = prompt_job(&mock.url(), "[limits]\nconcurrency = 1\n").replace(
        "api_key_env = \"AIMLAPI_API_KEY\"",
        "api_key_env = \"TEST_KEY\"",
    );
    sb.write("job.toml", &job);
    (mock, sb)
}

/// Polls `done` every 10 ms; fails the test past 20 s, naming `what` it waited for.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A stderr line without the UTC time that text lines carry off a terminal
/// (`2026-11-26T02:00:05Z promptbatch: ...` → `promptbatch: ...`).
pub fn unstamped(line: &str) -> &str {
    let b = line.as_bytes();
    let stamped = b.len() > 21
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && b[20] == b' '
        && b[..4].iter().all(u8::is_ascii_digit);
    if stamped {
        &line[21..]
    } else {
        line
    }
}
