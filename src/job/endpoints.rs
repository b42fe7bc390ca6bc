//! `[[endpoints]]`: several named endpoints (keys, providers) a job spreads
//! its requests over, each read from its own table of the job file.
//!
//! An entry takes every key `[endpoint]` takes (checked by the same entries
//! of [`super::settings::KEYS`], so a bad value reads the same in both) plus
//! `name`, `weight`, its own `requests_per_minute` / `tokens_per_minute` and
//! `models`. Checks across entries (unique names) are made here too.

use std::collections::HashSet;
use std::path::Path;

use toml::Spanned;

use super::file::Doc;
use super::lenient::{unreadable, Lenient};
use super::problem::{describe, unknown_key};
use super::settings::{self, Settings};
use super::NamedEndpoint;

/// The keys of one entry besides those `[endpoint]` has.
const OWN_KEYS: [&str; 5] = [
    "name",
    "weight",
    "requests_per_minute",
    "tokens_per_minute",
    "models",
];
/// The largest weight: past this it can only be a typo, and the weighted
/// round-robin sums weights in an i64.
const MAX_WEIGHT: i64 = 1_000_000;
/// The most endpoints a job may list. Each holds a connection pool and a
/// TLS setup (about 30 KB: 10,000 took 300 MB before a request was sent),
/// and each choice looks at every one; no real job spreads over more keys.
pub const MAX_ENDPOINTS: usize = 1_000;
/// The longest endpoint name: it is printed in warnings, tables and records.
const MAX_NAME_CHARS: usize = 100;

type Node = Spanned<toml::Value>;
pub(super) type Entries = Vec<Spanned<Lenient<std::collections::BTreeMap<String, Node>>>>;

impl Doc<'_, '_> {
    /// Every `[[endpoints]]` entry that reads without a problem (the others
    /// are pushed as problems, each at its key).
    pub(super) fn endpoints(
        &mut self,
        node: &Spanned<Lenient<Entries>>,
        base: &Path,
    ) -> Vec<NamedEndpoint> {
        let items = match node.get_ref() {
            Lenient::Read(items) => items,
            Lenient::Unreadable(why) => {
                self.push(node.span(), "endpoints", unreadable(why));
                return Vec::new();
            }
            Lenient::Not(value) => {
                let message = match value {
                    toml::Value::Table(_) => "must be a list of tables: write [[endpoints]] (double brackets) above each endpoint, or [endpoint] for one".to_string(),
                    _ => format!("must be a list of [[endpoints]] tables, got {}", describe(value)),
                };
                self.push(node.span(), "endpoints", message);
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.push(
                node.span(),
                "endpoints",
                "is empty: give at least one [[endpoints]] table",
            );
        }
        if items.len() > MAX_ENDPOINTS {
            self.push(
                node.span(),
                "endpoints",
                format!(
                    "lists {} endpoints; at most {MAX_ENDPOINTS} are allowed (several keys of one provider each need an entry, but not thousands)",
                    items.len()
                ),
            );
            return Vec::new();
        }
        let mut names = HashSet::new();
        let mut endpoints = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let number = i + 1;
            let Some(table) = self.table(&format!("[[endpoints]] #{number}"), Some(item)) else {
                continue;
            };
            let name = table.get("name").and_then(|n| n.get_ref().as_str());
            let section = match name {
                Some(n) => format!("[[endpoints]] #{number} ({n:?})"),
                None => format!("[[endpoints]] #{number}"),
            };
            let before = self.found.len();
            let mut scratch = Settings::default();
            let mut endpoint = NamedEndpoint {
                name: String::new(),
                config: scratch.endpoint.clone(),
                weight: 1,
                requests_per_minute: 0,
                tokens_per_minute: 0,
                models: None,
            };
            for (key, node) in table {
                let what = format!("{section} {key}");
                let value = node.get_ref();
                let result = match key.as_str() {
                    "name" => match value.as_str() {
                        None => Err(format!("must be a string, got {}", describe(value))),
                        Some(n) if n.trim().is_empty() => Err("must not be empty".to_string()),
                        // Printed on stderr and in tables: an escape or a line
                        // break there would repaint or split the terminal's lines.
                        Some(n) if n.chars().any(char::is_control) => Err(format!(
                            "{n:?} holds a control character (a line break, tab or escape); use letters, digits and punctuation"
                        )),
                        Some(n) if n.chars().count() > MAX_NAME_CHARS => Err(format!(
                            "is {} characters long; at most {MAX_NAME_CHARS}",
                            n.chars().count()
                        )),
                        Some(n) if !names.insert(n.to_string()) => Err(format!(
                            "{n:?} is the name of an earlier endpoint; endpoint names must be unique"
                        )),
                        Some(n) => {
                            endpoint.name = n.to_string();
                            Ok(())
                        }
                    },
                    "weight" => settings::whole(value, 1, MAX_WEIGHT)
                        .map(|w| endpoint.weight = w as u32),
                    "requests_per_minute" => settings::whole(value, 0, u32::MAX.into())
                        .map(|n| endpoint.requests_per_minute = n as u32),
                    "tokens_per_minute" => settings::whole(value, 0, i64::MAX)
                        .map(|n| endpoint.tokens_per_minute = n as u64),
                    "models" => models(value).map(|m| endpoint.models = Some(m)),
                    _ => match settings::key(&format!("endpoint.{key}")) {
                        Some(entry) => entry.apply(&mut scratch, value, base),
                        None => {
                            let known = allowed_keys();
                            let span = self
                                .key_span(&["endpoints", &i.to_string(), key])
                                .unwrap_or(node.span());
                            self.push(span, &what, unknown_key(key, &known));
                            continue;
                        }
                    },
                };
                if let Err(message) = result {
                    self.push(node.span(), &what, message);
                }
            }
            if !table.contains_key("name") {
                self.push(
                    item.span(),
                    &format!("{section} name"),
                    "every endpoint needs a name (used in records and warnings), e.g. name = \"key-a\"",
                );
            }
            if self.found.len() == before {
                endpoint.config = scratch.endpoint;
                endpoints.push(endpoint);
            }
        }
        endpoints
    }
}

/// The keys an `[[endpoints]]` entry takes.
fn allowed_keys() -> Vec<&'static str> {
    let shared = (settings::KEYS.iter()).filter_map(|k| k.path.strip_prefix("endpoint."));
    OWN_KEYS.into_iter().chain(shared).collect()
}

/// `models = ["a", "b"]`: non-empty strings, at least one.
fn models(value: &toml::Value) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!(
            "must be a list of model ids, got {}",
            describe(value)
        ));
    };
    if items.is_empty() {
        return Err("is empty: leave it out to serve every model".into());
    }
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(id) if !id.trim().is_empty() => Ok(id.to_string()),
            Some(_) => Err("a model id must not be empty".to_string()),
            None => Err(format!(
                "a model id must be a string, got {}",
                describe(item)
            )),
        })
        .collect()
}

impl NamedEndpoint {
    /// Whether this endpoint serves `model` (no `models` list: every model).
    pub fn serves(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }

    /// `models` as people read it: `["a", "b"]`, or `all models`.
    pub fn models_text(&self) -> String {
        match &self.models {
            Some(models) => format!("{models:?}"),
            None => "all models".to_string(),
        }
    }
}

/// The job's endpoints once the flags are known: `--endpoint URL` means one
/// endpoint (the list is dropped); `--timeout`, `--api-key-env` and
/// `--header` apply to every entry; with shards, each entry's rates are
/// divided like `[limits]` ones (unless `per_shard`); and every model the
/// job names (`models`) must be served by some entry.
pub(super) fn resolve(
    mut endpoints: Vec<NamedEndpoint>,
    s: &Settings,
    args: &crate::cli::JobArgs,
    shards: u64,
    models: &[String],
    problems: &mut super::problem::Problems,
    at: &dyn Fn(&str, &str) -> String,
) -> Vec<NamedEndpoint> {
    if endpoints.is_empty() || args.endpoint.is_some() {
        return Vec::new();
    }
    let batch = s.endpoint.mode == super::EndpointMode::Batch
        || endpoints
            .iter()
            .any(|e| e.config.mode == super::EndpointMode::Batch);
    if batch {
        problems.push(
            at("endpoints", "--batch-api"),
            "batch mode sends a job through one endpoint's Batch API, and [[endpoints]] spreads it over several: give one [endpoint] with mode = \"batch\", or drop batch mode".to_string(),
        );
    }
    for e in &mut endpoints {
        if args.timeout.is_some() {
            e.config.timeout = s.endpoint.timeout;
        }
        if args.api_key_env.is_some() {
            e.config.api_key_env = s.endpoint.api_key_env.clone();
        }
        for (name, value) in &s.endpoint.headers {
            let header = (name.clone(), value.clone());
            match (e.config.headers.iter_mut()).find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some(slot) => *slot = header,
                None => e.config.headers.push(header),
            }
        }
        if shards > 1 && !s.limits.per_shard {
            let rpm = u64::from(e.requests_per_minute);
            if (rpm > 0 && rpm < shards)
                || (e.tokens_per_minute > 0 && e.tokens_per_minute < shards)
            {
                problems.push(
                    at("endpoints", "--shards"),
                    format!("endpoint {:?}: its rate shared by {shards} shards is less than one a minute each; raise it, use fewer shards, or set [limits] per_shard = true if each shard has its own limit", e.name),
                );
            }
            e.requests_per_minute = u32::try_from(rpm / shards).unwrap_or(u32::MAX);
            e.tokens_per_minute /= shards;
        }
    }
    for model in models {
        if !endpoints.iter().any(|e| e.serves(model)) {
            let lists: Vec<String> = (endpoints.iter())
                .map(|e| format!("{:?} serves {}", e.name, e.models_text()))
                .collect();
            problems.push(
                at("endpoints", "--model"),
                format!(
                    "no endpoint serves the model {model:?} the job requests ({}); add it to an endpoint's models, or leave models out to serve every model",
                    lists.join("; ")
                ),
            );
        }
    }
    endpoints
}
