//! Wire types of chat completions (whole replies and stream chunks), read leniently.
//!
//! Every field is optional and a field whose type varies between providers is
//! a [`Scalar`] (kept when a string, number, bool or null, skipped otherwise),
//! so unknown fields, nulls and numbers-as-strings never fail a reply that has
//! what we need, and nothing a server pads a reply with builds a tree in
//! memory (see `lenient`). Usage is kept as reported, never recounted; a
//! missing usage stays `None`, never zeros.

use std::fmt;

use reqwest::header::HeaderMap;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::lenient::{lenient_struct, Content, Obj, Scalar};
use super::Usage;

pub use super::lenient::{content_text, string};

/// $1 is 2,000,000 AI/ML API credits.
pub const CREDITS_PER_USD: f64 = 2_000_000.0;

lenient_struct! {
    /// A whole completion or one stream chunk: the two share their outer shape.
    /// Read by hand like every object here: a repeated key keeps its last
    /// value, as a tree would, rather than failing a reply already paid for.
    pub struct Completion {
        "id" => pub id: Option<Scalar>,
        "model" => pub model: Option<Scalar>,
        /// OpenRouter: the upstream provider that served the request.
        "provider" => pub provider: Option<Scalar>,
        "choices" => pub choices: Choices,
        "usage" => pub usage: Obj<WireUsage>,
        /// AI/ML API: `meta.usage.usd_spent` / `credits_used`.
        "meta" => pub meta: Obj<Meta>,
        /// Only whether there is one: the document is read again, typed, when so.
        "error" => pub error: Option<IgnoredAny>,
        /// vLLM's errors say `"object": "error"` at the top, with no `error` key.
        "object" => pub object: Option<Scalar>,
    }
}

impl Completion {
    /// Whether the server sent an error where a completion was due.
    pub fn is_error(&self) -> bool {
        self.error.is_some() || self.object.as_ref().and_then(Scalar::as_str) == Some("error")
    }
}

lenient_struct! {
    pub struct Choice {
        "index" => pub index: Option<Scalar>,
        "message" => pub message: Option<Message>,
        "delta" => pub delta: Option<Message>,
        "finish_reason" => pub finish_reason: Option<Scalar>,
    }
}

lenient_struct! {
    /// A message or a delta. `reasoning` and the rest are ignored.
    pub struct Message {
        "content" => pub content: Option<Content>,
        /// Passed through to the record as the server's text, never as a tree.
        "tool_calls" => pub tool_calls: Option<Box<RawValue>>,
        /// OpenAI's refusal text, sent instead of content.
        "refusal" => pub refusal: Option<Scalar>,
    }
}

/// `choices` as kept (see [`leading_choices`]); `None` when absent or null.
#[derive(Debug, Default)]
pub struct Choices(pub Option<Vec<Choice>>);

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Choices, D::Error> {
        leading_choices(deserializer).map(Choices)
    }
}

lenient_struct! {
    /// `usage` as providers send it: the token counts, and OpenRouter's cost.
    pub struct WireUsage {
        "prompt_tokens" => pub prompt_tokens: Option<Scalar>,
        "completion_tokens" => pub completion_tokens: Option<Scalar>,
        "total_tokens" => pub total_tokens: Option<Scalar>,
        "prompt_tokens_details" => pub prompt_tokens_details: Obj<Details>,
        "completion_tokens_details" => pub completion_tokens_details: Obj<Details>,
        /// OpenRouter.
        "cost" => pub cost: Option<Scalar>,
        "is_byok" => pub is_byok: Option<Scalar>,
        "cost_details" => pub cost_details: Obj<CostDetails>,
    }
}

lenient_struct! {
    pub struct Details {
        "cached_tokens" => pub cached_tokens: Option<Scalar>,
        "reasoning_tokens" => pub reasoning_tokens: Option<Scalar>,
    }
}

lenient_struct! {
    pub struct CostDetails {
        "upstream_inference_cost" => pub upstream_inference_cost: Option<Scalar>,
    }
}

lenient_struct! {
    /// AI/ML API's `meta`.
    pub struct Meta {
        "usage" => pub usage: Obj<MetaUsage>,
    }
}

lenient_struct! {
    pub struct MetaUsage {
        "usd_spent" => pub usd_spent: Option<Scalar>,
        "credits_used" => pub credits_used: Option<Scalar>,
    }
}

/// `choices`, keeping only what is used: the first choice, and the first
/// of index 0 when that is another. Every other one is read and dropped at
/// once: a server sending millions of `{}` (16 MiB of them took 2.5 GB as
/// a list of choices) costs no more memory than one.
fn leading_choices<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Choice>>, D::Error> {
    struct Leading;
    impl<'de> Visitor<'de> for Leading {
        type Value = Option<Vec<Choice>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of choices")
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
            inner.deserialize_seq(Leading)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kept: Vec<Choice> = Vec::new();
            while let Some(choice) = seq.next_element::<Choice>()? {
                let first_of_index_0 = choice.is_first() && !kept.iter().any(Choice::is_first);
                if kept.is_empty() || first_of_index_0 {
                    kept.push(choice);
                }
            }
            Ok(Some(kept))
        }
    }
    deserializer.deserialize_option(Leading)
}

impl Choice {
    /// The first choice of a reply (`n` > 1 is not ours to merge).
    pub fn is_first(&self) -> bool {
        self.index.as_ref().and_then(as_u64).unwrap_or(0) == 0
    }
}

/// A non-negative integer, from a number (integer or float) or a numeric string.
pub fn as_u64(value: &Scalar) -> Option<u64> {
    let from_f64 = |f: f64| (f.is_finite() && f >= 0.0).then(|| f.round() as u64);
    match value {
        Scalar::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(from_f64)),
        Scalar::String(s) => s.trim().parse::<f64>().ok().and_then(from_f64),
        _ => None,
    }
}

/// Finite and not negative: a figure that can be added up. The one rule for
/// every dollar figure, a server's or a file's.
pub fn is_amount(usd: f64) -> bool {
    usd.is_finite() && usd >= 0.0
}

/// A usable amount: finite and non-negative, from a number or a numeric string.
pub fn as_amount(value: &Scalar) -> Option<f64> {
    let amount = match value {
        Scalar::Number(n) => n.as_f64()?,
        Scalar::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    is_amount(amount).then_some(amount)
}

/// The largest token count believed: past 2^53 a count is no longer exact
/// in a JSON reader's double, and no reply is that long; a server sending
/// one is lying or broken.
pub const MAX_TOKEN_COUNT: u64 = 1 << 53;

/// What one usage field holds.
enum Count {
    Absent,
    Valid(u64),
    /// Negative, fractional, past [`MAX_TOKEN_COUNT`], or not a number.
    Bad,
}

fn count(value: Option<&Scalar>) -> Count {
    let valid = |n: u64| (n <= MAX_TOKEN_COUNT).then_some(n);
    let number = match value {
        None | Some(Scalar::Null) => return Count::Absent,
        Some(Scalar::Number(n)) => match n.as_u64() {
            Some(n) => valid(n),
            // A float: only a whole one (12.0) within the bound is a count.
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_TOKEN_COUNT as f64)
                .map(|f| f as u64),
        },
        Some(Scalar::String(s)) => s.trim().parse::<u64>().ok().and_then(valid),
        Some(_) => None,
    };
    number.map_or(Count::Bad, Count::Valid)
}

/// Usage as reported. `None` unless both prompt and completion counts are
/// present: a half-reported usage filled with zeros would be a guess that
/// the summary then adds up. A missing total is prompt + completion (the one
/// sum a server may leave to us). A count that is negative, fractional or
/// past 2^53 makes the whole usage bad: recorded as null, never clamped or
/// rounded into a figure nobody sent; so does a bad cached or reasoning count.
pub fn usage(usage: &WireUsage) -> Option<Usage> {
    let (Count::Valid(prompt), Count::Valid(completion)) = (
        count(usage.prompt_tokens.as_ref()),
        count(usage.completion_tokens.as_ref()),
    ) else {
        return None;
    };
    let total = match count(usage.total_tokens.as_ref()) {
        Count::Valid(total) => total,
        Count::Absent => prompt
            .checked_add(completion)
            .filter(|sum| *sum <= MAX_TOKEN_COUNT)?,
        Count::Bad => return None,
    };
    // A lying detail makes the whole usage bad too: one figure of it is a lie.
    let detail = |value: Option<&Scalar>| match count(value) {
        Count::Valid(n) => Ok(Some(n)),
        Count::Absent => Ok(None),
        Count::Bad => Err(()),
    };
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
        cached_tokens: detail(
            (usage.prompt_tokens_details.as_ref()).and_then(|d| d.cached_tokens.as_ref()),
        )
        .ok()?,
        reasoning_tokens: detail(
            (usage.completion_tokens_details.as_ref()).and_then(|d| d.reasoning_tokens.as_ref()),
        )
        .ok()?,
    })
}

/// The cost figures a body may carry, before the header/body precedence is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BodyCost {
    /// AI/ML API `meta.usage.usd_spent`.
    pub usd_spent: Option<f64>,
    /// AI/ML API `meta.usage.credits_used`.
    pub credits_used: Option<f64>,
    /// OpenRouter `usage.cost` (+ upstream cost for bring-your-own-key).
    pub openrouter: Option<f64>,
}

impl BodyCost {
    pub fn of(meta: Option<&Meta>, usage: Option<&WireUsage>) -> BodyCost {
        let meta_usage = meta.and_then(|m| m.usage.as_ref());
        let openrouter = usage.and_then(|usage| {
            let cost = usage.cost.as_ref().and_then(as_amount)?;
            let byok = usage.is_byok == Some(Scalar::Bool(true));
            let upstream = (usage.cost_details.as_ref())
                .and_then(|d| d.upstream_inference_cost.as_ref())
                .and_then(as_amount)
                .filter(|_| byok);
            // Two huge figures may add up to infinity: no figure at all then.
            Some(cost + upstream.unwrap_or(0.0)).filter(|sum| sum.is_finite())
        });
        BodyCost {
            usd_spent: meta_usage.and_then(|u| u.usd_spent.as_ref().and_then(as_amount)),
            credits_used: meta_usage.and_then(|u| u.credits_used.as_ref().and_then(as_amount)),
            openrouter,
        }
    }

    /// Keeps, field by field, the figure of the later chunk when it has one.
    pub fn update(&mut self, later: BodyCost) {
        self.usd_spent = later.usd_spent.or(self.usd_spent);
        self.credits_used = later.credits_used.or(self.credits_used);
        self.openrouter = later.openrouter.or(self.openrouter);
    }
}

/// The provider's cost in USD, the first that applies: `x-aimlapi-usd-spent`,
/// `meta.usage.usd_spent`, `x-aimlapi-credits-used`, `meta.usage.credits_used`
/// (credits / 2M), OpenRouter's `usage.cost`.
pub fn provider_cost(headers: &HeaderMap, body: &BodyCost) -> Option<f64> {
    let header = |name: &str| {
        let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        is_amount(value).then_some(value)
    };
    header("x-aimlapi-usd-spent")
        .or(body.usd_spent)
        .or_else(|| header("x-aimlapi-credits-used").map(|c| c / CREDITS_PER_USD))
        .or(body.credits_used.map(|c| c / CREDITS_PER_USD))
        .or(body.openrouter)
}

/// The server's model name, only when it differs from the one requested.
pub fn response_model(model: Option<Scalar>, requested: &str) -> Option<String> {
    string(model).filter(|model| model != requested)
}

#[cfg(test)]
mod tests;
