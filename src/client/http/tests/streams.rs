//! Client tests: the body, not the content type, decides between SSE and
//! JSON, and how a stream that ends early or oddly is taken.

use super::*;

#[tokio::test]
async fn the_body_not_the_content_type_decides_sse_or_json() {
    let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let response = http_response("200 OK", &["content-type: application/json"], sse);
    let (url, _heads) = serve(respond(response)).await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(true), 1)
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("hi"));
    assert!(reply.ttft_ms.is_some());

    let response = http_response(
        "200 OK",
        &["content-type: text/event-stream"],
        &format!("\n{AIMLAPI}"),
    );
    let (url, _heads) = serve(respond(response)).await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(true), 1)
        .await
        .unwrap();
    assert_eq!(reply.usage.map(|u| u.prompt_tokens), Some(137));
}

#[tokio::test]
async fn a_stream_answering_a_non_streaming_request_is_read_as_a_stream() {
    let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"he\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"llo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let response = http_response("200 OK", &["content-type: text/event-stream"], sse);
    let (url, _heads) = serve(respond(response)).await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(false), 1)
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("hello"));
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        reply.ttft_ms, None,
        "time to first token is for streaming requests"
    );
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_an_uncertain_connection_error() {
    let first = chunk("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
    // Dropped without the terminating chunk.
    let (url, _heads) = serve(respond_and_close(format!("{SSE_HEAD}{first}"))).await;
    let failure = client(&url, Duration::from_secs(5))
        .send(&request(true), 1)
        .await
        .unwrap_err();
    assert!(
        failure.message.contains("the reply broke off mid-way"),
        "{}",
        failure.message
    );
    assert_eq!(
        (failure.kind, failure.uncertain),
        (ErrorKind::Connection, true)
    );
}

#[tokio::test]
async fn a_stream_dropped_after_its_finish_reason_is_accepted() {
    let last = chunk(
        "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n",
    );
    // Dropped without [DONE] or the terminating chunk.
    let (url, _heads) = serve(respond_and_close(format!("{SSE_HEAD}{last}"))).await;
    let reply = client(&url, Duration::from_secs(5))
        .send(&request(true), 1)
        .await
        .unwrap();
    assert_eq!(reply.content.as_deref(), Some("ok"));
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
}
