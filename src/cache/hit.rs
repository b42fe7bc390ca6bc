//! What travels between the cache and a record: the reply part of a line
//! going in, and a request answered from the store coming out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::plan::Request;

/// A request answered from the store: becomes its output line without
/// being sent.
#[derive(Debug)]
pub struct Hit {
    pub request: Request,
    /// The stored reply part, a JSON object (see [`reply_part`]).
    pub reply: String,
    /// The lookup's start and end: the line's `started_at` and `finished_at`.
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// The fields of a record that belong to the request or to this run, not to
/// the reply: never stored, and made afresh for a line answered from the
/// store. Every other field is the reply's (content, finish_reason, usage,
/// cost_usd, cost_source, response_id, provider, response_model,
/// tool_calls, refusal, json, ...) and is stored as written.
const NOT_REPLY: &[&str] = &[
    "key",
    "job",
    "id",
    "param_set",
    "status",
    "model",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "uncertain_attempts",
    "client_request_id",
    "request_sha256",
    "error",
    "started_at",
    "finished_at",
    "params",
    "input",
    "budget_charge_usd",
    "prior_charge_usd",
    "cached",
    "cached_cost_usd",
    "endpoint",
    "batch_id",
];

/// The reply part of one output line (a JSON object), as a JSON object with
/// only the reply's fields; None for a line that is not an object of plain
/// keys (never one a run writes).
pub fn reply_part(line: &[u8]) -> Option<String> {
    // Values are borrowed, unparsed: the row and the parameters, often most
    // of the line, are skipped without being built.
    let fields: BTreeMap<&str, &RawValue> = serde_json::from_slice(line).ok()?;
    let mut out = String::with_capacity(line.len() / 2);
    out.push('{');
    for (name, value) in fields.iter().filter(|(n, _)| !NOT_REPLY.contains(n)) {
        if out.len() > 1 {
            out.push(',');
        }
        // A record's field names are plain ASCII: no escaping needed, but
        // written through serde all the same.
        out.push_str(&serde_json::to_string(name).ok()?);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::reply_part;

    #[test]
    fn keeps_the_reply_and_drops_what_belongs_to_the_request() {
        let line = br#"{"key":"a/x","job":"j","id":"a","param_set":"x","status":"ok","model":"m","content":"Hi","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},"cost_usd":0.5,"cost_source":"provider","latency_ms":3.0,"attempts":2,"input":{"q":"big row"},"params":{},"json":{"a":1}}"#;
        let part: serde_json::Value = serde_json::from_str(&reply_part(line).unwrap()).unwrap();
        assert_eq!(
            part,
            serde_json::json!({"content":"Hi","finish_reason":"stop",
                "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},
                "cost_usd":0.5,"cost_source":"provider","json":{"a":1}})
        );
        assert_eq!(reply_part(b"not json"), None);
    }
}
