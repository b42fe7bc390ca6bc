//! Server tests: every `[mock:fail=...]` fault, attempt counting per body,
//! random faults, and shutdown with requests still hanging.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use super::*;
use super::{chat, events, joined_content, post, start, streaming, JsonBody};

/// Posts `body` and returns status, content type, retry headers and the body text.
async fn answer(
    client: &reqwest::Client,
    server: &MockServer,
    body: &Value,
) -> (u16, String, String, String) {
    let response = post(client, server, body).await;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (content_type, retry) = (
        header("content-type"),
        format!("{}|{}", header("retry-after"), header("retry-after-ms")),
    );
    let status = response.status().as_u16();
    (
        status,
        content_type,
        retry,
        response.text().await.expect("a complete body"),
    )
}

/// Fault name, status, content type, `retry-after|retry-after-ms`, and a check of the body.
type FaultCase<'a> = (&'a str, u16, &'a str, &'a str, &'a dyn Fn(&str));

#[tokio::test]
async fn each_error_fault_answers_as_specified_then_recovers() {
    let (server, client) = start(MockConfig::default()).await;
    let json_body = |text: &str| serde_json::from_str::<Value>(text).expect("a JSON error body");
    let cases: &[FaultCase] = &[
        ("429", 429, "application/json", "1|", &|b| {
            assert_eq!(json_body(b)["error"]["code"], "rate_limit_exceeded")
        }),
        ("quota", 429, "application/json", "|", &|b| {
            assert_eq!(json_body(b)["error"]["type"], "insufficient_quota")
        }),
        ("500", 500, "application/json", "|", &|b| {
            let e = json_body(b);
            assert_eq!(
                (e["statusCode"].clone(), e["message"].clone()),
                (json!(500), json!("Internal server error"))
            );
            assert_eq!(e["requestId"].as_str().expect("id").len(), 36);
        }),
        ("502", 502, "text/plain", "|", &|b| {
            assert_eq!(b, "Bad Gateway")
        }),
        ("504", 504, "text/plain", "|", &|b| {
            assert_eq!(b, "Gateway Timeout")
        }),
        ("503html", 503, "text/html", "|", &|b| {
            assert!(b.starts_with("<html><head><title>503 Service Temporarily Unavailable</title>"))
        }),
        ("400", 400, "application/json", "|", &|b| {
            let e = json_body(b);
            assert_eq!(
                (e["statusCode"].clone(), e["message"].clone()),
                (json!("400"), json!("Invalid payload provided"))
            );
        }),
        ("422", 422, "application/json", "|", &|b| {
            let e = json_body(b);
            assert_eq!(
                (e["object"].clone(), e["code"].clone()),
                (json!("error"), json!(422))
            );
        }),
        ("401", 401, "application/json", "|", &|b| {
            assert_eq!(json_body(b)["error"]["code"], "invalid_api_key")
        }),
        ("402", 402, "application/json", "|", &|b| {
            assert_eq!(json_body(b)["error"]["code"], 402)
        }),
        ("403", 403, "application/json", "|", &|b| {
            let e = json_body(b);
            assert_eq!(e["statusCode"], 403);
            assert!(e["message"].as_str().expect("message").contains("credits"));
        }),
        ("404", 404, "application/json", "|", &|b| {
            assert_eq!(json_body(b)["error"]["code"], "model_not_found")
        }),
    ];
    for (fault, status, content_type, retry, check) in cases {
        let body = chat(&format!("case {fault} [mock:fail={fault}]"));
        let (got_status, got_type, got_retry, text) = answer(&client, &server, &body).await;
        assert_eq!(
            (got_status, got_type.as_str(), got_retry.as_str()),
            (*status, *content_type, *retry),
            "{fault}"
        );
        check(&text);
        let (again, _, _, text) = answer(&client, &server, &body).await;
        assert_eq!(again, 200, "{fault}: the second attempt succeeds");
        let reply: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            reply["choices"][0]["message"]["content"],
            expected_reply(&body).content
        );
    }
    assert_eq!(server.stats().successes(), cases.len() as u64);
    assert_eq!(server.stats().status_count(429), 2);
}

#[tokio::test]
async fn attempts_are_counted_per_exact_body() {
    let (server, client) = start(MockConfig::default()).await;
    let first = chat("x [mock:fail=429,500,502][mock:retry-after-ms=250]");
    let other = chat("y [mock:fail=429,500,502]");
    assert_eq!(answer(&client, &server, &first).await.0, 429);
    assert_eq!(answer(&client, &server, &first).await.0, 500);
    let (status, _, retry, _) = answer(&client, &server, &other).await;
    assert_eq!(
        (status, retry.as_str()),
        (429, "1|"),
        "another body starts its own count"
    );
    assert_eq!(answer(&client, &server, &first).await.0, 502);
    assert_eq!(answer(&client, &server, &first).await.0, 200);
    assert_eq!(answer(&client, &server, &first).await.0, 200);

    let (server, client) = start(MockConfig::default()).await;
    let (_, _, retry, _) = answer(&client, &server, &first).await;
    assert_eq!(retry, "|250", "retry-after-ms replaces Retry-After");
}

#[tokio::test]
async fn reset_closes_the_connection_without_an_answer() {
    let (server, client) = start(MockConfig::default()).await;
    let body = chat("[mock:fail=reset,reset]");
    for _ in 0..2 {
        let err = client
            .post(server.url())
            .json_body(&body)
            .send()
            .await
            .expect_err("no answer");
        assert!(!err.is_timeout() && err.status().is_none(), "{err}");
    }
    assert_eq!(post(&client, &server, &body).await.status(), 200);
    assert_eq!((server.stats().resets(), server.stats().requests()), (2, 3));
}

#[tokio::test]
async fn hang_never_answers_and_shutdown_ends_it() {
    let (server, client) = start(MockConfig::default()).await;
    let body = chat("[mock:fail=hang]");
    let err = client
        .post(server.url())
        .timeout(Duration::from_millis(100))
        .json_body(&body)
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    assert_eq!((server.stats().hangs(), server.stats().in_flight()), (1, 1));
    assert_eq!(post(&client, &server, &body).await.status(), 200);
    let url = server.url();
    tokio::time::timeout(Duration::from_secs(2), server.shutdown())
        .await
        .expect("shutdown ends hanging requests");
    assert!(
        client.post(url).json_body(&body).send().await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn malformed_and_empty_replies_are_200s_without_a_usable_completion() {
    let (server, client) = start(MockConfig::default()).await;
    let (status, content_type, _, text) =
        answer(&client, &server, &chat("[mock:fail=malformed]")).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert!(text.starts_with("{\"id\":\"chatcmpl-mock-"));
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    let (status, _, _, text) = answer(&client, &server, &chat("[mock:fail=empty]")).await;
    let reply: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!((status, reply["choices"].clone()), (200, json!([])));
    assert_eq!(server.stats().successes(), 0);
}

#[tokio::test]
async fn cut_ends_the_body_early() {
    let (server, client) = start(MockConfig::default()).await;
    let response = post(&client, &server, &chat("[mock:fail=cut]")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "a non-streaming body ends early"
    );

    let body = streaming("a long enough prompt to stream [mock:fail=cut]", true);
    let response = post(&client, &server, &body).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => failed = true,
        }
    }
    assert!(failed, "the stream ends with an error");
    let events = events(&String::from_utf8(received).expect("UTF-8"));
    let content = joined_content(&events);
    assert!(!content.is_empty() && expected_reply(&body).content.starts_with(&content));
    assert!(content.len() < expected_reply(&body).content.len());
    assert!(events
        .iter()
        .all(|e| e != "[DONE]" && e["choices"][0]["finish_reason"].is_null()));
    assert_eq!(server.stats().cuts(), 2);
    assert_eq!(
        post(&client, &server, &body)
            .await
            .text()
            .await
            .map(|t| t.ends_with("[DONE]\n\n"))
            .ok(),
        Some(true)
    );
}

#[tokio::test]
async fn sse_error_sends_an_error_event_after_a_200() {
    let (server, client) = start(MockConfig::default()).await;
    let text = post(&client, &server, &streaming("[mock:fail=sse-error]", true))
        .await
        .text()
        .await
        .expect("body");
    let events = events(&text);
    assert_eq!(events.len(), 3, "{text}");
    assert!(!joined_content(&events).is_empty());
    assert_eq!(events[2]["error"]["message"], "Upstream provider error");
    assert!(!text.contains("[DONE]"));

    let (status, _, _, text) = answer(&client, &server, &chat("[mock:fail=sse-error]")).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON")["error"]["code"],
        502
    );
}

#[tokio::test]
async fn random_faults_follow_the_rates_and_the_seed() {
    let statuses = |server: MockServer, client: reqwest::Client| async move {
        let mut statuses = Vec::new();
        for i in 0..100 {
            statuses.push(
                post(&client, &server, &chat(&format!("q{i}")))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        statuses
    };
    let config = MockConfig {
        rate_429: 0.3,
        rate_500: 0.2,
        seed: 7,
        ..MockConfig::default()
    };
    let (server, client) = start(config.clone()).await;
    let first = statuses(server, client).await;
    let count = |code| first.iter().filter(|s| **s == code).count();
    assert!((15..=45).contains(&count(429)), "{}", count(429));
    assert!((8..=35).contains(&count(500)), "{}", count(500));
    assert_eq!(count(200) + count(429) + count(500), 100);
    let (server, client) = start(config).await;
    assert_eq!(
        statuses(server, client).await,
        first,
        "the same seed gives the same faults"
    );

    let (server, client) = start(MockConfig {
        rate_429: 1.0,
        ..MockConfig::default()
    })
    .await;
    let (status, _, retry, _) = answer(&client, &server, &chat("[mock:fail=500]")).await;
    assert_eq!((status, retry.as_str()), (429, "1|"));
    let (server, client) = start(MockConfig {
        rate_500: 1.0,
        ..MockConfig::default()
    })
    .await;
    let (status, _, _, text) = answer(&client, &server, &chat("hi")).await;
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON")["path"],
        "/v1/chat/completions"
    );
}

#[tokio::test]
async fn latency_and_chunk_gaps_delay_the_reply() {
    let config = MockConfig {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        ..MockConfig::default()
    };
    let (server, client) = start(config).await;
    let started = std::time::Instant::now();
    post(&client, &server, &chat("slow [mock:latency=20]"))
        .await
        .bytes()
        .await
        .expect("body");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );

    let (server, client) = start(MockConfig::default()).await;
    let body = streaming(
        "one two three four five six seven [mock:chunk-ms=10]",
        false,
    );
    let started = std::time::Instant::now();
    let text = post(&client, &server, &body)
        .await
        .text()
        .await
        .expect("stream");
    let gaps = events(&text).len() as u32 - 1;
    assert!(
        started.elapsed() >= Duration::from_millis(10) * gaps,
        "{:?} for {gaps} gaps",
        started.elapsed()
    );
    assert_eq!(
        joined_content(&events(&text)),
        expected_reply(&body).content
    );
}
