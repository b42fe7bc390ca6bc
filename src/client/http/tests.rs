//! Real HTTP against a tiny hand-written server on 127.0.0.1:0 that writes
//! canned HTTP/1.1 responses, so every transport failure can be staged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Map;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

mod bounds;
mod streams;

const KEY: &str = "sk-test-secret-key-123";
const AIMLAPI: &str = include_str!("../../../tests/fixtures/aimlapi-chat-completion.json");

/// Serves every connection with `handler`, after reading the request; the
/// request heads (lowercased) arrive on the returned channel.
async fn serve<F, Fut>(handler: F) -> (String, mpsc::UnboundedReceiver<String>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    let (heads, received) = mpsc::unbounded_channel();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (handler, heads) = (handler.clone(), heads.clone());
            tokio::spawn(async move {
                let head = read_request(&mut stream).await;
                let _ = heads.send(head);
                handler(stream).await;
            });
        }
    });
    (url, received)
}

async fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        data.extend_from_slice(&buf[..n]);
    }
    head
}

fn respond(
    response: String,
) -> impl Fn(TcpStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync {
    answer(response, true)
}

/// Writes `response`, then drops the connection: a reply broken off there.
fn respond_and_close(
    response: String,
) -> impl Fn(TcpStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync {
    answer(response, false)
}

fn answer(
    response: String,
    hold: bool,
) -> impl Fn(TcpStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync {
    move |mut stream| {
        let response = response.clone();
        Box::pin(async move {
            stream.write_all(response.as_bytes()).await.unwrap();
            if hold {
                // Keep the connection open until the client is done with it.
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        })
    }
}

fn http_response(status: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn client(url: &str, timeout: Duration) -> Client {
    bounded_client(url, timeout, Duration::from_secs(60), 1 << 20)
}

/// A client with its own attempt deadline and reply cap.
fn bounded_client(url: &str, timeout: Duration, max_attempt: Duration, cap: u64) -> Client {
    let endpoint = Endpoint {
        url: url.to_string(),
        api_key_env: "TEST_KEY".to_string(),
        timeout,
        headers: vec![("X-Extra".to_string(), "yes".to_string())],
        max_reply_bytes: cap,
        max_attempt,
        http: Default::default(),
    };
    Client::new(&endpoint, Some(KEY), 4).unwrap()
}

fn request(stream: bool) -> Request {
    Request {
        key: "q1/default".into(),
        id: "q1".into(),
        param_set: Arc::from("default"),
        model: "google/gemma-3-4b-it".into(),
        body: Bytes::from_static(
            br#"{"model":"google/gemma-3-4b-it","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        stream,
        sha256: String::new(),
        params: Arc::default(),
        input: Arc::new(Map::new()),
        client_request_id_prefix: "job:q1:default".into(),
        prompt_bytes: 2,
        image_tokens: 0,
        message_count: 1,
        max_output_tokens: None,
        line: 1,
        output: None,
    }
}

#[tokio::test]
async fn json_reply_with_cost_header_and_our_headers() {
    let response = http_response(
        "200 OK",
        &[
            "content-type: application/json",
            "x-aimlapi-usd-spent: 0.000042",
        ],
        AIMLAPI,
    );
    let (url, mut heads) = serve(respond(response)).await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(false), 3)
        .await
        .unwrap();
    assert_eq!(reply.provider_cost_usd, Some(0.000042));
    assert_eq!(reply.usage.map(|u| u.total_tokens), Some(1051));
    assert!(reply.content.unwrap().starts_with("Hello!"));
    assert!(reply.latency_ms > 0.0);
    assert_eq!(reply.ttft_ms, None);
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("post /v1/chat/completions http/1.1"),
        "{head}"
    );
    assert!(
        head.contains("x-client-request-id: job:q1:default:3\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "authorization: bearer {}\r\n",
            KEY.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("x-extra: yes\r\n"), "{head}");
    assert!(
        head.contains(concat!(
            "user-agent: promptbatch/",
            env!("CARGO_PKG_VERSION")
        )),
        "{head}"
    );
}

#[tokio::test]
async fn the_key_never_appears_in_a_failure() {
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
    );
    let (url, _heads) = serve(respond(http_response("401 Unauthorized", &[], &body))).await;
    let failure = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap_err();
    assert_eq!((failure.kind, failure.status), (ErrorKind::Auth, Some(401)));
    assert!(!failure.message.contains(KEY), "{}", failure.message);
    assert!(
        failure
            .message
            .contains("Incorrect API key provided: [redacted]"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("$TEST_KEY"), "{}", failure.message);
    assert!(!format!("{:?}", client(&url, Duration::from_secs(1))).contains(KEY));
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    let response = http_response(
        "429 Too Many Requests",
        &["retry-after: 2", "x-should-retry: true"],
        body,
    );
    let (url, _heads) = serve(respond(response)).await;
    let failure = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.kind, failure.status),
        (ErrorKind::RateLimited, Some(429))
    );
    assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(failure.should_retry, Some(true));
    assert_eq!(failure.error_code.as_deref(), Some("requests"));
    assert_eq!(failure.message, "Rate limit reached");
    assert!(!failure.uncertain);
}

#[tokio::test]
async fn a_silent_server_times_out_uncertain() {
    let (url, _heads) = serve(|mut stream: TcpStream| async move {
        let _ = stream.read(&mut [0u8; 1]).await;
    })
    .await;
    let failure = client(&url, Duration::from_millis(200))
        .send(&request(false), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Timeout, true)
    );
    assert!(
        failure.message.contains("no answer within 0.2 s"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_stalled_stream_times_out_per_read() {
    let first = chunk("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
    let (url, _heads) = serve(respond(format!("{SSE_HEAD}{first}"))).await;
    let failure = client(&url, Duration::from_millis(200))
        .send(&request(true), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Timeout, true)
    );
    assert!(failure.message.contains("stalled"), "{}", failure.message);
}

#[tokio::test]
async fn a_slow_healthy_stream_outlives_the_timeout() {
    // Five reads 80 ms apart: 400 ms in all, twice the 200 ms per-read timeout.
    let (url, _heads) = serve(|mut stream: TcpStream| async move {
        stream.write_all(SSE_HEAD.as_bytes()).await.unwrap();
        for word in ["a", "b", "c", "d"] {
            tokio::time::sleep(Duration::from_millis(80)).await;
            let event = format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{word}\"}}}}]}}\n\n");
            stream.write_all(chunk(&event).as_bytes()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        let last = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\ndata: [DONE]\n\n";
        stream.write_all(format!("{}0\r\n\r\n", chunk(last)).as_bytes()).await.unwrap();
        let _ = stream.read(&mut [0u8; 1]).await;
    })
    .await;
    let reply = client(&url, Duration::from_millis(200))
        .send(&request(true), 1)
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("abcd"));
    assert_eq!(reply.usage.map(|u| u.total_tokens), Some(7));
    let ttft = reply.ttft_ms.unwrap();
    assert!(
        ttft >= 70.0 && ttft < reply.latency_ms,
        "ttft {ttft}, latency {}",
        reply.latency_ms
    );
    assert!(reply.latency_ms >= 350.0, "{}", reply.latency_ms);
}

#[tokio::test]
async fn a_streaming_request_answered_with_json() {
    let response = http_response("200 OK", &["content-type: application/json"], AIMLAPI);
    let (url, _heads) = serve(respond(response)).await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(true), 1)
        .await
        .unwrap();
    assert_eq!(reply.usage.map(|u| u.completion_tokens), Some(914));
    assert!(reply.content.unwrap().starts_with("Hello!"));
}

#[tokio::test]
async fn closed_without_response_is_an_uncertain_connection_error() {
    let (url, _heads) = serve(|stream: TcpStream| async move { drop(stream) }).await;
    let failure = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.kind, failure.status, failure.uncertain),
        (ErrorKind::Connection, None, true)
    );
    assert!(
        failure
            .message
            .contains("closed the connection without answering"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn refused_connection_is_certain() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let failure = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Connection, false)
    );
    assert!(
        failure
            .message
            .starts_with("could not connect to 127.0.0.1:"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("is the server running"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_redirect_that_would_drop_the_body_is_reported() {
    let response = http_response(
        "301 Moved Permanently",
        &["location: https://example.invalid/v1/chat/completions"],
        "",
    );
    let (url, _heads) = serve(respond(response)).await;
    let failure = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.kind, failure.status),
        (ErrorKind::InvalidRequest, Some(301))
    );
    assert!(
        failure
            .message
            .contains("redirects to https://example.invalid/"),
        "{}",
        failure.message
    );
}

#[test]
fn construction_errors_name_the_problem() {
    let endpoint = |url: &str, headers: Vec<(String, String)>| Endpoint {
        url: url.to_string(),
        api_key_env: String::new(),
        timeout: Duration::from_secs(1),
        headers,
        max_reply_bytes: 1 << 20,
        max_attempt: Duration::from_secs(60),
        http: Default::default(),
    };
    let err = Client::new(&endpoint("not a url", vec![]), None, 1).unwrap_err();
    assert!(matches!(err, ClientError::Url { .. }), "{err}");
    let err = Client::new(&endpoint("ftp://host/x", vec![]), None, 1).unwrap_err();
    assert!(err.to_string().contains("use http or https"), "{err}");
    let err = Client::new(
        &endpoint("http://h/", vec![("bad name".into(), "v".into())]),
        None,
        1,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Header { name, .. } if name == "bad name"),
        "{err}"
    );
    let err = Client::new(
        &endpoint("http://h/", vec![("x-a".into(), "line\nbreak".into())]),
        None,
        1,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Header { name, .. } if name == "x-a"),
        "{err}"
    );
    let err = Client::new(&endpoint("http://h/", vec![]), Some("sk-abc\ndef"), 1).unwrap_err();
    assert!(
        matches!(&err, ClientError::Header { name, .. } if name == "Authorization"),
        "{err}"
    );
    assert!(!err.to_string().contains("sk-abc"), "{err}");
    assert!(Client::new(
        &endpoint("http://127.0.0.1:1/v1/chat/completions", vec![]),
        None,
        1
    )
    .is_ok());
}
