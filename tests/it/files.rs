//! Files are never clobbered or shared by accident: locks, links, outputs
//! that are not outputs, summary paths, compaction, --fresh backups, hand-edited outputs,
//! inputs that are pipes, and empty inputs.

mod summary;

use std::os::unix::fs::symlink;

use crate::common::*;
use serde_json::Value;

/// Prompt rows from rows.jsonl, model "m", output o.jsonl, then `extra` TOML.
fn job(url: &str, extra: &str) -> String {
    format!(
        "name = \"t\"\n[endpoint]\nurl = \"{url}\"\napi_key_env = \"\"\ntimeout_secs = 5\n\
         [retry]\nmax_attempts = 1\n[input]\npath = \"rows.jsonl\"\n[output]\npath = \"o.jsonl\"\n\
         [defaults]\nmodel = \"m\"\n{extra}"
    )
}

fn rows(prompts: &[&str]) -> String {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{{\"id\": \"r{i}\", \"prompt\": \"{p}\"}}\n"))
        .collect()
}

async fn start() -> (MockServer, Sandbox) {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    (mock, Sandbox::new())
}

fn is_symlink(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[tokio::test]
async fn a_lock_path_planted_as_a_symlink_is_refused_and_its_target_untouched() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    let victim = sb.write("victim.txt", "precious");
    symlink(&victim, sb.path("o.jsonl.lock")).expect("link");
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("o.jsonl.lock"), "{}", stderr(&out));
    assert_eq!(sb.read("victim.txt"), "precious");
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn two_paths_to_one_output_share_one_lock() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    symlink("o.jsonl", sb.path("link.jsonl")).expect("link");
    let _held = promptbatch::sink::OutputLock::acquire(&sb.path("o.jsonl")).expect("lock");
    let out = run_job(&sb)
        .args(&["--output", "link.jsonl"])
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("process {}", std::process::id())),
        "{}",
        stderr(&out)
    );
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_hard_link_or_a_symlink_of_the_input_is_refused_as_the_output() {
    let (mock, sb) = start().await;
    let input = rows(&["hi", "there"]);
    sb.write("rows.jsonl", &input);
    sb.write("job.toml", &job(&mock.url(), ""));
    std::fs::hard_link(sb.path("rows.jsonl"), sb.path("same.jsonl")).expect("hard link");
    symlink("rows.jsonl", sb.path("alias.jsonl")).expect("link");
    for output in ["same.jsonl", "alias.jsonl"] {
        let out = run_job(&sb).args(&["--output", output]).output().await;
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("both the input and an output"),
            "{output}: {}",
            stderr(&out)
        );
    }
    assert_eq!(sb.read("rows.jsonl"), input);
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_jsonl_whose_lines_have_key_and_status_is_not_taken_as_an_output() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    let data = "{\"key\":\"r0/default\",\"status\":\"ok\",\"note\":\"mine\"}\n{\"key\":\"r0/default\",\"status\":\"ok\",\"note\":\"also mine\"}\n";
    sb.write("o.jsonl", data);
    for fresh in [false, true] {
        let out = run_job(&sb)
            .args(if fresh { &["--fresh"] } else { &[] })
            .output()
            .await;
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("o.jsonl is not a promptbatch output") && err.contains("--output"),
            "{err}"
        );
        assert_eq!(sb.read("o.jsonl"), data);
    }
    assert!(sb.backups("o.jsonl").is_empty());
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_symlinked_output_stays_a_symlink_and_a_stale_temp_file_is_removed() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["fine", "[mock:fail=500] once"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    std::fs::create_dir(sb.path("data")).expect("mkdir");
    symlink("data/out.jsonl", sb.path("link.jsonl")).expect("link");
    let out = run_job(&sb)
        .args(&["--output", "link.jsonl"])
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // The rerun sends the failed request again; compaction drops its old line.
    let out = run_job(&sb)
        .args(&["--output", "link.jsonl"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 3);
    assert!(is_symlink(&sb.path("link.jsonl")), "the link was replaced");
    let records = sb.records("data/out.jsonl");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["status"] == "ok"));
    // A compaction temp file left by a killed run goes at the next run's start,
    // even one with nothing to send or compact.
    sb.write("data/out.jsonl.compact.tmp", "{\"key\":\"half");
    let out = run_job(&sb)
        .args(&["--output", "link.jsonl"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!sb.path("data/out.jsonl.compact.tmp").exists());
    assert_eq!(mock.stats().requests(), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn reruns_of_a_budgeted_job_with_failures_never_record_more_than_the_budget() {
    let (mock, sb) = start().await;
    // Every attempt is reset after it was sent: each may have been billed,
    // so each charges its worst case, and every rerun sends them again.
    let resets = ["reset"; 30].join(",");
    sb.write(
        "rows.jsonl",
        &rows(&[
            &format!("[mock:fail={resets}] a"),
            &format!("[mock:fail={resets}] b"),
        ]),
    );
    let budget = 0.001;
    sb.write(
        "job.toml",
        &job(
            &mock.url(),
            &format!("max_tokens = 100\n[limits]\nconcurrency = 1\nmax_cost_usd = {budget}\n[pricing]\nm = {{ input = 1.0, output = 1.0 }}\n"),
        ),
    );
    let total = |records: &[Value]| -> f64 {
        records
            .iter()
            .map(|r| {
                r["budget_charge_usd"].as_f64().expect("charge")
                    + r["prior_charge_usd"].as_f64().unwrap_or(0.0)
            })
            .sum()
    };
    let mut worst = f64::MAX;
    let mut last_total = 0.0;
    for round in 0..6 {
        let out = run_job(&sb).output().await;
        assert!(matches!(code(&out), 1 | 3), "{}", stderr(&out));
        let records = sb.records("o.jsonl");
        for r in &records {
            worst = worst.min(r["budget_charge_usd"].as_f64().expect("charge"));
        }
        let now = total(&records);
        assert!(
            now >= last_total - 1e-12,
            "round {round}: the recorded charge shrank from {last_total} to {now}"
        );
        assert!(now <= budget + 1e-12, "round {round}: recorded {now}");
        last_total = now;
    }
    // Every request sent may have been billed its worst case: all of them
    // together stay within one budget, however many reruns there were.
    let sent = mock.stats().requests() as f64;
    assert!(
        sent * worst <= budget + 1e-12,
        "{sent} requests at {worst} each passed the budget {budget}"
    );
    assert!((last_total - sent * worst).abs() < 1e-9, "{last_total}");
    mock.shutdown().await;
}

#[tokio::test]
async fn fresh_acts_only_once_every_check_passed_and_never_overwrites_a_backup() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = sb.read("o.jsonl");
    // Bad input: refused before anything moves.
    sb.write("rows.jsonl", "{\"prompt\": \"hi\"}\nnot json\n");
    let out = run_job(&sb).args(&["--fresh"]).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(sb.read("o.jsonl"), first);
    assert!(sb.backups("o.jsonl").is_empty());
    // Two fresh starts (most likely within one second): two backups.
    sb.write("rows.jsonl", &rows(&["hi"]));
    for _ in 0..2 {
        let out = run_job(&sb).args(&["--fresh"]).output().await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let backups = sb.backups("o.jsonl");
    assert_eq!(backups.len(), 2, "{backups:?}");
    for b in &backups {
        assert!(b.starts_with("o.jsonl.20") && b.contains("Z."), "{b}");
        assert_eq!(sb.read(b).lines().count(), 1);
    }
    assert_eq!(mock.stats().requests(), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_run_refused_for_bad_input_leaves_no_lock_file() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", "not json\n");
    sb.write("job.toml", &job(&mock.url(), ""));
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!sb.path("o.jsonl.lock").exists());
    assert!(!sb.path("o.jsonl").exists());
    mock.shutdown().await;
}

#[tokio::test]
async fn a_hand_edited_output_is_refused_naming_its_line_and_a_cut_is_said_even_quietly() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["one", "two", "three"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    let out = run_job(&sb).args(&["--limit", "1"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let good = sb.read("o.jsonl");
    let mut record: Value = serde_json::from_str(good.trim_end()).expect("record");

    // A negative cost would give a budget room it does not have.
    record["key"] = "x/default".into();
    record["cost_usd"] = (-1000.0).into();
    sb.write("o.jsonl", &format!("{good}{record}\n"));
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("o.jsonl:2"), "{}", stderr(&out));
    assert!(stderr(&out).contains("cost_usd"), "{}", stderr(&out));

    // A complete last line that does not parse is not a crash remnant: never cut.
    let edited = format!("{good}{{\"key\": oops}}\n");
    sb.write("o.jsonl", &edited);
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("o.jsonl:2"), "{}", stderr(&out));
    assert_eq!(sb.read("o.jsonl"), edited);
    assert_eq!(mock.stats().requests(), 1);

    // Half a line (a crash mid-write) is cut, and said even with --quiet.
    sb.write("o.jsonl", &format!("{good}{{\"key\":\"r1/def"));
    let out = run_job(&sb)
        .args(&["--progress", "off", "--quiet"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cut off an incomplete last line"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.records("o.jsonl").len(), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn an_input_that_is_a_fifo_is_read_whole() {
    let (mock, sb) = start().await;
    let fifo = sb.path("rows.jsonl");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    sb.write("job.toml", &job(&mock.url(), ""));
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, rows(&["one", "two"])))
    };
    let out = run_job(&sb).output().await;
    // Should the run never have opened the FIFO, this frees the writer (kept
    // open until it is done, so it is not cut off by a closed pipe).
    let unblock = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
    };
    writer.join().expect("join").expect("written");
    drop(unblock);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("o.jsonl").len(), 2);
    assert_eq!(mock.stats().requests(), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn an_empty_input_is_refused_unless_allowed() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", "\n\n");
    sb.write("job.toml", &job(&mock.url(), ""));
    for command in ["run", "validate"] {
        let out = output(sb.command(&[command, "job.toml"])).await;
        assert_eq!(code(&out), 2, "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no rows") && stderr(&out).contains("--allow-empty"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!sb.path("o.jsonl").exists());
    let out = output(sb.command(&["validate", "job.toml", "--allow-empty"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run_job(&sb).args(&["--allow-empty"]).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.summary("o.summary.json")["requests"]["total"], 0);
    // A character device is read like a pipe: /dev/null has no rows either.
    let out = run_job(&sb)
        .args(&["--input", "/dev/null", "--format", "jsonl"])
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/dev/null has no rows"),
        "{}",
        stderr(&out)
    );
    // A CSV export with nothing in it, not even a header, is empty too.
    sb.write("rows.csv", "");
    let csv = ["--input", "rows.csv", "--template", "{{q}}"];
    let out = run_job(&sb).args(&csv).output().await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no rows"), "{}", stderr(&out));
    let out = run_job(&sb)
        .args(&[&csv[..], &["--allow-empty"]].concat())
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_folder_where_compaction_cannot_write_is_refused_before_anything_is_sent() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["[mock:fail=500] once"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    let args = ["--output", "data/o.jsonl", "--summary", "s.json"];
    let out = run_job(&sb).args(&args).output().await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // The output and its lock can be written, but no file made beside them:
    // the rerun's compaction (the failed line is superseded) could not run.
    let mode = |name: &str, mode: u32| {
        std::fs::set_permissions(sb.path(name), std::fs::Permissions::from_mode(mode))
            .expect("chmod")
    };
    for name in ["data/o.jsonl", "data/o.jsonl.lock", "s.json"] {
        mode(name, 0o666);
    }
    mode("data", 0o555);
    mode(".", 0o777);
    // Root may write anywhere: then the rerun runs as nobody, from a copy of
    // the binary that user can reach.
    let binary = sb.path("promptbatch");
    std::fs::copy(env!("CARGO_BIN_EXE_promptbatch"), &binary).expect("copy");
    mode("promptbatch", 0o755);
    let mut rerun = std::process::Command::new(&binary);
    rerun
        .args(["run", "job.toml", "--progress", "off"])
        .args(args)
        .current_dir(sb.dir.path())
        .env("NO_COLOR", "1");
    // SAFETY: geteuid only reads the process's user id.
    if unsafe { libc::geteuid() } == 0 {
        rerun.uid(65534).gid(65534);
    }
    let out = output(rerun).await;
    mode("data", 0o755);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("o.jsonl.compact.tmp"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mock.stats().requests(), 1);
    mock.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_run_killed_while_it_spools_a_pipe_leaves_no_temporary_file() {
    use std::io::Write;
    let (mock, sb) = start().await;
    sb.write("job.toml", &job(&mock.url(), ""));
    let tmp = sb.path("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let mut child = sb
        .command(&["run", "job.toml", "--input", "-", "--progress", "off"])
        .env("TMPDIR", &tmp)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    // An endless pipe: rows, and the writing end never closed.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(rows(&["hi"; 100]).as_bytes())
        .expect("write");
    // Wait until the run holds its copy open (a descriptor into tmp/).
    let spooling = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to.starts_with(&tmp)))
    };
    let since = std::time::Instant::now();
    while !spooling() {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(30),
            "the run never started copying its input"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    drop(stdin);
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("read dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn validate_warns_of_a_held_lock() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let _held = promptbatch::sink::OutputLock::acquire(&sb.path("o.jsonl")).expect("lock");
    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("warning: {}", sb.path("o.jsonl").display()))
            && stderr(&out).contains(&format!("process {}", std::process::id())),
        "{}",
        stderr(&out)
    );
    // --json carries the warning as data too.
    let out = output(sb.command(&["validate", "job.toml", "--json"])).await;
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{doc}");
    assert!(warnings[0]
        .as_str()
        .expect("text")
        .contains("being written by another promptbatch run"));
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

/// Regression: under a file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`)
/// the kernel's SIGXFSZ killed the run mid-write (exit 153, no summary, no
/// message). A write past the limit is a disk failure like ENOSPC: exit 5,
/// the output keeps whole lines, and a rerun resumes.
#[tokio::test]
async fn a_file_size_limit_is_exit_5_and_a_rerun_resumes() {
    let (mock, sb) = start().await;
    let prompts: Vec<String> = (0..120).map(|i| format!("question {i}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    sb.write("rows.jsonl", &rows(&prompts));
    sb.write("job.toml", &job(&mock.url(), ""));
    // 16 blocks of 512 bytes (dash) or 1 KiB (bash): a few records, never 120.
    let limited = sb
        .command(&["run", "job.toml", "--progress", "off"])
        .get_args()
        .map(|a| a.to_owned())
        .collect::<Vec<_>>();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -f 16 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_promptbatch"))
        .args(limited)
        .current_dir(sb.path("."))
        .env("NO_COLOR", "1");
    let out = output(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(5),
        "{:?}: {}",
        out.status,
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("writing the output failed"),
        "{}",
        stderr(&out)
    );
    // Lines are written in batches, all or nothing: on a loaded machine the
    // first batch alone may pass the limit, and nothing is kept.
    let text = sb.read("o.jsonl");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "no half line is kept"
    );
    let kept = text.lines().count();
    assert!(kept < 120, "{kept} lines");
    let out = output(sb.command(&["run", "job.toml", "--progress", "off"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("o.jsonl").len(), 120);
    assert_eq!(sb.summary("o.summary.json")["requests"]["resumed"], kept);
    mock.shutdown().await;
}

/// Regression: validate passed (exit 0) where the run it vouches for was
/// refused before sending (exit 2) because the summary, or the output,
/// could not be written where it goes.
#[tokio::test]
async fn validate_refuses_a_summary_or_output_path_the_run_would_refuse() {
    let (mock, sb) = start().await;
    sb.write("rows.jsonl", &rows(&["hi"]));
    sb.write("job.toml", &job(&mock.url(), ""));
    sb.write("plain", "a file, not a folder\n");
    let mut cases: Vec<(Vec<&str>, &str)> = vec![(
        vec!["--summary", "plain/s.json"],
        "the summary cannot be written to",
    )];
    // A folder no file can be made in, even by root: Linux's /proc.
    if std::path::Path::new("/proc/self").exists() {
        let flags = vec!["--output", "/proc/o.jsonl", "--summary", "s.json"];
        cases.push((flags, "/proc/o.jsonl"));
    }
    for (flags, says) in cases {
        for command in ["validate", "run"] {
            let args = [&[command, "job.toml"][..], &flags[..]].concat();
            let out = output(sb.command(&args)).await;
            assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        }
    }
    assert_eq!(mock.stats().requests(), 0);
    assert!(!std::path::Path::new("/proc/o.jsonl").exists());
    mock.shutdown().await;
}
