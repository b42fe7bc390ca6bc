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

/// A whole completion or one stream chunk: the two share their outer shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Completion {
    pub id: Option<Scalar>,
    pub model: Option<Scalar>,
    /// OpenRouter: the upstream provider that served the request.
    pub provider: Option<Scalar>,
    #[serde(deserialize_with = "leading_choices")]
    pub choices: Option<Vec<Choice>>,
    pub usage: Obj<WireUsage>,
    /// AI/ML API: `meta.usage.usd_spent` / `credits_used`.
    pub meta: Obj<Meta>,
    /// Only whether there is one: the document is read again, typed, when so.
    pub error: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Choice {
    pub index: Option<Scalar>,
    pub message: Option<Message>,
    pub delta: Option<Message>,
    pub finish_reason: Option<Scalar>,
}

/// A message or a delta. `reasoning` and the rest are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Message {
    pub content: Option<Content>,
    /// Passed through to the record as the server's text, never as a tree.
    pub tool_calls: Option<Box<RawValue>>,
    /// OpenAI's refusal text, sent instead of content.
    pub refusal: Option<Scalar>,
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

/// A usable amount: finite and non-negative, from a number or a numeric string.
pub fn as_amount(value: &Scalar) -> Option<f64> {
    let amount = match value {
        Scalar::Number(n) => n.as_f64()?,
        Scalar::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (amount.is_finite() && amount >= 0.0).then_some(amount)
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
        (value.is_finite() && value >= 0.0).then_some(value)
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
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::{json, Value};

    /// The typed form of a test's JSON, as a reply would be read.
    fn typed<T: for<'de> Deserialize<'de>>(value: &Value) -> Option<T> {
        serde_json::from_value::<Obj<T>>(value.clone()).unwrap().0
    }

    fn usage(value: &Value) -> Option<Usage> {
        typed::<WireUsage>(value).as_ref().and_then(super::usage)
    }

    fn body_cost(meta: Option<&Value>, usage: Option<&Value>) -> BodyCost {
        let meta = meta.and_then(typed::<Meta>);
        let usage = usage.and_then(typed::<WireUsage>);
        BodyCost::of(meta.as_ref(), usage.as_ref())
    }

    fn content_text(value: Option<Value>) -> Option<String> {
        let content = value.map(|v| serde_json::from_value::<Option<Content>>(v).unwrap());
        super::content_text(content.flatten())
    }

    #[test]
    fn cost_precedence() {
        let full_body = body_cost(
            Some(&json!({"usage": {"usd_spent": "0.5", "credits_used": 4000000}})),
            Some(&json!({"cost": 0.25})),
        );
        let all_headers = [
            ("x-aimlapi-usd-spent", "0.75"),
            ("x-aimlapi-credits-used", "6000000"),
        ];
        let credits_header = [("x-aimlapi-credits-used", "6000000")];
        let no_usd = BodyCost {
            usd_spent: None,
            ..full_body
        };
        let only_credits = BodyCost {
            usd_spent: None,
            openrouter: None,
            ..full_body
        };
        let only_openrouter = BodyCost {
            openrouter: Some(0.25),
            ..BodyCost::default()
        };
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Headers, BodyCost, Option<f64>)] = &[
            (&all_headers, full_body, Some(0.75)),
            (&credits_header, full_body, Some(0.5)),
            (&credits_header, no_usd, Some(3.0)),
            (&[], no_usd, Some(2.0)),
            (&[], only_credits, Some(2.0)),
            (&[], only_openrouter, Some(0.25)),
            (
                &[("x-aimlapi-usd-spent", "-1")],
                only_openrouter,
                Some(0.25),
            ),
            (&[("x-aimlapi-usd-spent", "NaN")], BodyCost::default(), None),
            (&[], BodyCost::default(), None),
        ];
        for (pairs, body, expected) in table {
            let mut headers = HeaderMap::new();
            for (name, value) in *pairs {
                headers.insert(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            assert_eq!(
                provider_cost(&headers, body),
                *expected,
                "{pairs:?} {body:?}"
            );
        }
    }

    #[test]
    fn openrouter_cost_forms() {
        let cost = |usage: Value| body_cost(None, Some(&usage)).openrouter;
        assert_eq!(cost(json!({"cost": 0})), Some(0.0));
        assert_eq!(cost(json!({"cost": "0.002"})), Some(0.002));
        assert_eq!(
            cost(
                json!({"cost": 0.001, "is_byok": true, "cost_details": {"upstream_inference_cost": 0.01}})
            ),
            Some(0.011)
        );
        assert_eq!(
            cost(
                json!({"cost": 0.001, "is_byok": false, "cost_details": {"upstream_inference_cost": 0.01}})
            ),
            Some(0.001)
        );
        assert_eq!(cost(json!({"cost": -3})), None);
        // Finite alone, infinite together: a lie, not a figure.
        assert_eq!(
            cost(
                json!({"cost": 1e308, "is_byok": true, "cost_details": {"upstream_inference_cost": 1e308}})
            ),
            None
        );
        assert_eq!(cost(json!({"prompt_tokens": 3})), None);
    }

    #[test]
    fn usage_forms() {
        let u = usage(&json!({"prompt_tokens": 5, "completion_tokens": "7"})).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (5, 7, 12)
        );
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (None, None));
        let u = usage(&json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 3}}))
        .unwrap();
        assert_eq!(
            (u.total_tokens, u.cached_tokens, u.reasoning_tokens),
            (20, Some(2), Some(3))
        );
        assert_eq!(usage(&json!({"cost": 0})), None);
        assert_eq!(usage(&Value::Null), None);
        // Counts past 2^53, negative, fractional or not numbers make a bad usage.
        for bad in [
            json!(u64::MAX),
            json!(9_007_199_254_740_993u64),
            json!("9007199254740993"),
            json!(-1),
            json!(1.5),
            json!(1e300),
            json!("-3"),
            json!("NaN"),
            json!(true),
        ] {
            for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
                let mut u = json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12});
                u[field] = bad.clone();
                assert_eq!(usage(&u), None, "{field} = {bad}");
            }
            let u = json!({"prompt_tokens": 5, "completion_tokens": 7,
                "completion_tokens_details": {"reasoning_tokens": bad}});
            assert_eq!(usage(&u), None, "reasoning_tokens = {bad}");
        }
        let u = usage(
            &json!({"prompt_tokens": 9_007_199_254_740_990u64, "completion_tokens": 2.0,
            "total_tokens": null}),
        )
        .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            ((1 << 53) - 2, 2, 1 << 53)
        );
        // Half a usage is not filled in with zeros.
        assert_eq!(usage(&json!({"prompt_tokens": 11})), None);
        assert_eq!(
            usage(&json!({"completion_tokens": 3, "total_tokens": 3})),
            None
        );
    }

    #[test]
    fn lying_counts_are_bad_usage_never_clamped_or_summed_past_the_bound() {
        let max = MAX_TOKEN_COUNT;
        let bad = [
            json!({"prompt_tokens": u64::MAX, "completion_tokens": 1}),
            json!({"prompt_tokens": max + 1, "completion_tokens": 1, "total_tokens": 5}),
            json!({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 1e300}),
            json!({"prompt_tokens": -1, "completion_tokens": 1}),
            json!({"prompt_tokens": 1.5, "completion_tokens": 1}),
            json!({"prompt_tokens": "1e400", "completion_tokens": 1}),
            json!({"prompt_tokens": "18446744073709551615", "completion_tokens": 1}),
            json!({"prompt_tokens": 1, "completion_tokens": true}),
            // Each within the bound, their sum (the missing total) past it.
            json!({"prompt_tokens": max, "completion_tokens": max}),
        ];
        for value in bad {
            assert_eq!(usage(&value), None, "{value}");
        }
        let u = usage(&json!({"prompt_tokens": max, "completion_tokens": 0.0, "total_tokens": "9007199254740992"}))
        .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (max, 0, max)
        );
        // A lying detail is a lying usage.
        for details in [
            json!({"prompt_tokens_details": {"cached_tokens": -4}}),
            json!({"completion_tokens_details": {"reasoning_tokens": u64::MAX}}),
        ] {
            let mut value = json!({"prompt_tokens": 1, "completion_tokens": 1});
            value
                .as_object_mut()
                .unwrap()
                .extend(details.as_object().unwrap().clone());
            assert_eq!(usage(&value), None, "{value}");
        }
    }

    #[test]
    fn only_the_choices_used_are_kept() {
        let parse = |text: &str| serde_json::from_str::<Completion>(text).map(|c| c.choices);
        let many = format!(
            r#"{{"choices":[{{"index":1}},{}{{"index":0,"finish_reason":"stop"}},{{"index":0}}]}}"#,
            "{},".repeat(1000)
        );
        let kept = parse(&many).unwrap().expect("choices");
        // The first, then the first of index 0 (`{}` has none, so counts as 0).
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].index, Some(Scalar::Number(1.into())));
        assert_eq!(kept[1].index, None);
        assert!(parse(r#"{"choices":null}"#).unwrap().is_none());
        assert!(parse(r#"{}"#).unwrap().is_none());
        assert_eq!(
            parse(r#"{"choices":[]}"#).unwrap().map(|c| c.len()),
            Some(0)
        );
        assert!(parse(r#"{"choices":{"a":1}}"#).is_err());
        assert!(parse(r#"{"choices":[1]}"#).is_err());
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_a_tree_would() {
        let completion: Completion = serde_json::from_str(
            r#"{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":5,"completion_tokens":2,
            "prompt_tokens_details":{"cached_tokens":1,"cached_tokens":3},"pad":[{},{}]}}"#,
        )
        .unwrap();
        let u = completion.usage.as_ref().and_then(super::usage).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.total_tokens, u.cached_tokens),
            (5, 7, Some(3))
        );
    }

    #[test]
    fn content_forms() {
        assert_eq!(content_text(Some(json!("hi"))), Some("hi".into()));
        assert_eq!(
            content_text(Some(
                json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}, {"type": "thinking", "text": "no"}])
            )),
            Some("ab".into())
        );
        assert_eq!(content_text(Some(Value::Null)), None);
        assert_eq!(content_text(None), None);
    }
}
