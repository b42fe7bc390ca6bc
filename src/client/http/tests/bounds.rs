//! The bounds of an attempt against servers that misbehave on purpose: the
//! reply cap, the attempt deadline, the per-read timer that only data resets,
//! streams cut short, in-band errors, bad UTF-8 and redirects.

use super::*;

const DELTA: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";

/// Writes `head`, then `each` every `every` until the client goes away.
fn forever(
    head: &'static str,
    each: String,
    every: Duration,
) -> impl Fn(TcpStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync {
    move |mut stream| {
        let each = each.clone();
        Box::pin(async move {
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while stream.write_all(each.as_bytes()).await.is_ok() {
                tokio::time::sleep(every).await;
            }
        })
    }
}

async fn fails(client: &Client, stream: bool) -> Failure {
    client.send(&request(stream), 1).await.unwrap_err()
}

#[tokio::test]
async fn a_stream_of_nothing_but_comments_times_out() {
    let (url, _heads) = serve(forever(
        SSE_HEAD,
        chunk(": ping\n\n"),
        Duration::from_millis(20),
    ))
    .await;
    let client = bounded_client(
        &url,
        Duration::from_millis(300),
        Duration::from_secs(60),
        1 << 20,
    );
    let failure = fails(&client, true).await;
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Timeout, true),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("no data event"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn an_endless_healthy_looking_stream_meets_the_attempt_deadline() {
    let (url, _heads) = serve(forever(SSE_HEAD, chunk(DELTA), Duration::from_millis(20))).await;
    let client = bounded_client(
        &url,
        Duration::from_secs(5),
        Duration::from_millis(400),
        1 << 20,
    );
    let failure = fails(&client, true).await;
    assert_eq!(
        (failure.kind, failure.status, failure.uncertain),
        (ErrorKind::BadResponse, Some(200), true)
    );
    assert!(
        failure.message.contains("max_attempt_secs"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_trickled_whole_reply_meets_the_attempt_deadline() {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let (url, _heads) = serve(forever(head, chunk(" "), Duration::from_millis(20))).await;
    let client = bounded_client(
        &url,
        Duration::from_secs(5),
        Duration::from_millis(300),
        1 << 20,
    );
    let failure = fails(&client, false).await;
    assert_eq!(failure.kind, ErrorKind::BadResponse, "{}", failure.message);
    assert!(
        failure.message.contains("max_attempt_secs"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn replies_past_the_cap_are_refused() {
    // Announced too long: refused before reading.
    let body = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
        "a".repeat(2000)
    );
    let (url, _heads) = serve(respond(http_response("200 OK", &[], &body))).await;
    let client = bounded_client(&url, Duration::from_secs(5), Duration::from_secs(60), 1000);
    let failure = fails(&client, false).await;
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::BadResponse, true)
    );
    assert!(
        failure.message.contains("max_reply_bytes (1000 bytes)"),
        "{}",
        failure.message
    );

    // Not announced (chunked, endless): refused once past the cap.
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let (url, _heads) = serve(forever(head, chunk(&"{".repeat(100)), Duration::ZERO)).await;
    let client = bounded_client(&url, Duration::from_secs(5), Duration::from_secs(60), 1000);
    for stream in [false, true] {
        let failure = fails(&client, stream).await;
        assert_eq!(failure.kind, ErrorKind::BadResponse, "{}", failure.message);
        assert!(
            failure.message.contains("max_reply_bytes"),
            "{}",
            failure.message
        );
    }
}

#[tokio::test]
async fn one_sse_line_past_the_cap_is_refused() {
    let (url, _heads) = serve(forever(
        SSE_HEAD,
        chunk(&format!("data: {}", "a".repeat(300))),
        Duration::ZERO,
    ))
    .await;
    let client = bounded_client(&url, Duration::from_secs(5), Duration::from_secs(60), 1000);
    let failure = fails(&client, true).await;
    assert_eq!(failure.kind, ErrorKind::BadResponse, "{}", failure.message);
    assert!(
        failure.message.contains("one line of the stream"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_streamed_reply_past_the_cap_is_refused() {
    let (url, _heads) = serve(forever(SSE_HEAD, chunk(DELTA), Duration::ZERO)).await;
    let client = bounded_client(&url, Duration::from_secs(5), Duration::from_secs(60), 1000);
    let failure = fails(&client, true).await;
    assert_eq!(failure.kind, ErrorKind::BadResponse, "{}", failure.message);
    assert!(
        failure.message.contains("the streamed reply"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn done_before_any_finish_reason_is_cut_short() {
    let body = format!("{DELTA}data: [DONE]\n\n");
    let (url, _heads) = serve(respond(format!("{SSE_HEAD}{}0\r\n\r\n", chunk(&body)))).await;
    let failure = fails(&client(&url, Duration::from_secs(5)), true).await;
    assert_eq!(
        (failure.kind, failure.status, failure.uncertain),
        (ErrorKind::Connection, Some(200), true)
    );
    assert!(
        failure.message.contains("cut short") && failure.message.contains("[DONE]"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn an_error_event_is_classified_by_its_own_code() {
    let body = "data: {\"error\":{\"message\":\"max_tokens is too large\",\"code\":400}}\n\n";
    let (url, _heads) = serve(respond(format!("{SSE_HEAD}{}0\r\n\r\n", chunk(body)))).await;
    let failure = fails(&client(&url, Duration::from_secs(5)), true).await;
    assert_eq!(
        (failure.kind, failure.status),
        (ErrorKind::InvalidRequest, Some(400))
    );
}

#[tokio::test]
async fn invalid_utf8_in_a_stream_is_replaced() {
    let mut body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\xffb\"},\"finish_reason\":\"stop\"}]}\n\n".to_vec();
    body.extend_from_slice(b"data: [DONE]\n\n");
    let mut response = format!("{SSE_HEAD}{:x}\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    response.extend_from_slice(b"\r\n0\r\n\r\n");
    let (url, _heads) = serve(move |mut stream: TcpStream| {
        let response = response.clone();
        async move {
            stream.write_all(&response).await.unwrap();
            let _ = stream.read(&mut [0u8; 1]).await;
        }
    })
    .await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(true), 1)
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("a\u{FFFD}b"));
}

#[tokio::test]
async fn a_307_to_another_origin_is_not_followed() {
    let (elsewhere, mut elsewhere_heads) =
        serve(respond(http_response("200 OK", &[], AIMLAPI))).await;
    let location = format!("location: {elsewhere}");
    let (url, _heads) = serve(respond(http_response(
        "307 Temporary Redirect",
        &[location.as_str()],
        "",
    )))
    .await;
    let failure = fails(&client(&url, Duration::from_secs(5)), false).await;
    assert_eq!(
        (failure.kind, failure.status),
        (ErrorKind::InvalidRequest, Some(307))
    );
    assert!(failure.message.contains(&elsewhere), "{}", failure.message);
    assert!(
        elsewhere_heads.try_recv().is_err(),
        "the other origin was reached"
    );
}

#[tokio::test]
async fn a_307_within_the_origin_is_followed() {
    let (url, mut heads) = serve(|mut stream: TcpStream| async move {
        // The first request was read by `serve`; answer it, then the next ones.
        let redirect = http_response(
            "307 Temporary Redirect",
            &["location: /v2/chat/completions"],
            "",
        );
        stream.write_all(redirect.as_bytes()).await.unwrap();
        loop {
            let mut probe = [0u8; 1];
            if stream.peek(&mut probe).await.map_or(true, |n| n == 0) {
                return;
            }
            let _ = read_request(&mut stream).await;
            let ok = http_response("200 OK", &[], AIMLAPI);
            if stream.write_all(ok.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap();
    assert!(reply.content.unwrap().starts_with("Hello!"));
    assert!(heads.recv().await.unwrap().starts_with("post /v1/"));
}

#[tokio::test]
async fn data_after_the_finish_reason_gets_one_timeout_not_the_attempt_deadline() {
    // The reply is whole at its finish reason; a server that keeps sending
    // (empty chunks here) no longer moves the per-read timer.
    let finish =
        "data: {\"choices\":[{\"delta\":{\"content\":\"done\"},\"finish_reason\":\"stop\"}]}\n\n";
    let (url, _heads) = serve(forever(
        SSE_HEAD,
        chunk(&format!("{finish}data: {{\"choices\":[]}}\n\n")),
        Duration::from_millis(20),
    ))
    .await;
    let client = bounded_client(
        &url,
        Duration::from_millis(300),
        Duration::from_secs(30),
        1 << 20,
    );
    let started = std::time::Instant::now();
    let reply = client.send(&request(true), 1).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        started.elapsed()
    );
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert!(reply.content.is_some_and(|c| c.starts_with("done")));
}

#[tokio::test]
async fn a_200_that_is_neither_json_nor_a_stream_is_quoted() {
    let page = "<html><head><title>Sign in to the proxy</title></head><body>x</body></html>";
    for stream in [false, true] {
        let response = http_response("200 OK", &["content-type: text/html"], page);
        let (url, _heads) = serve(respond(response)).await;
        let failure = fails(&client(&url, Duration::from_secs(5)), stream).await;
        assert_eq!(
            (failure.kind, failure.status),
            (ErrorKind::BadResponse, Some(200))
        );
        assert!(
            failure
                .message
                .contains("the body starts: <html><head><title>Sign in"),
            "stream {stream}: {}",
            failure.message
        );
    }
}
