//! Server tests: keys, recording, concurrency, keep-alive, the enforced
//! limit and configuration.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use super::{chat, post, read_json, start, streaming, JsonBody};

#[tokio::test]
async fn a_required_key_is_checked_first() {
    let config = MockConfig {
        require_key: Some("sk-test".into()),
        ..MockConfig::default()
    };
    let (server, client) = start(config).await;
    let bad_body = json!({"no": "messages"});
    for key in [None, Some("Bearer sk-wrong")] {
        let mut request = client.post(server.url()).json_body(&bad_body);
        if let Some(key) = key {
            request = request.header("authorization", key);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), 401);
        let error: Value = read_json(response).await.expect("JSON");
        assert_eq!(error["error"]["code"], "invalid_api_key");
    }
    let ok = client
        .post(server.url())
        .bearer_auth("sk-test")
        .json_body(&chat("hi"))
        .send()
        .await
        .expect("answer");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn recording_keeps_bodies_and_headers() {
    let (server, client) = start(MockConfig {
        record: true,
        ..MockConfig::default()
    })
    .await;
    let body = chat("remember me");
    client
        .post(server.url())
        .header("X-Client-Request-Id", "job:1:default:1")
        .json_body(&body)
        .send()
        .await
        .expect("answer");
    client
        .post(server.url())
        .body("not json")
        .send()
        .await
        .expect("answer");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body, body);
    assert_eq!(
        received[0].header("x-client-request-id"),
        Some("job:1:default:1")
    );
    assert_eq!(received[0].header("Content-Type"), Some("application/json"));
    assert_eq!(received[1].body, json!("not json"));

    let (server, client) = start(MockConfig::default()).await;
    post(&client, &server, &body).await;
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_requests() {
    let config = MockConfig {
        latency: Duration::from_millis(50),
        ..MockConfig::default()
    };
    let (server, client) = start(config).await;
    let requests = (0..8).map(|i| {
        let (client, url) = (client.clone(), server.url());
        async move {
            client
                .post(url)
                .json_body(&chat(&format!("q{i}")))
                .send()
                .await
                .expect("answer")
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(server.stats().max_in_flight(), 8);
    assert_eq!(server.stats().in_flight(), 0);
}

#[tokio::test]
async fn connections_are_kept_alive() {
    let (server, client) = start(MockConfig::default()).await;
    for i in 0..5 {
        post(&client, &server, &chat(&format!("q{i}")))
            .await
            .bytes()
            .await
            .expect("body");
        post(&client, &server, &streaming(&format!("q{i}"), true))
            .await
            .bytes()
            .await
            .expect("body");
    }
    assert_eq!(server.stats().requests(), 10);
    assert_eq!(server.stats().connections(), 1);
}

#[tokio::test]
async fn the_enforced_limit_answers_429_until_the_window_ends() {
    let config = MockConfig {
        limit_requests: 3,
        limit_window: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let (server, client) = start(config).await;
    for _ in 0..3 {
        assert_eq!(post(&client, &server, &chat("hi")).await.status(), 200);
    }
    let limited = post(&client, &server, &chat("hi")).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let wait_ms: u64 = limited.headers()["retry-after-ms"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("ms");
    assert!((1..=300).contains(&wait_ms), "{wait_ms}");
    let error: Value = read_json(limited).await.expect("JSON");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(server.stats().limited(), 1);

    tokio::time::sleep(Duration::from_millis(wait_ms + 5)).await;
    assert_eq!(
        post(&client, &server, &chat("hi")).await.status(),
        200,
        "a new window"
    );
    assert_eq!(server.stats().status_count(429), 1);
}

#[tokio::test]
async fn rate_headers_announce_the_enforced_limit() {
    let config = MockConfig {
        limit_requests: 3,
        limit_window: Duration::from_secs(30),
        rate_headers: true,
        ..MockConfig::default()
    };
    let (server, client) = start(config).await;
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    for left in ["2", "1", "0"] {
        let ok = post(&client, &server, &chat("hi")).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(
            header(&ok, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&ok, "x-ratelimit-remaining-requests").as_deref(),
            Some(left)
        );
        let reset = header(&ok, "x-ratelimit-reset-requests").expect("reset");
        let ms: u64 = reset
            .strip_suffix("ms")
            .expect("ms")
            .parse()
            .expect("number");
        assert!((1..=30_000).contains(&ms), "{reset}");
    }
    let limited = post(&client, &server, &chat("hi")).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(
        header(&limited, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    // Without the option, a limit is enforced silently (the AI/ML API's way).
    let (server, client) = start(MockConfig {
        limit_requests: 3,
        ..MockConfig::default()
    })
    .await;
    let ok = post(&client, &server, &chat("hi")).await;
    assert_eq!(header(&ok, "x-ratelimit-remaining-requests"), None);
}

#[tokio::test]
async fn bad_configurations_are_refused_with_the_flag_to_fix() {
    for (config, needle) in [
        (
            MockConfig {
                rate_429: 1.5,
                ..MockConfig::default()
            },
            "--rate-429",
        ),
        (
            MockConfig {
                rate_429: 0.6,
                rate_500: 0.6,
                ..MockConfig::default()
            },
            "together",
        ),
        (
            MockConfig {
                limit_requests: 1,
                limit_window: Duration::ZERO,
                ..MockConfig::default()
            },
            "--limit-window-ms",
        ),
        (
            MockConfig {
                usd_per_million: Some(f64::NAN),
                ..MockConfig::default()
            },
            "--usd-per-million",
        ),
    ] {
        let err = MockServer::start(config).await.err().expect("refused");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn config_from_flags() {
    use clap::Parser;
    let cli = crate::cli::Cli::try_parse_from([
        "promptbatch",
        "mock-server",
        "--port",
        "0",
        "--latency-ms",
        "7",
        "--limit-requests",
        "5",
        "--limit-window-ms",
        "1000",
        "--require-key",
        "k",
        "--usd-per-million",
        "0.5",
    ])
    .expect("valid flags");
    let crate::cli::Command::MockServer(args) = cli.command else {
        panic!("expected mock-server")
    };
    let config = MockConfig::from_args(&args);
    assert_eq!(config.latency, Duration::from_millis(7));
    assert_eq!(
        (config.limit_requests, config.limit_window),
        (5, Duration::from_secs(1))
    );
    assert_eq!(config.require_key.as_deref(), Some("k"));
    assert_eq!(config.usd_per_million, Some(0.5));
    assert!(!config.record);
}
