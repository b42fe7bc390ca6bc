//! The flags of `run` and `validate` as one more source of settings, and
//! `--param`/`--model` as the top layer of chat parameters.
//!
//! Paths given as flags are relative to the working directory.

use std::path::Path;

use serde_json::{Map, Value};

use super::params::{self, layer_from_map, UnknownKeys};
use super::settings::{self, report, Settings, MAX_ATTEMPTS, MAX_CONCURRENCY};
use super::toml_walk::Problems;
use super::{Format, ParamLayer, SystemMode};
use crate::cli::{FormatArg, JobArgs, SystemModeArg};
use crate::template::Template;

/// The flags' settings and the `--param`/`--model` layer; `bool` is false
/// when a parameter flag had a problem (the layer is then incomplete).
pub(crate) fn read(
    args: &JobArgs,
    cwd: &Path,
    problems: &mut Problems,
) -> (Settings, ParamLayer, bool) {
    let mut s = Settings::default();
    if let Some(name) = &args.name {
        s.name = report(
            settings::check_name(name).map(|_| name.clone()),
            "--name",
            problems,
        );
    }
    if let Some(input) = &args.input {
        s.input = report(settings::input_source(input, cwd), "--input", problems);
    }
    s.format = args.format.map(|f| match f {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Csv => Format::Csv,
    });
    for (flag, text, slot) in [
        ("--id", &args.id, &mut s.id),
        ("--template", &args.template, &mut s.template),
    ] {
        if let Some(text) = text {
            *slot = report(
                Template::parse(text).map_err(|e| e.to_string()),
                flag,
                problems,
            );
        }
    }
    s.system = args.system.clone();
    s.system_mode = args.system_mode.map(|m| match m {
        SystemModeArg::Auto => SystemMode::Auto,
        SystemModeArg::Message => SystemMode::Message,
        SystemModeArg::Fold => SystemMode::Fold,
    });
    for (flag, text, slot) in [
        ("--output", &args.output, &mut s.output),
        ("--summary", &args.summary, &mut s.summary),
    ] {
        if let Some(text) = text {
            *slot = report(settings::path_spec(text, cwd), flag, problems);
        }
    }
    if let Some(url) = &args.endpoint {
        s.url = report(
            settings::check_url(url).map(|_| url.clone()),
            "--endpoint",
            problems,
        );
    }
    if let Some(env) = &args.api_key_env {
        s.api_key_env = report(
            settings::check_key_env(env).map(|_| env.clone()),
            "--api-key-env",
            problems,
        );
    }
    for header in &args.headers {
        // Named by the header's name only: its value may be a key (and a
        // curl-style "Authorization: Bearer sk-..." has no '=' to stop at).
        let name = header.split(['=', ':']).next().unwrap_or_default().trim();
        let place = format!("--header {name:?}");
        match header.split_once('=') {
            Some((name, value)) => {
                let name = name.trim();
                match settings::check_header(name, value) {
                    Ok(()) => s.headers.push((name.to_string(), value.to_string())),
                    Err(message) => problems.push(place, message),
                }
            }
            None => problems.push(
                place,
                "expected NAME=VALUE, e.g. --header X-Title=faq or --header Authorization=...",
            ),
        }
    }
    if let Some(secs) = args.timeout {
        s.timeout = report(settings::check_timeout(secs), "--timeout", problems);
    }
    if let Some(n) = args.concurrency {
        s.concurrency = report(
            in_range(n as u64, 1, MAX_CONCURRENCY as u64).map(|_| n),
            "--concurrency",
            problems,
        );
    }
    s.requests_per_minute = args.rpm;
    s.tokens_per_minute = args.tpm;
    if let Some(n) = args.max_attempts {
        s.max_attempts = report(
            in_range(n.into(), 1, MAX_ATTEMPTS.into()).map(|_| n),
            "--max-attempts",
            problems,
        );
    }
    if let Some(usd) = args.max_cost {
        s.max_cost_usd = report(settings::check_max_cost(usd), "--max-cost", problems);
    }
    let before = problems.0.len();
    let overrides = overrides(args, problems);
    let params_ok = problems.0.len() == before;
    (s, overrides, params_ok)
}

fn in_range(n: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(format!("must be between {min} and {max}, got {n}"))
    }
}

/// `--param KEY=VALUE` (unknown keys go to `extra`) and `--model ID`.
///
/// `--model` is `--param model=ID`. Given both with different models, which
/// one the user meant is a guess that costs money when wrong, so it is a
/// problem rather than a silent winner; the same model twice is fine.
fn overrides(args: &JobArgs, problems: &mut Problems) -> ParamLayer {
    let mut map = Map::new();
    for text in &args.params {
        match params::parse_assignment(text) {
            Ok((key, value)) => {
                map.insert(key, value);
            }
            Err(message) => problems.push("--param", message),
        }
    }
    if let Some(model) = &args.model {
        let value = Value::String(model.clone());
        match (params::check("model", &value), map.get("model")) {
            (Err(message), _) => problems.push("--model", message),
            (Ok(()), Some(other)) if other != &value => problems.push(
                "--model",
                format!(
                    "conflicts with --param model={}; pass the model once",
                    other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_string)
                ),
            ),
            (Ok(()), _) => {
                map.insert("model".into(), value);
            }
        }
    }
    match layer_from_map(&map, UnknownKeys::IntoExtra) {
        Ok(layer) => layer,
        Err(found) => {
            for p in found {
                problems.push(format!("--param {}", p.key), p.message);
            }
            ParamLayer::default()
        }
    }
}
