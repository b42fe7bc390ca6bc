//! Chat parameters: their bounds, and the merge of layers.
//!
//! Layers merge in the order `[defaults]` < `[[params]]` set < row `params` <
//! `--param`; the last wins, `extra` merges key by key, and `null` removes
//! what an earlier layer set. Every value is checked where it is written, so
//! an error can name the file, line and key.

use serde_json::{Map, Value};

use super::problem::nearest;
use super::ParamLayer;

/// The chat parameters the contract names; anything else goes under `extra`.
pub const CHAT_PARAMS: &[&str] = &[
    "model",
    "max_completion_tokens",
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "seed",
    "min_p",
    "top_k",
    "repetition_penalty",
    "top_a",
    "frequency_penalty",
    "presence_penalty",
    "stop",
];

pub fn is_chat_param(key: &str) -> bool {
    CHAT_PARAMS.contains(&key)
}

/// One parameter that failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    pub key: String,
    pub message: String,
}

/// What to do with a key that is neither a chat parameter nor `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeys {
    /// Job file: an error naming the nearest valid key.
    Reject,
    /// Row `params` and `--param`: passed through under `extra`.
    IntoExtra,
}

/// Checks one chat parameter's type and bounds. `null` is always accepted: it removes.
pub fn check(key: &str, value: &Value) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    match key {
        "model" => match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(()),
            Some(_) => Err("must not be empty".into()),
            None => Err(format!(
                "must be a string (a model id), not {}",
                describe(value)
            )),
        },
        "stream" => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| format!("must be true or false, not {}", describe(value))),
        "max_tokens" | "max_completion_tokens" => integer_in(value, 1, MAX_TOKEN_CAP),
        "seed" => integer_at_least(value, 1),
        "top_k" => integer_at_least(value, 0),
        "temperature" => number_in(value, 0.0, 2.0),
        "top_p" => number_in(value, 0.01, 1.0),
        "min_p" => number_in(value, 0.001, 0.999),
        "top_a" => number_in(value, 0.0, 1.0),
        "frequency_penalty" | "presence_penalty" => number_in(value, -2.0, 2.0),
        "repetition_penalty" => value
            .as_f64()
            .map(|_| ())
            .ok_or_else(|| format!("must be a number, not {}", describe(value))),
        "stop" => check_stop(value),
        _ => Ok(()),
    }
}

fn check_stop(value: &Value) -> Result<(), String> {
    match value {
        Value::String(_) => Ok(()),
        Value::Array(items) => {
            if items.len() > 4 {
                return Err(format!("takes at most 4 strings, got {}", items.len()));
            }
            if items.iter().all(Value::is_string) {
                Ok(())
            } else {
                Err("must be a string or a list of up to 4 strings".into())
            }
        }
        other => Err(format!(
            "must be a string or a list of up to 4 strings, not {}",
            describe(other)
        )),
    }
}

/// The largest `max_tokens` / `max_completion_tokens` (2^31): no model
/// writes more, and a cap beyond it could only be a typo whose worst case
/// and token reservation would be absurd.
pub const MAX_TOKEN_CAP: i64 = 1 << 31;

fn integer_in(value: &Value, min: i64, max: i64) -> Result<(), String> {
    integer_at_least(value, min)?;
    match value.as_i64() {
        Some(n) if n <= max => Ok(()),
        _ => Err(format!(
            "must be an integer from {min} to {max}, got {}",
            describe(value)
        )),
    }
}

fn integer_at_least(value: &Value, min: i64) -> Result<(), String> {
    let n = value.as_i64().or_else(|| {
        // u64 beyond i64 is still a valid (huge) integer.
        value.as_u64().map(|_| i64::MAX)
    });
    match n {
        Some(n) if n >= min => Ok(()),
        Some(n) => Err(format!("must be an integer >= {min}, got {n}")),
        None => Err(format!(
            "must be an integer >= {min}, not {}",
            describe(value)
        )),
    }
}

fn number_in(value: &Value, min: f64, max: f64) -> Result<(), String> {
    match value.as_f64() {
        Some(x) if (min..=max).contains(&x) => Ok(()),
        Some(x) => Err(format!("must be between {min} and {max}, got {x}")),
        None => Err(format!(
            "must be a number between {min} and {max}, not {}",
            describe(value)
        )),
    }
}

/// A short description of a JSON value for error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a table".into(),
    }
}

/// Builds a layer from a table of parameters (a `[defaults]` or `[[params]]`
/// table without its `name`, a row's `params`, or the `--param` pairs).
/// An `extra` key must hold a table. Every problem is returned, not the first.
pub fn layer_from_map(
    map: &Map<String, Value>,
    unknown: UnknownKeys,
) -> Result<ParamLayer, Vec<ParamProblem>> {
    let mut layer = ParamLayer::default();
    let mut problems = Vec::new();
    for (key, value) in map {
        if is_chat_param(key) {
            match check(key, value) {
                Ok(()) => {
                    layer.named.insert(key.clone(), value.clone());
                }
                Err(message) => problems.push(ParamProblem {
                    key: key.clone(),
                    message,
                }),
            }
        } else if key == "extra" {
            match value {
                Value::Object(extra) => {
                    for (k, v) in extra {
                        layer.extra.insert(k.clone(), v.clone());
                    }
                }
                Value::Null => {}
                other => problems.push(ParamProblem {
                    key: "extra".into(),
                    message: format!(
                        "must be a table of pass-through parameters, not {}",
                        describe(other)
                    ),
                }),
            }
        } else {
            match (unknown, typo_of(key)) {
                (UnknownKeys::IntoExtra, None) => {
                    layer.extra.insert(key.clone(), value.clone());
                }
                // Passed through, a typo would be sent silently and ignored by the server.
                (UnknownKeys::IntoExtra, Some(near)) => problems.push(ParamProblem {
                    key: key.clone(),
                    message: format!(
                        "{key:?} is not a chat parameter; did you mean {near:?}? to send {key:?} as it is, put it under extra, e.g. {{\"extra\": {{{key:?}: ...}}}}"
                    ),
                }),
                (UnknownKeys::Reject, _) => problems.push(ParamProblem {
                    key: key.clone(),
                    message: unknown_key_message(key),
                }),
            }
        }
    }
    if problems.is_empty() {
        Ok(layer)
    } else {
        Err(problems)
    }
}

/// "unknown chat parameter ..., did you mean ...?" with the nearest valid key.
pub fn unknown_key_message(key: &str) -> String {
    let mut candidates: Vec<&str> = CHAT_PARAMS.to_vec();
    candidates.push("extra");
    match nearest(key, &candidates) {
        Some(near) => format!(
            "unknown chat parameter {key:?}; did you mean {near:?}? (pass-through parameters go under extra = {{ ... }})"
        ),
        None => format!(
            "unknown chat parameter {key:?}; pass-through parameters go under extra = {{ ... }}"
        ),
    }
}

/// The chat parameter `key` is a likely misspelling of: within 1 edit
/// (2 for keys longer than 5 characters), transpositions counting as one.
pub fn typo_of(key: &str) -> Option<&'static str> {
    let most = if key.chars().count() > 5 { 2 } else { 1 };
    CHAT_PARAMS
        .iter()
        .map(|p| (strsim::damerau_levenshtein(key, p), *p))
        .filter(|(d, _)| (1..=most).contains(d))
        .min_by_key(|(d, _)| *d)
        .map(|(_, p)| p)
}

/// Parses `KEY=VALUE` from `--param`: the value as JSON when it parses, else as a string.
pub fn parse_assignment(text: &str) -> Result<(String, Value), String> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE (e.g. --param temperature=0.2)"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!(
            "{text:?} has an empty key (e.g. --param temperature=0.2)"
        ));
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

impl ParamLayer {
    /// Applies `over` on top of `self`: the last wins, `extra` key by key, `null` removes.
    pub fn merge(&mut self, over: &ParamLayer) {
        for (k, v) in &over.named {
            self.named.insert(k.clone(), v.clone());
        }
        for (k, v) in &over.extra {
            self.extra.insert(k.clone(), v.clone());
        }
    }

    /// Drops the `null`s that remained after merging: they mean "not sent".
    pub fn without_nulls(mut self) -> ParamLayer {
        self.named.retain(|_, v| !v.is_null());
        self.extra.retain(|_, v| !v.is_null());
        self
    }

    /// Merges layers in order, last wins, and removes what `null` removed.
    pub fn merged<'a>(layers: impl IntoIterator<Item = &'a ParamLayer>) -> ParamLayer {
        let mut out = ParamLayer::default();
        for layer in layers {
            out.merge(layer);
        }
        out.without_nulls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn bounds_table() {
        let cases: &[(&str, Value, bool)] = &[
            ("temperature", json!(0), true),
            ("temperature", json!(2.0), true),
            ("temperature", json!(2.01), false),
            ("temperature", json!(-0.1), false),
            ("temperature", json!("0.5"), false),
            ("top_p", json!(0.01), true),
            ("top_p", json!(0.0), false),
            ("top_p", json!(1), true),
            ("min_p", json!(0.001), true),
            ("min_p", json!(0.999), true),
            ("min_p", json!(1.0), false),
            ("top_a", json!(0), true),
            ("top_a", json!(1.5), false),
            ("frequency_penalty", json!(-2), true),
            ("frequency_penalty", json!(2.5), false),
            ("presence_penalty", json!(-2.1), false),
            ("repetition_penalty", json!(1.3), true),
            ("repetition_penalty", json!(true), false),
            ("max_tokens", json!(1), true),
            ("max_tokens", json!(0), false),
            ("max_tokens", json!(512.5), false),
            ("max_tokens", json!("512"), false),
            ("max_completion_tokens", json!(64), true),
            // Above 2^31 is a typo, not a cap: it would make the worst case absurd.
            ("max_tokens", json!(2_147_483_648u64), true),
            ("max_tokens", json!(2_147_483_649u64), false),
            ("max_completion_tokens", json!(2_147_483_649u64), false),
            ("max_completion_tokens", json!(u64::MAX), false),
            ("max_tokens", json!(1e300), false),
            ("seed", json!(1), true),
            ("seed", json!(0), false),
            ("top_k", json!(0), true),
            ("top_k", json!(-1), false),
            ("top_k", json!(40.0), false),
            ("stream", json!(true), true),
            ("stream", json!("yes"), false),
            ("stop", json!("\n"), true),
            ("stop", json!(["a", "b", "c", "d"]), true),
            ("stop", json!(["a", "b", "c", "d", "e"]), false),
            ("stop", json!([1]), false),
            ("model", json!("google/gemma-3-4b-it"), true),
            ("model", json!(""), false),
            ("model", json!(3), false),
            ("temperature", Value::Null, true),
        ];
        for (key, value, ok) in cases {
            assert_eq!(
                check(key, value).is_ok(),
                *ok,
                "{key} = {value} should be {}",
                if *ok { "accepted" } else { "rejected" }
            );
        }
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let msg = check("temperature", &json!(3)).unwrap_err();
        assert!(msg.contains("between 0 and 2"), "{msg}");
        let msg = check("seed", &json!(0)).unwrap_err();
        assert!(msg.contains("integer >= 1"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_rejected_in_job_files_and_passed_through_elsewhere() {
        let map = obj(json!({"temprature": 0.2, "max_tokens": 5}));
        let problems = layer_from_map(&map, UnknownKeys::Reject).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "temprature");
        assert!(problems[0].message.contains("\"temperature\""));

        let map = obj(json!({"temperature_bias": 0.2, "max_tokens": 5}));
        let layer = layer_from_map(&map, UnknownKeys::IntoExtra).expect("valid");
        assert_eq!(layer.extra.get("temperature_bias"), Some(&json!(0.2)));
        assert_eq!(layer.named.get("max_tokens"), Some(&json!(5)));
    }

    #[test]
    fn near_misses_of_chat_parameters_are_errors_even_where_unknown_keys_pass_through() {
        for (typo, meant) in [
            ("temprature", "temperature"),
            ("top_pp", "top_p"),
            ("max_token", "max_tokens"),
            ("tpo_k", "top_k"),
        ] {
            let map = obj(json!({ typo: 1 }));
            let problems = layer_from_map(&map, UnknownKeys::IntoExtra).unwrap_err();
            assert_eq!(problems[0].key, typo);
            let message = &problems[0].message;
            assert!(
                message.contains(&format!("did you mean {meant:?}?")),
                "{message}"
            );
            assert!(message.contains("under extra"), "{message}");
        }
        // Far from every chat parameter, or under extra: passed through.
        let map = obj(json!({"user": "u", "logprobs": true, "extra": {"temprature": 1}}));
        let layer = layer_from_map(&map, UnknownKeys::IntoExtra).expect("valid");
        assert_eq!(layer.extra.len(), 3, "{layer:?}");
    }

    #[test]
    fn all_problems_are_reported() {
        let map = obj(json!({"temperature": 9, "top_k": -3, "extra": 4}));
        let problems = layer_from_map(&map, UnknownKeys::Reject).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["extra", "temperature", "top_k"]);
    }

    #[test]
    fn merge_order_last_wins_and_null_removes() {
        let defaults = layer_from_map(
            &obj(json!({"model": "m1", "temperature": 0.5, "max_tokens": 100,
                        "extra": {"response_format": {"type": "json_object"}, "user": "a"}})),
            UnknownKeys::Reject,
        )
        .expect("valid");
        let set = layer_from_map(
            &obj(json!({"temperature": 0.2, "extra": {"user": "b"}})),
            UnknownKeys::Reject,
        )
        .expect("valid");
        let row = layer_from_map(
            &obj(json!({"max_tokens": null, "response_format": null})),
            UnknownKeys::IntoExtra,
        )
        .expect("valid");
        let flags =
            layer_from_map(&obj(json!({"model": "m2"})), UnknownKeys::IntoExtra).expect("valid");
        let merged = ParamLayer::merged([&defaults, &set, &row, &flags]);
        assert_eq!(merged.named.get("model"), Some(&json!("m2")));
        assert_eq!(merged.named.get("temperature"), Some(&json!(0.2)));
        assert!(!merged.named.contains_key("max_tokens"));
        assert_eq!(merged.extra.get("user"), Some(&json!("b")));
        assert!(!merged.extra.contains_key("response_format"));
    }

    #[test]
    fn assignments_parse_json_or_fall_back_to_text() {
        assert_eq!(
            parse_assignment("temperature=0.2").expect("ok"),
            ("temperature".into(), json!(0.2))
        );
        assert_eq!(
            parse_assignment(r#"stop=["\n\n"]"#).expect("ok"),
            ("stop".into(), json!(["\n\n"]))
        );
        assert_eq!(
            parse_assignment("model=google/gemma-3-4b-it").expect("ok"),
            ("model".into(), json!("google/gemma-3-4b-it"))
        );
        assert_eq!(
            parse_assignment("user=a=b").expect("ok"),
            ("user".into(), json!("a=b"))
        );
        assert!(parse_assignment("temperature").is_err());
        assert!(parse_assignment("=3").is_err());
    }
}
