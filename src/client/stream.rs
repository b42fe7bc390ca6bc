//! Assembling a streamed completion from its SSE events.
//!
//! Content deltas are joined, tool-call deltas merged by index, the last
//! non-null finish reason and usage kept (a final chunk with empty `choices`
//! carrying only usage is normal with `stream_options.include_usage`). A
//! stream is complete only when a choice carried a finish reason (some
//! servers omit `[DONE]`); one that ends before that, closed or with
//! `[DONE]` (llama.cpp's server ends a stream it interrupts that way), was
//! cut short. What is kept is counted ([`StreamAssembler::size`]) so the
//! caller can cap a reply that never ends.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::header::HeaderMap;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;

use super::classify;
use super::lenient::{lenient_struct, Obj, Scalar};
use super::rate_headers;
use super::raw_json::{compact, readable};
use super::reply::bad_response;
use super::sse::SseEvent;
use super::wire::{self, BodyCost, Completion};
use super::{ErrorKind, Failure, RawJson, Reply, Usage};

#[derive(Debug, Default)]
pub struct StreamAssembler {
    content: String,
    refusal: String,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    cost: BodyCost,
    id: Option<String>,
    model: Option<Scalar>,
    provider: Option<String>,
    chunks: u64,
    done: bool,
    /// Bytes kept so far (content, refusal, tool calls): what the reply costs in memory.
    size: usize,
}

/// What a tool call's bookkeeping costs besides its strings: an endless
/// stream of empty calls must count too.
const TOOL_CALL_OVERHEAD: usize = 64;

lenient_struct! {
    /// One tool-call delta as a chunk sends it; the rest of it is skipped.
    pub struct CallDelta {
        "index" => pub index: Option<Scalar>,
        "id" => pub id: Option<Scalar>,
        "type" => pub kind: Option<Scalar>,
        "function" => pub function: Obj<FunctionDelta>,
    }
}

lenient_struct! {
    pub struct FunctionDelta {
        "name" => pub name: Option<Scalar>,
        /// A string by the spec; kept as text, whatever it is (see `merge_tool_call`).
        "arguments" => pub arguments: Option<Box<RawValue>>,
    }
}

/// An assembled tool call as the record holds it.
#[derive(Serialize)]
struct CallOut<'a> {
    function: FunctionOut<'a>,
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    arguments: &'a str,
    name: &'a str,
}

/// One tool call as its deltas arrive.
#[derive(Debug, Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

impl StreamAssembler {
    /// Takes one event. `Ok(true)` when it carried the first non-empty content
    /// (the time to first token); an error event or a non-JSON line fails the attempt.
    pub fn push(&mut self, event: &SseEvent, status: u16) -> Result<bool, Failure> {
        let data = event.data.trim();
        if self.done || data.is_empty() {
            return Ok(false);
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(false);
        }
        // A lone surrogate or a number past a double would fail the chunk (see `readable`).
        let repaired = readable(data);
        let data = repaired.as_ref();
        let chunk: Completion = serde_json::from_str(data).map_err(|err| Failure {
            uncertain: true,
            ..bad_response(
                status,
                &format!("the stream sent data that is not a JSON chunk ({err})"),
                data.as_bytes(),
            )
        })?;
        if chunk.is_error() || event.event.as_deref() == Some("error") {
            return Err(classify::in_band_failure(data, status, true));
        }
        self.chunks += 1;
        self.cost
            .update(BodyCost::of(chunk.meta.as_ref(), chunk.usage.as_ref()));
        if let Some(usage) = chunk.usage.as_ref().and_then(wire::usage) {
            self.usage = Some(usage);
        }
        if let Some(id) = wire::string(chunk.id) {
            self.id = Some(id);
        }
        if let Some(model @ Scalar::String(_)) = chunk.model {
            self.model = Some(model);
        }
        if let Some(provider) = wire::string(chunk.provider) {
            self.provider = Some(provider);
        }
        let had_content = !self.content.is_empty();
        for choice in chunk
            .choices
            .0
            .into_iter()
            .flatten()
            .filter(|c| c.is_first())
        {
            // Some servers send `"finish_reason": ""` on every chunk before
            // the last: a blank one is no finish reason, or a stream cut short
            // after its first chunk would pass for a whole reply.
            if let Some(reason) =
                wire::string(choice.finish_reason).filter(|r| !r.trim().is_empty())
            {
                self.finish_reason = Some(reason);
            }
            // Some servers put the last part in `message` rather than `delta`.
            let Some(delta) = choice.delta.or(choice.message) else {
                continue;
            };
            if let Some(text) = wire::content_text(delta.content) {
                self.size = self.size.saturating_add(text.len());
                self.content.push_str(&text);
            }
            if let Some(Scalar::String(text)) = delta.refusal {
                self.size = self.size.saturating_add(text.len());
                self.refusal.push_str(&text);
            }
            if let Some(calls) = delta.tool_calls {
                self.merge_tool_calls(calls.get());
            }
        }
        Ok(!had_content && !self.content.is_empty())
    }

    /// `[DONE]` was seen: nothing after it counts.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A choice carried a finish reason: the reply is whole (some servers never send `[DONE]`).
    pub fn has_finish_reason(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// Whether any completion chunk came (else the body was no stream at all).
    pub fn has_chunks(&self) -> bool {
        self.chunks > 0
    }

    /// Bytes kept so far, for the caller's `max_reply_bytes`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Merges a list of tool-call deltas, one at a time as they are read: a
    /// delta of millions of tiny nodes never stands in memory as a tree.
    /// Anything but a list is ignored.
    fn merge_tool_calls(&mut self, raw: &str) {
        struct Merge<'a>(&'a mut StreamAssembler);
        impl<'de> Visitor<'de> for Merge<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tool calls")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(Obj(delta)) = seq.next_element::<Obj<CallDelta>>()? {
                    self.0.merge_tool_call(delta.unwrap_or_default());
                }
                Ok(())
            }
        }
        if raw.trim_start().starts_with('[') {
            // The text is JSON already read once: only a repeated key can fail
            // here, and the deltas before it are kept.
            let _ = serde_json::Deserializer::from_str(raw).deserialize_seq(Merge(self));
        }
    }

    fn merge_tool_call(&mut self, delta: CallDelta) {
        let id = delta.id.as_ref().and_then(Scalar::as_str);
        // Servers that send whole calls may omit the index: place them by id.
        let index = (delta.index.as_ref())
            .and_then(wire::as_u64)
            .unwrap_or_else(|| {
                let known = id.and_then(|id| {
                    self.tool_calls
                        .iter()
                        .find(|(_, c)| c.id.as_deref() == Some(id))
                });
                match (known, id) {
                    (Some((index, _)), _) => *index,
                    // After the last one; a server's index may already be
                    // u64::MAX, so then the first free one.
                    (None, Some(_)) => match self.tool_calls.keys().next_back() {
                        None => 0,
                        Some(last) => last.checked_add(1).unwrap_or_else(|| {
                            (0..)
                                .find(|i| !self.tool_calls.contains_key(i))
                                .unwrap_or(0)
                        }),
                    },
                    (None, None) => self.tool_calls.keys().next_back().copied().unwrap_or(0),
                }
            });
        let known = self.tool_calls.contains_key(&index);
        let call = self.tool_calls.entry(index).or_default();
        let mut added = if known { 0 } else { TOOL_CALL_OVERHEAD };
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            added += id.len();
            call.id = Some(id.to_string());
        }
        if let Some(kind) = wire::string(delta.kind) {
            added += kind.len();
            call.kind = Some(kind);
        }
        let function = delta.function.0.unwrap_or_default();
        if let Some(name) = function.name.as_ref().and_then(Scalar::as_str) {
            added += name.len();
            call.name.push_str(name);
        }
        // Some servers send the arguments whole, as an object rather than its
        // text: kept as that object's JSON text, not dropped from a paid reply.
        let arguments = function.arguments.as_deref().and_then(|raw| {
            serde_json::from_str::<String>(raw.get())
                .ok()
                .or_else(|| Some(compact(raw.get())).filter(|text| text != "null"))
        });
        if let Some(arguments) = arguments {
            added += arguments.len();
            call.arguments.push_str(&arguments);
        }
        // Replaced ids and kinds are counted again: an over-count, never an under-count.
        self.size = self.size.saturating_add(added);
    }

    /// The end of the body: the reply, or why the stream is unusable. Latency is the caller's.
    pub fn finish(
        self,
        headers: &HeaderMap,
        requested_model: &str,
        status: u16,
    ) -> Result<Reply, Failure> {
        if self.chunks == 0 {
            return Err(Failure {
                uncertain: true,
                ..Failure::new(
                    ErrorKind::BadResponse,
                    Some(status),
                    "the stream ended without any completion chunk",
                )
            });
        }
        if !self.has_finish_reason() {
            // Never recorded as ok with partial content: retried, and the
            // attempt counted as one the provider may have billed.
            let how = if self.done {
                "it sent [DONE]"
            } else {
                "it ended"
            };
            let message = format!(
                "stream cut short after {}: {how} before any choice carried a finish reason",
                crate::printer::count(self.chunks, "chunk")
            );
            return Err(Failure {
                uncertain: true,
                ..Failure::new(ErrorKind::Connection, Some(status), message)
            });
        }
        // Written straight to text, keys in the order a JSON tree would
        // write them, so a streamed reply records what a whole one would.
        let calls: Vec<CallOut> = (self.tool_calls.values())
            .map(|call| CallOut {
                function: FunctionOut {
                    arguments: &call.arguments,
                    name: &call.name,
                },
                id: call.id.as_deref(),
                kind: call.kind.as_deref().unwrap_or("function"),
            })
            .collect();
        let tool_calls = if calls.is_empty() {
            None
        } else {
            Some(RawJson::of(&calls).map_err(|err| {
                Failure::new(
                    ErrorKind::BadResponse,
                    Some(status),
                    format!("the tool calls could not be written: {err}"),
                )
            })?)
        };
        drop(calls);
        let content = if self.content.is_empty() && tool_calls.is_some() {
            None
        } else {
            Some(self.content)
        };
        Ok(Reply {
            content,
            finish_reason: self.finish_reason,
            usage: self.usage,
            provider_cost_usd: wire::provider_cost(headers, &self.cost),
            response_id: self.id,
            provider: self.provider,
            response_model: wire::response_model(self.model, requested_model),
            tool_calls,
            refusal: (!self.refusal.is_empty()).then_some(self.refusal),
            json: None,
            latency_ms: 0.0,
            ttft_ms: None,
            rate_limits: rate_headers::rate_headers(headers),
        })
    }
}

#[cfg(test)]
mod tests;
