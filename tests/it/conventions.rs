//! The conventions of the command line: `--color` beside NO_COLOR, `-v` for
//! a line per retry and per change of pace, counts that agree with their
//! nouns, unpriced requests shown as a count (never as $0), and a
//! `mock-server --help` that lists what the mock understands.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const ESC: char = '\u{1b}';

/// The usual job over one plain row, one row failing once, and the flags.
fn one_retry(sb: &Sandbox, url: &str, flags: &[&str]) -> std::process::Command {
    run_job(sb)
        .rows("{\"id\": \"a\", \"prompt\": \"hi\"}\n{\"id\": \"b\", \"prompt\": \"[mock:fail=500] there\"}\n")
        .job(&prompt_job(url, ""))
        .args(flags)
        .command()
}

#[tokio::test]
async fn color_always_colours_a_pipe_and_auto_or_no_color_never_do() {
    let mock = mock(MockConfig::default()).await;
    let url = mock.url();
    let sb = Sandbox::new();

    // The sandbox sets NO_COLOR=1: --color always still colours, piped.
    let out = output(one_retry(&sb, &url, &["--color", "always", "--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains(ESC), "{text:?}");
    assert!(text.contains(&format!("{ESC}[1mrequests")), "{text:?}");

    // NO_COLOR set: none.
    let out = output(one_retry(&sb, &url, &["--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains(ESC), "{:?}", stderr(&out));
    assert!(stderr(&out).contains("requests"), "the table is there");

    // No NO_COLOR, auto, a pipe: none.
    let mut cmd = one_retry(&sb, &url, &["--fresh"]);
    cmd.env_remove("NO_COLOR").env("TERM", "xterm-256color");
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains(ESC), "{:?}", stderr(&out));

    // A JSON log never, whatever --color says.
    let out = output(one_retry(
        &sb,
        &url,
        &["--fresh", "--color", "always", "--log-format", "json"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains(ESC), "{:?}", stderr(&out));
    mock.shutdown().await;
}

#[tokio::test]
async fn the_error_prefix_and_clap_follow_the_color_flag() {
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\": \"hi\"}\n");
    let unset = |color: &str| {
        let mut cmd = sb.command(&[
            "run",
            "--input",
            "rows.jsonl",
            "--model",
            "m",
            "--api-key-env",
            "PB_TEST_UNSET_KEY",
            "--color",
            color,
        ]);
        cmd.env_remove("PB_TEST_UNSET_KEY");
        cmd
    };
    let out = output(unset("always")).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        unstamped(&text).starts_with(ESC) && text.contains("error:"),
        "{text:?}"
    );
    let out = output(unset("never")).await;
    let text = stderr(&out);
    assert!(unstamped(&text).starts_with("error: "), "{text:?}");

    // clap's own errors and help, before any flag is parsed.
    let out = output(sb.command(&["--color", "always", "run", "--bogus"])).await;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains(ESC), "{:?}", stderr(&out));
    let out = output(sb.command(&["run", "--bogus", "--color=never"])).await;
    assert!(!stderr(&out).contains(ESC), "{:?}", stderr(&out));
    let out = output(sb.command(&["run", "--help", "--color", "always"])).await;
    assert!(stdout(&out).contains(ESC), "{:?}", stdout(&out));
    let out = output(sb.command(&["run", "--help"])).await;
    assert!(!stdout(&out).contains(ESC), "{:?}", stdout(&out));
}

/// Two requests retried three times in all, one plain: r1 429 then 500, r2 a
/// reset. The mock counts attempts by prompt, so each run gets its own `tag`.
fn retried(tag: &str) -> String {
    format!(
        "{{\"id\": \"r1\", \"prompt\": \"[mock:fail=429,500] hello {tag} [mock:retry-after-ms=5]\"}}\n\
         {{\"id\": \"r2\", \"prompt\": \"[mock:fail=reset] there {tag}\"}}\n\
         {{\"id\": \"r3\", \"prompt\": \"plain {tag}\"}}\n"
    )
}

fn retry_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(unstamped)
        .filter(|l| l.starts_with("promptbatch: retry "))
        .collect()
}

#[tokio::test]
async fn verbose_says_each_retry_and_without_it_nothing() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let job = prompt_job(&mock.url(), "");
    let out = run_job(&sb)
        .rows(&retried("1"))
        .job(&job)
        .args(&["-v"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    let lines = retry_lines(&text);
    assert_eq!(lines.len(), 3, "{text}");
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        has("retry r1/default: attempt 1 of 4 failed (rate_limited, HTTP 429); next attempt in "),
        "{text}"
    );
    assert!(
        has("retry r1/default: attempt 2 of 4 failed (server, HTTP 500); next attempt in "),
        "{text}"
    );
    assert!(
        has("retry r2/default: attempt 1 of 4 failed (connection"),
        "{text}"
    );
    // The output agrees: 3 retries.
    assert_eq!(sb.summary("t.summary.json")["retries"], 3);

    let out = run_job(&sb)
        .rows(&retried("2"))
        .args(&["--fresh"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(retry_lines(&stderr(&out)), Vec::<&str>::new());
    assert_eq!(sb.summary("t.summary.json")["retries"], 3);

    // JSON logs: one `retry` event each, with the figures.
    let out = run_job(&sb)
        .rows(&retried("3"))
        .args(&["--fresh", "-v", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .filter(|e: &Value| e["event"] == "retry")
        .collect();
    assert_eq!(events.len(), 3, "{}", stderr(&out));
    assert!(events
        .iter()
        .any(|e| e["key"] == "r1/default" && e["attempt"] == 2 && e["status"] == 500));
    assert!(events
        .iter()
        .all(|e| e["max_attempts"] == 4 && e["wait_s"].is_number()));
    mock.shutdown().await;
}

#[tokio::test]
async fn verbose_says_when_the_pace_goes_down_after_a_limit_shows() {
    // 20 requests per 300 ms window: a crowd of 32 meets it at once.
    let mock = mock(MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_millis(300),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let rows: String = (1..=60)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect();
    let job = prompt_job(&mock.url(), "[limits]\nconcurrency = 32\n")
        .replace("max_attempts = 4", "max_attempts = 20");
    let out = run_job(&sb)
        .rows(&rows)
        .job(&job)
        .args(&["-v"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    let pace: Vec<&str> = text
        .lines()
        .map(unstamped)
        .filter(|l| l.starts_with("promptbatch: pace down: a rate limit shows ("))
        .collect();
    assert!(!pace.is_empty(), "{text}");
    assert!(pace[0].contains("sending paused"), "{}", pace[0]);

    let out = run_job(&sb).args(&["--fresh"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Without -v no change of pace is told (the table's pace row names the one used).
    let told = stderr(&out)
        .lines()
        .map(unstamped)
        .any(|l| l.starts_with("promptbatch: pace "));
    assert!(!told, "{}", stderr(&out));
    mock.shutdown().await;
}

#[tokio::test]
async fn unpriced_requests_are_a_count_never_zero_dollars() {
    // No cost from the server and no [pricing]: nothing can be priced.
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let job = prompt_job(&mock.url(), "");
    let out = run_job(&sb)
        .rows("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n")
        .job(&job)
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(!text.contains("$0"), "{text}");
    assert!(text.contains("unpriced (2 requests)"), "{text}");

    // A resumed run shows this run's part too.
    let out = run_job(&sb)
        .rows("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n")
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(!text.contains("$0"), "{text}");
    assert!(text.contains("unpriced (3 requests)"), "{text}");
    let this_run = text
        .lines()
        .find(|l| l.trim_start().starts_with("this run"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(this_run.ends_with("unpriced (1 request)"), "{this_run}");
    mock.shutdown().await;
}

#[tokio::test]
async fn counts_agree_with_their_nouns() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let url = mock.url();
    let out = run_job(&sb)
        .rows("{\"prompt\": \"[mock:fail=500] once\"}\n")
        .job(&prompt_job(&url, ""))
        .args(&["--progress", "log"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("1 row checked in "), "{text}");
    assert!(text.contains(" s: 1 request, 0 already done"), "{text}");
    assert!(text.contains("(1 retry, 0 uncertain"), "{text}");

    let out = run_job(&sb)
        .rows("{\"prompt\": \"[mock:fail=500,500] two\"}\n{\"prompt\": \"b\"}\n")
        .args(&["--progress", "log", "--fresh"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("2 rows checked in "), "{text}");
    assert!(text.contains(" s: 2 requests, 0 already done"), "{text}");
    assert!(text.contains("(2 retries, 0 uncertain"), "{text}");

    // --quiet's one line when a request failed, with 1 and with 2.
    let out = run_job(&sb)
        .rows("{\"prompt\": \"[mock:fail=400] c\"}\n")
        .args(&["--quiet", "--fresh"])
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 of 1 request failed"),
        "{}",
        stderr(&out)
    );
    let out = run_job(&sb)
        .rows("{\"prompt\": \"[mock:fail=400] d\"}\n{\"prompt\": \"e\"}\n")
        .args(&["--quiet", "--fresh"])
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 of 2 requests failed"),
        "{}",
        stderr(&out)
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn mock_server_help_lists_its_directives_and_faults() {
    let sb = Sandbox::new();
    let out = output(sb.command(&["mock-server", "--help"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let help = stdout(&out);
    for listed in [
        "[mock:fail=F1,F2,...]",
        "[mock:retry-after-ms=MS]",
        "[mock:no-usage]",
        "[mock:echo-auth]",
        "sse-error",
        "503html",
        "aiml-credits",
    ] {
        assert!(help.contains(listed), "{listed} in\n{help}");
    }
}
