//! The flags of `run` and `validate` written over the job file's settings,
//! and `--param`/`--model` as the top layer of chat parameters.
//!
//! One table maps each flag to the job-file key it sets; the key's own check
//! (in [`super::settings::KEYS`]) judges it, so a bad value reads the same
//! from the flag and from the file. Paths given as flags are relative to the
//! working directory.

use std::path::Path;

use clap::ValueEnum;
use serde_json::{Map, Value};

use super::params::{self, layer_from_map, UnknownKeys};
use super::problem::Problems;
use super::settings::{self, Settings};
use super::ParamLayer;
use crate::cli::JobArgs;

/// Reads a flag's value as the job file would write it, if the flag is given.
type Get = fn(&JobArgs) -> Option<toml::Value>;

fn given<T: Clone + Into<toml::Value>>(value: &Option<T>) -> Option<toml::Value> {
    value.clone().map(Into::into)
}

fn whole(value: Option<impl TryInto<i64>>) -> Option<toml::Value> {
    value.map(|n| toml::Value::Integer(n.try_into().unwrap_or(i64::MAX)))
}

/// A `--format`/`--system-mode` choice as its name (`csv`, `fold`).
fn choice(value: Option<impl ValueEnum>) -> Option<toml::Value> {
    Some(value?.to_possible_value()?.get_name().into())
}

/// Each flag that sets a job-file key: `(flag, key, value)`.
#[rustfmt::skip]
pub(crate) const FLAGS: &[(&str, &str, Get)] = &[
    ("--name", "name", |a| given(&a.name)),
    ("--input", "input.path", |a| given(&a.input)),
    ("--format", "input.format", |a| choice(a.format)),
    ("--id", "input.id", |a| given(&a.id)),
    ("--system", "input.system", |a| given(&a.system)),
    ("--system-mode", "input.system_mode", |a| choice(a.system_mode)),
    ("--template", "input.template", |a| given(&a.template)),
    ("--output", "output.path", |a| given(&a.output)),
    ("--summary", "output.summary", |a| given(&a.summary)),
    ("--endpoint", "endpoint.url", |a| given(&a.endpoint)),
    ("--api-key-env", "endpoint.api_key_env", |a| given(&a.api_key_env)),
    ("--timeout", "endpoint.timeout_secs", |a| given(&a.timeout)),
    ("--concurrency", "limits.concurrency", |a| whole(a.concurrency)),
    ("--rpm", "limits.requests_per_minute", |a| whole(a.rpm)),
    ("--tpm", "limits.tokens_per_minute", |a| whole(a.tpm)),
    ("--max-cost", "limits.max_cost_usd", |a| given(&a.max_cost)),
    ("--max-attempts", "retry.max_attempts", |a| whole(a.max_attempts)),
    ("--cache", "cache.dir", |a| given(&a.cache)),
    ("--batch-api", "endpoint.mode", |a| a.batch_api.then(|| "batch".into())),
];

/// Writes the flags over `s` (the job file's settings) and returns the
/// `--param`/`--model` layer; `bool` is false when a parameter flag had a
/// problem (the layer is then incomplete).
pub(crate) fn read(
    args: &JobArgs,
    cwd: &Path,
    s: &mut Settings,
    problems: &mut Problems,
) -> (ParamLayer, bool) {
    for (flag, key, get) in FLAGS {
        if let (Some(value), Some(key)) = (get(args), settings::key(key)) {
            problems.report(key.apply(s, &value, cwd), *flag);
        }
    }
    for header in &args.headers {
        // Named by the header's name only: its value may be a key (and a
        // curl-style "Authorization: Bearer sk-..." has no '=' to stop at).
        let name = header.split(['=', ':']).next().unwrap_or_default().trim();
        let place = format!("--header {name:?}");
        let expected =
            "expected NAME=VALUE, e.g. --header X-Title=faq or --header Authorization=...";
        let (Some((name, value)), Some(key)) =
            (header.split_once('='), settings::key("endpoint.headers"))
        else {
            problems.push(place, expected);
            continue;
        };
        let one = toml::Table::from_iter([(name.trim().into(), value.into())]);
        problems.report(key.apply(s, &one.into(), cwd), place);
    }
    let before = problems.0.len();
    let overrides = overrides(args, problems);
    (overrides, problems.0.len() == before)
}

/// `--param KEY=VALUE` (unknown keys go to `extra`) and `--model ID`.
///
/// `--model` is `--param model=ID`. Given both with different models, which
/// one the user meant is a guess that costs money when wrong, so it is a
/// problem rather than a silent winner; the same model twice is fine.
fn overrides(args: &JobArgs, problems: &mut Problems) -> ParamLayer {
    let mut map = Map::new();
    for text in &args.params {
        if let Some((key, value)) = problems.report(params::parse_assignment(text), "--param") {
            map.insert(key, value);
        }
    }
    if let Some(model) = &args.model {
        let value = Value::String(model.clone());
        match (params::check("model", &value), map.get("model")) {
            (Err(message), _) => problems.push("--model", message),
            (Ok(()), Some(other)) if other != &value => {
                let other = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string);
                let message = format!("conflicts with --param model={other}; pass the model once");
                problems.push("--model", message)
            }
            (Ok(()), _) => {
                map.insert("model".into(), value);
            }
        }
    }
    layer_from_map(&map, UnknownKeys::IntoExtra).unwrap_or_else(|found| {
        for p in found {
            problems.push(format!("--param {}", p.key), p.message);
        }
        ParamLayer::default()
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::super::settings::Settings;
    use crate::cli::Cli;

    /// The `[default: X]` a flag's help states.
    fn stated_default(flag: &str) -> String {
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("run");
        let arg = run
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .expect("flag");
        let help = arg.get_help().expect("help").to_string();
        let (_, rest) = help.split_once("[default: ").expect("a stated default");
        rest.split_once(']').expect("closed").0.to_string()
    }

    /// Help writes the defaults as text (the flags are optional so the job
    /// file can set them); the text must say what the loader really uses.
    #[test]
    fn defaults_in_help_are_the_real_defaults() {
        let s = Settings::default();
        let real = [
            ("timeout", s.endpoint.timeout.as_secs_f64().to_string()),
            ("endpoint", s.endpoint.url.to_string()),
            ("api-key-env", s.endpoint.api_key_env.to_string()),
            ("concurrency", s.limits.concurrency.to_string()),
            ("rpm", s.limits.requests_per_minute.to_string()),
            ("tpm", s.limits.tokens_per_minute.to_string()),
            ("max-cost", s.limits.max_cost_usd.to_string()),
            ("max-attempts", s.retry.max_attempts.to_string()),
            ("system-mode", format!("{:?}", s.system_mode).to_lowercase()),
        ];
        for (flag, value) in real {
            assert_eq!(stated_default(flag), value, "--{flag}");
        }
    }
}
