//! Interrupts, the report command, the standalone mock server and the README's examples.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

fn job(url: &str, rows: &str) -> String {
    format!(
        "name = \"t\"\n[endpoint]\nurl = \"{url}\"\napi_key_env = \"AIMLAPI_API_KEY\"\ntimeout_secs = 30\n\
         [input]\npath = \"{rows}\"\n[defaults]\nmodel = \"m\"\n[limits]\nconcurrency = 2\n"
    )
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_records_what_is_in_flight_and_exits_130() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock");
    let sb = Sandbox::new();
    // Two requests in flight: one answers after a second, one never does
    // (the second goes 250 ms after the first at the latest: the first goes
    // alone until an answer, so both are in flight for most of that second).
    let mut rows = String::from(
        "{\"id\": \"slow\", \"prompt\": \"[mock:latency=1000] slow\"}\n{\"id\": \"hang\", \"prompt\": \"[mock:fail=hang] stuck\"}\n",
    );
    for i in 0..10 {
        rows.push_str(&format!("{{\"id\": \"later{i}\", \"prompt\": \"q{i}\"}}\n"));
    }
    let mut cmd = run_job(&sb)
        .rows(&rows)
        .job(&job(&mock.url(), "rows.jsonl"))
        .args(&["--quiet"])
        .command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    wait_until("two requests in flight", || mock.stats().in_flight() == 2).await;
    signal(pid, "TERM");
    // The slow one finishes within the grace period; then a second signal abandons the other.
    wait_until("the slow request to end", || mock.stats().successes() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(pid, "TERM");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    // --quiet: one line saying why.
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("interrupted") && err.contains("t.jsonl"),
        "{err}"
    );
    assert_eq!(
        mock.stats().requests(),
        2,
        "nothing new was sent after the signal"
    );
    let records = by_key(&sb.records("t.jsonl"));
    assert_eq!(records.len(), 2);
    assert_eq!(records["slow/default"]["status"], "ok");
    let hang = &records["hang/default"];
    assert_eq!(hang["error"]["kind"], "timeout");
    assert_eq!(hang["uncertain_attempts"], 1);
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "interrupted");
    assert_eq!(summary["requests"]["not_sent"], 10);
    assert_eq!(summary["uncertain_attempts"], 1);

    // A rerun resumes: the failed and the unsent requests are sent, the ok one is not
    // (the mock hangs only the first time it sees that request).
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 2 + 11);
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["requests"]["resumed"], 1);
    assert_eq!(summary["requests"]["ok"], 12);
    assert_eq!(sb.records("t.jsonl").len(), 12);
    mock.shutdown().await;
}

#[tokio::test]
async fn report_totals_one_or_more_outputs() {
    let mock = MockServer::start(MockConfig {
        usd_per_million: Some(2.0),
        ..MockConfig::default()
    })
    .await
    .expect("mock");
    let sb = Sandbox::new();
    sb.write("a.jsonl", "{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\n");
    sb.write("b.jsonl", "{\"prompt\": \"[mock:fail=404] three\"}\n");
    for name in ["a", "b"] {
        sb.write(
            &format!("{name}.toml"),
            &job(&mock.url(), &format!("{name}.jsonl"))
                .replace("name = \"t\"", &format!("name = \"{name}\"")),
        );
        let out = output(sb.command(&[
            "run",
            &format!("{name}.toml"),
            "--output",
            &format!("{name}-out.jsonl"),
            "--quiet",
        ]))
        .await;
        assert!(code(&out) <= 1, "{}", stderr(&out));
        // --quiet: nothing on success, one line saying why otherwise.
        let lines = stderr(&out).lines().count();
        assert_eq!(lines, code(&out) as usize, "{}", stderr(&out));
    }
    let records: Vec<_> = [sb.records("a-out.jsonl"), sb.records("b-out.jsonl")].concat();
    let cost: f64 = records.iter().filter_map(|r| r["cost_usd"].as_f64()).sum();

    let out = output(sb.command(&[
        "report",
        "a-out.jsonl",
        "b-out.jsonl",
        "--json",
        "--by",
        "job",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON report");
    let totals = &report["totals"];
    assert_eq!(totals["requests"]["ok"], 2);
    assert_eq!(totals["requests"]["failed"], 1);
    let total = totals["cost_usd"]["total"].as_f64().expect("cost");
    assert!((total - cost).abs() < 1e-12, "{total} vs {cost}");
    let jobs: Vec<_> = (report["groups"].as_array().expect("groups").iter())
        .map(|g| g["job"].as_str().expect("job"))
        .collect();
    assert_eq!(jobs, ["a", "b"]);

    let ok_cell = |text: &str| {
        let totals = text
            .lines()
            .find(|l| l.starts_with("total"))
            .expect("totals row");
        totals.split_whitespace().nth(1).map(str::to_string)
    };
    let out = output(sb.command(&["report", "a-out.jsonl"])).await;
    assert_eq!(
        ok_cell(&stdout(&out)).as_deref(),
        Some("2"),
        "{}",
        stdout(&out)
    );
    // Half a last line (a run killed mid-write) is left out with a word, not an error.
    let mut text = sb.read("a-out.jsonl");
    text.push_str("{\"key\":\"x");
    sb.write("a-out.jsonl", &text);
    let out = output(sb.command(&["report", "a-out.jsonl"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        ok_cell(&stdout(&out)).as_deref(),
        Some("2"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("incomplete last line"),
        "{}",
        stderr(&out)
    );
    // Terminated, the same half line is no record: an error naming file and line.
    text.push('\n');
    sb.write("a-out.jsonl", &text);
    let out = output(sb.command(&["report", "a-out.jsonl"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("a-out.jsonl:3"), "{}", stderr(&out));
    let out = output(sb.command(&["report", "missing.jsonl"])).await;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("missing.jsonl"));
    mock.shutdown().await;
}

#[tokio::test]
async fn the_standalone_mock_server_serves_a_run() {
    let sb = Sandbox::new();
    // Port 0 would not tell us the port; pick a free one and hand it over.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut server = sb
        .command(&["mock-server", "--port", &port.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    wait_until("the mock server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    sb.write("rows.jsonl", "{\"prompt\": \"hello\"}\n");
    let out = output(sb.command(&[
        "run",
        "--input",
        "rows.jsonl",
        "--model",
        "m",
        "--endpoint",
        &url,
        "--api-key-env",
        "",
        "--output",
        "o.jsonl",
        "--progress",
        "off",
    ]))
    .await;
    signal(server.id(), "TERM");
    let status = server.wait().expect("wait");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(sb.records("o.jsonl")[0]["content"]
        .as_str()
        .expect("content")
        .contains("hello"));
    assert!(status.success(), "the mock server stops cleanly on SIGTERM");
}

#[tokio::test]
async fn the_readme_commands_and_job_file_are_real() {
    let readme = include_str!("../../README.md");
    assert!(readme.contains("cargo run --release -- run samples/quickstart.toml --simulate"));
    assert!(readme.contains("\nscripts/test "));
    let test = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test");
    assert!(test.is_file(), "the README's test command exists");
    // The job file shown in the README loads and validates as it is.
    let start = readme.find("## The job file").expect("section");
    let block = &readme[start..];
    let toml = &block[block.find("```toml\n").expect("toml block") + 8..];
    let toml = &toml[..toml.find("```").expect("block end")];
    let sb = Sandbox::new();
    sb.write("faq-nightly.toml", toml);
    sb.write("questions.csv", include_str!("../../samples/questions.csv"));
    let mut cmd = sb.command(&["validate", "faq-nightly.toml"]);
    cmd.env_remove("AIMLAPI_API_KEY");
    let out = output(cmd).await;
    assert_eq!(
        code(&out),
        2,
        "validate needs the key variable the run needs"
    );
    assert!(
        stderr(&out).contains("AIMLAPI_API_KEY is not set"),
        "{}",
        stderr(&out)
    );
    let mut cmd = sb.command(&["validate", "faq-nightly.toml"]);
    cmd.env("AIMLAPI_API_KEY", "test-key");
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("25 rows x 2 parameter sets = 50 requests"),
        "{}",
        stdout(&out)
    );
    // The estimate the README shows is what validate prints for that job,
    // paths aside (the sandbox's folder, today's date).
    let start = readme
        .find("## Before spending: validate")
        .expect("section");
    let block = &readme[start..];
    let shown = &block[block.find("```text\n").expect("text block") + 8..];
    let shown = &shown[..shown.find("```").expect("block end")];
    let mut printed = stdout(&out);
    for dir in [
        sb.dir.path().to_path_buf(),
        sb.dir.path().canonicalize().expect("dir"),
    ] {
        printed = printed.replace(&format!("{}/", dir.display()), "");
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let printed = printed.replace(&today, "2026-11-26");
    assert_eq!(
        printed, shown,
        "the README's validate example is out of date"
    );
}

#[test]
fn the_readme_architecture_names_every_folder_of_src_and_no_other() {
    let readme = include_str!("../../README.md");
    let start = readme.find("### Architecture").expect("section");
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Every folder and every top-level file of src/, as the section writes them.
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("type").is_dir() {
            names.push(format!("src/{name}/"));
        } else if name.ends_with(".rs") {
            names.push(format!("src/{name}"));
        }
    }
    for name in &names {
        assert!(
            section.contains(&format!("\n{name} ")),
            "the README's architecture does not name {name}"
        );
    }
    for line in section.lines().filter(|l| l.starts_with("src/")) {
        let name = line.split_whitespace().next().expect("a path");
        assert!(
            names.iter().any(|f| f == name),
            "the README's architecture names {name}, which src/ does not have"
        );
    }
}
