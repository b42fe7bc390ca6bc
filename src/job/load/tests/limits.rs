//! `Job::load` of the keys that bound a run: retry, budget, prices, token
//! caps, reply and attempt limits; and how problems are placed and ordered.

use super::*;

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
        super::super::summary_for(Path::new("out/x.jsonl")),
        PathBuf::from("out/x.summary.json")
    );
    assert_eq!(
        super::super::summary_for(Path::new("out/x.out")),
        PathBuf::from("out/x.out.summary.json")
    );
    assert_eq!(
        super::super::summary_for(Path::new("out/.jsonl")),
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

#[test]
fn shards_divide_the_per_run_limits_unless_per_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits =
        "[limits]\nrequests_per_minute = 600\ntokens_per_minute = 10001\nmax_cost_usd = 2\n";
    let job = format!("[input]\npath = \"q.jsonl\"\n[defaults]\nmodel = \"m\"\nmax_tokens = 8\n[pricing]\nm = {{ input = 1, output = 1 }}\n{limits}");
    write(dir.path(), "j.toml", &job);
    let args = JobArgs {
        shard: Some("1/4".into()),
        output: Some("out/{name}-{shard}.jsonl".into()),
        ..job_args(Some("j.toml"))
    };
    let split = load(&args, dir.path()).expect("loads");
    assert_eq!(split.shard.to_string(), "1/4");
    assert_eq!(split.limits.requests_per_minute, 150);
    // Rounded down: the shards together never pass the figure written.
    assert_eq!(split.limits.tokens_per_minute, 2500);
    assert_eq!(split.limits.max_cost_usd, 0.5);
    assert!(split.output.path.ends_with("out/j-1-of-4.jsonl"));

    write(dir.path(), "j.toml", &format!("{job}per_shard = true\n"));
    let own = load(&args, dir.path()).expect("loads");
    assert!(own.limits.per_shard);
    assert_eq!(own.limits.requests_per_minute, 600);
    assert_eq!(own.limits.max_cost_usd, 2.0);

    // Unsharded, {shard} is 0-of-1 and nothing is divided.
    let whole = load(&job_args(Some("j.toml")), dir.path()).expect("loads");
    assert_eq!(whole.limits.requests_per_minute, 600);
    let args = JobArgs {
        output: Some("{shard}.jsonl".into()),
        ..job_args(Some("j.toml"))
    };
    let whole = load(&args, dir.path()).expect("loads");
    assert!(whole.output.path.ends_with("0-of-1.jsonl"));

    // A rate below one a minute per shard would be no limit at all.
    write(dir.path(), "j.toml", &job.replace("= 600", "= 3"));
    let args = JobArgs {
        shard: Some("0/4".into()),
        ..job_args(Some("j.toml"))
    };
    let found = problems(&args, dir.path());
    assert_problem(
        &found,
        "j.toml:9:23: [limits] requests_per_minute",
        "3 requests per minute shared by 4 shards",
    );
}

#[test]
fn per_shard_is_a_boolean_and_a_near_miss_gets_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "j.toml",
        "[input]\npath = \"q.jsonl\"\n[limits]\nper_shard = 1\nper_shards = true\n",
    );
    let found = problems(&job_args(Some("j.toml")), dir.path());
    assert_problem(
        &found,
        "j.toml:4:13: [limits] per_shard",
        "must be true or false",
    );
    assert_problem(
        &found,
        "j.toml:5:1: [limits] per_shards",
        "did you mean \"per_shard\"?",
    );
}
