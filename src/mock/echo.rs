//! A server that echoes the credentials it was sent, for the client's redaction tests.
//!
//! Real servers quote the key back ("Incorrect API key provided: sk-...");
//! a broken or hostile one may put it anywhere. `[mock:echo-auth]` puts the
//! key (the `Authorization: Bearer` value) and the `x-api-key` header's value
//! into every string of a success: content (streamed a few bytes per chunk,
//! so a secret spans chunks), id, model, provider, refusal and tool calls.
//! The `echo-*` faults quote them in errors, placed so that every cut the
//! client makes (500 characters of a message, 200 of an upstream excerpt or
//! of a body) falls inside a secret: one character before its end, or a few
//! characters after its start (too few to recognise as a part of it).

use std::time::Duration;

use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Response};
use serde_json::{json, Value};

use super::body::{self, MockBody, EVENT_STREAM, JSON};
use super::completion::ReplyContext;
use super::directives::Fault;
use super::reply::Plan;

/// Where the client cuts an error message, an upstream excerpt and a body excerpt.
const MESSAGE_CUT: usize = 500;
const EXCERPT_CUT: usize = 200;
/// Characters of a secret before the cut, when only its head is left there.
const HEAD: usize = 5;

/// What the request carried.
pub(crate) struct Credentials {
    /// The `Authorization` value without its `Bearer ` scheme.
    pub key: String,
    /// The `x-api-key` value.
    pub header: String,
}

impl Credentials {
    pub fn of(headers: &HeaderMap) -> Credentials {
        let value = |name| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        let auth = value(AUTHORIZATION.as_str());
        let key = auth.strip_prefix("Bearer ").unwrap_or(&auth).to_string();
        Credentials {
            key,
            header: value("x-api-key"),
        }
    }
}

/// Puts the credentials into every string of the planned success.
pub(crate) fn into_reply(plan: &mut Plan, ctx: &mut ReplyContext, creds: &Credentials) {
    let Credentials { key, header } = creds;
    let reply = &mut plan.reply;
    if !reply.content.is_empty() {
        reply.content = format!(
            "{} The key is {key} and the header {header}.",
            reply.content
        );
    }
    reply.model = format!("{header}/{key}");
    if let Some(Value::Array(calls)) = &mut reply.tool_calls {
        for call in calls {
            call["id"] = json!(format!("call_{key}"));
            call["function"]["arguments"] = json!(json!({"key": key, header: header}).to_string());
        }
    }
    ctx.id = format!("chatcmpl-{key}");
    ctx.provider = Some(format!("provider-{header}"));
    ctx.refusal = Some(format!("I will not repeat {key}"));
}

/// The reply to an `echo-*` fault.
pub(crate) fn fault_reply(fault: Fault, creds: &Credentials, stream: bool) -> Response<MockBody> {
    let Credentials { key, header } = creds;
    match fault {
        Fault::Echo502 => {
            let raw = straddling("upstream said", header, EXCERPT_CUT, all_but_one(header));
            let body = json!({"error": {"message": format!("Provider returned error for {key}"),
                "code": 502, "metadata": {"raw": raw, "provider_name": "Mock"}}});
            body::reply(502, JSON, body.to_string())
        }
        // Broken JSON where a completion should be; in a stream, as its one data line.
        Fault::Echo200 => {
            let page = straddling(r#"{"note": "Welcome! Sign in with"#, key, EXCERPT_CUT, HEAD);
            match stream {
                true => {
                    let frame = format!("data: {page}\n\n");
                    body::frames(200, EVENT_STREAM, vec![frame.into()], Duration::ZERO, false)
                }
                false => body::reply(200, JSON, page),
            }
        }
        Fault::EchoSse => {
            let error = in_band(key, header);
            match stream {
                true => {
                    let frame = format!("data: {error}\n\n");
                    body::frames(200, EVENT_STREAM, vec![frame.into()], Duration::ZERO, false)
                }
                false => body::reply(200, JSON, error.to_string()),
            }
        }
        // Echo401, and any other fault should one arrive here.
        _ => {
            let head = format!("Incorrect API key provided: {header}. You passed");
            let body = json!({"error": {"message": straddling(&head, key, MESSAGE_CUT, HEAD),
                "type": format!("invalid_api_key:{key}"), "code": "invalid_api_key"}});
            body::reply(401, JSON, body.to_string())
        }
    }
}

/// An error object inside a 200, its message cut by the client inside the key.
fn in_band(key: &str, header: &str) -> Value {
    let head = format!("upstream rejected {header} and");
    json!({"error": {"message": straddling(&head, key, MESSAGE_CUT, all_but_one(key)), "type": "server_error",
        "code": key}})
}

/// `head`, padding, then `secret` with `inside` of its characters before
/// character `cut`, then a tail: a client that cuts before it redacts keeps
/// that much of the secret.
fn straddling(head: &str, secret: &str, cut: usize, inside: usize) -> String {
    let before = cut.saturating_sub(inside);
    let pad = before.saturating_sub(head.chars().count() + 2).max(1);
    format!(
        "{head} {} {secret} and more words after it",
        "x".repeat(pad)
    )
}

fn all_but_one(secret: &str) -> usize {
    secret.chars().count().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_straddles_the_cut() {
        let secret = "pbKey-7Qz9xW2mV8rT4nL6";
        for cut in [MESSAGE_CUT, EXCERPT_CUT] {
            for inside in [HEAD, all_but_one(secret)] {
                let text = straddling("Incorrect key:", secret, cut, inside);
                let at = text.find(secret).expect("the secret is there");
                assert_eq!(at + inside, cut, "{text}");
            }
        }
    }

    #[test]
    fn credentials_from_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer k-1".parse().expect("value"));
        headers.insert("x-api-key", "h-2".parse().expect("value"));
        let creds = Credentials::of(&headers);
        assert_eq!((creds.key.as_str(), creds.header.as_str()), ("k-1", "h-2"));
        let creds = Credentials::of(&HeaderMap::new());
        assert_eq!((creds.key.as_str(), creds.header.as_str()), ("", ""));
    }
}
