//! Writes a planned reply on the wire: a `chat.completion` JSON body, or a
//! stream of `chat.completion.chunk` server-sent events ending in `[DONE]`.
//!
//! Serialised from borrowed structs rather than `json!` trees: this is the
//! hot path of every benchmark.

use bytes::Bytes;
use hyper::Response;
use serde::Serialize;
use serde_json::Value;

use super::body::{self, MockBody, EVENT_STREAM, JSON};
use super::directives::CostMode;
use super::reply::{Plan, DEFAULT_USD_PER_MILLION};

/// Words per content delta in a stream.
const WORDS_PER_CHUNK: usize = 3;

/// What is the same for every part of one reply.
pub(crate) struct ReplyContext {
    pub id: String,
    pub created: u64,
    /// The configured `usd_per_million`: when set, every success carries `x-aimlapi-usd-spent`.
    pub usd_per_million: Option<f64>,
    /// `provider` to send instead of the OpenRouter cost mode's (`[mock:echo-auth]`).
    pub provider: Option<String>,
    /// `message.refusal` to send (`[mock:echo-auth]`).
    pub refusal: Option<String>,
}

/// How a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// Finish reason, usage when asked for, `[DONE]`.
    Complete,
    /// The first content chunks, then the connection drops.
    Cut,
    /// One content chunk, then an `error` event, then the body ends.
    ErrorEvent,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    choices: &'a [Choice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Meta>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'a str,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a Value>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
}

#[derive(Serialize)]
struct Meta {
    usage: MetaUsage,
}

#[derive(Serialize)]
struct MetaUsage {
    tokens_used: u64,
    usd_spent: f64,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null` on every chunk but the usage one with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a Meta>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
    logprobs: Option<()>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Value>,
}

/// The JSON body of a non-streaming reply; `empty_choices` for the `empty` fault.
pub(crate) fn json_body(plan: &Plan, ctx: &ReplyContext, empty_choices: bool) -> Bytes {
    let reply = &plan.reply;
    let choice = Choice {
        index: 0,
        message: Message {
            role: "assistant",
            content: reply.tool_calls.is_none().then_some(reply.content.as_str()),
            refusal: ctx.refusal.as_deref(),
            tool_calls: reply.tool_calls.as_ref(),
        },
        finish_reason: reply.finish_reason,
        logprobs: None,
    };
    let choices = [choice];
    let completion = Completion {
        id: &ctx.id,
        object: "chat.completion",
        created: ctx.created,
        model: &reply.model,
        provider: provider(plan, ctx),
        choices: if empty_choices { &[] } else { &choices },
        usage: usage(plan, ctx),
        meta: meta(plan, ctx),
    };
    Bytes::from(serde_json::to_vec(&completion).expect("plain structs always serialise"))
}

/// A complete non-streaming success with its cost headers.
pub(crate) fn json_reply(
    plan: &Plan,
    ctx: &ReplyContext,
    empty_choices: bool,
) -> Response<MockBody> {
    let mut response = body::reply(200, JSON, json_body(plan, ctx, empty_choices));
    cost_headers(&mut response, plan, ctx);
    response
}

/// A streaming reply with its cost headers.
pub(crate) fn stream_reply(plan: &Plan, ctx: &ReplyContext, end: StreamEnd) -> Response<MockBody> {
    let frames = stream_frames(plan, ctx, end);
    let gap = plan.directives.chunk_gap;
    let mut response = body::frames(200, EVENT_STREAM, frames, gap, end == StreamEnd::Cut);
    body::set_header(&mut response, "cache-control", "no-cache".to_string());
    cost_headers(&mut response, plan, ctx);
    response
}

fn stream_frames(plan: &Plan, ctx: &ReplyContext, end: StreamEnd) -> Vec<Bytes> {
    let reply = &plan.reply;
    let with_usage = plan.include_usage && !plan.directives.no_usage;
    let null_usage = with_usage.then_some(None);
    let chunk =
        |choices: &[ChunkChoice<'_>], usage: Option<Option<&Usage>>, meta: Option<&Meta>| {
            let chunk = Chunk {
                id: &ctx.id,
                object: "chat.completion.chunk",
                created: ctx.created,
                model: &reply.model,
                provider: provider(plan, ctx),
                choices,
                usage,
                meta,
            };
            let mut line = b"data: ".to_vec();
            serde_json::to_writer(&mut line, &chunk).expect("plain structs always serialise");
            line.extend_from_slice(b"\n\n");
            Bytes::from(line)
        };
    let delta_chunk = |delta: Delta<'_>, finish: Option<&str>, meta: Option<&Meta>| {
        let choice = ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish,
            logprobs: None,
        };
        chunk(&[choice], null_usage, meta)
    };

    let mut frames = Vec::with_capacity(reply.content.len() / 16 + 5);
    let role = Delta {
        role: Some("assistant"),
        content: reply.tool_calls.is_none().then_some(""),
        refusal: ctx.refusal.as_deref(),
        ..Delta::default()
    };
    frames.push(delta_chunk(role, None, None));
    let pieces = content_pieces(plan);
    let keep = match end {
        StreamEnd::Complete => pieces.len(),
        StreamEnd::Cut => pieces.len().div_ceil(2).max(1),
        StreamEnd::ErrorEvent => 1,
    };
    frames.extend(
        pieces
            .into_iter()
            .take(keep)
            .map(|delta| delta_chunk(delta, None, None)),
    );
    match end {
        StreamEnd::Cut => return frames,
        StreamEnd::ErrorEvent => {
            frames.push(Bytes::from_static(
                b"data: {\"error\":{\"message\":\"Upstream provider error\",\"type\":\"server_error\",\"code\":502}}\n\n",
            ));
            return frames;
        }
        StreamEnd::Complete => {}
    }
    let meta = meta(plan, ctx);
    let finish_meta = if with_usage { None } else { meta.as_ref() };
    frames.push(delta_chunk(
        Delta::default(),
        Some(reply.finish_reason),
        finish_meta,
    ));
    if with_usage {
        frames.push(chunk(&[], Some(usage(plan, ctx).as_ref()), meta.as_ref()));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

/// The content as deltas of a few words each (they concatenate to the exact
/// content), or a tool call's name and then its arguments.
fn content_pieces(plan: &Plan) -> Vec<Delta<'_>> {
    let reply = &plan.reply;
    if let Some(calls) = &reply.tool_calls {
        let call = &calls[0];
        let head = serde_json::json!([{
            "index": 0, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }]);
        let args = serde_json::json!([{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]);
        return vec![
            Delta {
                tool_calls: Some(head),
                ..Delta::default()
            },
            Delta {
                tool_calls: Some(args),
                ..Delta::default()
            },
        ];
    }
    let content = reply.content.as_str();
    if plan.directives.echo_auth {
        return small_pieces(content);
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut words = 0;
    let mut in_word = false;
    for (at, c) in content.char_indices() {
        if c.is_whitespace() {
            if in_word && words == WORDS_PER_CHUNK {
                pieces.push(Delta {
                    content: Some(&content[start..at]),
                    ..Delta::default()
                });
                start = at;
                words = 0;
            }
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
        }
    }
    if start < content.len() {
        pieces.push(Delta {
            content: Some(&content[start..]),
            ..Delta::default()
        });
    }
    pieces
}

/// Deltas of a few bytes each, so an echoed secret spans several chunks.
fn small_pieces(content: &str) -> Vec<Delta<'_>> {
    const BYTES: usize = 5;
    let mut pieces = Vec::with_capacity(content.len() / BYTES + 1);
    let mut start = 0;
    for (at, _) in content.char_indices() {
        if at - start >= BYTES {
            pieces.push(Delta {
                content: Some(&content[start..at]),
                ..Delta::default()
            });
            start = at;
        }
    }
    if start < content.len() {
        pieces.push(Delta {
            content: Some(&content[start..]),
            ..Delta::default()
        });
    }
    pieces
}

fn price(ctx: &ReplyContext) -> f64 {
    ctx.usd_per_million.unwrap_or(DEFAULT_USD_PER_MILLION)
}

fn usage(plan: &Plan, ctx: &ReplyContext) -> Option<Usage> {
    let reply = &plan.reply;
    (!plan.directives.no_usage).then(|| Usage {
        prompt_tokens: reply.prompt_tokens,
        completion_tokens: reply.completion_tokens,
        total_tokens: reply.total_tokens(),
        cost: (reply.cost_mode == Some(CostMode::OpenRouter)).then(|| reply.usd_at(price(ctx))),
    })
}

fn meta(plan: &Plan, ctx: &ReplyContext) -> Option<Meta> {
    let reply = &plan.reply;
    (reply.cost_mode == Some(CostMode::AimlBody)).then(|| Meta {
        usage: MetaUsage {
            tokens_used: reply.total_tokens(),
            usd_spent: reply.usd_at(price(ctx)),
        },
    })
}

fn provider<'a>(plan: &Plan, ctx: &'a ReplyContext) -> Option<&'a str> {
    match &ctx.provider {
        Some(provider) => Some(provider),
        None => (plan.reply.cost_mode == Some(CostMode::OpenRouter)).then_some("MockProvider"),
    }
}

fn cost_headers(response: &mut Response<MockBody>, plan: &Plan, ctx: &ReplyContext) {
    let reply = &plan.reply;
    let usd = reply.usd_at(price(ctx));
    if ctx.usd_per_million.is_some() || reply.cost_mode == Some(CostMode::AimlHeader) {
        body::set_header(response, "x-aimlapi-usd-spent", usd.to_string());
    }
    if reply.cost_mode == Some(CostMode::AimlCredits) {
        body::set_header(response, "x-aimlapi-credits-used", (usd * 2e6).to_string());
    }
}
