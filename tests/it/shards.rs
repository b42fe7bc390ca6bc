//! Shards: four processes side by side against one mock equal one run of the
//! whole job; the divided limits hold across them; every source of K and N
//! (flags, Kubernetes, Slurm, PROMPTBATCH_SHARD) and its bad values; a bad row
//! stops every shard alike; the Kubernetes and Slurm samples as written.

use std::collections::{BTreeSet, HashSet};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

mod samples;

const SHARDS: u64 = 4;

/// `n` prompt rows with ids r1..rn.
fn rows(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"id\": \"r{i}\", \"prompt\": \"question {i}\"}}\n"))
        .collect()
}

/// The usual job, each shard writing `out/t-K-of-N.jsonl`; then `extra` TOML.
fn sharded_job(url: &str, extra: &str) -> String {
    prompt_job(
        url,
        &format!("max_tokens = 16\n[output]\npath = \"out/{{name}}-{{shard}}.jsonl\"\n{extra}"),
    )
}

/// Runs every command at once, each on its own thread; their outputs in order.
async fn side_by_side(commands: Vec<Command>) -> Vec<Output> {
    let runs: Vec<_> = commands
        .into_iter()
        .map(|cmd| tokio::spawn(output(cmd)))
        .collect();
    let mut outs = Vec::new();
    for run in runs {
        outs.push(run.await.expect("join"));
    }
    outs
}

/// The JSON log event named `name` in a run's stderr.
fn event(out: &Output, name: &str) -> Value {
    let text = stderr(out);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {text}"))
}

/// `report --json --by param_set` over `files`, without what depends on timing
/// or on how many files there were.
fn report(sb: &Sandbox, files: &[String]) -> Value {
    let mut args = vec!["report", "--json", "--by", "param_set"];
    args.extend(files.iter().map(String::as_str));
    let out = sb.command(&args).output().expect("report runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut doc: Value = serde_json::from_str(&stdout(&out)).expect("report JSON");
    fn strip(v: &mut Value) {
        if let Value::Object(map) = v {
            for timing in ["latency_ms", "ttft_ms", "span_s", "files"] {
                map.remove(timing);
            }
            map.values_mut().for_each(strip);
        } else if let Value::Array(items) = v {
            items.iter_mut().for_each(strip);
        }
    }
    strip(&mut doc);
    doc
}

fn shard_file(k: u64) -> String {
    format!("out/t-{k}-of-{SHARDS}.jsonl")
}

#[tokio::test]
async fn four_shards_side_by_side_equal_one_run_and_hold_the_divided_rate() {
    // The endpoint takes 20 requests a second; the job's limit is 600 a
    // minute (10 a second). Undivided, four shards would send 40 a second.
    let limited = MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_secs(1),
        usd_per_million: Some(2.0),
        ..MockConfig::default()
    };
    let shared = mock(limited.clone()).await;
    let sb = Sandbox::new();
    let n = 24;
    sb.write("rows.jsonl", &rows(n));
    sb.write(
        "job.toml",
        &sharded_job(&shared.url(), "[[params]]\nname = \"a\"\n"),
    );
    let commands = (0..SHARDS)
        .map(|k| {
            let shard = format!("{k}/{SHARDS}");
            let mut cmd = sb.command(&[
                "run",
                "job.toml",
                "--shard",
                &shard,
                "--rpm",
                "600",
                "--log-format",
                "json",
                "--progress",
                "off",
            ]);
            cmd.env_remove("PROMPTBATCH_SHARD");
            cmd
        })
        .collect();
    let outs = side_by_side(commands).await;
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for (k, out) in (0..SHARDS).zip(&outs) {
        assert_eq!(code(out), 0, "shard {k}: {}", stderr(out));
        let start = event(out, "start");
        assert_eq!(start["shard"], format!("{k}/{SHARDS}"), "{start}");
        assert_eq!(start["pace"]["requests_per_minute"], 150, "{start}");
        assert_eq!(start["rows"], n, "every shard checks every row");
        let message = start["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("in shard {k}/{SHARDS}")),
            "{message}"
        );
        let records = sb.records(&shard_file(k));
        assert_eq!(start["requests"], records.len(), "{start}");
        let end = event(out, "end");
        assert_eq!(end["requests"]["total"], records.len(), "{end}");
        for r in records {
            let key = r["key"].as_str().expect("key").to_string();
            assert!(seen.insert(key.clone()), "{key} is in two shards");
            all.push(key);
        }
    }
    let job: BTreeSet<String> = (1..=n).map(|i| format!("r{i}/a")).collect();
    assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), job);
    assert_eq!(shared.stats().successes(), n as u64);
    assert_eq!(shared.stats().requests(), n as u64, "nothing sent twice");
    assert_eq!(
        shared.stats().limited(),
        0,
        "the four shards together kept under the endpoint's 20 a second"
    );

    // The whole job in one run, against a mock of its own.
    let whole = mock(limited).await;
    sb.write(
        "whole.toml",
        &sharded_job(&whole.url(), "[[params]]\nname = \"a\"\n")
            .replace("out/{name}-{shard}.jsonl", "whole-{shard}.jsonl"),
    );
    let out = output(sb.command(&[
        "run",
        "whole.toml",
        "--name",
        "t",
        "--rpm",
        "600",
        "--progress",
        "off",
    ]))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("whole-0-of-1.jsonl").len(), n);
    assert_eq!(whole.stats().limited(), 0);
    let shards: Vec<String> = (0..SHARDS).map(shard_file).collect();
    let sharded = report(&sb, &shards);
    assert_eq!(sharded["totals"]["requests"]["ok"], n, "{sharded}");
    assert_eq!(sharded, report(&sb, &["whole-0-of-1.jsonl".into()]));
    shared.shutdown().await;
    whole.shutdown().await;
}

#[tokio::test]
async fn per_shard_keeps_the_full_figures() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(8))
        .job(&sharded_job(
            &mock.url(),
            "[pricing]\nm = { input = 1, output = 1 }\n[limits]\nrequests_per_minute = 6000\nmax_cost_usd = 4\nper_shard = true\n",
        ))
        .args(&["--shard", "1/4", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = event(&out, "start");
    assert_eq!(start["pace"]["requests_per_minute"], 6000, "{start}");
    assert_eq!(start["max_cost_usd"], 4.0, "{start}");
    assert_eq!(start["per_shard"], true, "{start}");
    // Without per_shard the same job is divided.
    let divided = sb.read("job.toml").replace("per_shard = true\n", "");
    let out = run_job(&sb)
        .job(&divided)
        .args(&["--shard", "1/4", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = event(&out, "start");
    assert_eq!(start["pace"]["requests_per_minute"], 1500, "{start}");
    assert_eq!(start["max_cost_usd"], 1.0, "{start}");
    mock.shutdown().await;
}

/// `validate --json` of a 40-row job with `env` set: the shard it reports,
/// or its exit code and stderr.
fn validate(sb: &Sandbox, flags: &[&str], env: &[(&str, &str)]) -> Result<Value, (i32, String)> {
    let mut args = vec!["validate", "job.toml", "--json"];
    args.extend(flags);
    let mut cmd = sb.command(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("validate runs");
    match code(&out) {
        0 => Ok(serde_json::from_str(&stdout(&out)).expect("validate JSON")),
        c => Err((c, stderr(&out))),
    }
}

/// Flags, environment, and what the message must name.
type Refused<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

fn shard_of(doc: &Value) -> (u64, u64) {
    (
        doc["shard"]["index"].as_u64().expect("index"),
        doc["shard"]["count"].as_u64().expect("count"),
    )
}

#[tokio::test]
async fn every_scheduler_says_the_shard_and_bad_values_exit_2() {
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(40));
    sb.write("job.toml", &sharded_job("http://127.0.0.1:9/v1", ""));
    let whole = validate(&sb, &[], &[]).expect("unsharded");
    assert_eq!(whole["shard"], Value::Null);
    assert_eq!(whole["requests"], 40);

    let k8s =
        validate(&sb, &["--shards", "4"], &[("JOB_COMPLETION_INDEX", "2")]).expect("Kubernetes");
    assert_eq!(shard_of(&k8s), (2, 4));
    // Slurm's --array=1-4, task 3: shard 2 of 4.
    let array = [
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_MAX", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    assert_eq!(shard_of(&validate(&sb, &[], &array).expect("1-4")), (2, 4));
    // --array=0-15:4, task 8: shard 2 of 4.
    let stepped = [
        ("SLURM_ARRAY_TASK_ID", "8"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_MAX", "12"),
        ("SLURM_ARRAY_TASK_STEP", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    assert_eq!(
        shard_of(&validate(&sb, &[], &stepped).expect("0-15:4")),
        (2, 4)
    );
    let var = validate(&sb, &[], &[("PROMPTBATCH_SHARD", "1/3")]).expect("variable");
    assert_eq!(shard_of(&var), (1, 3));
    // A flag beats every variable; PROMPTBATCH_SHARD beats Slurm's.
    let mut everything = array.to_vec();
    everything.push(("PROMPTBATCH_SHARD", "1/3"));
    everything.push(("JOB_COMPLETION_INDEX", "0"));
    let flag = validate(&sb, &["--shard", "3/5"], &everything).expect("flag");
    assert_eq!(shard_of(&flag), (3, 5));
    assert_eq!(
        shard_of(&validate(&sb, &[], &everything).expect("var")),
        (1, 3)
    );
    assert_eq!(
        shard_of(&validate(&sb, &["--shards", "2"], &everything).expect("k8s")),
        (0, 2)
    );

    // The shards' requests add up to the job's, each counted once.
    let counts: u64 = (0..4)
        .map(|k| {
            let doc = validate(&sb, &["--shard", &format!("{k}/4")], &[]).expect("shard");
            assert_eq!(doc["rows"], 40, "every row is checked");
            assert_eq!(doc["shard"]["rows"], doc["requests"]);
            doc["requests"].as_u64().expect("requests")
        })
        .sum();
    assert_eq!(counts, 40);
    // --limit takes the first rows of the job, then they are split.
    let limited: u64 = (0..4)
        .map(|k| {
            let shard = format!("{k}/4");
            let doc = validate(&sb, &["--shard", &shard, "--limit", "10"], &[]).expect("shard");
            assert_eq!(doc["rows"], 10);
            doc["requests"].as_u64().expect("requests")
        })
        .sum();
    assert_eq!(limited, 10);
    // For people too: the shard, its rows of all those checked, its limits.
    let out = sb
        .command(&["validate", "job.toml", "--shard", "1/4", "--rpm", "600"])
        .output()
        .expect("validate runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("shard 1/4: "))
        .unwrap_or_else(|| panic!("no shard line in {text}"));
    assert!(
        line.contains("of 40 checked whose id hashes to 1"),
        "{line}"
    );
    assert!(
        line.contains("150 requests/min, the job's divided"),
        "{line}"
    );

    let bad: &[Refused] = &[
        (&["--shard", "4/4"], &[], "--shard"),
        (&["--shard", "0/0"], &[], "--shard"),
        (&["--shard", "x"], &[], "--shard"),
        (&["--shards", "4"], &[], "JOB_COMPLETION_INDEX"),
        (
            &["--shards", "4"],
            &[("JOB_COMPLETION_INDEX", "4")],
            "JOB_COMPLETION_INDEX",
        ),
        (
            &["--shards", "4"],
            &[("JOB_COMPLETION_INDEX", "one")],
            "JOB_COMPLETION_INDEX",
        ),
        (&[], &[("PROMPTBATCH_SHARD", "2/2")], "PROMPTBATCH_SHARD"),
        (&[], &[("PROMPTBATCH_SHARD", "1-of-2")], "PROMPTBATCH_SHARD"),
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_STEP", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "not on the array's grid",
        ),
        (
            &[],
            &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "0")],
            "SLURM_ARRAY_TASK_COUNT",
        ),
    ];
    for (flags, env, names) in bad {
        let (code, err) = validate(&sb, flags, env).expect_err("refused");
        assert_eq!(code, 2, "{flags:?} {env:?}: {err}");
        assert!(err.contains(names), "{flags:?} {env:?}: {err}");
    }
    // Both flags at once is a usage error.
    let (code, _) = validate(&sb, &["--shard", "0/4", "--shards", "4"], &[]).expect_err("both");
    assert_eq!(code, 2);
}

#[tokio::test]
async fn one_bad_row_stops_every_shard_with_the_same_message() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let mut lines = rows(20);
    // A row with no prompt, and a duplicate id, somewhere among the shards.
    lines.push_str("{\"id\": \"r21\"}\n{\"id\": \"r3\", \"prompt\": \"again\"}\n");
    sb.write("rows.jsonl", &lines);
    sb.write("job.toml", &sharded_job(&mock.url(), ""));
    let mut messages = BTreeSet::new();
    for k in 0..SHARDS {
        let out = output(sb.command(&[
            "run",
            "job.toml",
            "--shard",
            &format!("{k}/{SHARDS}"),
            "--progress",
            "off",
        ]))
        .await;
        assert_eq!(code(&out), 2, "shard {k}: {}", stderr(&out));
        let err = unstamped_text(&stderr(&out));
        assert!(
            err.contains("rows.jsonl:21: this row has no messages or prompt"),
            "{err}"
        );
        assert!(
            err.contains("duplicate request key \"r3/default\""),
            "{err}"
        );
        messages.insert(err);
    }
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(mock.stats().requests(), 0);
    mock.shutdown().await;
}

fn unstamped_text(text: &str) -> String {
    text.lines()
        .map(|l| format!("{}\n", unstamped(l)))
        .collect()
}

#[tokio::test]
async fn a_shard_starts_at_its_share_of_the_endpoints_learned_pace() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    // What an earlier run of the whole job learned: 1200 a minute.
    let key = format!("http://127.0.0.1:{} m", mock.addr().port());
    let learned_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let state = serde_json::json!({
        "format": "promptbatch-rates/1",
        "entries": {key.clone(): {"requests_per_minute": 1200.0, "window_s": 60.0, "learned_at": learned_at}},
    });
    sb.write(".state/promptbatch/rates.json", &state.to_string());
    let out = run_job(&sb)
        .rows(&rows(12))
        .job(&sharded_job(&mock.url(), ""))
        .args(&["--shard", "0/4", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = event(&out, "start");
    assert_eq!(start["pace"]["source"], "state_file", "{start}");
    assert_eq!(start["pace"]["requests_per_minute"], 300.0, "{start}");

    // per_shard: the shard has a limit of its own, the figure is its own.
    let own = sharded_job(&mock.url(), "[limits]\nper_shard = true\n");
    let out = run_job(&sb)
        .job(&own)
        .args(&["--shard", "1/4", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = event(&out, "start");
    assert_eq!(start["pace"]["source"], "state_file", "{start}");
    let own_rpm = start["pace"]["requests_per_minute"].as_f64().expect("rpm");
    assert!((1000.0..=1400.0).contains(&own_rpm), "{start}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_shard_keeps_the_endpoints_pace_not_its_share() {
    // 20 requests a second, enforced with 429s only; one shard of four
    // meets it alone and learns about 1200 a minute: the endpoint's pace
    // kept for the whole job is four times that.
    let mock = mock(MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_secs(1),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let job = sharded_job(&mock.url(), "").replace("max_attempts = 4", "max_attempts = 30");
    let out = run_job(&sb)
        .rows(&rows(360))
        .job(&job)
        .args(&["--shard", "0/4"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(mock.stats().limited() > 0, "the shard met the limit");
    let kept: Value =
        serde_json::from_str(&sb.read(".state/promptbatch/rates.json")).expect("JSON");
    let rpm = kept["entries"]
        .as_object()
        .and_then(|e| e.values().next())
        .and_then(|e| e["requests_per_minute"].as_f64())
        .unwrap_or_else(|| panic!("no pace kept: {kept}"));
    assert!((3600.0..=4800.0).contains(&rpm), "{kept}");
    mock.shutdown().await;
}

/// Shards of one job given one output path (no `{shard}` in it) queue on
/// its lock: the one refused says why and how to give each its own file.
#[tokio::test]
async fn shards_on_one_output_without_shard_in_its_path_are_told_how_to_split_it() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let rows: String = (1..=8)
        .map(|i| format!("{{\"id\": \"r{i}\", \"prompt\": \"q{i} [mock:latency=3000]\"}}\n"))
        .collect();
    sb.write("rows.jsonl", &rows);
    sb.write(
        "job.toml",
        &prompt_job(&mock.url(), "[output]\npath = \"all.jsonl\"\n"),
    );
    let first = tokio::spawn(output(sb.command(&["run", "job.toml", "--shard", "0/2"])));
    wait_until("the first shard sending", || mock.stats().requests() > 0).await;
    let out = output(sb.command(&["run", "job.toml", "--shard", "1/2"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is being written by another promptbatch run"),
        "{err}"
    );
    assert!(
        err.contains("shard 1/2 writes an output whose path has no {shard}")
            && err.contains("--output 'out-{shard}.jsonl'"),
        "{err}"
    );
    let first = first.await.expect("the first shard");
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // One after the other they run, each told whose the other lines are.
    let out = output(sb.command(&["run", "job.toml", "--shard", "1/2"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("other shards' rows"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.records("all.jsonl").len(), 8);

    // Unsharded, the refusal is as it always was.
    let before = mock.stats().requests();
    let first = tokio::spawn(output(sb.command(&["run", "job.toml", "--fresh"])));
    wait_until("the whole run sending", || mock.stats().requests() > before).await;
    let out = output(sb.command(&["run", "job.toml"])).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!stderr(&out).contains("{shard}"), "{}", stderr(&out));
    assert_eq!(code(&first.await.expect("the run")), 0);
    mock.shutdown().await;
}

/// A Slurm array whose tasks each run a different job would run a slice of
/// each: the start line says where the shard came from, and how to run all.
#[tokio::test]
async fn a_shard_from_the_environment_is_said_with_how_to_run_the_whole_job() {
    let mock = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    sb.write("rows.jsonl", &rows(8));
    sb.write("job.toml", &sharded_job(&mock.url(), ""));
    let mut cmd = sb.command(&["run", "job.toml"]);
    cmd.env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "2");
    let out = output(cmd).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("in shard 1/2 (")
            && err.contains(
                "from the Slurm array's variables: --shard 0/1 runs the whole job in each task)"
            ),
        "{err}"
    );
    let out = output(sb.command(&["run", "job.toml", "--shard", "0/2"])).await;
    assert!(stderr(&out).contains("; from --shard)"), "{}", stderr(&out));
    mock.shutdown().await;
}
