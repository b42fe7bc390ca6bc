//! `Job::load` with flags: overriding the file, defaults, paths, names and formats.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::{assert_problem, job_args, load, problems, write, DESIGN_JOB};
use crate::cli::{FormatArg, JobArgs};
use crate::job::{Format, InputSource, SystemMode};

#[test]
fn flags_alone_make_a_job_with_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("data/rows.jsonl".into()),
        model: Some("google/gemma-3-4b-it".into()),
        ..JobArgs::default()
    };
    let job = load(&args, dir.path()).expect("valid job");
    assert_eq!(job.name, "rows");
    assert_eq!(job.endpoint.url, crate::job::DEFAULT_ENDPOINT);
    assert_eq!(job.endpoint.api_key_env, crate::job::DEFAULT_KEY_ENV);
    assert_eq!(job.endpoint.timeout, Duration::from_secs(120));
    assert_eq!(job.limits.concurrency, 16);
    assert_eq!(job.retry.max_attempts, 5);
    assert_eq!(job.retry.initial_backoff, Duration::from_millis(500));
    assert_eq!(job.retry.max_backoff, Duration::from_millis(60_000));
    assert_eq!(job.input.system_mode, SystemMode::Auto);
    assert_eq!(job.param_sets.len(), 1);
    assert_eq!(job.param_sets[0].name, "default");
    assert_eq!(job.param_sets[0].layer, Default::default());
    assert_eq!(
        job.overrides.named.get("model"),
        Some(&json!("google/gemma-3-4b-it"))
    );
    assert_eq!(job.output.path, dir.path().join("rows.jsonl"));
    assert_eq!(job.output.summary, dir.path().join("rows.summary.json"));
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "jobs/faq.toml", DESIGN_JOB);
    let args = JobArgs {
        name: Some("adhoc".into()),
        input: Some("data/rows.JSONL".into()),
        endpoint: Some("http://127.0.0.1:8000/v1/chat/completions".into()),
        api_key_env: Some(String::new()),
        headers: vec!["x-title=override".into(), "X-Extra=1".into()],
        timeout: Some(2.5),
        concurrency: Some(4),
        rpm: Some(600),
        tpm: Some(1000),
        max_attempts: Some(2),
        system: Some(String::new()),
        params: vec![
            "temperature=0.7".into(),
            "response_format={\"type\":\"json_object\"}".into(),
        ],
        model: Some("google/gemma-3-12b-it".into()),
        limit: Some(10),
        simulate: true,
        ..job_args(Some("jobs/faq.toml"))
    };
    let job = load(&args, dir.path()).expect("valid job");
    assert_eq!(job.name, "adhoc");
    assert_eq!(
        job.input.source,
        InputSource::File(dir.path().join("data/rows.JSONL"))
    );
    // The file's explicit format still applies: --input does not reset it.
    assert_eq!(job.input.format, Format::Csv);
    assert_eq!(
        job.input.system, None,
        "--system '' clears the file's system message"
    );
    assert_eq!(
        job.endpoint.url,
        "http://127.0.0.1:8000/v1/chat/completions"
    );
    assert_eq!(job.endpoint.api_key_env, "");
    assert_eq!(
        job.endpoint.headers,
        vec![
            ("x-title".into(), "override".into()),
            ("X-Extra".into(), "1".into())
        ]
    );
    assert_eq!(job.endpoint.timeout, Duration::from_millis(2500));
    assert_eq!(job.limits.concurrency, 4);
    assert_eq!(job.limits.requests_per_minute, 600);
    assert_eq!(job.limits.tokens_per_minute, 1000);
    assert_eq!(job.retry.max_attempts, 2);
    assert_eq!(job.row_limit, Some(10));
    assert!(job.simulate);
    // --param and --model are the top layer: they beat every set.
    assert_eq!(job.overrides.named.get("temperature"), Some(&json!(0.7)));
    assert_eq!(
        job.overrides.named.get("model"),
        Some(&json!("google/gemma-3-12b-it"))
    );
    assert_eq!(
        job.overrides.extra.get("response_format"),
        Some(&json!({"type": "json_object"}))
    );
    for set in &job.param_sets {
        let merged = crate::job::ParamLayer::merged([&job.defaults, &set.layer, &job.overrides]);
        assert_eq!(
            merged.named.get("temperature"),
            Some(&json!(0.7)),
            "{}",
            set.name
        );
        assert_eq!(
            merged.named.get("model"),
            Some(&json!("google/gemma-3-12b-it"))
        );
    }
    // The output path still comes from the file, with the new name.
    assert_eq!(
        job.output.path,
        dir.path().join("jobs/out/adhoc-2026-11-24.jsonl")
    );
}

#[test]
fn bad_flags_are_placed_at_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("in/q.jsonl".into()),
        name: Some("a/b".into()),
        headers: vec![
            "X-Title".into(),
            "Bad Name=1".into(),
            "Authorization: Bearer sk-flag-secret".into(),
            "X-Api-Key=sk-flag-secret\n".into(),
        ],
        params: vec!["temperature=5".into(), "oops".into(), "model=a".into()],
        model: Some("b".into()),
        endpoint: Some("localhost:8000".into()),
        timeout: Some(0.0),
        concurrency: Some(0),
        max_attempts: Some(101),
        max_cost: Some(f64::NAN),
        limit: Some(0),
        id: Some("{{id".into()),
        output: Some("out/{nmae}.jsonl".into()),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_problem(&found, "--name", "path separator");
    assert_problem(&found, "--header \"X-Title\"", "expected NAME=VALUE");
    assert_problem(&found, "--header \"Bad Name\"", "not a valid header name");
    // A value is never quoted: it may be a key.
    assert_problem(&found, "--header \"Authorization\"", "expected NAME=VALUE");
    assert_problem(&found, "--header \"X-Api-Key\"", "line break");
    let all: Vec<String> = found.iter().map(|p| p.to_string()).collect();
    assert!(!all.join("\n").contains("flag-secret"), "{all:?}");
    assert_problem(&found, "--param temperature", "between 0 and 2");
    assert_problem(&found, "--param", "not KEY=VALUE");
    assert_problem(&found, "--model", "conflicts with --param model=a");
    assert_problem(&found, "--endpoint", "not an http:// or https:// URL");
    assert_problem(&found, "--timeout", "more than 0");
    assert_problem(&found, "--concurrency", "between 1 and 10000");
    assert_problem(&found, "--max-attempts", "between 1 and 100");
    assert_problem(&found, "--max-cost", "USD >= 0");
    assert_problem(&found, "--limit", "at least 1");
    assert_problem(&found, "--id", "unclosed");
    assert_problem(&found, "--output", "{nmae}");
}

#[test]
fn same_model_from_model_and_param_is_no_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("in/q.jsonl".into()),
        params: vec!["model=m".into()],
        model: Some("m".into()),
        ..JobArgs::default()
    };
    let job = load(&args, dir.path()).expect("valid job");
    assert_eq!(job.overrides.named.get("model"), Some(&json!("m")));
}

#[test]
fn file_paths_are_relative_to_the_file_and_flag_paths_to_cwd() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "jobs/j.toml",
        "[input]\npath = \"data/q.csv\"\ntemplate = \"{{q}}\"\n[output]\npath = \"out.jsonl\"\n",
    );
    let cwd = dir.path().join("elsewhere");
    std::fs::create_dir(&cwd).expect("mkdir");
    let args = job_args(Some("../jobs/j.toml"));
    let job = load(&args, &cwd).expect("valid job");
    let jobs = cwd.join("../jobs");
    assert_eq!(job.input.source, InputSource::File(jobs.join("data/q.csv")));
    assert_eq!(job.output.path, jobs.join("out.jsonl"));
    assert_eq!(job.output.summary, jobs.join("out.summary.json"));

    let args = JobArgs {
        input: Some("q.csv".into()),
        output: Some("o/{name}.jsonl".into()),
        summary: Some("/abs/s.json".into()),
        ..job_args(Some("../jobs/j.toml"))
    };
    let job = load(&args, &cwd).expect("valid job");
    assert_eq!(job.input.source, InputSource::File(cwd.join("q.csv")));
    assert_eq!(job.output.path, cwd.join("o/j.jsonl"));
    assert_eq!(job.output.summary, PathBuf::from("/abs/s.json"));
}

#[test]
fn default_names_come_from_job_stem_then_input_stem_then_promptbatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "nightly.toml", "[input]\npath = \"q.jsonl\"\n");
    let job = load(&job_args(Some("nightly.toml")), dir.path()).expect("valid");
    assert_eq!(job.name, "nightly");
    assert_eq!(job.output.path, dir.path().join("nightly.jsonl"));

    let from_input = JobArgs {
        input: Some("data/questions.csv".into()),
        template: Some("{{question}}".into()),
        ..JobArgs::default()
    };
    assert_eq!(
        load(&from_input, dir.path()).expect("valid").name,
        "questions"
    );

    let from_stdin = JobArgs {
        input: Some("-".into()),
        ..JobArgs::default()
    };
    let job = load(&from_stdin, dir.path()).expect("valid");
    assert_eq!(job.name, "promptbatch");
    assert_eq!(job.input.source, InputSource::Stdin);
    assert_eq!(job.input.format, Format::Jsonl);
    assert_eq!(job.output.path, dir.path().join("promptbatch.jsonl"));
    assert_eq!(
        job.output.summary,
        dir.path().join("promptbatch.summary.json")
    );
}

#[test]
fn csv_input_needs_a_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("q.csv".into()),
        model: Some("m".into()),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_problem(&found, "--template", "CSV rows are sent through a template");
}

#[test]
fn names_that_cannot_be_file_names_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "name = \"a\\\\b\"\n[input]\npath = \"q.jsonl\"\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(&found, "j.toml:1:8: name", "path separator");
    write(
        dir.path(),
        "k.toml",
        "name = \"\"\n[input]\npath = \"q.jsonl\"\n",
    );
    let found = problems(&job_args(Some("k.toml")), dir.path());
    assert_problem(&found, "k.toml:1:8: name", "must not be empty");
}

#[test]
fn name_and_date_expand_in_output_and_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("in/q.jsonl".into()),
        name: Some("faq".into()),
        output: Some("runs/{date}/{name}.out".into()),
        ..JobArgs::default()
    };
    let job = load(&args, dir.path()).expect("valid");
    assert_eq!(job.output.path, dir.path().join("runs/2026-11-24/faq.out"));
    assert_eq!(
        job.output.summary,
        dir.path().join("runs/2026-11-24/faq.out.summary.json")
    );
    let args = JobArgs {
        summary: Some("{name}-{date}-summary.json".into()),
        ..args
    };
    let job = load(&args, dir.path()).expect("valid");
    assert_eq!(
        job.output.summary,
        dir.path().join("faq-2026-11-24-summary.json")
    );
}

#[test]
fn datetime_expands_from_the_file_and_the_flags_to_the_same_instant_as_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "jobs/nightly.toml",
        "[input]\npath = \"q.jsonl\"\n[output]\npath = \"out/{name}-{datetime}.jsonl\"\nsummary = \"out/{date}/{datetime}.json\"\n",
    );
    let job = load(&job_args(Some("jobs/nightly.toml")), dir.path()).expect("valid");
    assert_eq!(
        job.output.path,
        dir.path().join("jobs/out/nightly-20261124T235958Z.jsonl")
    );
    assert_eq!(
        job.output.summary,
        dir.path().join("jobs/out/2026-11-24/20261124T235958Z.json")
    );
    let args = JobArgs {
        output: Some("{datetime}.jsonl".into()),
        ..job_args(Some("jobs/nightly.toml"))
    };
    let job = load(&args, dir.path()).expect("valid");
    assert_eq!(job.output.path, dir.path().join("20261124T235958Z.jsonl"));
}

#[test]
fn an_unknown_placeholder_is_a_job_error_naming_it_and_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[output]\npath = \"out/{name}-{time}.jsonl\"\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:4:8: [output] path",
        "unknown placeholder {time} in \"out/{name}-{time}.jsonl\"; the placeholders are {name}, {date}, {datetime} and {shard}",
    );
    let args = JobArgs {
        input: Some("q.jsonl".into()),
        summary: Some("{Date}.json".into()),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_problem(&found, "--summary", "unknown placeholder {Date}");
}

#[test]
fn formats_come_from_the_flag_the_file_or_the_extension() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_input = |input: &str, format: Option<FormatArg>| JobArgs {
        input: Some(input.into()),
        format,
        output: Some("out.jsonl".into()),
        template: Some("{{q}}".into()),
        ..JobArgs::default()
    };
    let format = |args: &JobArgs| load(args, dir.path()).expect("valid").input.format;
    assert_eq!(format(&with_input("a.jsonl", None)), Format::Jsonl);
    assert_eq!(format(&with_input("a.NDJSON", None)), Format::Jsonl);
    assert_eq!(format(&with_input("a.Csv", None)), Format::Csv);
    assert_eq!(format(&with_input("-", None)), Format::Jsonl);
    assert_eq!(format(&with_input("-", Some(FormatArg::Csv))), Format::Csv);
    assert_eq!(
        format(&with_input("a.txt", Some(FormatArg::Jsonl))),
        Format::Jsonl
    );
    let found = problems(&with_input("a.txt", None), dir.path());
    assert_problem(&found, "--format", "cannot tell the format");

    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"a.txt\"\nformat = \"tsv\"\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:3:10: [input] format",
        "\"tsv\" is not a format",
    );
}

#[test]
fn missing_input_is_a_problem_saying_how_to_give_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let found = problems(&JobArgs::default(), dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_problem(
        &found,
        "--input",
        "no input: set [input] path in the job file or pass --input PATH",
    );
    write(dir.path(), "j.toml", "name = \"x\"\n");
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(&found, "j.toml:1:1: [input] path", "no input");
}

#[test]
fn an_output_on_top_of_the_input_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("rows.jsonl".into()),
        output: Some("rows.jsonl".into()),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_problem(&found, "--output", "destroy the input");
    // The default output ({name}.jsonl in the working directory) would land on
    // the input (rows.jsonl -> name "rows" -> rows.jsonl): it steps aside.
    let args = JobArgs {
        output: None,
        model: Some("m".into()),
        ..args
    };
    let job = load(&args, dir.path()).expect("valid");
    assert_eq!(job.output.path, dir.path().join("rows.out.jsonl"));
    assert_eq!(job.output.summary, dir.path().join("rows.out.summary.json"));
    // Spelled differently, still the same file.
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    let args = JobArgs {
        input: Some("data/../rows.jsonl".into()),
        output: Some("rows.jsonl".into()),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_problem(&found, "--output", "destroy the input");
}

#[test]
fn the_error_lists_every_problem_numbered_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        limit: Some(0),
        ..JobArgs::default()
    };
    let text = load(&args, dir.path()).expect_err("invalid").to_string();
    assert!(text.starts_with("the job has 2 problems:\n"), "{text}");
    assert!(text.contains("  1. --input: no input"), "{text}");
    assert!(text.contains("  2. --limit: must be at least 1"), "{text}");
    assert!(text.contains("promptbatch validate"), "{text}");
}

#[test]
fn a_bad_value_is_one_problem_not_also_a_missing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An unclosed template is not also "the job has no template".
    let args = JobArgs {
        input: Some("q.csv".into()),
        template: Some("Answer: {{question".into()),
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_problem(&found, "--template", "unclosed");
    // A format that is not one is not also "cannot tell the format".
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"a.txt\"\nformat = \"tsv\"\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn a_near_miss_of_a_chat_parameter_in_param_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = JobArgs {
        input: Some("q.jsonl".into()),
        params: vec![
            "temprature=0.2".into(),
            "top_pp=0.9".into(),
            "user=u1".into(),
        ],
        ..JobArgs::default()
    };
    let found = problems(&args, dir.path());
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_problem(
        &found,
        "--param temprature",
        "did you mean \"temperature\"?",
    );
    assert_problem(&found, "--param top_pp", "put it under extra");
    // Under extra, it is sent as it is.
    let args = JobArgs {
        params: vec!["extra={\"temprature\": 0.2}".into()],
        ..args
    };
    let job = load(&args, dir.path()).expect("valid");
    assert_eq!(job.overrides.extra.get("temprature"), Some(&json!(0.2)));
}
