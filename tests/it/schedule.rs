//! Scheduled runs: `{datetime}` in paths, and the samples a user copies to
//! run the nightly job — the crontab's lines and the systemd units — run as
//! written, with only what a test must change substituted: the installed
//! binary's path (this build's instead), the endpoint (the mock on loopback,
//! which checks the key came from the env file) and the crontab's 10-minute
//! wait before a retry.

use std::path::Path;
use std::process::Command;

use crate::common::*;

const CRONTAB: &str = include_str!("../../samples/cron/promptbatch.crontab");
const NIGHTLY_SERVICE: &str = include_str!("../../samples/systemd/promptbatch-nightly.service");
const NIGHTLY_TIMER: &str = include_str!("../../samples/systemd/promptbatch-nightly.timer");
const REPORT_SERVICE: &str = include_str!("../../samples/systemd/promptbatch-report.service");
const REPORT_TIMER: &str = include_str!("../../samples/systemd/promptbatch-report.timer");
const NIGHTLY_JOB: &str = include_str!("../../samples/nightly.toml");
const QUESTIONS: &str = include_str!("../../samples/questions.csv");

/// Where the samples say the binary is installed.
const INSTALLED: &str = "/usr/local/bin/promptbatch";
const BINARY: &str = env!("CARGO_BIN_EXE_promptbatch");

/// `text` with `from` replaced by `to`; fails unless `from` is in it, so a
/// sample that changes under a test cannot make the substitution silently moot.
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// The UTC dates a run between `before` and now may have used for `{date}`.
fn dates_since(before: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let now = chrono::Utc::now();
    let mut dates = vec![before.format("%Y-%m-%d").to_string()];
    dates.push(now.format("%Y-%m-%d").to_string());
    dates
}

/// The one file of `dir` among `names`.
fn one_of(dir: &Path, names: &[String]) -> std::path::PathBuf {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("none of {names:?} in {}", dir.display()))
}

#[tokio::test]
async fn datetime_in_a_path_is_the_runs_start_to_the_second() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .job(&prompt_job(&mock.url(), ""))
        .rows("{\"prompt\": \"a\"}\n")
        .args(&[
            "--output",
            "runs/{name}-{datetime}.jsonl",
            "--summary",
            "runs/{date}/{datetime}.json",
        ])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(sb.path("runs"))
        .expect("runs/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let stamp = names[0]
        .strip_prefix("t-")
        .and_then(|n| n.strip_suffix(".jsonl"))
        .expect("t-{datetime}.jsonl");
    let at = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .unwrap_or_else(|e| panic!("{stamp}: {e}"))
        .and_utc();
    // The summary beside it: its date folder and its start are the same instant.
    let date = at.format("%Y-%m-%d").to_string();
    let summary = sb.summary(&format!("runs/{date}/{stamp}.json"));
    let started =
        chrono::DateTime::parse_from_rfc3339(summary["started_at"].as_str().expect("started_at"))
            .expect("a time")
            .with_timezone(&chrono::Utc);
    assert_eq!(started.format("%Y%m%dT%H%M%SZ").to_string(), stamp);
    assert_eq!(sb.records(&format!("runs/{}", names[0])).len(), 1);
    mock.shutdown().await;
}

/// The schedule (five fields) and the command of a crontab line, the command
/// unescaped as cron does (`\%` is `%`; a bare `%` would end the command).
fn cron_entry(line: &str) -> (String, String) {
    let mut rest = line.trim_start();
    let mut fields = Vec::new();
    for _ in 0..5 {
        let end = rest.find(char::is_whitespace).expect("five time fields");
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    let unescaped = rest.replace("\\%", "");
    assert!(!unescaped.contains('%'), "an unescaped % in: {rest}");
    (fields.join(" "), rest.replace("\\%", "%"))
}

/// The crontab's entries (lines that are not comments), in order.
fn cron_entries() -> Vec<(String, String)> {
    CRONTAB
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(cron_entry)
        .collect()
}

/// A home with `~/promptbatch` set up as the README says: the job, its
/// questions and an env file holding `key`.
fn cron_home(sb: &Sandbox, key: &str) -> std::path::PathBuf {
    sb.write("home/promptbatch/nightly.toml", NIGHTLY_JOB);
    sb.write("home/promptbatch/questions.csv", QUESTIONS);
    sb.write(
        "home/promptbatch/promptbatch.env",
        &format!("AIMLAPI_API_KEY={key}\n"),
    );
    sb.path("home")
}

/// `sh -c command` with cron's environment: HOME, a short PATH, nothing else.
fn cron_shell(home: &Path, command: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .current_dir(home);
    cmd
}

/// After a weekly report line ran: no alert, and the dated HTML report over
/// every line in out/ (its requests headline counts them all).
fn assert_report(home: &Path, log: &str, alert: &str, dates: &[String]) {
    assert_eq!(alert, "", "the report line alerted; its log:\n{log}");
    let names: Vec<String> = dates
        .iter()
        .map(|d| format!("reports/usage-{d}.html"))
        .collect();
    let html = std::fs::read_to_string(one_of(home, &names)).expect("the report");
    assert!(html.contains("<svg"), "{html}");
    let mut lines = 0;
    for entry in std::fs::read_dir(home.join("out")).expect("out/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).expect("an output");
            lines += text.lines().filter(|l| !l.trim().is_empty()).count();
        }
    }
    assert!(lines > 0, "no output lines under {}", home.display());
    let headline = format!(r#"data-headline="requests" data-value="{lines}""#);
    assert!(html.contains(&headline), "expected {headline} in the page");
}

#[tokio::test]
async fn the_crontab_runs_the_nightly_job_and_the_weekly_report_as_written() {
    let entries = cron_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (nightly_at, nightly) = &entries[0];
    let (report_at, report) = &entries[1];
    assert_eq!(nightly_at, "0 2 * * *");
    assert_eq!(report_at, "0 6 * * 1");

    // The mock wants the key of the env file: the line must load it.
    let mock = mock(MockConfig {
        require_key: Some(SENTINEL_KEY.into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let home = cron_home(&sb, SENTINEL_KEY);
    let command = substitute(nightly, INSTALLED, BINARY);
    let command = substitute(
        &command,
        " run nightly.toml ",
        &format!(" run nightly.toml --endpoint {} ", mock.url()),
    );
    let command = substitute(&command, "sleep 600", "sleep 0");
    let before = chrono::Utc::now();
    let out = output(cron_shell(&home, &command)).await;
    let log = std::fs::read_to_string(home.join("promptbatch/logs/nightly.log")).expect("the log");
    assert_eq!(code(&out), 0, "{}\n{log}", stderr(&out));
    // Nothing printed: cron mails nobody.
    assert_eq!(stdout(&out), "", "{log}");
    assert_eq!(stderr(&out), "");
    let dates = dates_since(before);
    let names: Vec<String> = dates
        .iter()
        .map(|d| format!("promptbatch/out/nightly-{d}.jsonl"))
        .collect();
    let output_path = one_of(&home, &names);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&output_path)
        .expect("the output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    assert_eq!(records.len(), 25);
    assert!(records.iter().all(|r| r["status"] == "ok"), "{records:?}");
    assert_eq!(mock.stats().requests(), 25);
    // The log is the run's stderr, every line but the table's rows timestamped.
    let first = log.lines().next().expect("a line");
    assert!(
        first.len() > 21 && chrono::DateTime::parse_from_rfc3339(&first[..20]).is_ok(),
        "{log}"
    );
    assert!(log.contains("promptbatch · nightly · "), "{log}");

    // Run again the same day: it resumes the day's file and sends nothing.
    let out = output(cron_shell(&home, &command)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 25);

    // The weekly report over out/.
    let command = substitute(report, INSTALLED, BINARY);
    let out = output(cron_shell(&home, &command)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = std::fs::read_to_string(home.join("promptbatch/logs/report.log")).unwrap_or_default();
    let report_dates = dates_since(before);
    assert_report(
        &home.join("promptbatch"),
        &log,
        &stdout(&out),
        &report_dates,
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn the_crontab_mails_one_line_when_the_endpoint_refuses_the_key() {
    let mock = mock(MockConfig {
        require_key: Some(SENTINEL_KEY.into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let home = cron_home(&sb, "a-revoked-key");
    let (_, nightly) = &cron_entries()[0];
    let command = substitute(nightly, INSTALLED, BINARY);
    let command = substitute(
        &command,
        " run nightly.toml ",
        &format!(" run nightly.toml --endpoint {} ", mock.url()),
    );
    // Exit 4 is not retried: the wait must never be reached.
    let out = output(cron_shell(&home, &command)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mail = stdout(&out);
    assert!(
        mail.starts_with("promptbatch nightly: exit 4; see ") && mail.contains("logs/nightly.log"),
        "{mail}"
    );
    assert_eq!(mail.lines().count(), 1, "{mail}");
    // Stopped early (three refusals in a row), and not run a second time.
    assert!(mock.stats().requests() < 25);
    let log = std::fs::read_to_string(home.join("promptbatch/logs/nightly.log")).expect("the log");
    assert_eq!(log.matches("25 rows checked").count(), 1, "{log}");
    assert!(log.contains("stopped"), "{log}");
    mock.shutdown().await;
}

/// The crontab's exit-code logic alone, with a stand-in for the binary that
/// exits 1 on its first run and `then` on its second.
#[cfg(unix)]
#[tokio::test]
async fn the_crontab_retries_once_on_exit_1_and_mails_on_2_4_5_and_codes_promptbatch_never_gives() {
    use std::os::unix::fs::PermissionsExt;
    let (_, nightly) = &cron_entries()[0];
    // 137 (killed) is no code of promptbatch's: it is mailed too.
    for (then, runs, mail) in [
        (0, 2, false),
        (1, 2, false),
        (3, 2, false),
        (5, 2, true),
        (137, 2, true),
    ] {
        let sb = Sandbox::new();
        let home = cron_home(&sb, "k");
        let runs_file = sb.path("runs");
        let stand_in = sb.write(
            "promptbatch",
            &format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nif [ $(wc -l < '{}') = 1 ]; then exit 1; fi\nexit {then}\n",
                runs_file.display(),
                runs_file.display()
            ),
        );
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let command = substitute(nightly, INSTALLED, &stand_in.to_string_lossy());
        let command = substitute(&command, "sleep 600", "sleep 0");
        let out = output(cron_shell(&home, &command)).await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let ran = std::fs::read_to_string(&runs_file).expect("runs");
        assert_eq!(ran.lines().count(), runs, "{ran}");
        assert!(ran.lines().all(|l| l == "run nightly.toml"), "{ran}");
        let said = stdout(&out);
        assert_eq!(
            said == format!(
                "promptbatch nightly: exit {then}; see {}/promptbatch/logs/nightly.log\n",
                home.display()
            ),
            mail,
            "exit {then}: {said:?}"
        );
        if !mail {
            assert_eq!(said, "");
        }
    }
    // Regression: with the binary gone (moved by an upgrade, a typo in the
    // path) the shell's exit 127 was mailed by no one, every night.
    let sb = Sandbox::new();
    let home = cron_home(&sb, "k");
    let missing = sb.path("gone/promptbatch");
    let command = substitute(nightly, INSTALLED, &missing.to_string_lossy());
    let out = output(cron_shell(&home, &command)).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("promptbatch nightly: exit 127; see "),
        "{:?}",
        stdout(&out)
    );
}

/// The value of `key` in the `[Service]` section of a unit.
fn service_key<'a>(unit: &'a str, key: &str) -> &'a str {
    let mut section = "";
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" {
            if let Some(value) = line.strip_prefix(key).and_then(|l| l.strip_prefix('=')) {
                return value;
            }
        }
    }
    panic!("no {key}= in [Service] of:\n{unit}")
}

#[test]
fn the_systemd_units_verify_as_written() {
    let verify = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        verify.is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed: install the systemd package (apt-get install systemd) to check the sample units"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths = Vec::new();
    for (name, text) in [
        ("promptbatch-nightly.service", NIGHTLY_SERVICE),
        ("promptbatch-nightly.timer", NIGHTLY_TIMER),
        ("promptbatch-report.service", REPORT_SERVICE),
        ("promptbatch-report.timer", REPORT_TIMER),
    ] {
        // verify checks that ExecStart's binary exists: this build stands in for the installed one.
        let text = if name.ends_with(".service") {
            substitute(text, INSTALLED, BINARY)
        } else {
            text.to_string()
        };
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write the unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("promptbatch-"), "{said}");
    // What the README promises of the service: retried on 1 and 130, not on the others.
    assert_eq!(service_key(NIGHTLY_SERVICE, "Restart"), "on-failure");
    assert_eq!(
        service_key(NIGHTLY_SERVICE, "RestartPreventExitStatus"),
        "2 3 4 5"
    );
    assert!(NIGHTLY_TIMER.contains("OnCalendar=*-*-* 02:00:00 UTC"));
    assert!(REPORT_TIMER.contains("OnCalendar=Mon *-*-* 06:00:00 UTC"));
}

/// The units' commands, run where they say (their working directory, their
/// environment file): systemd cannot be started in a test, its commands can.
#[tokio::test]
async fn the_systemd_services_commands_run_the_nightly_job_and_the_report() {
    let mock = mock(MockConfig {
        require_key: Some(SENTINEL_KEY.into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let workdir = service_key(NIGHTLY_SERVICE, "WorkingDirectory");
    assert_eq!(workdir, service_key(REPORT_SERVICE, "WorkingDirectory"));
    let here = sb.path("state");
    sb.write("state/nightly.toml", NIGHTLY_JOB);
    sb.write("state/questions.csv", QUESTIONS);
    let env_file = service_key(NIGHTLY_SERVICE, "EnvironmentFile");
    assert_eq!(env_file, "/etc/promptbatch/promptbatch.env");
    let key_line = format!("AIMLAPI_API_KEY={SENTINEL_KEY}");

    let exec = substitute(service_key(NIGHTLY_SERVICE, "ExecStart"), INSTALLED, BINARY);
    let mut args = exec.split_whitespace();
    let mut cmd = Command::new(args.next().expect("a program"));
    cmd.args(args)
        .args(["--endpoint", &mock.url()])
        .env_clear()
        .current_dir(&here);
    // EnvironmentFile= and Environment=, as systemd reads them.
    let (name, value) = key_line.split_once('=').expect("NAME=value");
    cmd.env(name, value);
    let state = service_key(NIGHTLY_SERVICE, "Environment");
    let (name, value) = state.split_once('=').expect("NAME=value");
    cmd.env(name, substitute(value, workdir, &here.to_string_lossy()));
    let before = chrono::Utc::now();
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names: Vec<String> = dates_since(before)
        .iter()
        .map(|d| format!("out/nightly-{d}.jsonl"))
        .collect();
    let output_path = one_of(&here, &names);
    assert_eq!(
        std::fs::read_to_string(output_path)
            .expect("the output")
            .lines()
            .count(),
        25
    );

    let exec = service_key(REPORT_SERVICE, "ExecStart");
    let script = exec
        .strip_prefix("/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .expect("/bin/sh -c '...'");
    // %% is systemd's escape of %.
    let script = substitute(script, INSTALLED, BINARY).replace("%%", "%");
    let out = output({
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&script).env_clear().current_dir(&here);
        cmd
    })
    .await;
    let said = stderr(&out);
    let alert = if code(&out) == 0 {
        String::new()
    } else {
        format!("exit {}", code(&out))
    };
    assert_report(&here, &said, &alert, &dates_since(before));
    mock.shutdown().await;
}
