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
        assert_valid(summary_schema(), &summary, "summary");
        summary
    }

    /// `promptbatch ARGS` in this sandbox, with the sentinel key, never an inherited one.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptbatch"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("AIMLAPI_API_KEY", SENTINEL_KEY)
            .env("NO_COLOR", "1");
        cmd
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
