//! Several endpoints (`[[endpoints]]`): the weighted split counted at each
//! mock, failover on 5xx and on connection errors, endpoints taken out of
//! rotation on refusals, exit 4 when none is left for a model, `models`
//! lists, resume, and `endpoint` on records only when the job has several.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// One `[[endpoints]]` entry: name, url, then extra TOML lines.
fn entry(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\napi_key_env = \"AIMLAPI_API_KEY\"\nheaders = {{ \"x-api-key\" = \"{SENTINEL_HEADER}\" }}\ntimeout_secs = 5\n{extra}\n"
    )
}

/// A job of prompt rows over `entries`, model "m", then `extra` TOML.
fn job(entries: &[String], extra: &str) -> String {
    format!(
        "name = \"t\"\n[input]\npath = \"rows.jsonl\"\n[defaults]\nmodel = \"m\"\n[retry]\nmax_attempts = 4\ninitial_backoff_ms = 1\nmax_backoff_ms = 20\n{extra}\n{}",
        entries.concat()
    )
}

fn rows(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"prompt\": \"q{i}\"}}\n"))
        .collect()
}

/// How many records each endpoint answered.
fn answered_by(records: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        let name = r["endpoint"].as_str().unwrap_or("(none)").to_string();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn weights_1_1_2_split_the_requests_25_25_50() {
    let mocks = [
        mock(MockConfig::default()).await,
        mock(MockConfig::default()).await,
        mock(MockConfig::default()).await,
    ];
    let sb = Sandbox::new();
    let entries = [
        entry("a", &mocks[0].url(), "weight = 1"),
        entry("b", &mocks[1].url(), ""),
        entry("c", &mocks[2].url(), "weight = 2"),
    ];
    let out = run_job(&sb)
        .rows(&rows(400))
        .job(&job(&entries, "[limits]\nconcurrency = 8\n"))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let counts: Vec<u64> = mocks.iter().map(|m| m.stats().requests()).collect();
    for (count, share) in counts.iter().zip([100.0, 100.0, 200.0]) {
        assert!(
            (*count as f64 - share).abs() <= 12.0,
            "counted at the mocks: {counts:?}"
        );
    }
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 400);
    let by = answered_by(&records);
    assert_eq!(by["a"] as u64, counts[0]);
    assert_eq!(by["b"] as u64, counts[1]);
    assert_eq!(by["c"] as u64, counts[2]);
    // The summary's per-endpoint figures are the same counts, and the report's groups too.
    let summary = sb.summary("t.summary.json");
    for (name, count) in ["a", "b", "c"].iter().zip(&counts) {
        assert_eq!(
            summary["by_endpoint"][name]["requests"]["ok"], *count,
            "{name}"
        );
        assert_eq!(
            summary["by_endpoint"][name]["requests"]["failed"], 0,
            "{name}"
        );
    }
    let out = sb
        .command(&["report", "t.jsonl", "--by", "endpoint", "--format", "json"])
        .output()
        .expect("report runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let groups: Vec<(String, u64)> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let name = g["endpoint"].as_str().expect("named").to_string();
            (name, g["requests"]["ok"].as_u64().expect("count"))
        })
        .collect();
    let expected: Vec<(String, u64)> = ["a", "b", "c"]
        .iter()
        .map(|n| n.to_string())
        .zip(counts.iter().copied())
        .collect();
    assert_eq!(groups, expected);
    for m in mocks {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn a_5xx_is_retried_on_another_endpoint() {
    let broken = mock(MockConfig {
        rate_500: 1.0,
        ..MockConfig::default()
    })
    .await;
    let good = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [
        entry("broken", &broken.url(), ""),
        entry("good", &good.url(), ""),
    ];
    let out = run_job(&sb)
        .rows(&rows(60))
        .job(&job(&entries, "[limits]\nconcurrency = 2\n"))
        .args(&["--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let warned = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "endpoint_failing")
        .unwrap_or_else(|| panic!("no endpoint_failing event in {err}"));
    assert_eq!(warned["endpoint"], "broken", "{warned}");
    assert_eq!(warned["level"], "warn", "{warned}");
    assert!(
        (warned["message"].as_str()).is_some_and(|m| m.contains("failed 20 attempts in a row")),
        "{warned}"
    );
    // Past that it is tried only when the good one is busy (it never is).
    assert!(
        broken.stats().requests() <= 22,
        "{}",
        broken.stats().requests()
    );
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 60);
    assert!(records
        .iter()
        .all(|r| r["status"] == "ok" && r["endpoint"] == "good"));
    assert!(broken.stats().requests() > 0, "the broken one was tried");
    // Never retried on the broken one: one attempt there, one on the good one.
    assert!(records.iter().all(|r| r["attempts"].as_u64() <= Some(2)));
    broken.shutdown().await;
    good.shutdown().await;
}

#[tokio::test]
async fn a_connection_error_is_retried_on_another_endpoint() {
    let good = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let closed = format!("http://127.0.0.1:{}/v1/chat/completions", closed_port());
    let entries = [entry("closed", &closed, ""), entry("good", &good.url(), "")];
    let out = run_job(&sb)
        .rows(&rows(30))
        .job(&job(&entries, ""))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 30);
    assert!(records
        .iter()
        .all(|r| r["status"] == "ok" && r["endpoint"] == "good"));
    assert_eq!(good.stats().requests(), 30);
    good.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_refusing_its_key_is_taken_out_and_the_run_ends_ok_on_the_others() {
    let refusing = mock(MockConfig {
        require_key: Some("right".into()),
        ..MockConfig::default()
    })
    .await;
    let good = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [
        entry("refusing", &refusing.url(), "").replace("\"AIMLAPI_API_KEY\"", "\"WRONG_KEY\""),
        entry("good", &good.url(), ""),
    ];
    let out = run_job(&sb)
        .rows(&rows(30))
        .job(&job(&entries, "[limits]\nconcurrency = 1\n"))
        .env("WRONG_KEY", "wrong")
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("endpoint \"refusing\" refuses every request")
            && err.contains("taken out of rotation"),
        "{err}"
    );
    assert_eq!(
        refusing.stats().requests(),
        3,
        "out after 3 refusals in a row"
    );
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 30);
    assert!(records
        .iter()
        .all(|r| r["status"] == "ok" && r["endpoint"] == "good"));
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], Value::Null);
    refusing.shutdown().await;
    good.shutdown().await;
}

#[tokio::test]
async fn every_endpoint_of_a_model_refusing_stops_the_run_with_exit_4() {
    let a = mock(MockConfig {
        require_key: Some("right".into()),
        ..MockConfig::default()
    })
    .await;
    let b = mock(MockConfig {
        require_key: Some("right".into()),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let entries = [entry("a", &a.url(), ""), entry("b", &b.url(), "")];
    let out = run_job(&sb)
        .rows(&rows(40))
        .job(&job(&entries, "[limits]\nconcurrency = 1\n"))
        .output()
        .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("a: HTTP 401") && err.contains("b: HTTP 401"),
        "{err}"
    );
    let summary = sb.summary("t.summary.json");
    assert_eq!(summary["stopped"], "endpoint_refused");
    assert!(
        summary["requests"]["not_sent"].as_u64() > Some(30),
        "{summary}"
    );
    assert!(a.stats().requests() <= 6 && b.stats().requests() <= 6);
    // Taken out on the input's last request, the run still stops with exit 4.
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(1))
        .job(&job(&entries, ""))
        .output()
        .await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let record = &sb.records("t.jsonl")[0];
    assert_eq!(record["error"]["kind"], "auth", "{record}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn models_lists_send_each_model_only_where_it_is_served() {
    let cheap = mock(MockConfig::default()).await;
    let big = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [
        entry("cheap", &cheap.url(), "models = [\"small\"]"),
        entry("big", &big.url(), "models = [\"large\"]"),
    ];
    let sets = "[[params]]\nname = \"s\"\nmodel = \"small\"\n[[params]]\nname = \"l\"\nmodel = \"large\"\n";
    let out = run_job(&sb)
        .rows(&rows(10))
        .job(&job(&entries, sets))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 20);
    for r in &records {
        let want = if r["model"] == "small" {
            "cheap"
        } else {
            "big"
        };
        assert_eq!(r["endpoint"], want, "{r}");
    }
    assert_eq!(cheap.stats().requests(), 10);
    assert_eq!(big.stats().requests(), 10);
    // A model no endpoint serves is refused before anything is sent.
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(3))
        .job(&job(&entries, "").replace("model = \"m\"", "model = \"other\""))
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("\"other\"") && err.contains("\"cheap\" serves [\"small\"]"),
        "{err}"
    );
    // So is one a row asks for in its own params.
    let out = run_job(&sb)
        .rows("{\"prompt\": \"q\", \"params\": {\"model\": \"rowmodel\"}}\n")
        .job(&job(&entries, sets))
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("\"rowmodel\" that rows of the input ask for"),
        "{err}"
    );
    assert_eq!(cheap.stats().requests() + big.stats().requests(), 20);
    cheap.shutdown().await;
    big.shutdown().await;
}

#[tokio::test]
async fn a_rerun_resends_nothing_and_keeps_one_line_per_key() {
    let a = mock(MockConfig {
        rate_500: 0.3,
        ..MockConfig::default()
    })
    .await;
    let b = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [entry("a", &a.url(), ""), entry("b", &b.url(), "")];
    // With a budget, so its promise is checked over several endpoints too.
    let budgeted = job(
        &entries,
        "[limits]\nmax_cost_usd = 1\n[pricing]\nm = { input = 1, output = 1 }\n",
    )
    .replace("model = \"m\"\n", "model = \"m\"\nmax_tokens = 50\n");
    let out = run_job(&sb).rows(&rows(40)).job(&budgeted).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sent = a.stats().successes() + b.stats().successes();
    assert_eq!(sent, 40);
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 40);
    assert!(records.iter().all(|r| r["budget_charge_usd"].is_number()));
    let out = run_job(&sb).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        a.stats().successes() + b.stats().successes(),
        40,
        "nothing sent again"
    );
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 40, "one line per key");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn job_file_mistakes_are_exit_2_naming_the_key_or_endpoint() {
    let sb = Sandbox::new();
    let url = "http://127.0.0.1:9/v1/chat/completions";
    let both = format!("{}{}", job_toml(url, ""), entry("a", url, ""));
    let cases = [
        (both, "[endpoint] and [[endpoints]] are exclusive"),
        (
            job(&[entry("a", url, "wieght = 2")], ""),
            "did you mean \"weight\"",
        ),
        (
            job(&[entry("a", url, ""), entry("a", url, "")], ""),
            "names must be unique",
        ),
        (job(&[entry("a", url, "weight = 0")], ""), "weight"),
        (
            job(
                &[entry("a", url, "").replace("\"AIMLAPI_API_KEY\"", "\"UNSET_KEY_VAR\"")],
                "",
            ),
            "endpoint \"a\": the API key variable UNSET_KEY_VAR",
        ),
    ];
    for (toml, want) in cases {
        let out = run_job(&sb).rows(&rows(2)).job(&toml).output().await;
        assert_eq!(code(&out), 2, "{toml}\n{}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "want {want:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn records_name_no_endpoint_for_a_job_of_one() {
    let m = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let out = run_job(&sb)
        .rows(&rows(3))
        .job(&prompt_job(&m.url(), ""))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| r.get("endpoint").is_none()),
        "{records:?}"
    );
    m.shutdown().await;
}

#[tokio::test]
async fn a_simulated_run_keeps_every_endpoint_apart() {
    let sb = Sandbox::new();
    let url = "https://api.example.com/v1/chat/completions";
    let entries = [
        entry("a", url, "").replace("\"AIMLAPI_API_KEY\"", "\"NOT_SET_ANYWHERE\""),
        entry("b", url, "weight = 3"),
    ];
    let out = run_job(&sb)
        .rows(&rows(40))
        .job(&job(&entries, ""))
        .args(&["--simulate"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let by = answered_by(&sb.records("t.jsonl"));
    // 1:3 within a few requests (an endpoint still waiting for its first
    // answer's rate figures may be passed over for a moment).
    assert_eq!(by["a"] + by["b"], 40, "{by:?}");
    assert!(by["a"].abs_diff(10) <= 3, "{by:?}");
}

#[tokio::test]
async fn an_endpoint_at_a_third_of_the_others_rate_adds_its_share_and_bounces_at_most_1_percent() {
    // Limits announced in rate headers, as OpenAI does: "slow" allows 5
    // requests per 250 ms, the two others 15 each.
    let limited = |n: u64| MockConfig {
        limit_requests: n,
        limit_window: Duration::from_millis(250),
        rate_headers: true,
        ..MockConfig::default()
    };
    let mocks = [
        mock(limited(5)).await,
        mock(limited(15)).await,
        mock(limited(15)).await,
    ];
    let sb = Sandbox::new();
    let entries = [
        entry("slow", &mocks[0].url(), ""),
        entry("fast1", &mocks[1].url(), ""),
        entry("fast2", &mocks[2].url(), ""),
    ];
    let started = std::time::Instant::now();
    let out = run_job(&sb)
        .rows(&rows(300))
        .job(&job(&entries, "[limits]\nconcurrency = 32\n"))
        .output()
        .await;
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), 300);
    // One fast endpoint alone needs at least 300 / 15 windows less one: 4.75 s.
    assert!(
        took < Duration::from_millis(4_750),
        "{took:?}: no faster than a single endpoint"
    );
    let slow = &mocks[0].stats();
    assert!(
        slow.successes() >= 20,
        "the slow one took its share: {}",
        slow.successes()
    );
    assert!(
        slow.limited() * 100 <= slow.requests().max(100),
        "{} of {} bounced at the slow endpoint",
        slow.limited(),
        slow.requests()
    );
    for m in mocks {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn a_retry_on_another_endpoint_does_not_wait_for_the_failed_ones_retry_after() {
    // Every answer of "busy" is a 429 asking for a second's wait.
    let busy = mock(MockConfig {
        rate_429: 1.0,
        ..MockConfig::default()
    })
    .await;
    let good = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [
        entry("busy", &busy.url(), ""),
        entry("good", &good.url(), ""),
    ];
    let out = run_job(&sb)
        .rows(&rows(1))
        .job(&job(&entries, ""))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    let r = &records[0];
    assert_eq!(
        (r["endpoint"].as_str(), r["attempts"].as_u64()),
        (Some("good"), Some(2)),
        "{r}"
    );
    assert_eq!(
        busy.stats().requests(),
        1,
        "the first choice of equal weights"
    );
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(r[field].as_str().expect(field)).expect(field)
    };
    let took = at("finished_at") - at("started_at");
    assert!(
        took < chrono::Duration::milliseconds(900),
        "{took:?}: waited for the busy endpoint's Retry-After"
    );
}

#[tokio::test]
async fn several_keys_of_one_url_keep_a_learned_pace_each_in_the_state_file() {
    // One provider, two keys: 20 requests per 500 ms, told by 429s only.
    let m = mock(MockConfig {
        limit_requests: 20,
        limit_window: Duration::from_millis(500),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let entries = [entry("key-a", &m.url(), ""), entry("key-b", &m.url(), "")];
    let out = run_job(&sb)
        .rows(&rows(200))
        .job(&job(&entries, "[limits]\nconcurrency = 32\n"))
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(m.stats().limited() > 0, "the limit was met");
    let kept: Value =
        serde_json::from_str(&sb.read(".state/promptbatch/rates.json")).expect("state JSON");
    let port = m.addr().port();
    let entries_kept = kept["entries"].as_object().expect("entries");
    let key = |name: &str| format!("http://127.0.0.1:{port} m @{name}");
    assert!(
        entries_kept.contains_key(&key("key-a")) && entries_kept.contains_key(&key("key-b")),
        "{kept}"
    );
    assert!(
        !entries_kept.contains_key(&format!("http://127.0.0.1:{port} m")),
        "no entry of a single endpoint: {kept}"
    );
    // The next run starts each at its own pace, and says so.
    let out = run_job(&sb)
        .args(&["--fresh", "--log-format", "json"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "start")
        .expect("a start event");
    let listed = start["endpoints"].as_array().expect("endpoints listed");
    assert_eq!(listed.len(), 2, "{start}");
    assert_eq!(listed[0]["name"], "key-a");
    assert_eq!(listed[0]["host"], format!("127.0.0.1:{port}"));
    assert!(
        listed.iter().any(|e| e["pace"]["source"] == "state_file"),
        "{start}"
    );
    m.shutdown().await;
}

#[tokio::test]
async fn the_samples_run_with_simulate_and_show_the_split() {
    let sb = Sandbox::new();
    for (sample, names) in [
        ("several-keys", &["key-a", "key-b", "team"][..]),
        ("failover", &["aimlapi", "openrouter"][..]),
    ] {
        let job = format!("{}/samples/{sample}.toml", env!("CARGO_MANIFEST_DIR"));
        let output = format!("{sample}.jsonl");
        let out = output_of(&sb, &["run", &job, "--simulate", "--output", &output]).await;
        assert_eq!(code(&out), 0, "{sample}: {}", stderr(&out));
        let records = sb.records(&output);
        assert_eq!(records.len(), 25, "{sample}");
        let by = answered_by(&records);
        for name in names {
            assert!(by.get(*name).is_some_and(|n| *n > 0), "{sample}: {by:?}");
        }
    }
}

/// `promptbatch ARGS` in the sandbox, progress off.
async fn output_of(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let mut args = args.to_vec();
    args.extend(["--progress", "off"]);
    output(sb.command(&args)).await
}

#[tokio::test]
async fn the_cache_answers_a_request_any_endpoint_of_the_job_answered_before() {
    let a = mock(MockConfig::default()).await;
    let b = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [entry("a", &a.url(), ""), entry("b", &b.url(), "")];
    let out = run_job(&sb)
        .rows(&rows(6))
        .job(&job(&entries, ""))
        .args(&["--cache", "cache"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sent = a.stats().requests() + b.stats().requests();
    assert_eq!(sent, 6);
    // The same job with the endpoints listed the other way round: every
    // reply comes from the cache, whichever endpoint gave it.
    let swapped = [entries[1].clone(), entries[0].clone()];
    let out = run_job(&sb)
        .job(&job(&swapped, ""))
        .args(&["--cache", "cache", "--fresh"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r["cached"] == true), "{records:?}");
    assert_eq!(
        a.stats().requests() + b.stats().requests(),
        6,
        "nothing sent"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_jobs_own_rate_holds_over_all_its_endpoints_together() {
    let a = mock(MockConfig::default()).await;
    let b = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let entries = [entry("a", &a.url(), ""), entry("b", &b.url(), "")];
    let started = std::time::Instant::now();
    // 1,200 a minute is one request per 50 ms, whichever endpoint takes it.
    let out = run_job(&sb)
        .rows(&rows(21))
        .job(&job(&entries, ""))
        .args(&["--rpm", "1200"])
        .output()
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "{took:?}: faster than --rpm"
    );
    assert!(a.stats().requests() > 0 && b.stats().requests() > 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// With several endpoints the run's end says each one's pace: the table a
/// line per endpoint, the JSON `end` event `endpoint_paces` by name.
#[tokio::test]
async fn the_end_says_each_endpoints_pace() {
    let mocks = [
        mock(MockConfig::default()).await,
        mock(MockConfig::default()).await,
    ];
    let sb = Sandbox::new();
    let entries = [
        entry("slow", &mocks[0].url(), "requests_per_minute = 6000"),
        entry("free", &mocks[1].url(), ""),
    ];
    sb.write("t.toml", &job(&entries, ""));
    sb.write("rows.jsonl", &rows(20));
    let out =
        output(sb.command(&["run", "t.toml", "--progress", "off", "--log-format", "json"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let end: Value = (stderr(&out).lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "end")
        .expect("an end event");
    let paces = &end["endpoint_paces"];
    assert_eq!(paces["slow"]["requests_per_minute"], 6000.0, "{end:#}");
    assert_eq!(paces["free"]["requests_per_minute"], Value::Null, "{end:#}");

    let out = output(sb.command(&["run", "t.toml", "--progress", "off", "--fresh"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("slow: 6000 requests/min"), "{text}");
    assert!(text.contains("free: none"), "{text}");
    for m in mocks {
        m.shutdown().await;
    }
}
