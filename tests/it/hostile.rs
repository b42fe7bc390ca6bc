//! Promises that hold against hostile servers: the real binary against a small
//! adversarial HTTP server (not the product's mock) that sends what no good
//! server would: a body of hundreds of megabytes, one that never ends, a
//! stream that never finishes, nothing but `: ping` comments, a trickle, a
//! stream ended before its finish reason, a redirect to another origin, bad
//! UTF-8, an error object inside a 200.
//!
//! Every run must end in time, with the right record, the right number of
//! requests and a bounded peak memory (the child's own high-water mark). To add a
//! scenario: one variant in `server::Behaviour`, its bytes in `Behaviour::answer`,
//! and a test that runs it.

mod memory;
mod server;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use server::{Behaviour, Hostile};

const KEY: &str = "sk-hostile-test-key";
const SECRET_HEADER: &str = "hostile-secret-header-value";
/// No run here may take longer; a run still going then is killed and fails its test.
const WALL: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// How a run of the binary ended.
struct Finished {
    code: i32,
    stderr: String,
    elapsed: Duration,
    /// The child's peak resident memory; None when the run ended before it
    /// could be sampled (a run of a few milliseconds).
    peak_rss_bytes: Option<u64>,
}

/// Runs the child to its end and measures its peak memory; kills it past
/// [`WALL`] + 30 s so a broken bound fails the test instead of hanging it.
///
/// On Linux the peak is the child's own `VmHWM`, sampled every few
/// milliseconds from /proc once it runs our binary: `ru_maxrss` from `wait4`
/// also counts the memory of the test process it was spawned from (the kernel
/// carries the pre-exec high-water mark over), so it grows with whatever the
/// other tests hold. Elsewhere `ru_maxrss` is the best there is.
// The child is reaped by wait4 (which also gives its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
async fn run_measured(mut cmd: Command, stderr_path: std::path::PathBuf) -> Finished {
    tokio::task::spawn_blocking(move || {
        let stderr_file = File::create(&stderr_path).expect("stderr file");
        cmd.stdout(Stdio::null()).stderr(stderr_file);
        let program = std::path::PathBuf::from(cmd.get_program());
        let started = Instant::now();
        let child = cmd.spawn().expect("the binary starts");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        let (ended, watch) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let mut peak_kib = 0u64;
            loop {
                match watch.recv_timeout(Duration::from_millis(5)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return peak_kib,
                }
                if started.elapsed() > WALL + Duration::from_secs(30) {
                    // SAFETY: kill(2) on our own child, which has not been reaped yet.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if let Some(kib) = own_peak_kib(pid, &program) {
                    peak_kib = peak_kib.max(kib);
                }
            }
        });
        let mut status = 0;
        // SAFETY: rusage is plain data, filled by wait4 for the child we started.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let elapsed = started.elapsed();
        let _ = ended.send(());
        let sampled_kib = watchdog.join().expect("watchdog");
        assert_eq!(reaped, pid, "wait4 failed");
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
        let peak_rss_bytes = if cfg!(target_os = "linux") {
            (sampled_kib > 0).then_some(sampled_kib * 1024)
        } else if cfg!(target_os = "macos") {
            Some(max_rss)
        } else {
            Some(max_rss * 1024)
        };
        Finished {
            code,
            stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            elapsed,
            peak_rss_bytes,
        }
    })
    .await
    .expect("join")
}

/// The high-water mark of resident memory (KiB) of `pid` once it runs
/// `program`; None before its exec, after its exit, or off Linux.
fn own_peak_kib(pid: libc::pid_t, program: &std::path::Path) -> Option<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    if exe.file_name() != program.file_name() {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One scenario: the job's endpoint bounds and whether it streams.
struct Scenario {
    stream: bool,
    timeout_secs: u64,
    max_attempt_secs: u64,
    max_reply_bytes: Option<u64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            stream: false,
            timeout_secs: 30,
            max_attempt_secs: 60,
            max_reply_bytes: Some(MIB),
        }
    }
}

/// Runs one request through the real binary against `url` (2 attempts at most):
/// how the run ended and its one record.
async fn run(url: &str, scenario: Scenario) -> (Finished, Value) {
    let sb = Sandbox::new();
    let cap = scenario
        .max_reply_bytes
        .map(|bytes| format!("max_reply_bytes = {bytes}\n"))
        .unwrap_or_default();
    let job = format!(
        r#"name = "t"
[endpoint]
url = "{url}"
api_key_env = "HOSTILE_KEY"
timeout_secs = {timeout}
max_attempt_secs = {deadline}
{cap}headers = {{ "x-api-key" = "{SECRET_HEADER}", "X-Custom" = "custom" }}
[input]
path = "rows.jsonl"
[defaults]
model = "m"
stream = {stream}
[retry]
initial_backoff_ms = 1
max_backoff_ms = 10
"#,
        timeout = scenario.timeout_secs,
        deadline = scenario.max_attempt_secs,
        stream = scenario.stream,
    );
    let cmd = run_job(&sb)
        .rows("{\"id\": \"a\", \"prompt\": \"hello\"}\n")
        .job(&job)
        .args(&["--max-attempts", "2"])
        .env("HOSTILE_KEY", KEY)
        .command();
    let finished = run_measured(cmd, sb.path("stderr.txt")).await;
    assert!(
        finished.elapsed < WALL,
        "the run took {:?}: {}",
        finished.elapsed,
        finished.stderr
    );
    let records = sb.records("t.jsonl");
    assert_eq!(records.len(), 1, "{}", finished.stderr);
    let record = records.into_iter().next().expect("one record");
    let text = record.to_string();
    assert!(
        !text.contains(KEY) && !text.contains(SECRET_HEADER),
        "{text}"
    );
    (finished, record)
}

/// An error record of `kind` after `attempts` attempts; exit code 1.
fn assert_failed(finished: &Finished, record: &Value, kind: &str, attempts: u64) {
    assert_eq!(finished.code, 1, "{}", finished.stderr);
    assert_eq!(record["status"], "error", "{record}");
    assert_eq!(record["content"], Value::Null, "{record}");
    assert_eq!(record["error"]["kind"], kind, "{record}");
    assert_eq!(record["attempts"], attempts, "{record}");
}

fn assert_peak_below(finished: &Finished, mib: u64) {
    let peak = finished
        .peak_rss_bytes
        .expect("the run lasted long enough to sample its memory");
    eprintln!("peak memory {} MiB", peak / MIB);
    assert!(
        peak < mib * MIB,
        "peak memory {} MiB, bound {mib} MiB",
        peak / MIB
    );
}

#[tokio::test]
async fn a_200_mb_reply_is_refused_at_the_default_cap_without_holding_it() {
    let server = Hostile::start(Behaviour::Oversized { bytes: 200 * MIB }).await;
    let scenario = Scenario {
        max_reply_bytes: None,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("max_reply_bytes (16777216 bytes)"),
        "{message}"
    );
    assert_eq!(server.requests(), 2);
    assert_peak_below(&finished, 200);
}

#[tokio::test]
async fn an_endless_body_ends_at_a_small_cap() {
    let server = Hostile::start(Behaviour::EndlessBody).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "bad_response", 2);
    assert_eq!(record["uncertain_attempts"], 2, "{record}");
    assert_eq!(server.requests(), 2);
    assert_peak_below(&finished, 100);
}

#[tokio::test]
async fn an_endless_stream_of_content_ends_at_the_cap() {
    let server = Hostile::start(Behaviour::EndlessChunks {
        every: Duration::ZERO,
    })
    .await;
    let scenario = Scenario {
        stream: true,
        max_reply_bytes: Some(64 * 1024),
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("the streamed reply"), "{message}");
    assert_eq!(server.requests(), 2);
    assert_peak_below(&finished, 100);
}

#[tokio::test]
async fn an_endless_healthy_looking_stream_meets_the_attempt_deadline() {
    // A data event every 50 ms keeps the per-read timer happy; only the
    // attempt's hard deadline ends it.
    let server = Hostile::start(Behaviour::EndlessChunks {
        every: Duration::from_millis(50),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        timeout_secs: 30,
        max_attempt_secs: 2,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("max_attempt_secs (2 s)"), "{message}");
    assert_eq!(record["uncertain_attempts"], 2, "{record}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_stream_of_pings_times_out_per_read() {
    let server = Hostile::start(Behaviour::Pings {
        every: Duration::from_millis(50),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        timeout_secs: 1,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "timeout", 2);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_trickled_stream_times_out_per_read() {
    // One byte every 200 ms: bytes keep coming, but a data event would take
    // longer than the 1 s timeout to complete.
    let server = Hostile::start(Behaviour::Trickle {
        stream: true,
        every: Duration::from_millis(200),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        timeout_secs: 1,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "timeout", 2);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_trickled_whole_reply_meets_the_total_timeout() {
    let server = Hostile::start(Behaviour::Trickle {
        stream: false,
        every: Duration::from_millis(100),
    })
    .await;
    let scenario = Scenario {
        timeout_secs: 1,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "timeout", 2);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_stream_ended_with_done_before_its_finish_reason_is_retried_not_kept() {
    let server = Hostile::start(Behaviour::DoneBeforeFinish).await;
    let scenario = Scenario {
        stream: true,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "connection", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("cut short"), "{message}");
    assert_eq!(record["uncertain_attempts"], 2, "{record}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_307_to_another_port_reaches_nothing_there() {
    let elsewhere = Hostile::start(Behaviour::Good).await;
    let server = Hostile::start(Behaviour::Redirect {
        location: elsewhere.url.clone(),
    })
    .await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains(&elsewhere.url), "{message}");
    assert_eq!(server.requests(), 1, "a redirect is not retried");
    assert_eq!(
        elsewhere.requests(),
        0,
        "the other origin got: {:?}",
        elsewhere.heads.lock().expect("lock")
    );
    // The first server did get the credentials: their absence over there means something.
    let heads = server.heads.lock().expect("lock").clone();
    assert!(heads[0].contains(SECRET_HEADER), "{heads:?}");
}

#[tokio::test]
async fn invalid_utf8_in_a_good_reply_is_kept_once() {
    let server = Hostile::start(Behaviour::InvalidUtf8).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(record["content"], "caf\u{FFFD}", "{record}");
    assert_eq!(server.requests(), 1, "a good reply is not paid for twice");
}

#[tokio::test]
async fn an_error_object_in_a_200_is_classified_by_its_code() {
    let server = Hostile::start(Behaviour::ErrorIn200 { code: 400 }).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    assert_eq!(server.requests(), 1, "a code-400 error is not retried");

    let server = Hostile::start(Behaviour::ErrorIn200 { code: 503 }).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "server", 2);
    assert_eq!(server.requests(), 2, "a code-503 error is retried");
}

/// A 200 JSON reply with this `usage` (and these extra header lines).
fn reply_with(usage: &str, headers: &str) -> Behaviour {
    Behaviour::Fixed {
        status: "200 OK",
        headers: format!("content-type: application/json\r\n{headers}"),
        body: format!(
            r#"{{"id":"c1","choices":[{{"index":0,"message":{{"content":"fine"}},"finish_reason":"stop"}}],"usage":{usage}}}"#
        ),
    }
}

#[tokio::test]
async fn lying_token_counts_are_recorded_as_no_usage() {
    for usage in [
        // No total: prompt + completion would overflow.
        r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1}"#,
        r#"{"prompt_tokens":9007199254740993,"completion_tokens":1,"total_tokens":5}"#,
        r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":1e300}"#,
    ] {
        let server = Hostile::start(reply_with(usage, "")).await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert_eq!(finished.code, 0, "{usage}: {}", finished.stderr);
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(record["usage"], Value::Null, "{usage}: {record}");
        assert_eq!(server.requests(), 1);
    }
}

#[tokio::test]
async fn costs_that_add_up_to_infinity_are_no_cost() {
    let usage = r#"{"prompt_tokens":1,"completion_tokens":1,"cost":1e308,"is_byok":true,"cost_details":{"upstream_inference_cost":1e308}}"#;
    let server = Hostile::start(reply_with(usage, "")).await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(
        (&record["cost_usd"], &record["cost_source"]),
        (&Value::Null, &Value::Null),
        "{record}"
    );
}

#[tokio::test]
async fn a_huge_redirect_target_is_quoted_in_part_and_without_the_key() {
    let location = format!("http://elsewhere.invalid/{}?key={KEY}", "a".repeat(100_000));
    let server = Hostile::start(Behaviour::Fixed {
        status: "302 Found",
        headers: format!("location: {location}\r\n"),
        body: String::new(),
    })
    .await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.len() < 1000, "{} bytes", message.len());
    assert!(
        message.contains("redirects to http://elsewhere.invalid/aaa"),
        "{message}"
    );
    assert!(finished.stderr.len() < 5000, "{}", finished.stderr);
}

#[tokio::test]
async fn a_stream_of_blank_finish_reasons_cut_short_is_retried_not_kept() {
    let delta = r#"data: {"choices":[{"index":0,"delta":{"content":"part"},"finish_reason":""}]}"#;
    let server = Hostile::start(Behaviour::Fixed {
        status: "200 OK",
        headers: "content-type: text/event-stream\r\n".to_string(),
        body: format!("{delta}\n\n{delta}\n\ndata: [DONE]\n\n"),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "connection", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("cut short"), "{message}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn data_after_the_finish_reason_does_not_hold_the_attempt_to_its_deadline() {
    let server = Hostile::start(Behaviour::SseForever {
        first: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"done\"},\"finish_reason\":\"stop\"}]}\n\n".to_string(),
        then: "data: {\"choices\":[{\"index\":0,\"delta\":{}}]}\n\n".to_string(),
        every: Duration::from_millis(20),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        timeout_secs: 1,
        // Past the suite's wall: only the per-read timer can end this run in time.
        max_attempt_secs: 600,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(record["content"], "done", "{record}");
    assert!(
        finished.elapsed < Duration::from_secs(20),
        "{:?}",
        finished.elapsed
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_login_page_in_a_200_is_quoted_whether_streaming_or_not() {
    for stream in [false, true] {
        let server = Hostile::start(Behaviour::Fixed {
            status: "200 OK",
            headers: "content-type: text/html\r\n".to_string(),
            body: "<html><head><title>Proxy login</title></head><body>sign in</body></html>"
                .to_string(),
        })
        .await;
        let scenario = Scenario {
            stream,
            ..Scenario::default()
        };
        let (finished, record) = run(&server.url, scenario).await;
        assert_failed(&finished, &record, "bad_response", 2);
        let message = record["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("the body starts: <html><head><title>Proxy login"),
            "stream {stream}: {message}"
        );
    }
}

#[tokio::test]
async fn the_head_of_the_key_at_the_error_body_cap_is_not_quoted() {
    // The client reads 64 KiB of an error body; whitespace collapses, so the
    // few characters of the key before that cut would end the message.
    for head in [3, 7] {
        let before = format!("denied{}", " ".repeat(64 * 1024 - 6 - head));
        let server = Hostile::start(Behaviour::Fixed {
            status: "401 Unauthorized",
            headers: "content-type: text/plain\r\n".to_string(),
            body: format!("{before}{KEY} is not a valid key"),
        })
        .await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert_failed(&finished, &record, "auth", 1);
        let message = record["error"]["message"].as_str().expect("message");
        assert!(message.starts_with("denied ("), "{message}");
        assert!(!message.contains("sk-"), "{message}");
        assert!(
            !finished.stderr.contains(&KEY[..head]),
            "{}",
            finished.stderr
        );
    }
}

#[tokio::test]
async fn terminal_escapes_from_the_server_never_reach_the_terminal() {
    // Cleared screen, retitled window, a clipboard write (OSC 52), a bell.
    let escapes = r"\u001b[2J\u001b]0;pwned\u0007\u001b]52;c;ZXZpbA==\u0007";
    let error = Behaviour::Fixed {
        status: "401 Unauthorized",
        headers: "content-type: application/json\r\n".to_string(),
        body: format!(r#"{{"error":{{"message":"bad {escapes} key"}}}}"#),
    };
    let finish = Behaviour::Fixed {
        status: "200 OK",
        headers: "content-type: application/json\r\n".to_string(),
        body: format!(
            r#"{{"choices":[{{"index":0,"message":{{"content":"fine"}},"finish_reason":"stop{escapes}"}}]}}"#
        ),
    };
    for behaviour in [error, finish] {
        let server = Hostile::start(behaviour).await;
        let (finished, record) = run(&server.url, Scenario::default()).await;
        assert!(
            !finished.stderr.chars().any(|c| c.is_control() && c != '\n'),
            "{:?}",
            finished.stderr
        );
        let message = record["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

#[tokio::test]
async fn one_long_sse_id_then_many_events_keeps_memory_bounded() {
    // One `id:` line of 256 KiB, then bursts of tiny events: each event
    // carries the id, and a copy per event of one read came to gigabytes.
    let server = Hostile::start(Behaviour::SseForever {
        first: format!("id: {}\n", "i".repeat(256 * 1024)),
        then: "data: {\"choices\":[{\"index\":0,\"delta\":{}}]}\n\n".repeat(1000),
        every: Duration::from_millis(1),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        max_attempt_secs: 3,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("max_attempt_secs (3 s)"), "{message}");
    assert!(
        finished.elapsed < Duration::from_secs(20),
        "{:?}",
        finished.elapsed
    );
    assert_peak_below(&finished, 100);
}

#[tokio::test]
async fn a_key_split_over_sse_data_lines_is_not_quoted_in_pieces() {
    // One event whose data lines cut the key into pieces of 7: the data is
    // not JSON, the message quotes it, its line ends collapse to spaces.
    let pieces: Vec<&str> = KEY
        .as_bytes()
        .chunks(7)
        .map(|piece| std::str::from_utf8(piece).expect("ASCII"))
        .collect();
    let server = Hostile::start(Behaviour::Fixed {
        status: "200 OK",
        headers: "content-type: text/event-stream\r\n".to_string(),
        body: format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"k={}\"}}}}]}}\n\n",
            pieces.join("\ndata: ")
        ),
    })
    .await;
    let scenario = Scenario {
        stream: true,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_failed(&finished, &record, "bad_response", 2);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("not a JSON chunk"), "{message}");
    for piece in &pieces {
        assert!(!message.contains(piece), "{piece:?} in {message}");
        assert!(!finished.stderr.contains(piece), "{}", finished.stderr);
    }
}

#[tokio::test]
async fn a_key_echoed_in_capitals_is_not_quoted() {
    let shouted = KEY.to_ascii_uppercase();
    let server = Hostile::start(Behaviour::Fixed {
        status: "401 Unauthorized",
        headers: "content-type: application/json\r\n".to_string(),
        body: format!(r#"{{"error":{{"message":"INVALID API KEY {shouted}"}}}}"#),
    })
    .await;
    let (finished, record) = run(&server.url, Scenario::default()).await;
    assert_failed(&finished, &record, "auth", 1);
    let message = record["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("INVALID API KEY [redacted]"),
        "{message}"
    );
    assert!(!finished.stderr.contains("HOSTILE"), "{}", finished.stderr);
}

#[tokio::test]
async fn millions_of_empty_choices_cost_no_more_than_one() {
    // 15 MiB of `{},`: as a list of choices it took gigabytes.
    let filler = "{},".repeat(5 * 1024 * 1024);
    let server = Hostile::start(Behaviour::Fixed {
        status: "200 OK",
        headers: "content-type: application/json\r\n".to_string(),
        body: format!(
            r#"{{"choices":[{{"index":0,"message":{{"content":"fine"}},"finish_reason":"stop"}},{filler}{{}}]}}"#
        ),
    })
    .await;
    let scenario = Scenario {
        max_reply_bytes: None,
        ..Scenario::default()
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["content"], "fine", "{record}");
    assert_peak_below(&finished, 150);
}
