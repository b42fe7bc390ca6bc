//! `Job::load` over real job files in a temp dir: every key, type and place,
//! and the helpers the flag tests share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::cli::JobArgs;
use crate::job::{Format, InputSource, Job, JobError, Price, Problem, SystemMode};

mod endpoints;
mod flags;
mod limits;

/// The run's start every test loads with: `{date}` is 2026-11-24.
pub(super) fn started() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-24T23:59:58Z")
        .expect("a time")
        .with_timezone(&chrono::Utc)
}

pub(super) const DESIGN_JOB: &str = r#"
name = "faq-nightly"

[endpoint]
url = "https://api.aimlapi.com/v1/chat/completions"
api_key_env = "AIMLAPI_API_KEY"
timeout_secs = 120
headers = { "X-Title" = "faq" }

[input]
path = "questions.csv"
format = "csv"
id = "{{id}}"
system = "You are concise."
template = "Answer: {{question}}"

[output]
path = "out/{name}-{date}.jsonl"
summary = "out/{name}-{date}.summary.json"

[limits]
concurrency = 16
requests_per_minute = 0
tokens_per_minute = 0
max_cost_usd = 0

[retry]
max_attempts = 5
initial_backoff_ms = 500
max_backoff_ms = 60000

[defaults]
model = "google/gemma-3-4b-it"
max_tokens = 512

[[params]]
name = "precise"
temperature = 0.2

[[params]]
name = "creative"
model = "google/gemma-3-27b-it"
temperature = 1.1

[pricing]
"google/gemma-3-4b-it" = { input = 0.02, output = 0.04 }
"#;

pub(super) fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a folder")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

pub(super) fn job_args(job: Option<&str>) -> JobArgs {
    JobArgs {
        job: job.map(PathBuf::from),
        ..JobArgs::default()
    }
}

pub(super) fn load(args: &JobArgs, cwd: &Path) -> Result<Job, JobError> {
    Job::load(args, cwd, started())
}

pub(super) fn problems(args: &JobArgs, cwd: &Path) -> Vec<Problem> {
    match load(args, cwd) {
        Ok(job) => panic!("expected problems, got {job:?}"),
        Err(e) => e.problems,
    }
}

/// The problem at exactly `place`, whose message contains `needle`.
pub(super) fn assert_problem(found: &[Problem], place: &str, needle: &str) {
    assert!(
        found
            .iter()
            .any(|p| p.place == place && p.message.contains(needle)),
        "no problem at {place:?} containing {needle:?} in:\n{}",
        found
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
#[test]
fn design_job_file_loads_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "jobs/faq.toml", DESIGN_JOB);
    let job = load(&job_args(Some("jobs/faq.toml")), dir.path()).expect("valid job");
    let jobs = dir.path().join("jobs");

    assert_eq!(job.name, "faq-nightly");
    assert_eq!(
        job.endpoint.url,
        "https://api.aimlapi.com/v1/chat/completions"
    );
    assert_eq!(job.endpoint.api_key_env, "AIMLAPI_API_KEY");
    assert_eq!(job.endpoint.timeout, Duration::from_secs(120));
    assert_eq!(job.endpoint.headers, vec![("X-Title".into(), "faq".into())]);
    // Not in the file: the defaults.
    assert_eq!(job.endpoint.max_reply_bytes, 16 * 1024 * 1024);
    assert_eq!(job.endpoint.max_attempt, Duration::from_secs(1800));
    assert_eq!(
        job.input.source,
        InputSource::File(jobs.join("questions.csv"))
    );
    assert_eq!(job.input.format, Format::Csv);
    assert_eq!(job.input.id.as_ref().map(|t| t.source()), Some("{{id}}"));
    assert_eq!(job.input.system.as_deref(), Some("You are concise."));
    assert_eq!(job.input.system_mode, SystemMode::Auto);
    assert_eq!(
        job.input.template.as_ref().map(|t| t.source()),
        Some("Answer: {{question}}")
    );
    assert_eq!(
        job.output.path,
        jobs.join("out/faq-nightly-2026-11-24.jsonl")
    );
    assert_eq!(
        job.output.summary,
        jobs.join("out/faq-nightly-2026-11-24.summary.json")
    );
    assert_eq!(job.limits.concurrency, 16);
    assert_eq!(job.limits.requests_per_minute, 0);
    assert_eq!(job.limits.tokens_per_minute, 0);
    assert_eq!(job.limits.max_cost_usd, 0.0);
    assert_eq!(job.retry.max_attempts, 5);
    assert_eq!(job.retry.initial_backoff, Duration::from_millis(500));
    assert_eq!(job.retry.max_backoff, Duration::from_secs(60));
    assert_eq!(
        job.defaults.named.get("model"),
        Some(&json!("google/gemma-3-4b-it"))
    );
    assert_eq!(job.defaults.named.get("max_tokens"), Some(&json!(512)));
    let names: Vec<_> = job.param_sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["precise", "creative"]);
    assert_eq!(
        job.param_sets[0].layer.named.get("temperature"),
        Some(&json!(0.2))
    );
    assert!(!job.param_sets[0].layer.named.contains_key("name"));
    assert_eq!(
        job.param_sets[1].layer.named.get("model"),
        Some(&json!("google/gemma-3-27b-it"))
    );
    assert!(job.overrides.named.is_empty() && job.overrides.extra.is_empty());
    assert_eq!(
        job.pricing.models.get("google/gemma-3-4b-it"),
        Some(&Price {
            input: 0.02,
            output: 0.04
        })
    );
    assert_eq!(job.row_limit, None);
    assert!(!job.simulate);
}

#[test]
fn unknown_keys_at_every_depth_are_reported_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "faq.toml",
        r#"
endpont = "x"
[input]
path = "q.jsonl"
[limits]
concurency = 8
[endpoint]
timeout = 3
[[params]]
name = "precise"
temprature = 0.2
[pricing]
"m" = { input = 1, outptu = 2 }
"#,
    );
    let found = problems(&job_args(Some("faq.toml")), dir.path());
    assert_problem(
        &found,
        "faq.toml:2:1: endpont",
        r#"did you mean "endpoint"?"#,
    );
    assert_problem(
        &found,
        "faq.toml:6:1: [limits] concurency",
        r#"unknown key "concurency"; did you mean "concurrency"?"#,
    );
    assert_problem(
        &found,
        "faq.toml:8:1: [endpoint] timeout",
        r#"did you mean "timeout_secs"?"#,
    );
    assert_problem(
        &found,
        r#"faq.toml:11:1: [[params]] #1 ("precise") temprature"#,
        r#"did you mean "temperature"?"#,
    );
    assert_problem(
        &found,
        r#"faq.toml:13:20: [pricing] "m" outptu"#,
        r#"did you mean "output"?"#,
    );
    // The price lacks its output, so that is a problem too.
    assert_problem(
        &found,
        r#"faq.toml:13:7: [pricing] "m" output"#,
        "is missing",
    );
    assert_eq!(found.len(), 6, "{found:#?}");
}

#[test]
fn unknown_key_far_from_every_valid_one_gets_no_guess() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[limits]\nxyzzy = 1\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_eq!(found.len(), 1);
    assert!(!found[0].message.contains("did you mean"), "{}", found[0]);
}

#[test]
fn wrong_types_name_the_key_and_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        r#"
name = 7
input = "q.jsonl"
[endpoint]
timeout_secs = "60"
headers = { "X-Title" = 1 }
max_reply_bytes = 0
max_attempt_secs = 1.5
[limits]
concurrency = "8"
tokens_per_minute = 8.0
max_cost_usd = -1
[retry]
max_attempts = 0
[defaults]
max_tokens = "512"
temperature = nan
extra = { bias = inf }
"#,
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:2:8: name",
        "must be a string, got the number 7",
    );
    assert_problem(&found, "j.toml:3:9: input", "must be a table");
    assert_problem(
        &found,
        "j.toml:5:16: [endpoint] timeout_secs",
        "the string \"60\"",
    );
    assert_problem(
        &found,
        "j.toml:6:13: [endpoint] headers \"X-Title\"",
        "must be a string",
    );
    assert_problem(
        &found,
        "j.toml:7:19: [endpoint] max_reply_bytes",
        "must be a whole number >= 1, got 0",
    );
    assert_problem(
        &found,
        "j.toml:8:20: [endpoint] max_attempt_secs",
        "must be a whole number >= 1",
    );
    assert_problem(
        &found,
        "j.toml:10:15: [limits] concurrency",
        "must be a whole number between 1 and 10000, got the string \"8\"",
    );
    assert_problem(&found, "j.toml:12:16: [limits] max_cost_usd", "got -1");
    assert_problem(
        &found,
        "j.toml:11:21: [limits] tokens_per_minute",
        "whole number >= 0, got the number 8.0",
    );
    assert_problem(
        &found,
        "j.toml:14:16: [retry] max_attempts",
        "between 1 and 100, got 0",
    );
    assert_problem(&found, "j.toml:16:14: [defaults] max_tokens", "integer");
    assert_problem(
        &found,
        "j.toml:17:15: [defaults] temperature",
        "finite number",
    );
    assert_problem(
        &found,
        "j.toml:18:9: [defaults] extra.bias",
        "finite number",
    );
}

#[test]
fn toml_syntax_error_names_line_and_column_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "bad.toml",
        "name = \"x\"\n[limits]\nconcurrency = = 3\n",
    );
    let found = problems(&job_args(Some("bad.toml")), dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].place, "bad.toml:3:15");
    assert!(
        found[0].message.starts_with("TOML syntax error"),
        "{}",
        found[0]
    );
}

#[test]
fn missing_job_file_is_one_problem_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let found = problems(&job_args(Some("nope.toml")), dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].place, "nope.toml");
    assert!(found[0].message.contains("cannot read"), "{}", found[0]);
}

#[test]
fn set_names_must_be_present_unique_and_slash_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        r#"
[input]
path = "q.jsonl"
[[params]]
name = "a"
[[params]]
name = "a"
[[params]]
name = " "
[[params]]
name = "x/y"
[[params]]
temperature = 0.1
[[params]]
name = 3
"#,
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        r#"j.toml:7:8: [[params]] #2 ("a") name"#,
        "earlier set",
    );
    assert_problem(
        &found,
        r#"j.toml:9:8: [[params]] #3 (" ") name"#,
        "must not be empty",
    );
    assert_problem(
        &found,
        r#"j.toml:11:8: [[params]] #4 ("x/y") name"#,
        "contains '/'",
    );
    assert_problem(&found, "j.toml:12:1: [[params]] #5 name", "needs a name");
    assert_problem(
        &found,
        "j.toml:15:8: [[params]] #6 name",
        "must be a string",
    );
    assert_eq!(found.len(), 5, "{found:#?}");

    write(
        dir.path(),
        "k.toml",
        "params = 3\n[input]\npath = \"q.jsonl\"\n",
    );
    let found = problems(&job_args(Some("k.toml")), dir.path());
    assert_problem(&found, "k.toml:1:10: params", "list of [[params]] tables");
    write(
        dir.path(),
        "k.toml",
        "[params]\nname = \"a\"\n[input]\npath = \"q.jsonl\"\n",
    );
    let found = problems(&job_args(Some("k.toml")), dir.path());
    assert_problem(
        &found,
        "k.toml:1:1: params",
        "write [[params]] (double brackets)",
    );
}

#[test]
fn image_json_and_bad_output_keys_load_and_bad_values_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\nimages = [\"{{photo}}\", \"{{ back }}\"]\nmax_image_bytes = 1000\n\
         [output]\njson = true\n[retry]\nbad_output_attempts = 3\n[defaults]\nmodel = \"m\"\n",
    );
    write(dir.path(), "q.jsonl", "{\"prompt\": \"hi\"}\n");
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("loads");
    let sources: Vec<&str> = job.input.images.iter().map(|t| t.source()).collect();
    assert_eq!(sources, ["{{photo}}", "{{ back }}"]);
    assert_eq!(job.input.max_image_bytes, 1000);
    assert!(job.output.json);
    assert_eq!(job.retry.bad_output_attempts, 3);

    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\nimages = \"{{photo}}\"\nmax_image_bytes = 0\n\
         [output]\njson = \"yes\"\n[retry]\nbad_output_attempts = 0\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:3:10: [input] images",
        "must be a list of templates",
    );
    assert_problem(
        &found,
        "j.toml:4:19: [input] max_image_bytes",
        ">= 1, got 0",
    );
    assert_problem(&found, "j.toml:6:8: [output] json", "must be true or false");
    assert_problem(
        &found,
        "j.toml:8:23: [retry] bad_output_attempts",
        "between 1 and 100, got 0",
    );
}
