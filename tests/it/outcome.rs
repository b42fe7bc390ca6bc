//! How a run ends: exit codes that tell the truth, stops that say why, the
//! one `--quiet` line, local failures after sending (exit 5), and a summary
//! that describes the job, resumed lines included.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

fn job(url: &str, concurrency: usize) -> String {
    format!(
        "name = \"t\"\n[endpoint]\nurl = \"{url}\"\napi_key_env = \"\"\ntimeout_secs = 5\n\
         [retry]\nmax_attempts = 4\ninitial_backoff_ms = 1\nmax_backoff_ms = 5\n\
         [input]\npath = \"rows.jsonl\"\n[defaults]\nmodel = \"m\"\n\
         [limits]\nconcurrency = {concurrency}\n"
    )
}

fn rows(n: usize, prompt: impl Fn(usize) -> String) -> String {
    (1..=n)
        .map(|i| format!("{{\"id\": \"r{i}\", \"prompt\": {:?}}}\n", prompt(i)))
        .collect()
}

async fn mock(config: MockConfig) -> MockServer {
    MockServer::start(config).await.expect("mock starts")
}

/// The lines of stderr that are not blank.
fn stderr_lines(out: &std::process::Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn an_endpoint_that_cannot_be_reached_stops_the_run_with_exit_4() {
    // A port nothing listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(30, |i| format!("q{i}")));
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let out = run_job(&sb)
        .job(&job(&url, 1))
        .args(&["--quiet"])
        .output()
        .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "endpoint_unreachable");
    // 20 attempts in a row: 5 requests of 4 attempts each, then nothing more.
    assert_eq!(summary["attempts"], 20, "{summary:#}");
    assert_eq!(summary["requests"]["failed"], 5);
    assert_eq!(summary["requests"]["not_sent"], 25);
    assert!(sb
        .records("t.jsonl")
        .iter()
        .all(|r| r["error"]["kind"] == "connection"));
    // --quiet: one line, saying why and where to look, quoting the error.
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("cannot be reached")
            && lines[0].contains("could not connect")
            && lines[0].contains("t.jsonl"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn the_same_error_on_fifty_requests_in_a_row_stops_the_run_with_exit_4() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(80, |i| format!("[mock:fail=400] q{i}")))
        .job(&job(&mock.url(), 2))
        .output()
        .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "endpoint_refused");
    let failed = summary["requests"]["failed"].as_u64().expect("failed");
    // 50 in a row, plus at most the one still in flight.
    assert!((50..=51).contains(&failed), "{summary:#}");
    assert_eq!(summary["requests"]["not_sent"], 80 - failed);
    assert_eq!(mock.stats().requests(), failed);
    // The table quotes the server's message.
    assert!(
        stderr(&out).contains("HTTP 400: Invalid payload provided"),
        "{}",
        stderr(&out)
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn every_check_that_can_fail_runs_before_the_first_request() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(3, |i| format!("q{i}")));
    sb.write("job.toml", &job(&mock.url(), 1));
    // A summary path that is a folder, and one under a plain file.
    std::fs::create_dir(sb.path("t.summary.json")).expect("mkdir");
    sb.write("file", "not a folder");
    for summary in ["t.summary.json", "file/s.json"] {
        let out = run_job(&sb).args(&["--summary", summary]).output().await;
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the summary cannot be written"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(mock.stats().requests(), 0, "nothing was sent");
    assert!(!exists(&sb.path("t.jsonl")), "no output was started");
    // The probe left nothing behind.
    let left: Vec<_> = std::fs::read_dir(sb.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".promptbatch"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A summary in a folder that does not exist yet is fine: it is made.
    let out = run_job(&sb)
        .args(&["--summary", "new/dir/s.json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sb.summary("new/dir/s.json");
    mock.shutdown().await;
}

/// `promptbatch ARGS` with files limited to `bytes` (RLIMIT_FSIZE): a write
/// past it fails with EFBIG, as on a full disk, and SIGXFSZ is ignored so the
/// process sees the error instead of dying. Works unprivileged.
#[cfg(unix)]
fn with_file_size_limit(mut cmd: std::process::Command, bytes: u64) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[cfg(unix)]
#[tokio::test]
async fn a_full_disk_mid_run_exits_5_with_whole_lines_and_a_rerun_resumes() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // Lines of about 2 KB (the input is in each record): 16 KB holds a few.
    let filler = "x".repeat(900);
    let cmd = run_job(&sb)
        .rows(&rows(40, |i| format!("q{i} {filler}")))
        .job(&job(&mock.url(), 2))
        .command();
    let cmd = with_file_size_limit(cmd, 16 * 1024);
    let out = output(cmd).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("writing the output failed") && err.contains("rerun to resume"),
        "{err}"
    );
    // Every line in the file is whole (records() parses each one).
    let written = sb.records("t.jsonl").len() as u64;
    assert!(written > 0 && written < 40, "{written} lines");
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "output_failed");
    assert_eq!(summary["requests"]["ok"], written);
    assert_eq!(summary["requests"]["not_sent"], 40 - written);
    let sent = summary["this_run"]["sent"].as_u64().expect("sent");
    assert!(sent >= written, "{summary:#}");
    assert!(sent < 40, "dispatch stopped at the failure: {summary:#}");
    if sent > written {
        assert!(err.contains("have no line"), "{err}");
    }

    // Room again: the rerun sends only what has no line.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), 40);
    assert_eq!(mock.stats().requests(), sent + (40 - written));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["resumed"], written);
    assert_eq!(summary["this_run"]["sent"], 40 - written);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_summary_that_cannot_be_written_at_the_end_exits_5_with_one_quiet_line() {
    let mock = mock(MockConfig {
        latency: Duration::from_millis(150),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let mut cmd = run_job(&sb)
        .rows(&rows(4, |i| format!("q{i}")))
        .job(&job(&mock.url(), 1))
        .args(&["--quiet"])
        .command();
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    // Once sending has begun, a folder takes the summary's place.
    wait_until("the first request", || mock.stats().requests() >= 1).await;
    std::fs::create_dir(sb.path("t.summary.json")).expect("mkdir");
    std::fs::write(sb.path("t.summary.json/keep"), "x").expect("write");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), 4, "every line is written");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("writing the summary") && lines[0].contains("t.summary.json"),
        "{}",
        lines[0]
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn quiet_failures_print_one_line_naming_the_output() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows("{\"id\": \"a\", \"prompt\": \"fine\"}\n{\"id\": \"b\", \"prompt\": \"[mock:fail=400] bad\"}\n")
        .job(&job(&mock.url(), 1))
        .args(&["--quiet"])
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("1 of 2 requests failed") && lines[0].contains("t.jsonl"),
        "{}",
        lines[0]
    );
    // Success stays silent.
    let out = run_job(&sb)
        .rows("{\"id\": \"a\", \"prompt\": \"fine\"}\n")
        .args(&["--quiet"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr_lines(&out).is_empty(), "{}", stderr(&out));
    mock.shutdown().await;
}

fn figure(summary: &Value, path: &[&str]) -> Value {
    path.iter().fold(summary.clone(), |v, k| v[*k].clone())
}

#[tokio::test]
async fn the_summary_describes_the_job_resumed_lines_included() {
    let mock = mock(MockConfig {
        usd_per_million: Some(promptbatch::mock::DEFAULT_USD_PER_MILLION),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(5, |i| format!("question {i}")))
        .job(&job(&mock.url(), 2))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = sb.summary("t.summary.json");
    assert!(first["tokens"]["total"].as_u64().expect("tokens") > 0);
    assert!(first["cost_usd"]["total"].as_f64().expect("cost") > 0.0);
    assert_eq!(first["this_run"]["sent"], 5);
    assert_eq!(first["this_run"]["tokens"], first["tokens"]);

    // Everything resumed: the job's figures stand; this run sent nothing.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let again = sb.summary("t.summary.json");
    for path in [
        &["tokens"][..],
        &["cost_usd"],
        &["finish_reasons"],
        &["attempts"],
        &["latency_ms", "max"],
        &["latency_ms", "min"],
    ] {
        assert_eq!(figure(&again, path), figure(&first, path), "{path:?}");
    }
    assert_eq!(again["requests"]["resumed"], 5);
    assert_eq!(again["this_run"]["sent"], 0);
    assert_eq!(again["this_run"]["cost_usd"], 0.0);
    assert_eq!(again["this_run"]["tokens"]["total"], 0);
    assert_eq!(again["other_keys_in_output"], 0);
    assert!(
        stderr(&out).contains("this run     0 sent"),
        "{}",
        stderr(&out)
    );

    // Two rows removed, one added: their lines stay, counted apart.
    let mut rows_now = rows(3, |i| format!("question {i}"));
    rows_now.push_str("{\"id\": \"new\", \"prompt\": \"another\"}\n");
    let out = run_job(&sb).rows(&rows_now).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let third = sb.summary("t.summary.json");
    assert_eq!(third["other_keys_in_output"], 2);
    assert!(
        stderr(&out).contains("2 lines of keys this job no longer has"),
        "{}",
        stderr(&out)
    );
    assert_eq!(third["requests"]["total"], 4);
    assert_eq!(third["this_run"]["sent"], 1);
    // The job's tokens: the latest line of each of its 4 keys, as the file holds them.
    let by = by_key(&sb.records("t.jsonl"));
    let tokens: u64 = ["r1", "r2", "r3", "new"]
        .iter()
        .map(|id| {
            by[&format!("{id}/default")]["usage"]["total_tokens"]
                .as_u64()
                .expect("usage")
        })
        .sum();
    assert_eq!(third["tokens"]["total"], tokens);
    mock.shutdown().await;
}

#[tokio::test]
async fn rows_written_to_the_input_during_the_run_are_not_sent_unchecked() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // More rows than the queue ahead of the scheduler holds: the reader is
    // still in the file when a pipeline appends to it.
    let n = 1400;
    sb.write("rows.jsonl", &rows(n, |i| format!("q{i}")));
    sb.write("job.toml", &job(&mock.url(), 4));
    let mut cmd = sb.command(&["run", "job.toml", "--quiet"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_until("the first requests", || mock.stats().requests() >= 5).await;
    // A duplicate id (the scan would refuse it) and a row the scan never saw.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(sb.path("rows.jsonl"))
        .expect("open");
    std::io::Write::write_all(
        &mut file,
        b"{\"id\": \"r1\", \"prompt\": \"late duplicate\"}\n{\"id\": \"late\", \"prompt\": \"late row\"}\n",
    )
    .expect("append");
    drop(file);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed during the run"),
        "{}",
        stderr(&out)
    );
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), n, "one line per checked row, nothing else");
    assert!(records.iter().all(|r| r["key"] != "late/default"));
    let r1 = &by_key(&records)["r1/default"];
    assert_eq!(r1["input"]["prompt"], "q1", "{r1}");
    assert_eq!(mock.stats().requests(), n as u64);
    mock.shutdown().await;
}

/// A line reaches the file as its request ends, not when the run ends or a
/// batch fills: killed while another request is still in flight, the run
/// leaves the answer it had, whole, for the rerun to keep.
#[tokio::test]
async fn a_line_is_in_the_file_while_other_requests_are_still_in_flight() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"id\": \"quick\", \"prompt\": \"hi\"}\n\
         {\"id\": \"slow\", \"prompt\": \"[mock:latency=60000] hi\"}\n",
    );
    sb.write(
        "job.toml",
        &job(&mock.url(), 2).replace("timeout_secs = 5", "timeout_secs = 120"),
    );
    let mut child = sb
        .command(&["run", "job.toml", "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let out_path = sb.path("t.jsonl");
    wait_until("the quick request's line", || {
        std::fs::read(&out_path).is_ok_and(|b| b.ends_with(b"\n"))
    })
    .await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended before the slow request did"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["key"], "quick/default");
    assert_eq!(records[0]["status"], "ok");
    mock.shutdown().await;
}

/// Runs `rows` rows (100 ms each, one at a time) and removes the output
/// once its first line is there: a careless clean-up, after which every
/// later write would succeed into a file nobody can read.
async fn run_and_remove_the_output(rows_n: usize) -> (MockServer, Sandbox, std::process::Output) {
    let mock = mock(MockConfig {
        latency: Duration::from_millis(100),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(rows_n, |i| format!("q{i}")));
    sb.write("job.toml", &job(&mock.url(), 1));
    let mut cmd = sb.command(&["run", "job.toml", "--quiet"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let out_path = sb.path("t.jsonl");
    wait_until("the first line", || {
        std::fs::read(&out_path).is_ok_and(|b| b.contains(&b'\n'))
    })
    .await;
    std::fs::remove_file(&out_path).expect("rm");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    (mock, sb, out)
}

/// Removed mid-run, the output is missed within a moment, not at the end:
/// the run stops sending instead of paying for every remaining request
/// whose line could only go to a file nobody can read.
#[tokio::test]
async fn an_output_removed_during_the_run_stops_it_sending() {
    let (mock, _sb, out) = run_and_remove_the_output(100).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("removed or replaced"),
        "{}",
        stderr(&out)
    );
    // One a tenth of a second: all 100 take ten seconds; the check is four a second.
    let sent = mock.stats().requests();
    assert!(
        sent < 60,
        "{sent} requests sent after the output was removed"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_output_removed_during_the_run_exits_5_not_0() {
    let (mock, sb, out) = run_and_remove_the_output(8).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("removed or replaced") && lines[0].contains("t.jsonl"),
        "{}",
        lines[0]
    );
    assert_eq!(sb.summary("t.summary.json")["stopped"], "output_failed");
    // The rerun sends every request again: none of their answers is on disk.
    let out = output(sb.command(&["run", "job.toml", "--quiet"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), 8);
    mock.shutdown().await;
}

/// The summary counts the job as its output stands: the lines written before
/// the output was removed went with it, so none counts as done.
#[tokio::test]
async fn an_output_removed_during_the_run_counts_none_of_its_lines_in_the_summary() {
    let (mock, sb, out) = run_and_remove_the_output(8).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    let requests = &summary["requests"];
    assert_eq!(requests["ok"], 0, "{summary}");
    assert_eq!(requests["failed"], 0, "{summary}");
    assert_eq!(requests["not_sent"], 8, "{summary}");
    assert_eq!(requests["total"], 8, "{summary}");
    // What this run sent is still said, apart.
    assert!(summary["this_run"]["sent"].as_u64() >= Some(1), "{summary}");
    mock.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_in_seconds_whatever_the_backoff() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(10, |i| format!("q{i}")));
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    // Backoff that doubles from 1 s up to a minute: 10 attempts of a request
    // would wait about two minutes on their own.
    let job_text = job(&url, 2)
        .replace("max_attempts = 4", "max_attempts = 10")
        .replace("initial_backoff_ms = 1", "initial_backoff_ms = 1000")
        .replace("max_backoff_ms = 5", "max_backoff_ms = 60000");
    sb.write("job.toml", &job_text);
    let start = Instant::now();
    let out = output(sb.command(&["run", "job.toml", "--quiet"])).await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(
        sb.summary("t.summary.json")["stopped"],
        "endpoint_unreachable"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_summary_path_that_is_the_output_or_its_lock_by_another_spelling_is_refused() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(3, |i| format!("q{i}")));
    sb.write("job.toml", &job(&mock.url(), 1));
    std::fs::create_dir(sb.path("sub")).expect("mkdir");
    let out = output(sb.command(&["run", "job.toml", "--quiet"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = sb.read("t.jsonl");
    for summary in ["sub/../t.jsonl", "sub/../t.jsonl.lock"] {
        let out = output(sb.command(&["run", "job.toml", "--summary", summary])).await;
        assert_eq!(code(&out), 2, "{summary}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is the output path or its lock file"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(sb.read("t.jsonl"), before, "the output is untouched");
    assert_eq!(mock.stats().requests(), 3, "nothing more was sent");
    mock.shutdown().await;
}
