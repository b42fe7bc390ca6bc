//! Reply bodies and heads: whole bodies, chunked bodies with optional pauses,
//! and bodies that break off mid-way (the `cut` fault).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Every reply body the mock sends.
pub(crate) type MockBody = UnsyncBoxBody<Bytes, BodyCut>;

/// The error a `cut` body ends with: hyper then drops the connection mid-body.
#[derive(Debug, thiserror::Error)]
#[error("mock fault: the reply body was cut short")]
pub(crate) struct BodyCut;

pub(crate) const JSON: &str = "application/json";
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// A complete reply with this status, content type and body.
pub(crate) fn reply(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<MockBody> {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync();
    with_head(status, content_type, body)
}

/// A reply whose body is sent frame by frame, `gap` apart, and which ends by
/// dropping the connection when `cut` is set.
pub(crate) fn frames(
    status: u16,
    content_type: &'static str,
    frames: Vec<Bytes>,
    gap: Duration,
    cut: bool,
) -> Response<MockBody> {
    let state = (frames.into_iter(), true, cut);
    let stream = futures::stream::unfold(state, move |(mut frames, first, cut)| async move {
        match frames.next() {
            Some(frame) => {
                if !first && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok(Frame::data(frame)), (frames, false, cut)))
            }
            None if cut => {
                // Let hyper flush what was sent so far: a body error drops its write buffer.
                tokio::task::yield_now().await;
                Some((Err(BodyCut), (frames, false, false)))
            }
            None => None,
        }
    });
    with_head(status, content_type, StreamBody::new(stream).boxed_unsync())
}

/// A JSON reply that announces `full.len()` bytes, sends the first half and
/// then drops the connection: the client sees a body ended early.
pub(crate) fn cut_json(full: Bytes) -> Response<MockBody> {
    let half = full.slice(..full.len() / 2);
    let mut response = frames(200, JSON, vec![half], Duration::ZERO, true);
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(full.len()));
    response
}

fn with_head(status: u16, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).expect("the mock only sends valid status codes");
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Adds a header whose value the mock formatted itself (numbers, ids).
pub(crate) fn set_header(response: &mut Response<MockBody>, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}
