//! `[endpoint] http`: HTTP/1.1 with a pool sized to the concurrency, HTTP/2
//! by prior knowledge over http:// (the mock serves both), and HTTP/2 at a
//! concurrency past one connection's stream limit.

use std::time::Duration;

use crate::common::*;
use promptbatch::mock::H2_STREAMS;

/// `rows` prompts at `concurrency`, speaking `http`, against `mock`.
async fn run_http(mock: &MockServer, http: &str, rows: usize, concurrency: usize) -> Sandbox {
    let sb = Sandbox::new();
    let lines: String = (1..=rows)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect();
    let job = prompt_job(
        &mock.url(),
        &format!("[limits]\nconcurrency = {concurrency}\n"),
    )
    .replace(
        "timeout_secs = 5",
        &format!("timeout_secs = 5\nhttp = \"{http}\""),
    );
    let out = run_job(&sb).rows(&lines).job(&job).output().await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.records("t.jsonl").len(), rows);
    sb
}

#[tokio::test]
async fn http_2_is_spoken_when_asked_and_http_1_1_never_is() {
    let server = mock(MockConfig::default()).await;
    run_http(&server, "2", 30, 4).await;
    assert_eq!(server.stats().requests(), 30);
    assert_eq!(
        server.stats().http2_requests(),
        30,
        "every request over HTTP/2"
    );
    server.shutdown().await;

    let server = mock_with_latency(Duration::from_millis(20)).await;
    run_http(&server, "1.1", 40, 8).await;
    assert_eq!(server.stats().http2_requests(), 0);
    // The pool holds the concurrency: no connection closed and reopened.
    assert!(
        server.stats().connections() <= 8,
        "{}",
        server.stats().connections()
    );
    server.shutdown().await;

    // auto over http:// is HTTP/1.1 (no ALPN without TLS).
    let server = mock(MockConfig::default()).await;
    run_http(&server, "auto", 10, 2).await;
    assert_eq!(server.stats().http2_requests(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn http_2_past_one_connections_stream_limit_is_not_queued_behind_it() {
    // Every request holds its stream 1 s: with one connection, no more than
    // H2_STREAMS could ever be in flight at once.
    let server = mock_with_latency(Duration::from_millis(1000)).await;
    let concurrency = 250;
    run_http(&server, "2", concurrency, concurrency).await;
    let stats = server.stats();
    assert_eq!(stats.http2_requests(), concurrency as u64);
    assert!(
        stats.max_in_flight() > u64::from(H2_STREAMS),
        "at most {} in flight of {concurrency}: queued behind one connection",
        stats.max_in_flight()
    );
    assert!(stats.connections() >= 3, "{}", stats.connections());
    server.shutdown().await;
}

#[tokio::test]
async fn a_misspelt_http_version_is_named_with_the_one_meant() {
    let server = mock(MockConfig::default()).await;
    let sb = Sandbox::new();
    let job = prompt_job(&server.url(), "")
        .replace("timeout_secs = 5", "timeout_secs = 5\nhttp = \"HTTP/2\"");
    let out = run_job(&sb)
        .rows("{\"prompt\": \"q\"}\n")
        .job(&job)
        .output()
        .await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("endpoint.http") || err.contains("http"),
        "{err}"
    );
    assert!(err.contains("did you mean \"2\"?"), "{err}");
    assert_eq!(server.stats().requests(), 0);
    server.shutdown().await;
}

async fn mock_with_latency(latency: Duration) -> MockServer {
    mock(MockConfig {
        latency,
        ..MockConfig::default()
    })
    .await
}
