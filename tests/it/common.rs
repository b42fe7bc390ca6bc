//! Shared test harness: a fresh temp dir per test, the real binary, the built-in mock on 127.0.0.1:0,
//! and JSON Schema validation of every record and summary a run writes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub use promptbatch::mock::{MockConfig, MockServer};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
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

    /// `promptbatch ARGS` in this sandbox, with no inherited API key.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptbatch"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("AIMLAPI_API_KEY")
            .env("NO_COLOR", "1");
        cmd
    }
}

/// Runs a command off the async runtime (the mock serves on it meanwhile).
pub async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .expect("join")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn code(out: &Output) -> i32 {
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
