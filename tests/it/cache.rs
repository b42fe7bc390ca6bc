//! The response cache (`--cache DIR`) against the real binary: what it
//! answers is never sent (counted at the mock), what it keeps is only `ok`
//! replies of the same body at the same endpoint, with no secret in the
//! file; several processes share one store; its size stays bounded; a store
//! that is not ours is refused before anything is sent.

use serde_json::Value;

use crate::common::*;

/// The store's file inside the cache folder.
const DB: &str = "promptbatch-cache.sqlite3";

fn rows(ids_prompts: &[(&str, &str)]) -> String {
    ids_prompts
        .iter()
        .map(|(id, p)| format!("{{\"id\": \"{id}\", \"prompt\": \"{p}\"}}\n"))
        .collect()
}

/// A job over `input`, writing `output`, with `extra` TOML after `[defaults]`.
fn job(url: &str, input: &str, output: &str, extra: &str) -> String {
    job_toml(
        url,
        &format!(
            "[input]\npath = \"{input}\"\n[output]\npath = \"{output}\"\n[defaults]\nmodel = \"m\"\nmax_tokens = 50\n{extra}"
        ),
    )
}

async fn priced_mock() -> MockServer {
    mock(MockConfig {
        usd_per_million: Some(2.0),
        ..MockConfig::default()
    })
    .await
}

fn run(sb: &Sandbox, job: &str, args: &[&str]) -> std::process::Command {
    let mut all = vec!["run", job, "--progress", "off"];
    all.extend(args);
    sb.command(&all)
}

#[tokio::test]
async fn a_second_job_sends_only_what_the_first_did_not() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    sb.write(
        "a.jsonl",
        &rows(&[("a1", "shared one"), ("a2", "shared two"), ("a3", "only a")]),
    );
    sb.write(
        "b.jsonl",
        &rows(&[("b1", "shared one"), ("b2", "shared two"), ("b3", "only b")]),
    );
    sb.write("a.toml", &job(&mock.url(), "a.jsonl", "a.out.jsonl", ""));
    sb.write("b.toml", &job(&mock.url(), "b.jsonl", "b.out.jsonl", ""));

    let out = output(run(&sb, "a.toml", &["--cache", "cache"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 3);
    let first = by_key(&sb.records("a.out.jsonl"));
    assert!(
        first.values().all(|r| r.get("cached").is_none()),
        "{first:?}"
    );

    // validate says what the cache would answer, and sends nothing.
    let out = output(sb.command(&["validate", "b.toml", "--cache", "cache", "--json"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let estimate: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        (estimate["to_send"].as_u64(), estimate["cached"].as_u64()),
        (Some(3), Some(2))
    );
    let out = output(sb.command(&["validate", "b.toml", "--cache", "cache"])).await;
    assert!(
        stdout(&out).contains("3 to send (2 of them answered from the cache)"),
        "{}",
        stdout(&out)
    );
    let out = output(sb.command(&["validate", "b.toml", "--cache", "none-yet", "--json"])).await;
    let estimate: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(estimate["cached"], 0);
    assert!(!sb.path("none-yet").exists(), "validate makes nothing");
    assert_eq!(mock.stats().requests(), 3);

    let out = output(run(&sb, "b.toml", &["--cache", "cache"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 4, "only b3 was sent");
    let second = by_key(&sb.records("b.out.jsonl"));
    for (cached, sent) in [("b1/default", "a1/default"), ("b2/default", "a2/default")] {
        let (r, original) = (&second[cached], &first[sent]);
        assert_eq!(r["status"], "ok");
        assert_eq!(r["cached"], true);
        assert_eq!(r["cost_usd"], 0.0);
        assert_eq!(r["cost_source"], Value::Null);
        assert!(original["cost_usd"].as_f64().unwrap() > 0.0);
        assert_eq!(r["cached_cost_usd"], original["cost_usd"]);
        assert_eq!(r["attempts"], 0);
        assert_eq!(r["latency_ms"], Value::Null);
        for field in [
            "content",
            "finish_reason",
            "usage",
            "response_id",
            "request_sha256",
        ] {
            assert_eq!(r[field], original[field], "{field}");
        }
        assert_ne!(r["started_at"], original["started_at"], "a fresh line");
    }
    let fresh = &second["b3/default"];
    assert!(fresh.get("cached").is_none());
    assert!(fresh["attempts"].as_u64() == Some(1));

    let summary = sb.summary("b.out.summary.json");
    assert_eq!(summary["requests"]["ok"], 3);
    assert_eq!(summary["requests"]["cached"], 2);
    assert_eq!(summary["this_run"]["sent"], 1);
    assert_eq!(summary["this_run"]["cached"], 2);
    assert_eq!(summary["this_run"]["retries"], 0);
    assert_eq!(summary["this_run"]["cost_usd"], fresh["cost_usd"]);
    let tokens = |r: &Value| r["usage"]["total_tokens"].as_u64().unwrap();
    assert_eq!(
        summary["tokens"]["total"].as_u64().unwrap(),
        second.values().map(tokens).sum::<u64>(),
        "the output's tokens, cached ones included"
    );
    assert!(
        stderr(&out).contains("2 of the ok lines answered from the cache"),
        "{}",
        stderr(&out)
    );

    // The usage report counts them at $0, even with prices of its own.
    sb.write("prices.toml", "m = { input = 1000, output = 1000 }\n");
    let out = output(sb.command(&[
        "report",
        "b.out.jsonl",
        "--json",
        "--pricing",
        "prices.toml",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    // b3's provider figure wins over --pricing; b1 and b2 add nothing.
    let total = report["totals"]["cost_usd"]["total"].as_f64().unwrap();
    let sent = fresh["cost_usd"].as_f64().unwrap();
    assert!((total - sent).abs() < 1e-12, "{total} != {sent}: {report}");

    // A rerun resumes (a cached line is ok with its request's hash), and
    // --fresh answers every request from the cache again.
    let out = output(run(&sb, "b.toml", &["--cache", "cache"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = output(run(&sb, "b.toml", &["--cache", "cache", "--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 4, "nothing more was sent");
    let again = sb.records("b.out.jsonl");
    assert!(again.iter().all(|r| r["cached"] == true), "{again:?}");

    // Without --cache nothing is looked up.
    let out = output(run(&sb, "a.toml", &["--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 7);
}

#[tokio::test]
async fn an_edited_row_another_endpoint_and_errors_are_sent() {
    let mock = priced_mock().await;
    let other = priced_mock().await;
    let sb = Sandbox::new();
    sb.write(
        "a.jsonl",
        &rows(&[
            ("r1", "kept"),
            ("r2", "to edit"),
            ("r3", "[mock:fail=400] refused"),
        ]),
    );
    sb.write("a.toml", &job(&mock.url(), "a.jsonl", "a.out.jsonl", ""));
    let out = output(run(&sb, "a.toml", &["--cache", "cache"])).await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 3);

    sb.write(
        "b.jsonl",
        &rows(&[
            ("r1", "kept"),
            ("r2", "edited"),
            ("r3", "[mock:fail=400] refused"),
        ]),
    );
    sb.write("b.toml", &job(&mock.url(), "b.jsonl", "b.out.jsonl", ""));
    let out = output(run(&sb, "b.toml", &["--cache", "cache"])).await;
    let records = by_key(&sb.records("b.out.jsonl"));
    assert_eq!(records["r1/default"]["cached"], true);
    assert!(
        records["r2/default"].get("cached").is_none(),
        "edited: sent"
    );
    assert!(
        records["r3/default"].get("cached").is_none(),
        "an error is never kept"
    );
    assert_eq!(mock.stats().requests(), 5, "{}", stderr(&out));

    // The same rows at another endpoint: nothing answered from the cache.
    sb.write("c.toml", &job(&other.url(), "b.jsonl", "c.out.jsonl", ""));
    let out = output(run(&sb, "c.toml", &["--cache", "cache"])).await;
    assert!(matches!(code(&out), 0 | 1), "{}", stderr(&out));
    assert_eq!(other.stats().requests(), 3);
    let records = sb.records("c.out.jsonl");
    assert!(
        records.iter().all(|r| r.get("cached").is_none()),
        "{records:?}"
    );
}

/// Every file in the cache folder, as bytes.
fn cache_files(sb: &Sandbox, dir: &str) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(sb.path(dir))
        .expect("the cache folder exists")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.display().to_string(),
                std::fs::read(&path).expect("read"),
            )
        })
        .collect()
}

#[tokio::test]
async fn no_secret_reaches_the_store_even_from_a_server_that_echoes_it() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    sb.write("a.jsonl", &rows(&[("e", "[mock:echo-auth] hello")]));
    sb.write("a.toml", &job(&mock.url(), "a.jsonl", "a.out.jsonl", ""));
    let out = output(run(&sb, "a.toml", &["--cache", "cache"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sent = &mock.received()[0];
    assert!(sent.header("authorization").unwrap().contains(SENTINEL_KEY));
    let files = cache_files(&sb, "cache");
    assert!(files.iter().any(|(name, _)| name.ends_with(DB)));
    for (name, bytes) in &files {
        assert_no_secret(name, bytes);
    }
    // The reply is in it, redacted: a second job is answered from it.
    let original = sb.records("a.out.jsonl").remove(0);
    assert!(
        original["content"].as_str().unwrap().contains("[redacted]"),
        "{original}"
    );
    let out = output(run(&sb, "a.toml", &["--cache", "cache", "--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let again = sb.records("a.out.jsonl").remove(0);
    assert_eq!(again["cached"], true);
    assert_eq!(again["content"], original["content"]);
    assert_eq!(mock.stats().requests(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    sb.write("a.jsonl", &rows(&[("x", "hi")]));
    sb.write(
        "a.toml",
        &job(
            &mock.url(),
            "a.jsonl",
            "a.out.jsonl",
            "[cache]\ndir = \"made/here\"\n",
        ),
    );
    let out = output(run(&sb, "a.toml", &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mode = |p: &str| std::fs::metadata(sb.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("made/here"), 0o700);
    assert_eq!(mode(&format!("made/here/{DB}")), 0o600);
}

#[tokio::test]
async fn four_processes_share_one_store() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    let n = 120;
    let all: Vec<(String, String)> = (0..n)
        .map(|i| (format!("r{i}"), format!("row {i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = all.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    sb.write("rows.jsonl", &rows(&pairs));
    let mut children = Vec::new();
    for k in 0..4 {
        let name = format!("j{k}.toml");
        sb.write(
            &name,
            &job(
                &mock.url(),
                "rows.jsonl",
                &format!("o{k}.jsonl"),
                "[limits]\nconcurrency = 4\n",
            ),
        );
        let mut cmd = run(&sb, &name, &["--cache", "shared"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().expect("spawns"));
    }
    let outs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("waits"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for out in &outs {
        assert_eq!(code(out), 0, "{}", stderr(out));
        assert!(!stderr(out).contains("could not"), "{}", stderr(out));
    }
    let sent = mock.stats().requests();
    assert!(sent >= n && sent <= 4 * n, "{sent}");
    for k in 0..4 {
        let records = sb.records(&format!("o{k}.jsonl"));
        assert_eq!(records.len(), n as usize);
        assert!(records.iter().all(|r| r["status"] == "ok"));
    }
    // Every reply is in the store once: a fifth run sends nothing.
    let conn = rusqlite::Connection::open(sb.path(&format!("shared/{DB}"))).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM replies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, n);
    drop(conn);
    let out = output(run(&sb, "j0.toml", &["--cache", "shared", "--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), sent);
}

#[tokio::test]
async fn the_store_stays_within_max_mb() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    let n = 600;
    let all: Vec<(String, String)> = (0..n)
        .map(|i| (format!("r{i}"), format!("row {i} {}", "pad ".repeat(20))))
        .collect();
    let pairs: Vec<(&str, &str)> = all.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    sb.write("rows.jsonl", &rows(&pairs));
    let max_mb = 0.1;
    sb.write(
        "a.toml",
        &job(
            &mock.url(),
            "rows.jsonl",
            "a.out.jsonl",
            &format!("[cache]\ndir = \"small\"\nmax_mb = {max_mb}\n"),
        )
        .replace("max_tokens = 50", "max_tokens = 200"),
    );
    let out = output(run(&sb, "a.toml", &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let kept: u64 = sb
        .records("a.out.jsonl")
        .iter()
        .map(|r| r.to_string().len() as u64)
        .sum();
    assert!(
        kept > 3 * (max_mb * 1048576.0) as u64,
        "the replies outgrow the bound: {kept}"
    );
    let size: u64 = cache_files(&sb, "small")
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert!(
        size <= (max_mb * 1048576.0 * 1.2) as u64,
        "the store's files take {size} bytes"
    );
    // The most recently kept replies are the ones still there.
    let out = output(run(&sb, "a.toml", &["--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("a.out.jsonl");
    let hits: Vec<bool> = records.iter().map(|r| r["cached"] == true).collect();
    let cached = hits.iter().filter(|h| **h).count();
    assert!(
        cached > 0 && cached < n,
        "{cached} of {n} answered from the cache"
    );
    assert_eq!(mock.stats().requests() as usize, 2 * n - cached);
}

#[tokio::test]
async fn sampling_without_a_seed_is_warned_about_once() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    sb.write("a.jsonl", &rows(&[("x", "hi"), ("y", "ho")]));
    let sets = "[[params]]\nname = \"hot\"\ntemperature = 0.9\n[[params]]\nname = \"seeded\"\ntemperature = 0.9\nseed = 7\n[[params]]\nname = \"cold\"\ntemperature = 0\n[[params]]\nname = \"unset\"\n";
    sb.write("a.toml", &job(&mock.url(), "a.jsonl", "a.out.jsonl", sets));
    let out = output(run(&sb, "a.toml", &["--cache", "c"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("samples with no seed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("\"hot\""), "{err}");
    for quiet in ["seeded", "cold", "unset"] {
        assert!(!warnings[0].contains(&format!("\"{quiet}\"")), "{err}");
    }
    // Without --cache there is nothing to warn about.
    let out = output(run(&sb, "a.toml", &["--fresh"])).await;
    assert!(
        !stderr(&out).contains("samples with no seed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_store_that_is_not_ours_is_refused_before_sending() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    sb.write("a.jsonl", &rows(&[("x", "hi")]));
    sb.write("a.toml", &job(&mock.url(), "a.jsonl", "a.out.jsonl", ""));
    sb.write(
        &format!("broken/{DB}"),
        &"not a database at all ".repeat(300),
    );
    let out = output(run(&sb, "a.toml", &["--cache", "broken"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(DB) && err.contains("delete it"), "{err}");

    sb.write("a-file", "x");
    let out = output(run(&sb, "a.toml", &["--cache", "a-file"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not a folder"), "{}", stderr(&out));
    sb.write(
        "bad.toml",
        &job(
            &mock.url(),
            "a.jsonl",
            "a.out.jsonl",
            "[cache]\ndir = \"c\"\nmax_mb = 0\n",
        ),
    );
    let out = output(run(&sb, "bad.toml", &[])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("[cache] max_mb"), "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 0);
    assert!(!sb.path("a.out.jsonl").exists() || sb.read("a.out.jsonl").is_empty());
}

/// A store damaged after it was made (truncated or overwritten by something
/// else, its first page intact) fails every later run the same way: the run
/// still sends and writes every line, and says to delete the file.
#[tokio::test]
async fn a_store_damaged_later_is_said_with_what_to_do() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    sb.write("a.jsonl", &rows(&[("x", "hi"), ("y", "there")]));
    sb.write("a.toml", &job(&mock.url(), "a.jsonl", "a.out.jsonl", ""));
    let out = output(run(&sb, "a.toml", &["--cache", "c"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Every page past the first (the header and the list of tables) overwritten.
    let db = sb.path(&format!("c/{DB}"));
    let mut bytes = std::fs::read(&db).expect("the store");
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    bytes[4096..].fill(0xAB);
    std::fs::write(&db, &bytes).expect("overwritten");

    sb.write("b.toml", &job(&mock.url(), "a.jsonl", "b.out.jsonl", ""));
    let out = output(run(&sb, "b.toml", &["--cache", "c"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("could not be read"), "{err}");
    assert!(
        err.contains(DB) && err.contains("damaged: delete it"),
        "{err}"
    );
    assert_eq!(sb.records("b.out.jsonl").len(), 2);
    assert_eq!(mock.stats().requests(), 4, "both sent again");
}

#[tokio::test]
async fn a_hit_needs_no_budget() {
    let mock = priced_mock().await;
    let sb = Sandbox::new();
    let pricing = "[pricing]\nm = { input = 1.0, output = 1.0 }\n";
    sb.write("a.jsonl", &rows(&[("a", "one"), ("b", "two")]));
    sb.write(
        "a.toml",
        &job(&mock.url(), "a.jsonl", "a.out.jsonl", pricing),
    );
    let out = output(run(&sb, "a.toml", &["--cache", "c"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A budget no request fits: only what the cache answers gets a line.
    sb.write(
        "b.jsonl",
        &rows(&[("a", "one"), ("b", "two"), ("c", "three")]),
    );
    sb.write(
        "b.toml",
        &job(&mock.url(), "b.jsonl", "b.out.jsonl", pricing),
    );
    let out = output(run(
        &sb,
        "b.toml",
        &["--cache", "c", "--max-cost", "0.000000001"],
    ))
    .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let records = by_key(&sb.records("b.out.jsonl"));
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records
        .values()
        .all(|r| r["cached"] == true && r["status"] == "ok"));
    assert_eq!(mock.stats().requests(), 2);
    let summary = sb.summary("b.out.summary.json");
    assert_eq!(summary["requests"]["not_sent"], 1);
    assert_eq!(summary["stopped"], "budget");
}

#[tokio::test]
async fn simulated_runs_share_their_replies_though_the_port_changes() {
    let sb = Sandbox::new();
    sb.write("a.jsonl", &rows(&[("x", "hi"), ("y", "ho")]));
    sb.write(
        "a.toml",
        &job("http://127.0.0.1:9/unused", "a.jsonl", "a.out.jsonl", ""),
    );
    let out = output(run(&sb, "a.toml", &["--simulate", "--cache", "c"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = output(run(
        &sb,
        "a.toml",
        &["--simulate", "--cache", "c", "--fresh"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("a.out.jsonl");
    assert!(records.iter().all(|r| r["cached"] == true), "{records:?}");
}

/// `[output] json` is not part of the body the store keys: a reply kept by a
/// run that did not ask for JSON is checked as a JSON-asking run would check
/// it. One that parses is answered with its `json`; one that would be
/// `bad_output` is sent again, never passed off as `ok`.
#[tokio::test]
async fn a_reply_kept_without_json_is_checked_when_json_is_asked_for() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    let mock = priced_mock().await;
    let sb = Sandbox::new();
    let row = |id: &str, reply: &str| {
        let prompt = format!("q {id} [mock:reply={}]", STANDARD.encode(reply));
        format!("{}\n", serde_json::json!({"id": id, "prompt": prompt}))
    };
    sb.write(
        "rows.jsonl",
        &format!(
            "{}{}",
            row("good", "{\"a\": 1}"),
            row("prose", "not JSON at all")
        ),
    );
    sb.write(
        "plain.toml",
        &job(&mock.url(), "rows.jsonl", "plain.out.jsonl", ""),
    );
    sb.write(
        "json.toml",
        &job(&mock.url(), "rows.jsonl", "json.out.jsonl", "")
            .replace("[output]\n", "[output]\njson = true\n"),
    );

    let out = output(run(&sb, "plain.toml", &["--cache", "cache"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.stats().requests(), 2);

    let out = output(run(&sb, "json.toml", &["--cache", "cache"])).await;
    assert_eq!(
        code(&out),
        1,
        "the prose reply is bad_output: {}",
        stderr(&out)
    );
    assert_eq!(
        mock.stats().requests(),
        3,
        "only the prose row was sent again"
    );
    let lines = by_key(&sb.records("json.out.jsonl"));
    let good = &lines["good/default"];
    assert_eq!(good["cached"], true);
    assert_eq!(good["json"], serde_json::json!({"a": 1}));
    let prose = &lines["prose/default"];
    assert!(prose.get("cached").is_none(), "{prose}");
    assert_eq!(prose["error"]["kind"], "bad_output");

    // And the other way: a reply kept with `json` carries none for a run
    // that does not ask for it.
    let out = output(run(&sb, "plain.toml", &["--cache", "cache", "--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines = by_key(&sb.records("plain.out.jsonl"));
    assert_eq!(lines["good/default"]["cached"], true);
    assert!(lines["good/default"].get("json").is_none());
}
