//! Chat parameters: their bounds, and the merge of layers.
//!
//! Layers merge in the order `[defaults]` < `[[params]]` set < row `params` <
//! `--param`; the last wins, `extra` merges key by key, and `null` removes
//! what an earlier layer set. Every value is checked where it is written, so
//! an error can name the file, line and key.

use serde_json::{Map, Value};

use super::problem::nearest;
use super::ParamLayer;

/// How a chat parameter's value is checked.
#[derive(Clone, Copy)]
enum Kind {
    /// A non-empty string.
    Model,
    Bool,
    /// An integer within the bounds (one beyond i64 counts as i64::MAX).
    Integer(i64, i64),
    Number(f64, f64),
    /// A string or a list of up to 4 strings.
    Stop,
}

/// The largest `max_tokens` / `max_completion_tokens` (2^31): no model
/// writes more, and a cap beyond it could only be a typo whose worst case
/// and token reservation would be absurd.
pub const MAX_TOKEN_CAP: i64 = 1 << 31;

/// The chat parameters the contract names and their bounds; anything else goes under `extra`.
#[rustfmt::skip]
const PARAMS: &[(&str, Kind)] = &[
    ("model", Kind::Model),
    ("max_completion_tokens", Kind::Integer(1, MAX_TOKEN_CAP)),
    ("max_tokens", Kind::Integer(1, MAX_TOKEN_CAP)),
    ("stream", Kind::Bool),
    ("temperature", Kind::Number(0.0, 2.0)),
    ("top_p", Kind::Number(0.01, 1.0)),
    ("seed", Kind::Integer(1, i64::MAX)),
    ("min_p", Kind::Number(0.001, 0.999)),
    ("top_k", Kind::Integer(0, i64::MAX)),
    ("repetition_penalty", Kind::Number(f64::MIN, f64::MAX)),
    ("top_a", Kind::Number(0.0, 1.0)),
    ("frequency_penalty", Kind::Number(-2.0, 2.0)),
    ("presence_penalty", Kind::Number(-2.0, 2.0)),
    ("stop", Kind::Stop),
];

pub fn is_chat_param(key: &str) -> bool {
    PARAMS.iter().any(|(name, _)| *name == key)
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
    let Some((_, kind)) = PARAMS.iter().find(|(name, _)| *name == key) else {
        return Ok(());
    };
    let ok = match *kind {
        _ if value.is_null() => true,
        Kind::Model if value.as_str().is_some_and(|s| s.trim().is_empty()) => {
            return Err("must not be empty".into())
        }
        Kind::Model => value.is_string(),
        Kind::Bool => value.is_boolean(),
        Kind::Integer(min, max) => (value.as_i64())
            .or_else(|| value.as_u64().map(|_| i64::MAX))
            .is_some_and(|n| (min..=max).contains(&n)),
        Kind::Number(min, max) => value.as_f64().is_some_and(|x| (min..=max).contains(&x)),
        Kind::Stop => {
            let list = value.as_array();
            value.is_string()
                || list.is_some_and(|l| l.len() <= 4 && l.iter().all(Value::is_string))
        }
    };
    let expected = match *kind {
        Kind::Model => "a string (a model id)".to_string(),
        Kind::Bool => "true or false".to_string(),
        Kind::Integer(min, i64::MAX) => format!("an integer >= {min}"),
        Kind::Integer(min, max) => format!("an integer from {min} to {max}"),
        Kind::Number(f64::MIN, _) => "a number".to_string(),
        Kind::Number(min, max) => format!("a number between {min} and {max}"),
        Kind::Stop => "a string or a list of up to 4 strings".to_string(),
    };
    match ok {
        true => Ok(()),
        false => Err(format!("must be {expected}, got {}", describe(value))),
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
        let result = match (key.as_str(), value) {
            (name, _) if is_chat_param(name) => check(name, value).map(|()| {
                layer.named.insert(key.clone(), value.clone());
            }),
            ("extra", Value::Object(extra)) => {
                layer.extra.extend(extra.clone());
                Ok(())
            }
            ("extra", Value::Null) => Ok(()),
            ("extra", other) => Err(format!(
                "must be a table of pass-through parameters, not {}",
                describe(other)
            )),
            _ => match (unknown, typo_of(key)) {
                (UnknownKeys::IntoExtra, None) => {
                    layer.extra.insert(key.clone(), value.clone());
                    Ok(())
                }
                // Passed through, a typo would be sent silently and ignored by the server.
                (UnknownKeys::IntoExtra, Some(near)) => Err(format!(
                    "{key:?} is not a chat parameter; did you mean {near:?}? to send {key:?} as it is, put it under extra, e.g. {{\"extra\": {{{key:?}: ...}}}}"
                )),
                (UnknownKeys::Reject, _) => Err(unknown_key_message(key)),
            },
        };
        if let Err(message) = result {
            let key = key.clone();
            problems.push(ParamProblem { key, message });
        }
    }
    match problems.is_empty() {
        true => Ok(layer),
        false => Err(problems),
    }
}

/// "unknown chat parameter ..., did you mean ...?" with the nearest valid key.
pub fn unknown_key_message(key: &str) -> String {
    let names = PARAMS.iter().map(|(name, _)| *name);
    let candidates: Vec<&str> = names.chain(["extra"]).collect();
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
    PARAMS
        .iter()
        .map(|(p, _)| (strsim::damerau_levenshtein(key, p), *p))
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
    /// Merges layers in order: the last wins, `extra` key by key, and a `null`
    /// left at the end means "not sent".
    pub fn merged<'a>(layers: impl IntoIterator<Item = &'a ParamLayer>) -> ParamLayer {
        let mut out = ParamLayer::default();
        for layer in layers {
            out.named.extend(layer.named.clone());
            out.extra.extend(layer.extra.clone());
        }
        out.named.retain(|_, v| !v.is_null());
        out.extra.retain(|_, v| !v.is_null());
        out
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
