//! The command-line definition: consistency, what each help lists, parsing.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

fn long_help(sub: &str) -> String {
    let mut command = Cli::command();
    command.build();
    let sub = command.find_subcommand_mut(sub).expect("subcommand");
    sub.render_long_help().to_string()
}

/// Every flag `JobArgs` defines, as typed (`--max-attempts`, `--header`).
fn job_flags() -> Vec<String> {
    let command = Cli::command();
    let run = command.find_subcommand("run").expect("run");
    run.get_arguments()
        .filter_map(|a| {
            a.get_long()
                .map(|l| (a.get_id().as_str(), format!("--{l}")))
        })
        .filter(|(id, _)| {
            ![
                "fresh",
                "progress",
                "quiet",
                "verbose",
                "no_state",
                "cancel_batches",
                "help",
                "version",
            ]
            .contains(id)
        })
        .map(|(_, flag)| flag)
        .collect()
}

#[test]
fn validate_help_leaves_out_the_flags_that_only_change_sending() {
    let help = long_help("validate");
    let flags = job_flags();
    assert!(flags.len() > 20, "{flags:?}");
    let hidden = [
        "--endpoint",
        "--header",
        "--timeout",
        "--summary",
        "--concurrency",
        "--rpm",
        "--max-attempts",
    ];
    for flag in &flags {
        let listed =
            help.contains(&format!("      {flag} ")) || help.contains(&format!("      {flag}\n"));
        assert_eq!(
            listed,
            !hidden.contains(&flag.as_str()),
            "validate --help and {flag}"
        );
    }
    // What changes the checks or the estimate stays.
    for flag in [
        "--input",
        "--template",
        "--param",
        "--model",
        "--tpm",
        "--max-cost",
        "--simulate",
        "--api-key-env",
        "--output",
    ] {
        assert!(flags.contains(&flag.to_string()), "{flag}");
    }
}

#[test]
fn run_help_lists_every_flag() {
    let help = long_help("run");
    for flag in job_flags()
        .iter()
        .chain(&["--fresh".into(), "--progress".into(), "--quiet".into()])
    {
        assert!(
            help.contains(&format!("      {flag} "))
                || help.contains(&format!("      {flag}\n"))
                || help.contains(&format!(", {flag}")),
            "run --help lacks {flag}"
        );
    }
}

#[test]
fn validate_still_accepts_the_flags_its_help_leaves_out() {
    let cli = Cli::try_parse_from([
        "promptbatch",
        "validate",
        "job.toml",
        "--concurrency",
        "4",
        "--rpm",
        "60",
        "--max-attempts",
        "2",
        "--timeout",
        "30",
        "--endpoint",
        "http://127.0.0.1:1/v1",
        "--header",
        "X-Title=faq",
        "--summary",
        "s.json",
    ])
    .expect("accepted");
    let Command::Validate(job) = cli.command else {
        panic!("expected validate")
    };
    assert_eq!(
        (job.concurrency, job.rpm, job.max_attempts),
        (Some(4), Some(60), Some(2))
    );
}

#[test]
fn flags_parse_into_job_args() {
    let cli = Cli::try_parse_from([
        "promptbatch",
        "run",
        "job.toml",
        "--param",
        "temperature=0.2",
        "--param",
        "seed=7",
        "--header",
        "X-Title=faq",
        "--concurrency",
        "4",
        "--fresh",
    ])
    .expect("valid flags");
    let Command::Run(run) = cli.command else {
        panic!("expected run")
    };
    assert_eq!(
        run.job.job.as_deref(),
        Some(std::path::Path::new("job.toml"))
    );
    assert_eq!(run.job.params, vec!["temperature=0.2", "seed=7"]);
    assert_eq!(run.job.headers, vec!["X-Title=faq"]);
    assert_eq!(run.job.concurrency, Some(4));
    assert!(run.fresh);
}

#[test]
fn short_help_states_the_defaults_and_long_help_adds_the_examples() {
    let mut command = Cli::command();
    command.build();
    let run = command.find_subcommand_mut("run").expect("run");
    let short = run.render_help().to_string();
    let long = run.render_long_help().to_string();
    for default in [
        "[default: 120]",
        "[default: 16]",
        "[default: 5]",
        "[default: auto]",
    ] {
        assert!(short.contains(default), "-h lacks {default}");
        assert!(long.contains(default), "--help lacks {default}");
    }
    for example in [
        "e.g. --timeout 60",
        "e.g. --concurrency 32",
        "e.g. --rpm 600",
    ] {
        assert!(!short.contains(example), "-h has {example}");
        assert!(long.contains(example), "--help lacks {example}");
    }
}

#[test]
fn color_is_a_flag_of_every_subcommand_and_verbose_one_of_run() {
    for args in [
        &["promptbatch", "run", "--color", "never"][..],
        &["promptbatch", "--color=always", "validate"],
        &["promptbatch", "report", "o.jsonl", "--color", "always"],
        &["promptbatch", "mock-server", "--color", "never"],
        &["promptbatch", "completions", "bash", "--color", "never"],
        &["promptbatch", "man", "--color=never"],
    ] {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_ne!(cli.color, ColorChoice::Auto, "{args:?}");
    }
    let cli = Cli::try_parse_from(["promptbatch", "run"]).expect("valid");
    assert_eq!(cli.color, ColorChoice::Auto);
    assert!(Cli::try_parse_from(["promptbatch", "run", "--color", "purple"]).is_err());

    for (args, verbose) in [
        (&["promptbatch", "run", "-v"][..], true),
        (&["promptbatch", "run", "--verbose"], true),
        (&["promptbatch", "run"], false),
    ] {
        let Command::Run(run) = Cli::try_parse_from(args).expect("valid").command else {
            panic!("expected run")
        };
        assert_eq!(run.verbose, verbose, "{args:?}");
    }
}
