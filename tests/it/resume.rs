//! Before and between runs: validation sends nothing, a rerun resumes what is
//! missing, failed or edited, one output has one run, stdin, --limit, --fresh.

use crate::common::*;

#[tokio::test]
async fn validate_sends_nothing_and_rejects_bad_parameters() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write(
        "rows.jsonl",
        "{\"id\": 1, \"prompt\": \"ok\"}\n{\"id\": 2, \"prompt\": \"x\", \"params\": {\"top_k\": -1}}\n{\"id\": 3}\n",
    );
    sb.write("job.toml", &prompt_job(&mock.url(), ""));

    let out = output(sb.command(&["validate", "job.toml", "--param", "temperature=5"])).await;
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("--param temperature"), "{err}");

    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("rows.jsonl:2") && err.contains("top_k"),
        "{err}"
    );
    assert!(err.contains("rows.jsonl:3"), "{err}");

    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 2, "run checks the whole input first");
    assert!(!sb.path("t.jsonl").exists() || sb.read("t.jsonl").is_empty());

    sb.write(
        "rows.jsonl",
        "{\"id\": 1, \"prompt\": \"ok\"}\n{\"id\": 2, \"prompt\": \"fine\"}\n",
    );
    let out = output(sb.command(&["validate", "job.toml"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("2 requests"), "{}", stdout(&out));
    assert_eq!(
        mock.stats().requests(),
        0,
        "validate and a rejected run send nothing"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_rerun_resumes_sending_only_what_is_missing_failed_or_edited() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows("{\"id\": \"a\", \"prompt\": \"one\"}\n{\"id\": \"b\", \"prompt\": \"[mock:fail=400] two\"}\n{\"id\": \"c\", \"prompt\": \"three\"}\n")
        .job(&prompt_job(&mock.url(), ""))
        .output()
        .await;
    assert_eq!(code(&out), 1);
    assert_eq!(mock.stats().requests(), 3);

    // Edit row c, fix row b: a is skipped, b (failed) and c (edited) are sent.
    let out = run_job(&sb)
        .rows("{\"id\": \"a\", \"prompt\": \"one\"}\n{\"id\": \"b\", \"prompt\": \"two\"}\n{\"id\": \"c\", \"prompt\": \"three, edited\"}\n")
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 5);
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 3, "compacted to one line per key");
    assert!(records.iter().all(|r| r["status"] == "ok"));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["resumed"], 1);
    assert_eq!(summary["requests"]["ok"], 3);
    // The job's lines (a's included); this run sent two.
    assert_eq!(summary["attempts"], 3);
    assert_eq!(summary["this_run"]["attempts"], 2);

    // Nothing left to do: nothing is sent.
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0);
    assert_eq!(mock.stats().requests(), 5);
    assert_eq!(sb.summary("t.summary.json")["requests"]["resumed"], 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn a_second_run_on_the_same_output_is_refused() {
    let sb = Sandbox::new();
    sb.write("rows.jsonl", "{\"prompt\": \"hi\"}\n");
    let _held = promptbatch::sink::OutputLock::acquire(&sb.path("rows-out.jsonl")).expect("lock");
    let out = output(sb.command(&[
        "run",
        "--input",
        "rows.jsonl",
        "--model",
        "m",
        "--output",
        "rows-out.jsonl",
        "--simulate",
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
}

#[tokio::test]
async fn stdin_limit_fresh_and_a_cut_last_line() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let url = mock.url();
    let args = [
        "run",
        "--input",
        "-",
        "--model",
        "m",
        "--endpoint",
        url.as_str(),
        "--api-key-env",
        "",
        "--output",
        "o.jsonl",
        "--limit",
        "2",
        "--progress",
        "off",
    ];
    let run_with_stdin = |extra: &'static [&'static str]| {
        let mut cmd = sb.command(&[&args[..], extra].concat());
        cmd.stdin(std::process::Stdio::piped());
        async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut child = cmd
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(b"{\"prompt\": \"a\"}\n\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n")
                    .expect("write");
                child.wait_with_output().expect("wait")
            })
            .await
            .expect("join")
        }
    };
    let out = run_with_stdin(&[]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("o.jsonl");
    assert_eq!(records.len(), 2, "--limit 2 takes the first two rows");
    assert_eq!(
        records[0]["job"], "promptbatch",
        "stdin has no stem to name the job"
    );

    // A crash mid-write leaves half a line: the next run cuts it off and says so.
    let mut text = sb.read("o.jsonl");
    text.push_str("{\"key\":\"3/def");
    sb.write("o.jsonl", &text);
    let out = run_with_stdin(&[]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cut off an incomplete last line"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.records("o.jsonl").len(), 2);
    assert_eq!(mock.stats().requests(), 2, "both rows were already done");

    // --fresh starts over and keeps the old output as a dated .bak.
    let out = run_with_stdin(&["--fresh"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 4);
    let backups = sb.backups("o.jsonl");
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(sb.read(&backups[0]).lines().count(), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn lines_of_edited_requests_do_not_count_as_done() {
    let (mock, sb) = keyed_job(5).await;
    let out = run_job(&sb).env("TEST_KEY", "right").output().await;
    assert_eq!(code(&out), 0);

    // Every request is edited; the key is now wrong, so the run stops after 3 refusals.
    let out = run_job(&sb)
        .args(&["--param", "temperature=0.5"])
        .env("TEST_KEY", "wrong")
        .output()
        .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let summary = sb.summary("t.summary.json");
    assert_eq!(
        summary["requests"]["ok"], 0,
        "old lines of edited requests are not done"
    );
    assert_eq!(summary["requests"]["failed"], 3);
    assert_eq!(summary["requests"]["not_sent"], 2);
    assert_eq!(summary["requests"]["resumed"], 0);
    mock.shutdown().await;
}
