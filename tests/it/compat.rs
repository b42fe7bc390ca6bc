//! The compatibility matrix: each server's answers as its documentation shows
//! them (tests/fixtures/compat/<server>/*.http, sources in the README there),
//! replayed verbatim by the mock through the real binary, and the records
//! they make checked field by field.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::*;
use promptbatch::mock::Replay;

fn folder(server: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/compat/{server}"))
}

/// Every fixture of `server` sent once, one at a time, in name order with
/// `error` last (a refusal would stop the rest), no retry; the records by fixture
/// name and the exit code. `pricing` is TOML under `[pricing]`.
async fn replay(server: &str, pricing: &str) -> (HashMap<String, Value>, i32, Sandbox) {
    let replay = Replay::load(&folder(server)).expect("the fixtures load");
    let mut names: Vec<String> = replay.names().map(str::to_string).collect();
    names.sort_by_key(|n| (n == "error", n.clone()));
    let mock = mock(MockConfig {
        replay: Some(Arc::new(replay)),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    let rows: String = names
        .iter()
        .map(|name| {
            let stream = name.starts_with("stream") || name == "cut";
            format!(
                "{}\n",
                json!({"id": name, "prompt": "Hello!", "params": {"model": name, "stream": stream}})
            )
        })
        .collect();
    let job = format!(
        "name = \"c\"\n[endpoint]\nurl = \"{}\"\ntimeout_secs = 5\n[input]\npath = \"rows.jsonl\"\n[limits]\nconcurrency = 1\n[retry]\nmax_attempts = 1\n[defaults]\nmax_tokens = 100\n[pricing]\n{pricing}\n",
        mock.url()
    );
    let out = run_job(&sb).job(&job).rows(&rows).output().await;
    let code = code(&out);
    let records = sb
        .records("c.jsonl")
        .into_iter()
        .map(|r| (r["id"].as_str().expect("id").to_string(), r))
        .collect();
    (records, code, sb)
}

fn usage(prompt: u64, completion: u64, total: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total})
}

/// The fields of an `ok` record the matrix checks.
#[track_caller]
fn assert_ok(r: &Value, content: &str, finish: &str, usage: Value) {
    assert_eq!(r["status"], "ok", "{r:#}");
    assert_eq!(r["content"], content, "{r:#}");
    assert_eq!(r["finish_reason"], finish, "{r:#}");
    assert_eq!(r["usage"], usage, "{r:#}");
}

#[track_caller]
fn assert_error(r: &Value, kind: &str, status: u16, message: &str) {
    assert_eq!(r["status"], "error", "{r:#}");
    assert_eq!(r["error"]["kind"], kind, "{r:#}");
    assert_eq!(r["error"]["status"], status, "{r:#}");
    let text = r["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "{message:?} not in {text:?}");
    assert_eq!(r["content"], Value::Null);
}

#[tokio::test]
async fn openai() {
    let (r, code, sb) = replay("openai", "\"reply\" = { input = 1.0, output = 2.0 }").await;
    // The refusal is the last request: nothing was left to stop, so exit 1.
    assert_eq!(code, 1);
    let mut with_details = usage(19, 10, 29);
    with_details["cached_tokens"] = json!(0);
    with_details["reasoning_tokens"] = json!(0);
    assert_ok(
        &r["reply"],
        "Hello! How can I assist you today?",
        "stop",
        with_details,
    );
    assert_eq!(r["reply"]["response_model"], "gpt-4.1-2025-04-14");
    assert_eq!(
        r["reply"]["response_id"],
        "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    );
    // [pricing] for the requested model: 19 x $1 + 10 x $2 per 1M tokens.
    assert_eq!(r["reply"]["cost_source"], "pricing");
    assert!((r["reply"]["cost_usd"].as_f64().expect("cost") - 39e-6).abs() < 1e-12);
    // The documented stream has no usage chunk: usage null, counted as unreported.
    assert_ok(&r["stream"], "Hello", "stop", Value::Null);
    assert_eq!(r["stream"]["cost_usd"], Value::Null);
    assert!(r["stream"]["ttft_ms"].is_number());
    let mut streamed = usage(9, 12, 21);
    streamed["cached_tokens"] = json!(0);
    streamed["reasoning_tokens"] = json!(0);
    assert_ok(&r["stream-usage"], "Hello", "stop", streamed);
    assert_error(&r["error"], "auth", 401, "Incorrect API key provided");
    let summary = sb.summary("c.summary.json");
    assert_eq!(summary["tokens"]["unreported"], 1, "{summary:#}");
}

#[tokio::test]
async fn openrouter() {
    let (r, code, _sb) = replay("openrouter", "").await;
    assert_eq!(code, 1);
    // usage.cost 0 is a real zero (a free model), from the provider.
    let mut reported = usage(10, 0, 10);
    reported["cached_tokens"] = json!(0);
    reported["reasoning_tokens"] = json!(0);
    let reply = &r["reply"];
    assert_eq!(reply["status"], "ok");
    assert!(reply["content"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Okay, this is a *huge* question"));
    assert_eq!(reply["finish_reason"], "stop");
    assert_eq!(reply["usage"], reported);
    assert_eq!(reply["cost_usd"], 0.0);
    assert_eq!(reply["cost_source"], "provider");
    assert_eq!(reply["provider"], "Google AI Studio");
    assert_eq!(reply["response_model"], "google/gemma-3-4b-it:free");
    // Comment keep-alives skipped; usage and cost from the last chunk.
    let mut streamed = usage(10, 9, 19);
    streamed["cached_tokens"] = json!(4);
    streamed["reasoning_tokens"] = json!(2);
    assert_ok(
        &r["stream"],
        "Okay, this is a huge question.",
        "stop",
        streamed,
    );
    assert_eq!(r["stream"]["cost_usd"], 0.0000042);
    assert_eq!(r["stream"]["cost_source"], "provider");
    assert_eq!(r["stream"]["provider"], "Google AI Studio");
    // BYOK: the upstream cost is added to OpenRouter's fee.
    assert_ok(&r["byok"], "Cut at the cap", "length", usage(12, 5, 17));
    assert!((r["byok"]["cost_usd"].as_f64().expect("cost") - 0.00002).abs() < 1e-12);
    assert_error(&r["error"], "auth", 402, "Insufficient credits");
}

#[tokio::test]
async fn aimlapi() {
    let (r, code, _sb) = replay("aimlapi", "\"reply\" = { input = 0.02, output = 0.04 }").await;
    assert_eq!(code, 1, "a 400 fails its request only");
    let content = "Hello! I'm just a program, so I don't have feelings, but I'm here and ready to help you. How can I assist you today?";
    for name in ["reply", "header-cost", "credits", "meta-usage"] {
        assert_ok(&r[name], content, "stop", usage(137, 914, 1051));
        assert_eq!(r[name]["response_model"], "google/gemma-3-4b-it");
        assert_eq!(r[name]["provider"], Value::Null);
    }
    assert_eq!(r["reply"]["cost_source"], "pricing");
    assert_eq!(r["header-cost"]["cost_usd"], 0.000021);
    assert_eq!(r["header-cost"]["cost_source"], "provider");
    // $1 = 2,000,000 credits.
    assert_eq!(r["credits"]["cost_usd"], 0.001051);
    // usd_spent wins over credits_used.
    assert_eq!(r["meta-usage"]["cost_usd"], 0.001051);
    assert_eq!(r["meta-usage"]["cost_source"], "provider");
    assert_error(
        &r["error"],
        "invalid_request",
        400,
        "role \"system\" is not supported",
    );
}

#[tokio::test]
async fn vllm() {
    let (r, code, _sb) = replay("vllm", "").await;
    assert_eq!(code, 1);
    assert_ok(
        &r["reply"],
        "Hello! How can I help you today?",
        "stop",
        usage(10, 10, 20),
    );
    assert_eq!(r["reply"]["response_model"], "google/gemma-3-27b-it");
    assert_eq!(r["reply"]["cost_source"], Value::Null);
    // An empty tool_calls list is no tool call.
    assert!(r["reply"].get("tool_calls").is_none(), "{:#}", r["reply"]);
    assert_ok(&r["stream"], "Hello!", "length", usage(10, 2, 12));
    assert_error(
        &r["error"],
        "invalid_request",
        400,
        "maximum context length is 8192 tokens",
    );
}

#[tokio::test]
async fn llamacpp() {
    let (r, code, _sb) = replay("llamacpp", "").await;
    assert_eq!(code, 1, "the cut stream fails");
    let mut reported = usage(44, 48, 92);
    reported["cached_tokens"] = json!(0);
    assert_ok(
        &r["reply"],
        "Why did the python raise? It could not handle the exception.",
        "stop",
        reported,
    );
    // A stream ended by [DONE] before any finish_reason is cut short, never ok.
    let cut = &r["cut"];
    assert_eq!(cut["status"], "error", "{cut:#}");
    assert_eq!(cut["content"], Value::Null);
    assert_eq!(cut["uncertain_attempts"], 1, "{cut:#}");
}

#[tokio::test]
async fn ollama() {
    let (r, code, _sb) = replay("ollama", "").await;
    assert_eq!(code, 1, "a 404 fails its request only");
    assert_ok(
        &r["reply"],
        "Hello! How can I help you today?",
        "stop",
        usage(11, 10, 21),
    );
    assert_eq!(r["reply"]["response_model"], "gemma3:4b");
    assert_ok(&r["stream"], "Hello!", "stop", Value::Null);
    assert_error(
        &r["error"],
        "not_found",
        404,
        "not found, try pulling it first",
    );
}

#[tokio::test]
async fn gemini() {
    let (r, code, _sb) = replay("gemini", "").await;
    assert_eq!(code, 0);
    assert_ok(
        &r["reply"],
        "Hello! How can I help you today?",
        "stop",
        usage(5, 10, 15),
    );
    assert_eq!(r["reply"]["response_model"], "gemini-2.0-flash");
    assert_ok(
        &r["stream"],
        "Hello! How can I help you today?",
        "stop",
        usage(5, 10, 15),
    );
}

/// The README's matrix names every fixture folder, and every folder has its sources.
#[test]
fn the_readme_matrix_and_the_sources_cover_every_fixture_folder() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let sources = std::fs::read_to_string(folder("README.md")).expect("compat README");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compat");
    let mut servers = 0;
    for entry in std::fs::read_dir(&root).expect("compat folder") {
        let path = entry.expect("entry").path();
        if !path.is_dir() {
            continue;
        }
        servers += 1;
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "README.md's compatibility table lacks a row for {name}"
        );
        for file in std::fs::read_dir(&path).expect("server folder") {
            let file = file
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                sources.contains(&format!("`{name}/{file}`")),
                "tests/fixtures/compat/README.md gives no source for {name}/{file}"
            );
        }
    }
    assert_eq!(servers, 7);
}

/// A model with no recorded answer gets a 404 naming those there are: the
/// request chooses among what the mock loaded, never a path.
#[tokio::test]
async fn a_model_without_a_recorded_answer_is_a_404_listing_the_names() {
    let replay = Replay::load(&folder("gemini")).expect("loads");
    let mock = mock(MockConfig {
        replay: Some(Arc::new(replay)),
        ..MockConfig::default()
    })
    .await;
    let sb = Sandbox::new();
    // A 404 is not retried: one attempt.
    let job = prompt_job(&mock.url(), "").replace("model = \"m\"", "model = \"../openai/reply\"");
    let out = run_job(&sb)
        .job(&job)
        .rows("{\"prompt\":\"hi\"}\n")
        .output()
        .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let record = &sb.records("t.jsonl")[0];
    assert_error(
        record,
        "not_found",
        404,
        "no recorded answer named \"../openai/reply\"",
    );
    assert!(record["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("reply, stream"));
}
