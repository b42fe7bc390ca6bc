//! `Job::load` over real job files in a temp dir: every key, type and place,
//! and the helpers the flag tests share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::cli::JobArgs;
use crate::job::{Format, InputSource, Job, JobError, Price, Problem, SystemMode};

mod flags;

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
fn retry_backoff_max_must_not_be_below_initial() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[retry]\nmax_backoff_ms = 100\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:4:18: [retry] max_backoff_ms",
        "at least initial_backoff_ms (500)",
    );
}

#[test]
fn a_budget_needs_prices_and_token_caps_for_the_jobs_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget_job = DESIGN_JOB.replace("max_cost_usd = 0", "max_cost_usd = 5");
    write(dir.path(), "j.toml", &budget_job);
    // "creative" asks for the 27b model, which has no price.
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_problem(
        &found,
        "j.toml:45:2: [pricing]",
        "model \"google/gemma-3-27b-it\" (parameter set \"creative\") needs a [pricing] entry",
    );

    let priced = format!("{budget_job}\"google/gemma-3-27b-it\" = {{ input = 0, output = 1 }}\n");
    write(dir.path(), "j.toml", &priced);
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("priced and capped");
    assert_eq!(job.limits.max_cost_usd, 5.0);

    // --max-tokens removed by --param max_tokens=null leaves no cap.
    let args = JobArgs {
        params: vec!["max_tokens=null".into()],
        ..job_args(Some("j.toml"))
    };
    let found = problems(&args, dir.path());
    assert_problem(
        &found,
        "j.toml:32:2: [defaults]",
        "\"precise\", \"creative\" has none",
    );

    // Without a job file, an unpriced --model under --max-cost is placed at the flag.
    let args = JobArgs {
        input: Some("in/q.jsonl".into()),
        model: Some("m".into()),
        params: vec!["max_completion_tokens=64".into()],
        max_cost: Some(1.0),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_problem(
        &found,
        "--max-cost",
        "model \"m\" (parameter set \"default\")",
    );
}

#[test]
fn prices_must_be_non_negative_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[pricing]\n\"a\" = { input = -1, output = 2 }\n\"b\" = 3\n\"c\" = { input = 1, output = 2.5 }\n\"d\" = { input = 1, output = 1e308 }\n\"e\" = { input = 1000000, output = 0 }\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(&found, r#"j.toml:4:17: [pricing] "a" input"#, ">= 0");
    assert_problem(&found, r#"j.toml:5:7: [pricing] "b""#, "must be { input");
    // Regression: 1e308 was taken, and overflowed every cost it entered
    // (validate printed `$inf` per set and `$0` in total).
    assert_problem(
        &found,
        r#"j.toml:7:29: [pricing] "d" output"#,
        "at most 1000000 ($1 a token), got 1e308",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
}

/// Regression: a price of -0.0 was taken as it is, and every cost it
/// priced was written as `"cost_usd": -0.0` (and validate's as -0.0).
#[test]
fn a_negative_zero_price_is_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[pricing]\n\"m\" = { input = -0.0, output = -0.0 }\n",
    );
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("valid job");
    let price = job.pricing.models["m"];
    assert!(price.input.is_sign_positive() && price.output.is_sign_positive());
}

#[test]
fn reply_cap_and_attempt_deadline_are_read_from_the_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = DESIGN_JOB.replace(
        "timeout_secs = 120",
        "timeout_secs = 120\nmax_reply_bytes = 4096\nmax_attempt_secs = 30",
    );
    write(dir.path(), "j.toml", &text);
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("valid job");
    assert_eq!(job.endpoint.max_reply_bytes, 4096);
    assert_eq!(job.endpoint.max_attempt, Duration::from_secs(30));
}

#[test]
fn the_image_token_bound_is_a_pricing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = |pricing: &str| {
        format!("[input]\npath = \"q.jsonl\"\n[defaults]\nmodel = \"m\"\n[pricing]\n{pricing}\"m\" = {{ input = 1, output = 2 }}\n")
    };
    write(dir.path(), "j.toml", &job(""));
    let loaded = load(&job_args(Some("j.toml")), dir.path()).expect("valid");
    assert_eq!(
        loaded.pricing.image_tokens, 1024,
        "Gemma 3's bound by default"
    );
    write(dir.path(), "j.toml", &job("image_tokens = 256\n"));
    let loaded = load(&job_args(Some("j.toml")), dir.path()).expect("valid");
    assert_eq!(loaded.pricing.image_tokens, 256);
    assert_eq!(loaded.pricing.models.len(), 1, "not a model");
    for bad in ["0", "2147483649", "\"1k\""] {
        write(
            dir.path(),
            "j.toml",
            &job(&format!("image_tokens = {bad}\n")),
        );
        let found = problems(&job_args(Some("j.toml")), dir.path());
        assert_problem(
            &found,
            "j.toml:6:16: [pricing] image_tokens",
            "whole number",
        );
    }
}

#[test]
fn token_caps_above_two_to_the_31_are_parameter_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        r#"
[input]
path = "q.jsonl"
[defaults]
model = "m"
max_tokens = 2147483649
[[params]]
name = "huge"
max_completion_tokens = 9223372036854775807
"#,
    );
    let args = JobArgs {
        params: vec!["max_tokens=18446744073709551615".into()],
        ..job_args(Some("j.toml"))
    };
    let found = problems(&args, dir.path());
    assert_problem(
        &found,
        "j.toml:6:14: [defaults] max_tokens",
        "from 1 to 2147483648",
    );
    assert_problem(
        &found,
        "j.toml:9:25: [[params]] #1 (\"huge\") max_completion_tokens",
        "from 1 to 2147483648",
    );
    assert_problem(&found, "--param max_tokens", "from 1 to 2147483648");
}

#[test]
fn many_sets_are_checked_in_linear_time_and_a_repeat_is_named_once() {
    // Comparing each name with every earlier one is 3.2 billion comparisons
    // of long names here (minutes); a set of names is 80,000 lookups.
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = "p".repeat(64);
    let mut text = String::from("[input]\npath = \"q.jsonl\"\n");
    for i in (0..80_000).chain([1, 1]) {
        text.push_str(&format!("[[params]]\nname = \"{prefix}{i}\"\n"));
    }
    write(dir.path(), "j.toml", &text);
    let started = std::time::Instant::now();
    let found = problems(&job_args(Some("j.toml")), dir.path());
    let elapsed = started.elapsed();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_problem(
        &found,
        &format!("j.toml:160004:8: [[params]] #80001 (\"{prefix}1\") name"),
        "must be unique",
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "80,000 sets took {elapsed:?}"
    );
}

#[test]
fn parameters_keep_their_types_and_dates_become_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[defaults]\nstop = [\"x\"]\nextra = { a = 1, b = 0.5, d = 1979-05-27 }\n",
    );
    let job = load(&job_args(Some("j.toml")), dir.path()).expect("valid");
    assert_eq!(job.defaults.named.get("stop"), Some(&json!(["x"])));
    assert_eq!(job.defaults.extra.get("a"), Some(&json!(1)));
    assert_eq!(job.defaults.extra.get("b"), Some(&json!(0.5)));
    assert_eq!(job.defaults.extra.get("d"), Some(&json!("1979-05-27")));
}

#[test]
fn problems_come_in_the_order_of_the_file_each_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[retry]\nmax_attempts = 0\n[limits]\nconcurency = 8\n[endpoint]\ntimeout = 3\n[input]\npath = \"q.jsonl\"\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    let places: Vec<&str> = found.iter().map(|p| p.place.as_str()).collect();
    assert_eq!(
        places,
        [
            "j.toml:2:16: [retry] max_attempts",
            "j.toml:4:1: [limits] concurency",
            "j.toml:6:1: [endpoint] timeout"
        ]
    );
}

#[test]
fn summary_paths_replace_or_append() {
    assert_eq!(
        super::summary_for(Path::new("out/x.jsonl")),
        PathBuf::from("out/x.summary.json")
    );
    assert_eq!(
        super::summary_for(Path::new("out/x.out")),
        PathBuf::from("out/x.out.summary.json")
    );
    assert_eq!(
        super::summary_for(Path::new("out/.jsonl")),
        PathBuf::from("out/.jsonl.summary.json")
    );
}

#[test]
fn a_date_time_section_and_a_dotted_model_are_placed_like_any_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "output = 1979-05-27\n[input]\npath = \"q.jsonl\"\n[pricing]\n\"gpt-4.1\" = { input = 1, output = 2, extra = 3 }\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:1:1: output",
        "must be a table, got a date-time",
    );
    assert_problem(
        &found,
        r#"j.toml:5:38: [pricing] "gpt-4.1" extra"#,
        r#"unknown key "extra"; the keys here are "input", "output""#,
    );
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn an_unknown_price_key_leaves_the_budget_check_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget_job = DESIGN_JOB.replace("max_cost_usd = 0", "max_cost_usd = 5");
    // The prices read are complete: the typo is reported, and the budget still checked.
    let job = format!("{budget_job}\"other\" = {{ input = 1, output = 1, cached = 0 }}\n");
    write(dir.path(), "j.toml", &job);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        r#"j.toml:47:36: [pricing] "other" cached"#,
        r#"unknown key "cached"; the keys here are "input", "output""#,
    );
    assert_problem(
        &found,
        "j.toml:45:2: [pricing]",
        "model \"google/gemma-3-27b-it\" (parameter set \"creative\") needs a [pricing] entry",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn a_date_time_price_entry_is_one_wrong_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = "[input]\npath = \"q.jsonl\"\n[pricing]\n\"m\" = 1979-05-27\n";
    write(dir.path(), "j.toml", job);
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        r#"j.toml:4:7: [pricing] "m""#,
        "must be a table, got a date-time",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}

/// Regression: a number TOML cannot hold (past 2^63, or 1e999) inside a
/// section was reported as "limits: must be a table, got a table".
#[test]
fn an_unreadable_number_in_a_section_is_named_not_called_a_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (section, key) in [
        ("limits", "concurrency"),
        ("defaults", "max_tokens"),
        ("pricing.m", "input"),
    ] {
        write(
            dir.path(),
            "j.toml",
            &format!("[input]\npath = \"q.jsonl\"\n[{section}]\n{key} = 99999999999999999999\n"),
        );
        let found = problems(&job_args(Some("j.toml")), dir.path());
        let text = format!("{found:#?}");
        assert!(!text.contains("got a table"), "{section}: {text}");
        assert!(text.contains("99999999999999999999"), "{section}: {text}");
    }
    // A single [params] table is still told to use [[params]].
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[params]\nname = \"a\"\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:3:1: params",
        "write [[params]] (double brackets)",
    );
}
