//! Memory stays a small multiple of `max_reply_bytes` whatever shape a reply
//! takes: a body of millions of tiny JSON nodes (`{}`) where a reply passes
//! JSON through (tool calls), where its text is joined (content parts), in an
//! in-band error, and in stream chunks (an HTTP error body is read only
//! up to 64 KiB). Read as `serde_json::Value`
//! trees such bodies took 25 to 30 times their size.

use super::*;

/// The cap of these runs: big enough for millions of nodes, small enough to be quick.
const CAP: u64 = 4 * MIB;
/// A small multiple of the cap, over what the binary needs at rest.
const BOUND_MIB: u64 = 6 * CAP / MIB + 40;

/// `n` empty objects, comma-separated: about 3 bytes a node.
fn nodes(n: usize) -> String {
    let mut text = "{},".repeat(n);
    text.pop();
    text
}

/// As many nodes as fit in the cap with `room` bytes to spare.
fn nodes_in_cap(room: u64) -> usize {
    usize::try_from((CAP - room) / 3).expect("fits")
}

fn capped(stream: bool) -> Scenario {
    Scenario {
        stream,
        max_reply_bytes: Some(CAP),
        ..Scenario::default()
    }
}

#[tokio::test]
async fn tool_calls_of_millions_of_tiny_nodes_are_kept_exactly_in_bounded_memory() {
    let calls = format!(
        r#"[{{"id":"c1","type":"function","function":{{"name":"f","arguments":"{{}}"}},"pad":[{}]}}]"#,
        nodes(nodes_in_cap(4096))
    );
    let body = format!(
        r#"{{"id":"r1","choices":[{{"index":0,"message":{{"content":null,"tool_calls":{calls}}},"finish_reason":"tool_calls"}}]}}"#
    );
    assert!(body.len() as u64 <= CAP);
    let server = Hostile::start(json_200(body)).await;
    let (finished, record) = run(&server.url, capped(false)).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok");
    let expected: Value = serde_json::from_str(&calls).expect("calls");
    assert!(record["tool_calls"] == expected, "the tool calls changed");
    assert_eq!(server.requests(), 1);
    assert_peak_below(&finished, BOUND_MIB);
}

/// A reply asked to be JSON is checked, and kept in `json`, as text: its
/// tree (about 20 times the text) is never built when no schema needs it.
#[tokio::test]
async fn a_json_reply_of_millions_of_tiny_nodes_is_checked_and_kept_in_bounded_memory() {
    let content = format!("[{}]", nodes(nodes_in_cap(4096)));
    let body = format!(
        r#"{{"id":"r1","choices":[{{"index":0,"message":{{"content":"{content}"}},"finish_reason":"stop"}}]}}"#
    );
    assert!(body.len() as u64 <= CAP);
    let server = Hostile::start(json_200(body)).await;
    let scenario = Scenario {
        json: true,
        ..capped(false)
    };
    let (finished, record) = run(&server.url, scenario).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok");
    assert_eq!(
        record["json"].as_array().map(Vec::len),
        Some(nodes_in_cap(4096))
    );
    assert_eq!(server.requests(), 1);
    assert_peak_below(&finished, BOUND_MIB);
}

#[tokio::test]
async fn content_parts_of_millions_of_tiny_items_are_joined_in_bounded_memory() {
    let body = format!(
        r#"{{"id":"r1","choices":[{{"index":0,"message":{{"content":[{{"type":"text","text":"fi"}},{},"ne"]}},"finish_reason":"stop"}}]}}"#,
        nodes(nodes_in_cap(4096))
    );
    let server = Hostile::start(json_200(body)).await;
    let (finished, record) = run(&server.url, capped(false)).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok");
    assert_eq!(record["content"], "fine");
    assert_peak_below(&finished, BOUND_MIB);
}

#[tokio::test]
async fn an_in_band_error_padded_with_millions_of_nodes_is_classified_in_bounded_memory() {
    let half = nodes_in_cap(4096) / 2;
    let body = format!(
        r#"{{"error":{{"message":"bad parameter","code":400,"pad":[{}]}},"pad":[{}]}}"#,
        nodes(half),
        nodes(half)
    );
    let server = Hostile::start(json_200(body)).await;
    let (finished, record) = run(&server.url, capped(false)).await;
    assert_failed(&finished, &record, "invalid_request", 1);
    let message = error_message(&record);
    assert!(message.contains("bad parameter"), "{message}");
    assert_peak_below(&finished, BOUND_MIB);
}

#[tokio::test]
async fn a_streamed_error_padded_with_millions_of_nodes_is_classified_in_bounded_memory() {
    let body = format!(
        "data: {{\"error\":{{\"message\":\"overloaded\",\"code\":503}},\"pad\":[{}]}}\n\n",
        nodes(nodes_in_cap(4096))
    );
    let server = Hostile::start(fixed("200 OK", "text/event-stream", body)).await;
    let (finished, record) = run(&server.url, capped(true)).await;
    assert_failed(&finished, &record, "server", 2);
    let message = error_message(&record);
    assert!(message.contains("overloaded"), "{message}");
    assert_peak_below(&finished, BOUND_MIB);
}

#[tokio::test]
async fn streamed_tool_call_deltas_of_millions_of_tiny_nodes_stay_in_bounded_memory() {
    // Each data line just under the cap (which bounds one SSE line), a few of them.
    let pad = nodes(nodes_in_cap(4096));
    let line = |delta: &str| {
        format!(r#"data: {{"choices":[{{"index":0,"delta":{{"tool_calls":[{delta}]}}}}]}}"#)
    };
    let mut body =
        line(r#"{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":""}}"#);
    body.push_str("\n\n");
    for _ in 0..3 {
        body.push_str(&line(&format!(r#"{{"index":0,"pad":[{pad}]}}"#)));
        body.push_str("\n\n");
        body.push_str(&line(&pad));
        body.push_str("\n\n");
    }
    body.push_str(&line(r#"{"index":0,"function":{"arguments":"{}"}}"#));
    body.push_str("\n\n");
    body.push_str(r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#);
    body.push_str("\n\ndata: [DONE]\n\n");
    let server = Hostile::start(fixed("200 OK", "text/event-stream", body)).await;
    let (finished, record) = run(&server.url, capped(true)).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(
        record["tool_calls"].to_string(),
        r#"[{"function":{"arguments":"{}","name":"f"},"id":"c1","type":"function"}]"#
    );
    assert_peak_below(&finished, BOUND_MIB);
}

/// Rows of a MiB, sent one at a time to a slow server: what the run plans
/// ahead of dispatch is bounded in bytes, not only in requests (a thousand
/// requests planned ahead would be two GiB here: a body and a row each).
#[tokio::test]
async fn big_rows_planned_ahead_of_a_slow_server_stay_in_bounded_memory() {
    const ROWS: usize = 40;
    let mock = mock(promptbatch::mock::MockConfig {
        latency: Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let sb = Sandbox::new();
    let prompt = "x".repeat(1024 * 1024);
    let rows: String = (0..ROWS)
        .map(|i| format!("{{\"id\": \"r{i}\", \"prompt\": \"{prompt}\"}}\n"))
        .collect();
    let cmd = run_job(&sb)
        .rows(&rows)
        .job(&format!(
            "name = \"t\"\n[endpoint]\nurl = \"{}\"\napi_key_env = \"\"\n\
             [input]\npath = \"rows.jsonl\"\n[defaults]\nmodel = \"m\"\n[limits]\nconcurrency = 1\n",
            mock.url()
        ))
        .args(&["--quiet"])
        .command();
    let finished = run_measured(cmd, sb.path("stderr.txt")).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    // Counted, not parsed: 80 MiB of JSON is slow to read in a debug build.
    let lines = std::fs::read(sb.path("t.jsonl")).expect("output");
    assert_eq!(lines.iter().filter(|b| **b == b'\n').count(), ROWS);
    // All 40 planned ahead: 40 MiB of bodies, their rows as much again
    // (about 110 MiB measured in a debug build); bounded, a few of them
    // (about 90, of which 15 are the debug binary at rest, a JSON Schema
    // validator included).
    let peak = finished.peak_rss_bytes.expect("sampled");
    assert!(peak < 100 * MIB, "peak {} MiB", peak / MIB);
    // The sandbox looks for leaked secrets in every file it holds: not in these 120 MiB.
    for big in ["rows.jsonl", "t.jsonl"] {
        std::fs::remove_file(sb.path(big)).expect("remove");
    }
    mock.shutdown().await;
}

/// Rows with a big local image each: an image is read as its request is
/// built and dropped with it, so memory stays at a few requests' bodies
/// (4.5 MiB images: a 6 MiB body each, about 8 MiB of memory with the
/// buffer it was written into), whatever the number of rows; 40 held at once
/// would be 240 MiB.
#[tokio::test]
async fn big_images_are_read_as_requests_are_built_and_never_all_held() {
    const ROWS: usize = 40;
    let mock = promptbatch::mock::MockServer::start(promptbatch::mock::MockConfig {
        latency: Duration::from_millis(40),
        ..Default::default()
    })
    .await
    .expect("mock starts");
    let sb = Sandbox::new();
    // 4.5 MiB of bytes, 6 MiB once in base64; one file shared by every row.
    let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
    image.extend((0..9 * MIB / 2).map(|i| (i % 251) as u8));
    std::fs::write(sb.path("big.png"), &image).expect("written");
    let rows: String = (0..ROWS)
        .map(|i| format!("{{\"id\": \"r{i}\", \"prompt\": \"p\", \"photo\": \"big.png\"}}\n"))
        .collect();
    let cmd = run_job(&sb)
        .rows(&rows)
        .job(&format!(
            "name = \"t\"\n[endpoint]\nurl = \"{}\"\napi_key_env = \"\"\n\
             [input]\npath = \"rows.jsonl\"\nimages = [\"{{{{photo}}}}\"]\n\
             [defaults]\nmodel = \"m\"\n[limits]\nconcurrency = 1\n",
            mock.url()
        ))
        .args(&["--quiet"])
        .command();
    let finished = run_measured(cmd, sb.path("stderr.txt")).await;
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(mock.stats().requests(), ROWS as u64);
    // A body of megabytes is a batch on its own (at most 4 wait for the
    // scheduler), plus the one sent and the one being built: about 125 MiB
    // in a debug build, where 8 rows already take 100.
    let peak = finished.peak_rss_bytes.expect("sampled");
    assert!(peak < 160 * MIB, "peak {} MiB", peak / MIB);
    std::fs::remove_file(sb.path("big.png")).expect("remove");
    mock.shutdown().await;
}
